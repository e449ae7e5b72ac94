"""Gradient clipping per network (generator vs enhancer) as an mmengine optim wrapper.

mmengine's ``clip_grad=dict(max_norm=...)`` clips the norm of *all* gradients
at once: in CIM the generator's norm (29-36 at the start of the demo) then sets
the scale of the enhancer's (2-13). These wrappers clip each group of modules
by its own norm instead; everything else is mmengine's ``OptimWrapper`` /
``AmpOptimWrapper`` (AMP unscales before clipping, as there)::

    optim_wrapper = dict(
        type='PerModuleClipOptimWrapper',  # or 'PerModuleClipAmpOptimWrapper'
        optimizer=...,
        clip_grad=dict(
            max_norm=3.0,  # one for all groups, or dict(generator=3.0, enhancer=1.0)
            # optional; the default is CIM's two networks:
            per_module=dict(generator=['generator'],
                            enhancer=['backbone', 'neck', 'head'])))

Shared clipping (mmengine's own wrappers) stays the default of every config;
per-network clipping is one switch, e.g.
``--cfg-options optim_wrapper.type=PerModuleClipOptimWrapper``.

The groups are module-name prefixes of the model; they are resolved when
mmengine's ``train_step`` hands the model to :meth:`optim_context` (a DDP
wrapper is unwrapped). Every trainable parameter of the optimizer must fall in
exactly one group. Logged: ``train/grad_norm_<group>`` (before clipping) and
``train/grad_norm`` (the norm over all groups, before clipping, as mmengine).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from cim_mm.utils.errors import UserError

__all__ = ['PerModuleClipOptimWrapper', 'PerModuleClipAmpOptimWrapper', 'CIM_NETWORKS']

#: CIM's two trainable networks (the frozen tokenizer has no gradients)
CIM_NETWORKS: dict[str, list[str]] = dict(generator=['generator'],
                                          enhancer=['backbone', 'neck', 'head'])


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + '.')


class _PerModuleClip:
    """Mixin over ``OptimWrapper``: ``_clip_grad`` clips each module group alone."""

    def __init__(self, *args, clip_grad: Optional[dict] = None, **kwargs) -> None:
        clip_grad = dict(clip_grad) if clip_grad else None
        per_module = max_norm = None
        if clip_grad is not None:
            per_module = clip_grad.pop('per_module', None) or CIM_NETWORKS
            if clip_grad.get('type', 'norm') != 'norm':
                raise UserError('optim_wrapper.clip_grad.per_module needs norm clipping: '
                                "remove clip_grad.type or set it to 'norm'")
            max_norm = clip_grad.get('max_norm')
            if max_norm is None:
                raise UserError('optim_wrapper.clip_grad needs max_norm (one number, or '
                                'one per group of clip_grad.per_module)')
            if isinstance(max_norm, dict):  # checked per group below
                clip_grad['max_norm'] = 0.0
        super().__init__(*args, clip_grad=clip_grad, **kwargs)
        self.per_module: dict[str, list[str]] = {
            k: [v] if isinstance(v, str) else list(v) for k, v in (per_module or {}).items()}
        if isinstance(max_norm, dict) and set(max_norm) != set(self.per_module):
            raise UserError(
                f'optim_wrapper.clip_grad.max_norm has groups {sorted(max_norm)} but '
                f'per_module has {sorted(self.per_module)}: give one max_norm per group')
        self.max_norms: dict[str, float] = {
            k: float(max_norm[k] if isinstance(max_norm, dict) else max_norm)
            for k in self.per_module} if max_norm is not None else {}
        self._groups: Optional[dict[str, list[nn.Parameter]]] = None

    # ---------------------------------------------------------------- groups
    def bind_modules(self, model: nn.Module) -> None:
        """Resolve the groups' parameters from ``model`` (done once, by
        :meth:`optim_context`)."""
        module = model.module if is_model_wrapper(model) else model
        owner: dict[int, str] = {}
        for name, p in module.named_parameters():
            groups = [g for g, prefixes in self.per_module.items()
                      if any(_in(name, pre) for pre in prefixes)]
            if len(groups) > 1:
                raise UserError(f'parameter {name} is in clip groups {groups}: make '
                                'optim_wrapper.clip_grad.per_module prefixes disjoint')
            if groups:
                owner[id(p)] = groups[0]
        names = {id(p): n for n, p in module.named_parameters()}
        self._groups = {g: [] for g in self.per_module}
        orphans = []
        for group in self.optimizer.param_groups:
            for p in group['params']:
                if not p.requires_grad:
                    continue
                if id(p) in owner:
                    self._groups[owner[id(p)]].append(p)
                else:
                    orphans.append(names.get(id(p), '<a parameter not in the model>'))
        if orphans:
            raise UserError(
                f'{len(orphans)} trainable parameters are in no gradient-clipping group '
                f'(e.g. {orphans[0]}): add their module to optim_wrapper.clip_grad.'
                f'per_module (groups: {self.per_module})')

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        if self.clip_grad_kwargs and self._groups is None:
            self.bind_modules(model)
        with super().optim_context(model):
            yield

    # -------------------------------------------------------------- clipping
    def _clip_grad(self) -> None:
        """``clip_grad_norm_`` on each group alone (``max_norm`` of that group)."""
        if self._groups is None:
            raise RuntimeError(
                'PerModuleClipOptimWrapper: call optim_context(model) before step() '
                "(mmengine's train_step does) so the module groups are known")
        kwargs = {k: v for k, v in self.clip_grad_kwargs.items() if k != 'max_norm'}
        names, norms = [], []
        for name, params in self._groups.items():
            params = [p for p in params if p.grad is not None]
            if params:
                norms.append(self.clip_func(params, max_norm=self.max_norms[name], **kwargs))
                names.append(name)
        if not norms:
            return
        norms = torch.stack([n.float() for n in norms])  # [G], before clipping
        total = torch.linalg.vector_norm(norms, ord=float(kwargs.get('norm_type', 2.0)))
        values = torch.cat([norms, total[None]]).tolist()  # one host sync, as mmengine's
        for name, value in zip(names, values):
            self.message_hub.update_scalar(f'train/{self.grad_name}_{name}', value)
        self.message_hub.update_scalar(f'train/{self.grad_name}', values[-1])


@OPTIM_WRAPPERS.register_module()
class PerModuleClipOptimWrapper(_PerModuleClip, OptimWrapper):
    """mmengine's ``OptimWrapper`` with gradient clipping per module group
    (module doc); ``clip_grad=dict(max_norm, [per_module], [norm_type])``."""


@OPTIM_WRAPPERS.register_module()
class PerModuleClipAmpOptimWrapper(_PerModuleClip, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` with gradient clipping per module group
    (gradients are unscaled first, as in ``AmpOptimWrapper``)."""
