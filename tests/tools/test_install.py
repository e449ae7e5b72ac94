"""Tests that catch a broken install."""
from __future__ import annotations

import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_imports_and_compiled_ops():
    import mmcv
    import mmcv.ops  # noqa: F401  (compiled ops: mmseg needs them)
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401

    import cim_mm
    assert mmcv.__version__ == '2.1.0'
    assert cim_mm.__version__
    # a compiled op really runs
    import torch
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)[1]
    assert keep.tolist() == [0, 2]


def test_components_are_registered():
    from mmpretrain.registry import MODELS, TRANSFORMS

    import cim_mm  # noqa: F401
    for name in ('CIM', 'CIMDataPreprocessor', 'BEiTGenerator', 'ResPixHead',
                 'RevDetHead', 'DALLETokenizer', 'VQTokenizer'):
        assert MODELS.get(name) is not None, name
    assert TRANSFORMS.get('GrayToRGB') is not None


def test_build_model_from_config_through_registry():
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'))
    cfg.model.tokenizer.checkpoint = None  # random tokenizer: no file needed
    cfg.model.tokenizer.allow_random_init = True
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'CIM'
    assert type(model.backbone).__name__ == 'VisionTransformer'


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs/**/*.py'),
                                              recursive=True)))
def test_every_config_parses(path):
    if osp.sep + '_base_' + osp.sep in path:
        pytest.skip('base fragment')
    cfg = Config.fromfile(path)
    assert 'model' in cfg or 'train_dataloader' in cfg


def test_wheel_ships_the_plugin_only_and_works_outside_the_checkout(tmp_path):
    """``pip install .`` ships ``cim_mm`` (no benchmark code); installed outside the
    checkout it imports and builds a CIM model from a config."""
    import subprocess
    import sys
    import zipfile
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                    '--no-build-isolation', ROOT, '-w', str(tmp_path / 'wheel')],
                   check=True, capture_output=True, cwd=str(tmp_path))
    wheel, = glob.glob(str(tmp_path / 'wheel' / 'cim_mm-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split('/')[0] for n in names if not n.split('/')[0].endswith('.dist-info')}
    assert packages == {'cim_mm'}, packages
    assert any(n.startswith('cim_mm/compat/') for n in names)
    # pre-training needs no mmseg (an extra) and takes any mmcv 2.1 (mmcv-lite too: not a
    # pip requirement, or pip would start mmcv's source build beside mmcv-lite)
    metadata, = [n for n in names if n.endswith('.dist-info/METADATA')]
    requires = [ln.split(':', 1)[1].strip() for ln in
                zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if ln.startswith('Requires-Dist:')]
    plain = {r.split(';')[0].split('<')[0].split('>')[0].split('=')[0].strip()
             for r in requires if 'extra ==' not in r}
    assert {'torch', 'mmengine', 'mmpretrain', 'timm'} <= plain
    assert not plain & {'mmsegmentation', 'mmcv', 'mmcv-lite', 'ftfy', 'regex'}, plain
    seg = [r for r in requires if 'extra == "seg"' in r]
    assert any(r.startswith('mmsegmentation') for r in seg), requires
    target = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                    '--target', str(target), wheel], check=True, capture_output=True)
    script = (
        'import cim_mm, sys; from mmengine.config import Config; '
        'from mmpretrain.registry import MODELS; '
        f'assert cim_mm.__file__.startswith({str(target)!r}), cim_mm.__file__; '
        f'cfg = Config.fromfile({osp.join(ROOT, "configs/cim/cim-revdet_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py")!r}); '
        'cfg.model.tokenizer.checkpoint = None; cfg.model.tokenizer.allow_random_init = True; '
        'print(type(MODELS.build(cfg.model)).__name__)')
    env = {k: v for k, v in __import__('os').environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), env=dict(
        env, PYTHONPATH=str(target)), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == 'CIM'
