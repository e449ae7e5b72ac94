"""The compatibility layer: weights_only checkpoints, atomic saves, resume."""
from __future__ import annotations

import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint

import cim_mm  # noqa: F401
from cim_mm.utils import CheckpointSecurityError, safe_load


class TinyModel(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.lin(inputs)
        if mode == 'loss':
            return dict(loss=(out - inputs.sum(1, keepdim=True)).pow(2).mean())
        return out


def _runner(work_dir: str, max_iters: int, resume: bool = False) -> Runner:
    g = torch.Generator().manual_seed(0)
    data = [dict(inputs=torch.randn(4, generator=g)) for _ in range(64)]
    torch.manual_seed(0)  # same initial weights in every run
    return Runner(
        model=TinyModel(), work_dir=work_dir,
        train_dataloader=dict(dataset=data, batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type="CosineAnnealingLR", T_max=10, begin=0, end=10,
                             by_epoch=False),  # the run killed at 5 has the same schedule
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=5, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), resume=resume, log_level='WARNING')


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    runner = _runner(str(tmp_path), 5)
    runner.train()
    ckpt = osp.join(str(tmp_path), 'iter_5.pth')
    # the raw file really needs the allow-list: plain weights_only loading fails
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)
    loaded = safe_load(ckpt)
    assert set(loaded) >= {'meta', 'state_dict', 'message_hub', 'optimizer'}
    hist = loaded['message_hub']['log_scalars']['train/loss']
    assert np.isfinite(hist.mean())
    # mmengine's own loader goes through it too
    model = TinyModel()
    load_checkpoint(model, ckpt, map_location='cpu', strict=True)
    torch.testing.assert_close(model.lin.weight, loaded['state_dict']['lin.weight'])


def test_save_resume_round_trip_matches_uninterrupted_run(tmp_path):
    full = _runner(str(tmp_path / 'full'), 10)
    full.train()
    half = _runner(str(tmp_path / 'half'), 5)
    half.train()
    resumed = _runner(str(tmp_path / 'half'), 10, resume=True)
    resumed.train()
    assert resumed.iter == 10
    a = full.model.state_dict()
    b = resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


class _Evil:

    def __reduce__(self):
        return (os.system, ('touch /tmp/cim_mm_pwned',))


def test_malicious_checkpoint_is_refused_and_not_run(tmp_path):
    marker = '/tmp/cim_mm_pwned'
    if osp.exists(marker):
        os.remove(marker)
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': _Evil()}, path)
    with pytest.raises(CheckpointSecurityError, match='allow-list'):
        safe_load(path)
    with pytest.raises(CheckpointSecurityError):
        load_checkpoint(TinyModel(), path, map_location='cpu')
    assert not osp.exists(marker)


def test_refusal_message_is_one_line(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'meta': _Evil()}, path)
    with pytest.raises(CheckpointSecurityError) as info:
        safe_load(path)
    assert '\n' not in str(info.value)
    assert 'posix.system' in str(info.value) or 'os.system' in str(info.value)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='can not be found'):
        safe_load(str(tmp_path / 'nope.pth'))


def test_numpy_object_arrays_are_refused(tmp_path):
    """An object array is a list of pickled Python objects: not on the allow-list
    (numeric / string arrays and scalars, which mmengine writes, still load)."""
    path = str(tmp_path / 'obj.pth')
    torch.save({'meta': {'a': np.array([1, 'x'], dtype=object)}}, path)
    with pytest.raises(CheckpointSecurityError, match='allow-list'):
        safe_load(path)
    ok = {'f': np.arange(3.), 's': np.array(['ab', 'c']), 'i': np.int64(3),
          'b': np.array([True]), 'h': np.float16(0.5)}
    torch.save({'meta': ok}, path)
    loaded = safe_load(path)['meta']
    for k, v in ok.items():
        np.testing.assert_array_equal(loaded[k], v)
        assert loaded[k].dtype == v.dtype
