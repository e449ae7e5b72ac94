"""Fixes for the pinned stack, applied explicitly, never on ``import cim_mm``.

Each fix repairs one version of one dependency and acts only where that version
is installed; each has ``needed()``, ``applied()`` and ``apply()``:

=================  ==========================================================
``checkpoint``     torch >= 2.6 ``weights_only`` vs mmengine 0.10 checkpoints:
                   allow-listed safe loading, atomic saving, a failed
                   save ends every rank with rank 0's line
``interp2d``       SciPy >= 1.14 removed ``interp2d`` (BEiT relative position
                   bias resizing in mmpretrain / mmseg): an exact torch shim
``dist``           mmengine 0.10 distributed training without CUDA: gloo,
                   CPU DDP, CPU SyncBatchNorm
=================  ==========================================================

The project's tools call :func:`apply_all`; a config applies them with one
more ``custom_imports`` entry::

    custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'],
                          allow_failed_imports=False)
"""
from __future__ import annotations

from types import ModuleType

from . import checkpoint, dist, interp2d

#: the ``custom_imports`` entry that applies every fix
ENABLE_ENTRY = 'cim_mm.compat.enable'
FIXES: dict[str, ModuleType] = dict(checkpoint=checkpoint, interp2d=interp2d, dist=dist)


def apply_all() -> list[str]:
    """Apply every fix whose version is installed. Idempotent; returns the names applied."""
    done = []
    for name, fix in FIXES.items():
        if fix.needed():
            fix.apply()
            done.append(name)
    return done


def missing() -> list[str]:
    """The fixes this stack needs that are not applied."""
    return [name for name, fix in FIXES.items() if fix.needed() and not fix.applied()]
