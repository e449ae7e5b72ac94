"""Pre-training and fine-tuning without the segmentation stack.

Each check runs in a subprocess that imports ``no_seg_stack`` first: there,
mmsegmentation and mmcv's compiled ops (``mmcv.ops`` / ``mmcv._ext``) do not
import, as on a machine with mmcv-lite only. ``import cim_mm``, every config
that is not a seg config, the demo's training and the mmpretrain converter must
work there; a seg config must fail with one line naming the extra.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from mmengine.config import Config

from cim_mm.utils.errors import UserError
from cim_mm.utils.seg_extra import SEG_EXTRA, load_config, require_seg_stack
from helpers import REPO_ROOT

CONFIGS = sorted(p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                                      recursive=True) if '_base_' not in p.split(os.sep))
SEG_LINE = f'cim_mm.seg needs mmsegmentation: {SEG_EXTRA}'


def run_without_seg_stack(code: str, *args: str, timeout: int = 600) -> str:
    """Run ``code`` in a fresh Python without the seg stack (cwd: the repository;
    ``tests/`` and ``tests/tools/`` importable); returns its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [osp.join(REPO_ROOT, 'tests', 'tools'), osp.join(REPO_ROOT, 'tests'), REPO_ROOT]))
    script = 'import no_seg_stack  # first: no mmseg, no mmcv.ops\n' + textwrap.dedent(code)
    out = subprocess.run([sys.executable, '-c', script, *args], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope='module')
def seg_configs() -> set[str]:
    """The shipped configs that run in mmseg (loaded here, with mmseg installed)."""
    return {osp.relpath(p, REPO_ROOT) for p in CONFIGS
            if Config.fromfile(p).get('default_scope') == 'mmseg'}


def test_seg_configs_import_cim_mm_seg(seg_configs):
    """Every seg config registers the seg side through ``cim_mm.seg``; no other
    config asks for it."""
    assert len(seg_configs) >= 5
    for p in CONFIGS:
        imports = Config.fromfile(p).get('custom_imports', {}).get('imports', [])
        rel = osp.relpath(p, REPO_ROOT)
        assert ('cim_mm.seg' in imports) == (rel in seg_configs), rel


CONFIGS_CHECK = '''
import glob, json, os, os.path as osp, sys
import torch
from mmpretrain.registry import MODELS
import cim_mm
from cim_mm.compat import apply_all
from cim_mm.converters import registry_target
from cim_mm.utils.errors import UserError
from cim_mm.utils.seg_extra import load_config
from helpers import REPO_ROOT, offline_tokenizer
apply_all()
out = dict(loaded=[], failed={}, built={})
after_import = sorted(m for m in sys.modules if no_seg_stack.is_seg_stack(m))
for path in json.loads(sys.argv[1]):
    rel = osp.relpath(path, REPO_ROOT)
    try:
        cfg = load_config(path)
    except UserError as err:
        out['failed'][rel] = str(err)
        continue
    out['loaded'].append(rel)
    if rel.startswith('configs/cim/'):  # pre-training recipes and mmpretrain fine-tunes
        if 'tokenizer' in cfg.model:
            offline_tokenizer(cfg)
        if any(f in rel for f in ('resnet', 'convnext', 'swin')):  # .item() at build
            model = MODELS.build(cfg.model)
        else:
            with torch.device('meta'):
                model = MODELS.build(cfg.model)
        out['built'][rel] = type(model).__name__
for what, attempt in (('import', lambda: __import__('cim_mm.seg')),
                      ('target', lambda: registry_target('mmseg', dict(type='ResNet', depth=18), 'r18'))):
    try:
        attempt()
        out[what] = 'no error'
    except UserError as err:
        out[what] = str(err)
out['after_import'] = after_import
print(json.dumps(out))
'''


def test_configs_without_seg_stack(seg_configs):
    """``import cim_mm`` imports no seg module; every other config loads and every
    pre-training / fine-tune model of configs/cim builds; each seg config, ``import
    cim_mm.seg`` and an mmseg converter target fail with one line naming the extra."""
    out = json.loads(run_without_seg_stack(CONFIGS_CHECK, json.dumps(CONFIGS))
                     .strip().splitlines()[-1])
    assert out['after_import'] == []
    assert set(out['failed']) == seg_configs
    assert set(out['failed'].values()) == {SEG_LINE}
    assert set(out['loaded']) == {osp.relpath(p, REPO_ROOT) for p in CONFIGS} - seg_configs
    pretraining = {osp.relpath(p, REPO_ROOT)
                   for p in glob.glob(osp.join(REPO_ROOT, 'configs', 'cim', '*.py'))}
    finetune = {rel for rel in out['loaded'] if rel.startswith('configs/cim/benchmarks/')}
    assert len(finetune) >= 4
    assert {rel: out['built'][rel] for rel in pretraining} == {rel: 'CIM' for rel in pretraining}
    assert {out['built'][rel] for rel in finetune} == {'ImageClassifier'}
    assert out['import'] == SEG_LINE
    assert out['target'] == f'an mmseg target needs mmsegmentation: {SEG_EXTRA}'


