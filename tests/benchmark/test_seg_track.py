"""tools/benchmark.py --track seg: pre-trained backbones fine-tuned on the Fashion-MNIST
scenes through mmseg's Runner, scored by IoUMetric; resume; a missing pre-training;
BEiT's exact conversion. CPU only, toy sizes, no downloads."""
from __future__ import annotations

import json
import os.path as osp
import sys

import mmseg.models  # noqa: F401  (registers mmseg's backbones)
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as PRE_MODELS
from mmseg.registry import MODELS as SEG_MODELS

from benchmarks import seg_runner
from benchmarks.scales import build_scale
from benchmarks.seg_config import load, scaled_schedule, write_run_config
from benchmarks.seg_specs import (METHOD_CONFIGS, SEG_CONFIGS, SEG_METHODS, has_mode,
                                  parse_seg_tracks, seg_config)
from benchmarks.seg_weights import convert_backbone
from benchmarks.specs import build_spec
from benchmarks.specs_vit import LABELS, METHODS
from cim_mm.utils import atomic_torch_save, safe_load

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))


def _seg_argv(tmp_path, fm: str, *extra: str, iters: int = 2) -> list[str]:
    """A toy seg command: the ViT rows MAE + random init, 32 px scenes (8 training,
    4 validation), 2 iterations, the pre-training 1 step without evaluation."""
    return ['--track', 'seg', '--from-track', 'vit', '--methods', 'mae,random',
            '--pretrained-dir', str(tmp_path / 'pre'), '--work-dir', str(tmp_path / 'seg'),
            '--scenes-root', str(tmp_path / 'scenes'), '--scene-size', '32',
            '--scenes-train', '8', '--scenes-val', '4', '--seg-iters', str(iters),
            '--data-root', fm, '--in-process', '--iters', '1', '--eval', 'none',
            '--min-cpu-share', '0', *extra]


def test_seg_track_end_to_end_resume_and_missing_pretraining(tmp_path, fake_fashion_mnist,
                                                             capsys, monkeypatch):
    from benchmark import main  # tools/benchmark.py (tools/ is on the path above)
    argv = _seg_argv(tmp_path, fake_fashion_mnist)

    # no pre-training yet: one line naming the command that makes it, nothing run
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert (f'python tools/benchmark.py --track vit --methods mae --work-dir '
            f'{tmp_path / "pre"}') in err[0] and '--pretrain-missing' in err[0]
    assert not (tmp_path / 'seg').exists() and not (tmp_path / 'scenes').exists()

    # with --pretrain-missing: the ViT track pre-trains MAE (1 step), then 4 seg runs
    assert main(argv + ['--pretrain-missing']) == 0
    assert (tmp_path / 'pre' / 'mae' / 'backbone.pth').is_file()
    assert json.load(open(tmp_path / 'scenes' / 'scenes_training.json'))['canvas'] == 32
    for f in ('results.json', 'results.md', 'results.csv', 'results_seeds.csv', 'seg.png'):
        assert (tmp_path / 'seg' / f).is_file(), f
    data = json.load(open(tmp_path / 'seg' / 'results.json'))
    runs = {(r['method'], r['mode']): r for r in data['runs']}
    assert sorted(runs) == [('mae', 'finetune'), ('mae', 'frozen'), ('random', 'finetune'),
                            ('random', 'frozen')]
    for (method, mode), r in runs.items():
        assert r['status'] == 'ok', r
        for k in ('mIoU', 'mAcc'):
            assert 0. <= r['eval'][k] <= 100.
        assert r['val_scenes'] == 4
        # frozen: no backbone parameter trains; fine-tune: all of them do
        if mode == 'frozen':
            assert r['params_backbone_trainable'] == 0 < r['params_trainable']
        else:
            assert r['params_backbone_trainable'] == r['params_backbone'] > 0
    # the pre-trained backbone was converted (and checked) into each mode's own backbone
    assert runs['mae', 'finetune']['conversion']['target'].startswith('mmseg MAE')
    assert runs['mae', 'frozen']['conversion']['target'].startswith('mmseg VisionTransformer')
    assert 'num_heads 4' in runs['mae', 'frozen']['conversion']['arch_checked']
    assert runs['random', 'finetune']['conversion'] is None
    assert runs['mae', 'finetune']['pretrain_settings']['iters'] == 1
    summary = {r['row']: r for r in data['summary']}
    for row in ('vit/mae', 'vit/random'):
        for k in ('finetune_mIoU', 'finetune_mAcc', 'frozen_mIoU', 'frozen_mAcc'):
            assert summary[row][k] is not None, (row, k)
    assert summary['vit/mae']['frozen_mIoU'] == runs['mae', 'frozen']['eval']['mIoU']
    assert '| ViT: MAE |' in open(tmp_path / 'seg' / 'results.md').read()
    # the README table: one line per row, each mode's mIoU, finished / planned seeds
    capsys.readouterr()
    assert main(['--readme-table', str(tmp_path / 'seg')]) == 0
    table = capsys.readouterr().out
    mae = next(line for line in table.splitlines() if line.startswith('| ViT: MAE |'))
    cells = [c.strip().strip('*') for c in mae.strip('|').split('|')]
    assert cells[1:] == [f'{runs["mae", "finetune"]["eval"]["mIoU"]:.2f}',
                         f'{runs["mae", "frozen"]["eval"]["mIoU"]:.2f}', '1/1'], cells
    assert 'Command: `python tools/benchmark.py --track seg' in table

    # resume: every run is finished with these settings, none runs again
    calls: list[str] = []

    def fake_run_one(settings, in_process, worker='benchmarks.worker'):
        calls.append(f'{settings["method"]}/{settings["mode"]}')
        return True, ''

    monkeypatch.setattr(seg_runner, 'run_one', fake_run_one)
    capsys.readouterr()
    assert main(argv + ['--pretrain-missing']) == 0
    assert calls == []
    assert capsys.readouterr().out.count('finished earlier, skipping') == 4
    # another setting reruns all; another pre-trained backbone reruns its rows only
    assert main(_seg_argv(tmp_path, fake_fashion_mnist, iters=3)) == 0
    assert len(calls) == 4 and 'settings changed (seg_iters)' in capsys.readouterr().out
    calls.clear()
    bb = str(tmp_path / 'pre' / 'mae' / 'backbone.pth')
    state = safe_load(bb)
    state['ln1.bias'] = state['ln1.bias'] + 1.
    atomic_torch_save(state, bb)
    assert main(argv) == 0
    assert calls == ['mae/finetune', 'mae/frozen']
    assert 'settings changed (backbone)' in capsys.readouterr().out


