"""One optimizer param group per distinct hyper-parameters, and a batched AdamW.

mmengine's ``DefaultOptimWrapperConstructor`` (and mmpretrain's layer-decay
constructor) make one param group per tensor whenever ``paramwise_cfg`` is set:
257 for CIM ViT-B. AdamW batches its work (``foreach`` / ``fused``) only within
a group, so it then launches a few kernels per tensor. With
``paramwise_cfg=dict(..., merge_groups=True)`` the constructors of this package
merge the groups whose hyper-parameters are equal (lr, weight decay, layer-decay
scale, ... - everything but the tensors and their names), in the order the
constructor made them, and give Adam / AdamW ``fused=True`` when every trainable
tensor is on a device with PyTorch's fused Adam kernels (CUDA, and the CPU too),
``foreach=True`` otherwise (unless the optimizer config sets ``fused`` or
``foreach`` itself). The fused kernels read the step counts as tensors, where
the un-fused paths make one ``.item()`` per tensor. Each tensor sees the same
hyper-parameters as before, so the updates are those of the per-tensor groups.

Optimizer states of the two layouts do not fit each other: resuming a
checkpoint saved with the other layout stops with one line saying which
``merge_groups`` value resumes it. A resumed state keeps this run's
``foreach`` / ``fused`` (a GPU checkpoint resumes on a CPU and back).
"""
from __future__ import annotations

import logging
from typing import Any, Hashable, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from cim_mm.utils.errors import UserError

__all__ = ['MergeGroupsMixin', 'merge_param_groups', 'adam_implementation', 'fused_adam_devices']

#: keys of a param group that name its tensors, not how they are optimized
_NOT_HYPER = ('params', 'param_name', 'param_names')
_ADAMS = ('Adam', 'AdamW')
#: group keys that choose the optimizer's implementation on this machine
_IMPL_FLAGS = ('foreach', 'fused')


def _hashable(value: Any) -> Hashable:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def merge_param_groups(groups: list[dict], defaults: Optional[dict] = None) -> list[dict]:
    """Param groups with equal hyper-parameters merged into one.

    ``defaults`` (the optimizer's ``lr`` / ``weight_decay``) fill a group that
    leaves them unset, as the optimizer would, so ``{}`` and ``{lr: base_lr}``
    merge. Names (``param_name``) are dropped: a merged group holds many.
    Groups are kept in order of first appearance, tensors in their order.
    """
    merged: dict[Hashable, dict] = {}
    for group in groups:
        hyper = {**(defaults or {}),
                 **{k: v for k, v in group.items() if k not in _NOT_HYPER}}
        key = _hashable(hyper)
        if key not in merged:
            merged[key] = dict(hyper, params=[])
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


def _optimizer_name(optimizer_type: Any) -> str:
    return optimizer_type if isinstance(optimizer_type, str) else optimizer_type.__name__


def fused_adam_devices() -> frozenset[str]:
    """Device types PyTorch has fused Adam / AdamW kernels for."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # a PyTorch without the helper: CUDA had them first
        return frozenset({'cuda'})
    return frozenset(_get_fused_kernels_supported_devices())


def adam_implementation(optimizer_cfg: dict, model: nn.Module) -> dict:
    """``{fused: True}`` (every trainable tensor floating and on a device with
    fused kernels, :func:`fused_adam_devices`) or ``{foreach: True}`` for Adam /
    AdamW; ``{}`` for other optimizers or when the config chooses."""
    if _optimizer_name(optimizer_cfg['type']) not in _ADAMS:
        return {}
    if 'fused' in optimizer_cfg or 'foreach' in optimizer_cfg:
        return {}
    params = [p for p in model.parameters() if p.requires_grad]
    devices = fused_adam_devices()
    if params and all(p.is_floating_point() and p.device.type in devices for p in params):
        return dict(fused=True)
    return dict(foreach=True)


class MergeGroupsMixin:
    """For a ``DefaultOptimWrapperConstructor`` subclass: reads
    ``paramwise_cfg.merge_groups`` (default False: mmengine's groups) and, when
    set, merges the groups and batches Adam / AdamW (module doc)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.merge_groups = bool(paramwise_cfg.pop('merge_groups', False))
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   *args, **kwargs) -> None:
        super().add_params(params, module, prefix, *args, **kwargs)
        if prefix or not self.merge_groups:  # merge once, at the root
            return
        defaults = {k: v for k, v in (('lr', self.base_lr), ('weight_decay', self.base_wd))
                    if v is not None}
        n_tensors = sum(len(g['params']) for g in params)
        params[:] = merge_param_groups(params, defaults)
        print_log(f'optimizer: {n_tensors} tensors in {len(params)} param groups '
                  '(merged by equal hyper-parameters)', logger='current',
                  level=logging.INFO)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if self.merge_groups:
            net = model.module if hasattr(model, 'module') else model
            self.optimizer_cfg = dict(self.optimizer_cfg,
                                      **adam_implementation(self.optimizer_cfg, net))
        optim_wrapper = super().__call__(model)
        optim_wrapper.optimizer.register_load_state_dict_pre_hook(self._fit_saved_state)
        return optim_wrapper

    def _fit_saved_state(self, optimizer: torch.optim.Optimizer,
                      state_dict: dict) -> dict:
        """Refuse, in one line, an optimizer state of the other group layout;
        keep this run's ``foreach`` / ``fused`` (how it runs here, not state)."""
        saved = [len(g['params']) for g in state_dict['param_groups']]
        now = [len(g['params']) for g in optimizer.param_groups]
        if saved != now:
            per_tensor = all(n == 1 for n in saved)
            if self.merge_groups == per_tensor:  # the other layout, as far as can be seen
                raise UserError(
                    f'the optimizer state of this checkpoint has {len(saved)} param groups '
                    f'for {sum(saved)} tensors, this config makes {len(now)} '
                    f'(paramwise_cfg.merge_groups={self.merge_groups}): resume it with '
                    '--cfg-options optim_wrapper.paramwise_cfg.merge_groups='
                    f'{not self.merge_groups}')
            return state_dict  # torch's own error follows
        groups = [{**g, **{k: cur[k] for k in _IMPL_FLAGS if k in cur}}
                  for g, cur in zip(state_dict['param_groups'], optimizer.param_groups)]
        return dict(state_dict, param_groups=groups)
