"""Merged optimizer param groups (paramwise_cfg.merge_groups) and batched AdamW:
the same updates as mmengine's / mmpretrain's one group per tensor."""
from __future__ import annotations

import copy
import io
import logging
import os.path as osp

import pytest
import torch
import torch.nn as nn
from helpers import tiny_vit_cim_cfg
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

from cim_mm.engine.optim_wrappers import (adam_implementation, fused_adam_devices,
                                          merge_param_groups)
from cim_mm.utils.errors import UserError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VIT_RECIPE = 'configs/cim/cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'
FT_RECIPE = 'configs/cim/benchmarks/vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py'
#: group keys that say how the optimizer runs, not what it computes
_IMPL = ('params', 'param_name', 'foreach', 'fused')


def _recipe_optim(path: str) -> dict:
    """The recipe's optimizer and paramwise_cfg (an fp32 OptimWrapper on CPU)."""
    cfg = Config.fromfile(osp.join(ROOT, path)).optim_wrapper.to_dict()
    return dict(optimizer=cfg['optimizer'], paramwise_cfg=cfg['paramwise_cfg'],
                constructor=cfg['constructor'])


def _build(model: nn.Module, constructor: str, optimizer: dict, paramwise_cfg: dict,
           merge: bool | None):
    paramwise_cfg = dict(paramwise_cfg)
    paramwise_cfg.pop('merge_groups', None)
    if merge is not None:
        paramwise_cfg['merge_groups'] = merge
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=constructor, optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=optimizer),
        paramwise_cfg=paramwise_cfg))(model)


def _hyper_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    group_of = {id(p): g for g in optimizer.param_groups for p in g['params']}
    return {n: {k: v for k, v in group_of[id(p)].items() if k not in _IMPL}
            for n, p in model.named_parameters() if id(p) in group_of}


def _set_grads(model: nn.Module, step: int) -> None:
    """The same pseudo-random gradients for every copy of the model."""
    g = torch.Generator().manual_seed(1000 + step)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _steps(model: nn.Module, wrapper, steps: range) -> None:
    for step in steps:
        _set_grads(model, step)
        wrapper.step()
        wrapper.zero_grad()


def _assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)


def _tiny_cim() -> nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(tiny_vit_cim_cfg())
    model.init_weights()
    return model


def _tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='BEiTViT', arch=dict(embed_dims=16, num_layers=3, num_heads=2,
                                                feedforward_channels=32),
                      img_size=16, patch_size=4, out_type='avg_featmap',
                      use_rel_pos_bias=True, layer_scale_init_value=0.1),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=3, in_channels=16)))
    model.init_weights()
    return model


