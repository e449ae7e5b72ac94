"""tools/test.py: evaluates a matching checkpoint, refuses a mismatched one in one line."""
from __future__ import annotations

import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location('cim_test_tool', osp.join(ROOT, 'tools/test.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cfg(data_root: str, work_dir: str) -> Config:
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(16, 16)),
                dict(type='PackInputs')]
    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['cim_mm'], allow_failed_imports=False),
        work_dir=work_dir,
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3,
                                   std=[127.5] * 3, num_classes=2),
            backbone=dict(type='VisionTransformer',
                          arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                    feedforward_channels=64),
                          img_size=16, patch_size=4, out_type='avg_featmap'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=32,
                      loss=dict(type='CrossEntropyLoss'))),
        test_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='CustomDataset', data_root=data_root, pipeline=pipeline)),
        test_evaluator=dict(type='Accuracy', topk=(1,)),
        test_cfg=dict(),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
    ))


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    for cls, value in (('dark', 30), ('bright', 220)):
        (tmp_path / 'data' / cls).mkdir(parents=True)
        for i in range(4):
            img = np.clip(value + rng.integers(-20, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / 'data' / cls / f'{i}.png')
    cfg = _cfg(str(tmp_path / 'data'), str(tmp_path / 'work'))
    cfg_path = str(tmp_path / 'cfg.py')
    cfg.dump(cfg_path)
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return tmp_path, cfg_path, ckpt, model


def test_evaluates_a_matching_checkpoint(setup):
    tmp_path, cfg_path, ckpt, model = setup
    out = str(tmp_path / 'preds.pkl')
    _tool().main([cfg_path, ckpt, '--out', out])
    assert osp.getsize(out) > 0
    # the metric written equals a direct evaluation of the saved weights
    import json
    import glob
    scalars = glob.glob(str(tmp_path / 'work' / '*' / '*.json'))
    logged = [json.loads(line) for f in scalars for line in open(f)]
    acc = [r['accuracy/top1'] for r in logged if 'accuracy/top1' in r]
    model.eval()
    correct = 0
    for label, cls in enumerate(sorted(['bright', 'dark'])):
        for i in range(4):
            img = np.asarray(Image.open(tmp_path / 'data' / cls / f'{i}.png').convert('RGB'))
            x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)[None].float()
            x = (x - 127.5) / 127.5
            with torch.no_grad():
                pred = model.head(model.extract_feat(x)).argmax(1).item()
            correct += int(pred == label)
    assert acc and acc[-1] == pytest.approx(100.0 * correct / 8)


def test_mismatched_checkpoint_is_one_line(setup, capsys):
    tmp_path, cfg_path, ckpt, model = setup
    sd = {('backbone.renamed.' + k[len('backbone.'):] if k.startswith('backbone.layers') else k): v
          for k, v in model.state_dict().items()}
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': sd}, bad)
    with pytest.raises(SystemExit) as e:
        _tool().main([cfg_path, bad])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'does not match' in err[0] and 'missing' in err[0] \
        and 'unexpected' in err[0], err


@pytest.mark.parametrize('kind', ['pretraining', 'converted'])
def test_mismatch_hint_says_which_checkpoint_to_test(setup, capsys, kind):
    """A CIM pre-training checkpoint or a converted backbone is refused before the
    Runner prints anything, in one line that points at the fine-tuned checkpoint."""
    tmp_path, cfg_path, _, model = setup
    if kind == 'pretraining':
        sd = {'generator.head.weight': torch.zeros(2, 2), 'backbone.cls_token': torch.zeros(1)}
        meta = {}
    else:
        sd = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
        meta = {'cim_mm_conversion': {'ok': True}}
    path = str(tmp_path / f'{kind}.pth')
    torch.save({'state_dict': sd, 'meta': meta}, path)
    with pytest.raises(SystemExit):
        _tool().main([cfg_path, path])
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert len(lines) == 1, lines  # no Runner environment / config dump before it
    assert 'work_dirs/<fine-tune config name>/iter_*.pth' in lines[0]
    assert ('converted backbone' in lines[0]) == (kind == 'converted')


