"""FrozenSummaryOptimWrapperConstructor: mmengine's groups, one line per frozen module."""
from __future__ import annotations

import logging

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

import cim_mm  # noqa: F401  (registers the constructor)

CFG = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
PARAMWISE = dict(custom_keys={'.bias': dict(decay_mult=0.0)})


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4))  # 4 tensors, 76 values
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.head.bias.requires_grad_(False)  # a partly frozen module
        self.tokenizer.requires_grad_(False)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _groups(optim_wrapper) -> list[tuple]:
    return [(tuple(id(p) for p in g['params']), g['lr'], g['weight_decay'])
            for g in optim_wrapper.optimizer.param_groups]


def _build(constructor_type: str, model: nn.Module):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=constructor_type, optim_wrapper_cfg=dict(CFG),
        paramwise_cfg=PARAMWISE))(model)


def test_same_groups_as_mmengine_and_one_line_per_frozen_module():
    model = _Model()
    logger = MMLogger.get_instance('cim_mm_frozen_summary_probe', log_level='DEBUG')
    rec = _Records()
    logger.addHandler(rec)
    try:
        ours = _build('FrozenSummaryOptimWrapperConstructor', model)
        assert not any('requires_grad=False' in m for m in rec.messages), rec.messages
        summary = [m for m in rec.messages if m.startswith('optimizer:')]
        assert summary == [
            'optimizer: tokenizer is frozen (4 tensors, 0.00 M values), not optimized',
            'optimizer: head is frozen (1 tensors, 0.00 M values), not optimized']
        rec.messages.clear()
        ref = _build('DefaultOptimWrapperConstructor', model)
        # mmengine's own: one warning per frozen tensor
        assert sum('requires_grad=False' in m for m in rec.messages) == 5
    finally:
        logger.removeHandler(rec)
    assert _groups(ours) == _groups(ref)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert not frozen & {i for g in _groups(ours) for i in g[0]}
    decays = {n: g['weight_decay'] for n, p in model.named_parameters()
              for g in ours.optimizer.param_groups if any(p is q for q in g['params'])}
    assert decays == {'backbone.weight': 0.05, 'backbone.bias': 0.0, 'head.weight': 0.05}


def test_filter_is_removed_afterwards():
    logger = MMLogger.get_instance('cim_mm_frozen_summary_probe2')
    MMLogger.get_instance('cim_mm_frozen_summary_probe2')  # current instance
    _build('FrozenSummaryOptimWrapperConstructor', _Model())
    assert not logger.filters
    assert issubclass(OPTIM_WRAPPER_CONSTRUCTORS.get('FrozenSummaryOptimWrapperConstructor'),
                      DefaultOptimWrapperConstructor)


def test_every_cim_pretraining_config_uses_it():
    import glob
    import os.path as osp

    from mmengine.config import Config
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    files = sorted(glob.glob(osp.join(root, 'configs', 'cim', 'cim-*.py')))
    assert len(files) >= 14
    for f in files:
        assert Config.fromfile(f).optim_wrapper.get('constructor') == \
            'FrozenSummaryOptimWrapperConstructor', f