@pytest.mark.parametrize('optimizer', ['recipe AdamW', 'Lamb'])
def test_cim_recipe_groups_merge_and_give_the_same_updates(optimizer):
    recipe = _recipe_optim(VIT_RECIPE)
    assert recipe['paramwise_cfg']['merge_groups'] is True
    if optimizer == 'Lamb':  # the ResNet-50 recipes' optimizer
        recipe['optimizer'] = dict(type='Lamb', lr=5e-3, weight_decay=0.02)
    plain_model = _tiny_cim()
    fast_model = copy.deepcopy(plain_model)
    plain = _build(plain_model, recipe['constructor'], recipe['optimizer'],
                   recipe['paramwise_cfg'], merge=False)
    fast = _build(fast_model, recipe['constructor'], recipe['optimizer'],
                  recipe['paramwise_cfg'], merge=True)
    n_tensors = sum(p.requires_grad for p in plain_model.parameters())
    assert len(plain.optimizer.param_groups) == n_tensors > 30  # mmengine: one per tensor
    assert len(fast.optimizer.param_groups) <= 3
    hyper = _hyper_by_name(fast_model, fast.optimizer)
    assert hyper == _hyper_by_name(plain_model, plain.optimizer)
    # weight decay exclusions kept
    assert hyper['generator.backbone.layers.0.attn.q_bias']['weight_decay'] == 0.0
    assert hyper['generator.backbone.mask_token']['weight_decay'] == 0.0
    assert hyper['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
    assert hyper['backbone.layers.0.ffn.layers.0.0.weight']['weight_decay'] == \
        recipe['optimizer']['weight_decay'] > 0
    if optimizer != 'Lamb':
        assert all(g['fused'] for g in fast.optimizer.param_groups)  # CPU: fused kernels
    for step in range(5):
        _steps(plain_model, plain, range(step, step + 1))
        _steps(fast_model, fast, range(step, step + 1))
        _assert_same_params(plain_model, fast_model)
    assert not torch.equal(fast_model.backbone.cls_token, _tiny_cim().backbone.cls_token)


def test_layer_decay_groups_merge_give_the_same_updates_and_still_log():
    recipe = _recipe_optim(FT_RECIPE)
    assert recipe['constructor'] == 'MergedLayerDecayOptimWrapperConstructor'
    assert recipe['paramwise_cfg']['merge_groups'] is True
    plain_model = _tiny_classifier()
    fast_model = copy.deepcopy(plain_model)
    logger = MMLogger.get_instance('cim_mm_fast_optimizer_probe', log_level='DEBUG')
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    try:
        plain = _build(plain_model, 'LearningRateDecayOptimWrapperConstructor',
                       recipe['optimizer'], recipe['paramwise_cfg'], merge=None)
        logged_plain = [m for m in records if m.startswith('layer ')]
        records.clear()
        fast = _build(fast_model, recipe['constructor'], recipe['optimizer'],
                      recipe['paramwise_cfg'], merge=True)
        logged_fast = [m for m in records if m.startswith('layer ')]
    finally:
        logger.removeHandler(handler)
    assert logged_fast == logged_plain and len(logged_plain) == 3 + 2  # embed, 3 layers, head
    hyper = _hyper_by_name(fast_model, fast.optimizer)
    assert hyper == _hyper_by_name(plain_model, plain.optimizer)
    scales = {(h['layer_id'], h['weight_decay']) for h in hyper.values()}
    assert len(fast.optimizer.param_groups) == len(scales) < len(plain.optimizer.param_groups)
    assert len({h['lr'] for h in hyper.values()}) == 5  # the decay is there
    _steps(plain_model, plain, range(4))
    _steps(fast_model, fast, range(4))
    _assert_same_params(plain_model, fast_model)


def test_resume_through_the_optimizer_state_gives_the_same_next_steps():
    recipe = _recipe_optim(VIT_RECIPE)
    model = _tiny_cim()
    wrapper = _build(model, recipe['constructor'], recipe['optimizer'],
                     recipe['paramwise_cfg'], merge=True)
    _steps(model, wrapper, range(3))
    buf = io.BytesIO()
    torch.save(dict(state_dict=model.state_dict(), optimizer=wrapper.state_dict()), buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    resumed_model = _tiny_cim()
    resumed_model.load_state_dict(ckpt['state_dict'])
    resumed = _build(resumed_model, recipe['constructor'], recipe['optimizer'],
                     recipe['paramwise_cfg'], merge=True)
    for group in ckpt['optimizer']['param_groups']:  # as if saved on another device
        group.update(foreach=False, fused=None)
    resumed.load_state_dict(ckpt['optimizer'])
    assert all(g['fused'] for g in resumed.optimizer.param_groups)  # this run's choice
    _steps(model, wrapper, range(3, 6))
    _steps(resumed_model, resumed, range(3, 6))
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize('saved_merged', [False, True])
def test_a_state_of_the_other_layout_is_refused_in_one_line(saved_merged):
    recipe = _recipe_optim(VIT_RECIPE)
    old_model = _tiny_cim()
    old = _build(old_model, recipe['constructor'], recipe['optimizer'],
                 recipe['paramwise_cfg'], merge=saved_merged)
    _steps(old_model, old, range(2))
    new = _build(_tiny_cim(), recipe['constructor'], recipe['optimizer'],
                 recipe['paramwise_cfg'], merge=not saved_merged)
    with pytest.raises(UserError) as err:
        new.load_state_dict(old.state_dict())
    msg = str(err.value)
    assert '\n' not in msg
    assert f'optim_wrapper.paramwise_cfg.merge_groups={saved_merged}' in msg


def test_merge_fills_the_optimizer_defaults_and_keeps_order():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [{'params': [a]}, {'params': [b], 'weight_decay': 0.0},
              {'params': [c], 'lr': 0.1, 'weight_decay': 0.05}, {'params': [d], 'lr': 0.2}]
    merged = merge_param_groups(groups, dict(lr=0.1, weight_decay=0.05))
    assert [[id(p) for p in g['params']] for g in merged] == \
        [[id(a), id(c)], [id(b)], [id(d)]]
    assert [(g['lr'], g['weight_decay']) for g in merged] == \
        [(0.1, 0.05), (0.1, 0.0), (0.2, 0.05)]


class _FakeCudaParam:
    requires_grad = True
    is_cuda = True
    device = torch.device('cuda')

    @staticmethod
    def is_floating_point() -> bool:
        return True


class _FakeCudaModel:
    @staticmethod
    def parameters() -> list:
        return [_FakeCudaParam(), _FakeCudaParam()]


def test_adam_runs_fused_where_kernels_exist_foreach_elsewhere_unless_the_config_chooses():
    adamw = dict(type='AdamW', lr=1e-3)
    assert adam_implementation(adamw, _FakeCudaModel()) == dict(fused=True)
    assert adam_implementation(adamw, nn.Linear(2, 2)) == dict(fused=True)  # CPU kernels
    assert 'meta' not in fused_adam_devices()
    assert adam_implementation(adamw, nn.Linear(2, 2, device='meta')) == dict(foreach=True)
    assert adam_implementation(dict(adamw, fused=False), _FakeCudaModel()) == {}
    assert adam_implementation(dict(adamw, foreach=False), nn.Linear(2, 2)) == {}
    assert adam_implementation(dict(type=torch.optim.Adam), nn.Linear(2, 2, device='meta')) == \
        dict(foreach=True)
    assert adam_implementation(dict(type='Lamb', lr=1e-3), _FakeCudaModel()) == {}


SHIPPED = sorted(
    [osp.join('configs/cim', f) for f in (
        'cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
        'cim-revdet_vit-base-p16_8xb256-amp-coslr-800e_in1k.py',
        'cim-respix_vit-small-p16_8xb256-amp-coslr-300e_in1k.py',
        'cim-revdet_vit-small-p16_8xb256-amp-coslr-800e_in1k.py',
        'cim-respix_resnet50_8xb256-amp-coslr-300e_in1k.py',
        'cim-revdet_resnet50_8xb256-amp-coslr-300e_in1k.py')]
    + [osp.join('configs/cim/benchmarks', f) for f in (
        'vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py',
        'vit-small-p16_cim-pre_8xb128-coslr-100e_in1k.py',
        'vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py')])


@pytest.mark.parametrize('path', SHIPPED)
def test_shipped_recipes_merge_groups(path):
    cfg = Config.fromfile(osp.join(ROOT, path)).optim_wrapper
    assert cfg.constructor in ('FrozenSummaryOptimWrapperConstructor',
                               'MergedLayerDecayOptimWrapperConstructor')
    assert cfg.paramwise_cfg.merge_groups is True
