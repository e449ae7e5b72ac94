"""mmengine 0.10 checkpoints under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True`` by default, so mmengine 0.10.7's
``load_checkpoint`` and ``Runner.resume`` fail on mmengine's own checkpoints
(numpy objects and mmengine ``HistoryBuffer`` objects in ``meta`` /
``message_hub``). The fix
routes mmengine's local loading through :func:`cim_mm.utils.safe_load`
(``weights_only=True`` and a short allow-list: safety stays on) and its saving
through :func:`cim_mm.utils.atomic_torch_save` (a kill during a save keeps the
previous checkpoint; a failed write is one line naming the intact checkpoint).
``Runner.save_checkpoint`` goes through :func:`cim_mm.utils.agreed_save.agreed_save`,
so that in a multi-process run every rank stops with rank 0's line when its
write fails (one int64 broadcast per save).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from mmengine.runner import checkpoint as mm_ckpt
from mmengine.runner import runner as mm_runner

from ..utils.agreed_save import agreed_save
from ..utils.safe_checkpoint import atomic_torch_save, safe_load
from .versions import version_at_least

_PATCHED = '_cim_mm_compat'


def _make_atomic_save(original: Callable) -> Callable:

    def save_checkpoint(checkpoint, filename, file_client_args=None,
                        backend_args=None):
        is_local = '://' not in str(filename)
        if is_local and file_client_args is None and backend_args is None:
            atomic_torch_save(checkpoint, str(filename))
        else:
            original(checkpoint, filename, file_client_args=file_client_args,
                     backend_args=backend_args)

    save_checkpoint.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(save_checkpoint, _PATCHED, True)
    return save_checkpoint


def _make_agreed_runner_save(original: Callable) -> Callable:
    """``Runner.save_checkpoint`` (``master_only``, called on every rank), then
    every rank ends as rank 0's save did."""

    @functools.wraps(original)
    def save_checkpoint(self: Any, out_dir: str, filename: str, *args: Any,
                        **kwargs: Any) -> None:
        agreed_save(lambda: original(self, out_dir, filename, *args, **kwargs), filename)

    setattr(save_checkpoint, _PATCHED, True)
    return save_checkpoint


def needed() -> bool:
    """torch >= 2.6 loads with ``weights_only=True`` by default, which mmengine
    0.10's loader does not allow-list for its own checkpoints."""
    return version_at_least(torch.__version__, '2.6')


def applied() -> bool:
    return getattr(mm_ckpt.save_checkpoint, _PATCHED, False)


def apply() -> None:
    """Route mmengine's local checkpoint loading through :func:`safe_load`, its
    saving through :func:`atomic_torch_save`, and its runner's saves through
    :func:`agreed_save`. Idempotent."""
    if applied():
        return

    def load_from_local(filename: str, map_location: Any) -> Any:
        return safe_load(filename, map_location=map_location)

    mm_ckpt.CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)
    atomic = _make_atomic_save(mm_ckpt.save_checkpoint)
    mm_ckpt.save_checkpoint = atomic
    mm_runner.save_checkpoint = atomic
    mm_runner.Runner.save_checkpoint = _make_agreed_runner_save(
        mm_runner.Runner.save_checkpoint)
