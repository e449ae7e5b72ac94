"""ChannelsLastHook: NHWC convolutions of the ResNet enhancer compute what NCHW does."""
from __future__ import annotations

import copy
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from helpers import REPO_ROOT, make_batch, tiny_resnet_cim_cfg
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import HOOKS, MODELS

from cim_mm.engine.hooks import to_channels_last


def _model():
    torch.manual_seed(0)
    model = MODELS.build(tiny_resnet_cim_cfg('respix'))
    model.init_weights()
    return model.train()


def _convs(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.dim() == 4]


def test_conversion_keeps_parameters_keys_and_values():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {n: p for n, p in model.named_parameters()}
    assert to_channels_last(model, ('backbone', 'neck', 'no_such_part')) == ['backbone', 'neck']
    assert {n: p for n, p in model.named_parameters()} == params  # the same objects
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in after.items():
        assert torch.equal(v, before[k]), k
    for part in (model.backbone, model.neck):
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in _convs(part))
        # 1x1 kernels are both layouts at once; the others are NHWC only
        assert all(not p.is_contiguous() for p in _convs(part) if p.shape[-1] > 1)
    assert all(p.is_contiguous() for p in _convs(model.generator))  # untouched


def test_nhwc_steps_give_nchw_losses_and_updates():
    plain, fast = _model(), _model()
    optims = []
    for model in (plain, fast):
        optims.append(OptimWrapper(torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3)))
    to_channels_last(fast)  # after the optimizer, as the hook does in before_train
    for step in range(3):
        out = []
        for model, optim in zip((plain, fast), optims):
            torch.manual_seed(100 + step)  # the same Gumbel noise in both runs
            out.append(model.train_step(make_batch(batch_size=4, seed=step), optim))
        for k in out[0]:
            torch.testing.assert_close(out[1][k], out[0][k], rtol=1e-4, atol=1e-5, msg=k)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in _convs(fast.backbone))  # the updates kept the layout


def test_hook_acts_on_cuda_only_unless_told():
    model = _model()
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    hook.before_train(SimpleNamespace(model=model))
    assert hook.converted == [] and all(p.is_contiguous() for p in _convs(model.backbone))
    hook = HOOKS.build(dict(type='ChannelsLastHook', modules=('backbone', ), cuda_only=False))
    hook.before_train(SimpleNamespace(model=model))
    assert hook.converted == ['backbone']
    assert not any(p.is_contiguous() for p in _convs(model.backbone) if p.shape[-1] > 1)


@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_resnet50_recipes_turn_it_on(head):
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, f'configs/cim/cim-{head}_resnet50_8xb256-amp-coslr-300e_in1k.py'))
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'ChannelsLastHook']
    assert len(hooks) == 1 and tuple(hooks[0]['modules']) == ('backbone', 'neck')
    assert hooks[0].get('cuda_only', True)
    assert copy.deepcopy(HOOKS.build(hooks[0])).modules == ('backbone', 'neck')
