"""AMP without an accelerator: train in float32 with the plain optimizer wrapper.

mmengine 0.10's ``AmpOptimWrapper`` needs CUDA / NPU / MLU / MUSA and refuses to
be built otherwise. The recipes ask for AMP (their names say ``amp``), so on a
CPU the project's tools swap an AMP wrapper for its plain counterpart
(``AmpOptimWrapper`` -> ``OptimWrapper``, ``XAmpOptimWrapper`` -> ``XOptimWrapper``
where registered) and drop the AMP-only keys.
"""
from __future__ import annotations

from typing import Optional

from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                             is_npu_available)
from mmengine.optim import AmpOptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

#: keys only an AMP wrapper accepts
AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def accelerator_available() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can be built here."""
    return any(f() for f in (is_cuda_available, is_npu_available, is_mlu_available,
                             is_musa_available))


def amp_to_plain(wrapper: dict, accelerator: Optional[bool] = None) -> Optional[str]:
    """Without an accelerator, turn the AMP optimizer-wrapper config ``wrapper``
    (changed in place) into its plain counterpart.

    Args:
        wrapper: an ``optim_wrapper`` config.
        accelerator: whether the run has one; default :func:`accelerator_available`.
    Returns:
        ``'AmpOptimWrapper -> OptimWrapper'`` when it changed something, else None.
    """
    if accelerator is None:
        accelerator = accelerator_available()
    if accelerator or not isinstance(wrapper, dict):
        return None
    typ = wrapper.get('type', 'OptimWrapper')
    cls = typ if isinstance(typ, type) else OPTIM_WRAPPERS.get(typ)
    if cls is None or not issubclass(cls, AmpOptimWrapper):
        return None
    plain = cls.__name__.replace('AmpOptimWrapper', 'OptimWrapper')
    plain_cls = OPTIM_WRAPPERS.get(plain)
    if plain_cls is None or issubclass(plain_cls, AmpOptimWrapper):
        plain = 'OptimWrapper'
    wrapper['type'] = plain
    for key in AMP_ONLY_KEYS:
        wrapper.pop(key, None)
    return f'{cls.__name__} -> {plain}'
