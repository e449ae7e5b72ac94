"""No GPU, still runs: tools/train.py trains a config whose
``optim_wrapper`` is ``AmpOptimWrapper`` (or ``--amp``) in float32 on a machine
without CUDA, with one warning line."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from helpers import tiny_train_cfg, write_images

import cim_mm  # noqa: F401
from cim_mm.utils import safe_load

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))

AMP = dict(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic',
           optimizer=dict(type='AdamW', lr=1e-3), clip_grad=dict(max_norm=3.0))
WARNING = ('train.py: warning: no CUDA device: AmpOptimWrapper replaced by OptimWrapper, '
           'training in float32')


def _run(tmp_path, capsys, optim_wrapper: dict, *flags: str) -> tuple[str, str]:
    import train
    root = write_images(str(tmp_path / 'imgs'), broken=())
    work = str(tmp_path / 'work')
    cfg = tiny_train_cfg(root, work, optim_wrapper=optim_wrapper,
                         train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=1))
    train.main([cfg, *flags, '--cfg-options', 'train_dataloader.num_workers=0'])
    return work, capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA path')
@pytest.mark.parametrize('how', ['config', '--amp'])
def test_amp_config_trains_in_fp32_without_cuda(tmp_path, capsys, how):
    wrapper = AMP if how == 'config' else dict(type='OptimWrapper',
                                               optimizer=dict(type='AdamW', lr=1e-3))
    work, err = _run(tmp_path, capsys, wrapper, *([how] if how == '--amp' else []))
    assert err.count('train.py: warning:') == 1 and WARNING in err, err
    ckpt = safe_load(osp.join(work, 'epoch_1.pth'))
    assert ckpt['meta']['iter'] == 4  # 8 images, batch 2
    # the run's own dumped config: a plain fp32 wrapper, no AMP keys left
    dumped = Config.fromfile(osp.join(work, osp.basename(work) + '_cfg.py'))
    assert dumped.optim_wrapper.type == 'OptimWrapper'
    assert not {'dtype', 'loss_scale'} & set(dumped.optim_wrapper)
    assert 'loss_scaler' not in ckpt  # AmpOptimWrapper would save its scaler state
    params = [v for k, v in ckpt['state_dict'].items() if k.startswith('backbone.')]
    assert all(v.dtype == torch.float32 for v in params if v.is_floating_point())


def test_plain_config_without_cuda_has_no_warning(tmp_path, capsys):
    _, err = _run(tmp_path, capsys, dict(type='OptimWrapper',
                                         optimizer=dict(type='AdamW', lr=1e-3)))
    assert 'train.py: warning' not in err


def test_amp_kept_where_cuda_is(monkeypatch):
    """With CUDA, the AMP wrapper and its keys stay as written."""
    import train

    from cim_mm.engine.optim_wrappers import amp_fallback
    monkeypatch.setattr(amp_fallback, 'is_cuda_available', lambda: True)
    cfg = Config(dict(optim_wrapper=dict(AMP)))
    train.amp_to_fp32_without_accelerator(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA path')
def test_amp_subclass_falls_back_to_its_plain_counterpart(capsys):
    """``XAmpOptimWrapper`` -> ``XOptimWrapper`` (keeping its own keys) where one is
    registered; the plain ``OptimWrapper`` otherwise."""
    import train
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from mmpretrain.registry import OPTIM_WRAPPERS

    @OPTIM_WRAPPERS.register_module(force=True)
    class ToyClipAmpOptimWrapper(AmpOptimWrapper):
        pass

    @OPTIM_WRAPPERS.register_module(force=True)
    class ToyClipOptimWrapper(OptimWrapper):
        pass

    try:
        cfg = Config(dict(optim_wrapper=dict(AMP, type='ToyClipAmpOptimWrapper')))
        train.amp_to_fp32_without_accelerator(cfg)
        assert cfg.optim_wrapper.type == 'ToyClipOptimWrapper'
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=3.0)
        err = capsys.readouterr().err
        assert 'ToyClipAmpOptimWrapper replaced by ToyClipOptimWrapper' in err
        cfg = Config(dict(optim_wrapper=dict(AMP, type=ToyClipAmpOptimWrapper)))
        OPTIM_WRAPPERS.module_dict.pop('ToyClipOptimWrapper')  # no plain counterpart
        train.amp_to_fp32_without_accelerator(cfg)
        assert cfg.optim_wrapper.type == 'OptimWrapper' and 'dtype' not in cfg.optim_wrapper
    finally:
        for name in ('ToyClipAmpOptimWrapper', 'ToyClipOptimWrapper'):
            OPTIM_WRAPPERS.module_dict.pop(name, None)
