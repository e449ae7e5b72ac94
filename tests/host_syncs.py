"""Count, on the CPU, the ops that would make the host wait for a CUDA device.

``torch.cuda.set_sync_debug_mode`` only works on CUDA. On the CPU the same
question is answered structurally: a ``TorchDispatchMode`` records every aten op
that needs a device value on the host (``.item()``, ``nonzero``, boolean
indexing, data-dependent shapes, copies back to the host) and every copy to
another device (``.to(device)``), each by name.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops whose result (or output shape) depends on device values: on CUDA each
# waits for the device. ``_assert_async`` is not one (a device-side check).
SYNC_OPS = frozenset({
    aten._local_scalar_dense.default,  # .item(), bool(t), int(t), .tolist()
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
    """Records sync ops (``syncs``) and device copies (``copies``) by op name.

    ``copies`` counts ``_to_copy`` / ``copy_`` calls whose source and target
    devices differ, keyed ``'src->dst'``; a copy to the CPU also counts as a
    sync (a device-to-host read).
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs: Counter[str] = Counter()
        self.copies: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: tuple, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in SYNC_OPS or (func in INDEX_OPS and _has_bool_index(args)):
            self.syncs[str(func)] += 1
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