DEMO_CHECK = '''
import json, os.path as osp, sys
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from cim_mm.utils import atomic_torch_save, safe_load
from helpers import REPO_ROOT, write_fashion_mnist
sys.path[:0] = [osp.join(REPO_ROOT, 'tools'), osp.join(REPO_ROOT, 'tools', 'model_converters')]
import cim_to_downstream
import train
tmp = sys.argv[1]
demo = osp.join(REPO_ROOT, 'configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py')
data = write_fashion_mnist(osp.join(tmp, 'fashion_mnist'))
tok_cfg = Config.fromfile(demo).model.tokenizer.to_dict()
tok_cfg.update(checkpoint=None, allow_random_init=True)
torch.manual_seed(0)
tok_path = osp.join(tmp, 'tokenizer.pth')
atomic_torch_save(MODELS.build(tok_cfg).tokenizer_state_dict(), tok_path)
work = osp.join(tmp, 'work')
train.main([demo, '--work-dir', work, '--cfg-options',
            f'train_dataloader.dataset.data_root={data}', f'model.tokenizer.checkpoint={tok_path}',
            'train_cfg.max_iters=3', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=3', 'log_level=WARNING'])
ft = osp.join(REPO_ROOT, 'configs/cim/benchmarks/vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py')
rc = cim_to_downstream.main([osp.join(work, 'iter_3.pth'), osp.join(tmp, 'ft.pth'),
                             '--target-config', ft])
print(json.dumps(dict(rc=rc, blocked=no_seg_stack.BLOCKED)))
'''


def test_demo_trains_and_converts_without_seg_stack(tmp_path):
    """The demo config trains a few iterations with ``tools/train.py`` and its
    checkpoint converts into the mmpretrain fine-tune config; nothing even tries
    to import mmseg."""
    out = json.loads(run_without_seg_stack(DEMO_CHECK, str(tmp_path)).strip().splitlines()[-1])
    assert out['rc'] == 0
    assert not [m for m in out['blocked'] if m.startswith('mmseg')], out['blocked']
    (scalars, ) = glob.glob(str(tmp_path / 'work' / '*' / 'vis_data' / 'scalars.json'))
    logged = [json.loads(ln) for ln in open(scalars)]
    assert [r['iter'] for r in logged if 'loss_enh' in r] == [1, 2, 3]
    import torch
    from cim_mm.utils import safe_load
    converted = safe_load(str(tmp_path / 'ft.pth'))['state_dict']
    trained = safe_load(str(tmp_path / 'work' / 'iter_3.pth'))['state_dict']
    torch.testing.assert_close(converted['backbone.patch_embed.projection.weight'],
                               trained['backbone.patch_embed.projection.weight'])


def test_train_tool_prints_one_line_for_a_seg_config(tmp_path):
    """``tools/train.py`` on a seg config without the seg stack: exit 1, one line."""
    cfg = 'configs/cim/benchmarks/upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'
    env = dict(os.environ, PYTHONPATH=osp.join(REPO_ROOT, 'tests', 'tools'))
    script = ('import no_seg_stack, runpy, sys; '
              f'sys.argv = ["train.py", {cfg!r}, "--work-dir", {str(tmp_path)!r}]; '
              'runpy.run_path("tools/train.py", run_name="__main__")')
    out = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    errors = [ln for ln in out.stderr.splitlines() if 'error' in ln.lower()]
    assert errors == [f'train.py: error: {SEG_LINE} (set CIM_MM_DEBUG=1 for the traceback)']


# ------------------------------------------------------------- in this process
def test_require_seg_stack_names_what_is_missing(monkeypatch):
    require_seg_stack()  # the whole stack is here
    monkeypatch.setitem(sys.modules, 'mmcv.ops', None)  # `import mmcv.ops` fails
    with pytest.raises(UserError) as err:
        require_seg_stack('cim_mm.seg')
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith('cim_mm.seg needs mmcv 2.1.0 with compiled ops (import mmcv.ops: ')
    assert msg.endswith(f'{SEG_EXTRA}; bash tools/setup_env.sh builds it')
    monkeypatch.setitem(sys.modules, 'mmseg', None)  # mmseg missing: said first
    with pytest.raises(UserError, match='^an mmseg target needs mmsegmentation: pip install'):
        require_seg_stack('an mmseg target')


def test_load_config_names_the_extra_when_mmseg_is_not_installed(monkeypatch, tmp_path):
    """mmengine refuses an ``mmseg::`` base when mmsegmentation is not installed:
    the same one line instead of its ``ModuleNotFoundError``."""
    import mmengine.config.config as mm_config
    path = tmp_path / 'seg.py'
    path.write_text("_base_ = 'mmseg::_base_/default_runtime.py'\n")
    assert load_config(str(path)).default_scope == 'mmseg'
    real = mm_config.is_installed
    monkeypatch.setattr(mm_config, 'is_installed', lambda p: p != 'mmsegmentation' and real(p))
    with pytest.raises(UserError) as err:
        load_config(str(path))
    assert str(err.value) == f'{path} needs mmsegmentation: {SEG_EXTRA}'
    # any other missing package is not ours to explain
    path.write_text("_base_ = 'mmdet::_base_/default_runtime.py'\n")
    monkeypatch.setattr(mm_config, 'is_installed', lambda p: False)
    with pytest.raises(ModuleNotFoundError, match='mmdet is not installed'):
        load_config(str(path))
