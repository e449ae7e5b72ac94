"""Host syncs of one training step: where the host waits for the device.

Two counts, because neither sees everything:

* :class:`HostSyncCounter` -- a ``TorchDispatchMode`` over an eager step: every
  aten op whose result (or output shape) needs a device value on the host
  (``.item()``, ``nonzero``, boolean indexing, ...) and every copy back to the
  host, by op name; and every copy between devices, by direction. Works on any
  device (the CPU dry run and the tests too, with ``meta`` standing in for
  CUDA), so it names the code that would sync on CUDA even where nothing waits.
* :func:`cuda_sync_warnings` -- on CUDA, ``torch.cuda.set_sync_debug_mode('warn')``
  over one step (compiled blocks included): every synchronizing CUDA call
  (stream syncs of pageable copies as well) raises a warning, counted here.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops whose result or output shape depends on device values: on CUDA each
# waits for the device (``_assert_async`` does not: a device-side check)
SYNC_OPS = frozenset({
    aten._local_scalar_dense.default,  # .item(), bool(t), float(t), .tolist()
    aten.is_nonzero.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten._unique2.default,
    aten.unique_consecutive.default,
    aten.unique_dim.default,
    aten.repeat_interleave.Tensor,
})
INDEX_OPS = frozenset({aten.index.Tensor, aten.index_put.default, aten.index_put_.default})


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class HostSyncCounter(TorchDispatchMode):
    """Counts sync ops (``syncs``, by op name without ``aten.``) and copies
    between devices (``copies``, keyed ``'src->dst'``); a copy to the CPU is
    also a sync (a device-to-host read)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: Counter[str] = Counter()
        self.copies: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in SYNC_OPS or (func in INDEX_OPS and _has_bool_index(args)):
            self.syncs[str(func).replace('aten.', '')] += 1
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        dst = None
        if func is aten._to_copy.default and 'device' in kwargs:
            dst = torch.device(kwargs['device'])
        elif func is aten.copy_.default and isinstance(args[1], torch.Tensor):
            src, dst = args[1], args[0].device
        if src is not None and dst is not None and src.device != dst:
            self.copies[f'{src.device.type}->{dst.type}'] += 1
            if dst.type == 'cpu':
                self.syncs['device->host copy'] += 1
        return func(*args, **kwargs)


def count_host_syncs(fn: Callable[[], Any]) -> tuple[Any, HostSyncCounter]:
    """``fn()``'s result and the :class:`HostSyncCounter` of its ops."""
    with HostSyncCounter() as counter:
        out = fn()
    return out, counter


def count_sync_ops(fn: Callable[[], Any]) -> tuple[Any, dict]:
    """``fn()``'s result and ``dict(total, by_op)`` of its sync ops."""
    out, counter = count_host_syncs(fn)
    return out, dict(total=sum(counter.syncs.values()), by_op=dict(counter.syncs))


def cuda_sync_warnings(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()``'s result and how many synchronizing CUDA calls it made."""
    old = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode(old)
    n = sum('synchronizing CUDA operation' in str(w.message) for w in caught)
    return out, n