def _beit_state(scale) -> tuple[dict, dict]:
    """The benchmark's BEiT v1 evaluation backbone (BEiTViT: layer scale, shared
    relative position bias) with random non-trivial weights: (config, state dict)."""
    cfg = build_spec('beit', scale).eval_backbone
    torch.manual_seed(0)
    bb = PRE_MODELS.build(dict(cfg))
    with torch.no_grad():
        for p in bb.parameters():  # layer scale, relative bias: nothing at its init value
            p.add_(0.05 * torch.randn_like(p))
    return cfg, bb.state_dict()


@pytest.mark.parametrize('mode', ['finetune', 'frozen'])
def test_beit_backbone_converts_exactly(mode, tmp_path):
    """BEiT v1 into each mode's seg backbone computes the same features as the
    pre-trained BEiTViT (the frozen one with nothing left to train)."""
    cfg, state = _beit_state(build_scale('cpu-small'))
    src = str(tmp_path / 'backbone.pth')
    torch.save(state, src)
    weights = str(tmp_path / 'seg.pth')
    run_cfg = write_run_config(seg_config('vit', mode, 'beit'), str(tmp_path / 'cfg.py'),
                               weights=weights, scenes_root=str(tmp_path), iters=2,
                               scene_size=32, seed=0, work_dir=str(tmp_path))
    rep = convert_backbone(src, cfg, run_cfg, weights)
    assert rep.ok and not rep.verify_failures
    seg = load(run_cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):
        target = SEG_MODELS.build(seg.model.backbone)
    target.init_weights()
    target.eval()
    outs = dict(finetune=dict(out_indices=[1, 2, 4, 5], final_norm=False),
                frozen=dict(out_indices=-1, final_norm=True))[mode]
    ref = PRE_MODELS.build(dict(cfg, out_type='featmap', **outs))
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not missing and set(unexpected) <= {'ln1.weight', 'ln1.bias'}  # UperNet: no final norm
    ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = ref(x), target(x)  # tuples of [2, 128, 8, 8]
    assert len(want) == len(got)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    if mode == 'frozen':
        assert not any(p.requires_grad for p in target.parameters())


_ROWS = [(t, m, mode) for t, ms in SEG_METHODS.items() for m in ms if m != 'random'
         for mode in ('finetune', 'frozen') if has_mode(t, mode)]


@pytest.mark.parametrize('track,method,mode', _ROWS,
                         ids=[f'{t}-{m}-{mode}' for t, m, mode in _ROWS])
