"""An optimizer constructor that names frozen modules once, not every tensor.

mmengine's ``DefaultOptimWrapperConstructor`` with a ``paramwise_cfg`` logs one
warning per parameter tensor with ``requires_grad=False``: for CIM that is
every tensor of the frozen tokenizer (~100 lines for the DALL-E dVAE) at each
start. This constructor builds the same parameter groups and logs one line per
top-level module that holds frozen tensors instead. ``paramwise_cfg.merge_groups``
merges the groups of equal hyper-parameters (``merged_groups.py``).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .merged_groups import MergeGroupsMixin

_SKIPPED = 'is skipped since its requires_grad=False'


class _DropFrozenSkips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIPPED not in record.getMessage()


@contextmanager
def _quiet_frozen_skips() -> Iterator[None]:
    logger = MMLogger.get_current_instance()
    flt = _DropFrozenSkips()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def frozen_by_module(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{top-level child name: (frozen tensors, frozen values)}`` for every
    child with a parameter that has ``requires_grad=False``."""
    out: dict[str, tuple[int, int]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            continue
        top = name.split('.', 1)[0]
        n, numel = out.get(top, (0, 0))
        out[top] = (n + 1, numel + p.numel())
    return out


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FrozenSummaryOptimWrapperConstructor(MergeGroupsMixin, DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same groups, same ``paramwise_cfg``)
    that logs ``optimizer: tokenizer is frozen (97 tensors, 53.80 M values),
    not optimized`` once instead of one warning per frozen tensor;
    ``paramwise_cfg.merge_groups=True``: one group per distinct hyper-parameters."""

    def add_params(self, params: list, module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        if prefix:  # the recursive calls below the root
            return super().add_params(params, module, prefix, is_dcn_module)
        with _quiet_frozen_skips():
            super().add_params(params, module, prefix, is_dcn_module)
        for name, (n, numel) in frozen_by_module(module).items():
            print_log(f'optimizer: {name} is frozen ({n} tensors, {numel / 1e6:.2f} M '
                      'values), not optimized', logger='current', level=logging.INFO)