def test_missing_checkpoint_is_one_line(setup, capsys):
    tmp_path, cfg_path, _, _ = setup
    with pytest.raises(SystemExit):
        _tool().main([cfg_path, str(tmp_path / 'nope.pth')])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'checkpoint file' in err[0] and 'does not exist' in err[0]


# ------------------------------------------- one error channel per kind of error
def test_user_error_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    """Only a user's mistake becomes one line; an internal ValueError / KeyError
    propagates unchanged (Python prints its traceback and exits 1)."""
    import traceback

    from cim_mm.utils.cli import user_errors_as_one_line
    from cim_mm.utils.errors import UserError
    with pytest.raises(SystemExit) as e:
        with user_errors_as_one_line('tool.py'):
            raise UserError('--num must be >= 1, got 0')
    assert e.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        'tool.py: error: --num must be >= 1, got 0 (set CIM_MM_DEBUG=1 for the traceback)']
    with pytest.raises(SystemExit):  # a file the user named: one line too
        with user_errors_as_one_line('tool.py'):
            raise FileNotFoundError('config file x.py does not exist')
    assert capsys.readouterr().err.count('\n') == 1

    def internal():
        raise ValueError('internal bug: shapes [2, 3] vs [3]')

    for bug in (internal, lambda: {}['missing key']):
        with pytest.raises((ValueError, KeyError)) as info:
            with user_errors_as_one_line('tool.py'):
                bug()
        assert capsys.readouterr().err == ''  # nothing swallowed, nothing printed
        tb = ''.join(traceback.format_exception(info.value))
        assert tb.startswith('Traceback') and ('internal' in tb or 'missing key' in tb)


def test_tool_bug_is_not_disguised_as_a_user_error(setup, monkeypatch):
    """tools/test.py: an internal ValueError from inside the run keeps its type
    and traceback (before, it became 'test.py: error: ...' and exit 1)."""
    tmp_path, cfg_path, ckpt, _ = setup
    tool = _tool()

    def broken(*args, **kwargs):
        raise ValueError('internal: not a user mistake')

    monkeypatch.setattr(tool, 'key_mismatch', broken)
    with pytest.raises(ValueError, match='internal: not a user mistake') as info:
        tool.main([cfg_path, ckpt])
    assert not isinstance(info.value, SystemExit)


def test_worker_re_raise_keeps_only_the_users_message() -> None:
    """A UserError re-raised by a DataLoader worker prints its message without
    the worker's traceback or the exception's class name."""
    from cim_mm.utils.cli import one_line
    from cim_mm.utils.errors import UserError
    err = UserError('Caught UserError in DataLoader worker process 0.\n'
                    'Original Traceback (most recent call last):\n'
                    '  File "x.py", line 1, in f\n'
                    'cim_mm.utils.errors.UserError: 3 of 9 images could not be loaded')
    assert one_line(err) == '3 of 9 images could not be loaded'
    assert one_line(UserError('plain: message')) == 'plain: message'


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_every_flag_has_help_and_there_is_an_example(tool):
    import importlib
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    parser = importlib.import_module(tool).build_parser()
    undocumented = [a.option_strings or a.dest for a in parser._actions
                    if not (a.help or '').strip()]
    assert undocumented == []
    assert 'example' in (parser.epilog or '') and 'tools/' in parser.epilog


def test_third_party_log_lines_are_dropped_and_ours_kept():
    import logging

    from cim_mm.utils.warning_filters import filter_third_party_logs
    logger = logging.getLogger('cim_mm_test_filter')
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    filter_third_party_logs(logger)
    filter_third_party_logs(logger)  # once only
    logger.warning('"FileClient" will be deprecated in future. Please use io functions')
    logger.warning('cim_mm: the fixes for this stack are not applied')
    assert seen == ['cim_mm: the fixes for this stack are not applied']
    assert len(logger.filters) == 1