def test_every_row_converts_into_its_seg_config(track, method, mode, tmp_path):
    """Each seg row's ``backbone.pth`` (what its track saves: the pre-training
    backbone's state, random weights) converts into the mode's seg backbone with
    the configs the runner passes, one of which describes it (so the
    architecture facts no shape shows are checked against the checkpoint's
    config), and its weights arrive there: the converter's own load-back
    passes, and the first convolution's kernel that the seg backbone builds
    from the written file is the source's."""
    import benchmarks.models  # noqa: F401  (registers the peers' backbones)
    spec = build_spec(method, build_scale('cpu-small', track=track))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        src_model = PRE_MODELS.build(dict(spec.model['backbone']))
    state = src_model.state_dict()
    cfg = seg_runner._backbone_cfgs(track, method)
    first = next(k for k, v in state.items() if v.dim() == 4)  # patch / stem conv [C, 3, k, k]
    state[first] = torch.randn_like(state[first])
    src = str(tmp_path / 'backbone.pth')
    torch.save(state, src)
    weights = str(tmp_path / 'seg.pth')
    run_cfg = write_run_config(seg_config(track, mode, method), str(tmp_path / 'cfg.py'),
                               weights=weights, scenes_root=str(tmp_path), iters=2,
                               scene_size=32, seed=0, work_dir=str(tmp_path))
    rep = convert_backbone(src, cfg, run_cfg, weights)
    assert rep.ok and not rep.verify_failures, rep
    assert 'checkpoint meta.cfg' in rep.arch_checked, (rep.arch_checked, rep.notes)
    assert not [n for n in rep.notes if 'meta.cfg' in n], rep.notes
    seg = load(run_cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):
        target = SEG_MODELS.build(seg.model.backbone)
    target.init_weights()  # loads ``weights`` (init_cfg Pretrained)
    kernels = [v for v in target.state_dict().values()
               if v.dim() == 4 and v.shape == state[first].shape]
    assert any(torch.equal(k, state[first]) for k in kernels), first


def test_scaled_schedule_keeps_the_shape_of_the_schedule():
    warm = dict(type='LinearLR', begin=0, end=12)
    poly = dict(type='PolyLR', begin=12, end=120)
    assert scaled_schedule([warm, poly], 120, 120) == [warm, poly]
    assert scaled_schedule([warm, poly], 120, 2) == [dict(warm, end=1), dict(poly, begin=1,
                                                                             end=2)]
    assert scaled_schedule([warm, poly], 120, 1) == [dict(warm, end=1)]  # no room for poly
    assert scaled_schedule([dict(type='PolyLR', begin=0, end=120)], 120, 30) == [
        dict(type='PolyLR', begin=0, end=30)]


def test_rows_configs_and_croco_method():
    assert SEG_METHODS['vit'] == ('cim-respix', 'cim-revdet', 'mae', 'beit', 'simmim',
                                  'maskfeat', 'croco', 'random')
    assert SEG_METHODS['resnet'] == ('cim-respix', 'cim-revdet', 'spark', 'densecl',
                                     'simclr', 'random')
    for track in ('convnext', 'swin'):  # CIM and random init, fine-tuned only
        assert SEG_METHODS[track] == ('cim-respix', 'cim-revdet', 'random')
        assert has_mode(track, 'finetune') and not has_mode(track, 'frozen')
    assert 'croco' in METHODS and LABELS['croco'] == ('CroCo, two crops of one image: '
                                                      'not multi-view')
    for path in list(SEG_CONFIGS.values()) + list(METHOD_CONFIGS.values()):
        assert osp.isfile(osp.join(ROOT, path)), path


def test_from_track_takes_a_list_and_all():
    assert parse_seg_tracks('vit,resnet') == ['vit', 'resnet']
    assert parse_seg_tracks('swin, convnext') == ['convnext', 'swin']  # table order
    assert parse_seg_tracks('all') == ['vit', 'resnet', 'convnext', 'swin']
    for bad in ('vit,deit', ''):
        with pytest.raises(ValueError, match='choose from vit, resnet, convnext, swin'):
            parse_seg_tracks(bad)


def test_featmap_rows_run_finetuned_only_and_report_their_own_columns(
        tmp_path, fake_fashion_mnist, capsys):
    """``--from-track convnext,swin``: random init of each family through its shipped
    UperNet config (2 iterations on 32 px scenes); the frozen mode, which these
    tracks have no config for, is not run and not reported; a mode list without
    finetune is refused in one line."""
    from benchmark import main
    argv = ['--track', 'seg', '--from-track', 'convnext,swin', '--methods', 'random',
            '--work-dir', str(tmp_path / 'seg'), '--scenes-root', str(tmp_path / 'scenes'),
            '--scene-size', '32', '--scenes-train', '8', '--scenes-val', '4',
            '--seg-iters', '2', '--data-root', fake_fashion_mnist, '--in-process']
    assert main(argv) == 0
    data = json.load(open(tmp_path / 'seg' / 'results.json'))
    runs = {(r['track'], r['mode']): r for r in data['runs']}
    assert sorted(runs) == [('convnext', 'finetune'), ('swin', 'finetune')]
    for r in runs.values():
        assert r['status'] == 'ok' and 0. <= r['eval']['mIoU'] <= 100., r
        assert r['params_backbone_trainable'] == r['params_backbone'] > 0
    md = open(tmp_path / 'seg' / 'results.md').read()
    assert '## ConvNeXt (w64, three stages)' in md and '| Swin: random init |' in md
    assert 'frozen backbone, linear head' not in md.split('## ConvNeXt')[1].split('\n\n')[1]
    summary = {r['row']: r for r in data['summary']}
    assert summary['convnext/random']['n_ok'] == 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv + ['--seg-modes', 'frozen'])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'run fine-tuned only: add finetune' in err[0], err
