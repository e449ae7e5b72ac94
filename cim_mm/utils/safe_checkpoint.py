"""Checkpoint safety for torch >= 2.6 + mmengine 0.10.x.

torch >= 2.6 loads with ``weights_only=True`` by default, so mmengine's own
``load_checkpoint`` and ``Runner.resume`` fail on mmengine's own checkpoints:
their ``meta`` and ``message_hub`` hold numpy arrays/scalars and mmengine
``HistoryBuffer`` objects. We keep ``weights_only=True`` on and allow-list only
those few safe types (numeric / string numpy dtypes: no object arrays).
Anything else pickled in a file (e.g. an object whose ``__reduce__`` would run
a command, or a numpy array of Python objects) is refused with a one-line
:class:`CheckpointSecurityError`.

Saving is made atomic: the checkpoint is written to a temporary file in the
same folder and moved into place with :func:`os.replace`, so a kill during a
save never leaves the latest checkpoint unreadable.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import tempfile
from typing import Any, Callable

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = [
    'CheckpointSecurityError', 'safe_load', 'atomic_torch_save',
    'install_checkpoint_safety', 'SAFE_GLOBALS'
]


class CheckpointSecurityError(RuntimeError):
    """A checkpoint holds a pickled object that is not on the allow-list."""


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling.

    mmengine pickles ``HistoryBuffer._statistics_methods`` as
    ``getattr(HistoryBuffer, 'min')``; only that shape is allowed.
    """
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not on the allow-list')


def _numpy_safe_globals() -> list[Any]:
    core = np._core if hasattr(np, '_core') else np.core  # numpy 2 / 1
    items: list[Any] = [
        np.ndarray, np.dtype, core.multiarray._reconstruct,
        core.multiarray.scalar
    ]
    # numpy >= 1.25 pickles dtypes through their classes (np.dtypes.Float64DType...).
    # Not object_: an object array is a list of pickled Python objects, and
    # mmengine's own checkpoints hold none (tests/test_compat.py, resume tests)
    for name in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'complex64', 'complex128', 'str_', 'bytes_'):
        items.append(type(np.dtype(getattr(np, name))))
    return items


SAFE_GLOBALS: list[Any] = _numpy_safe_globals() + [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
]


def _refusal(path: str, err: BaseException) -> CheckpointSecurityError:
    reason = str(err).strip().splitlines()
    detail = next((ln.strip() for ln in reason if 'GLOBAL' in ln or 'global' in ln),
                  reason[-1] if reason else repr(err))
    if len(detail) > 300:
        detail = detail[:300] + '...'
    return CheckpointSecurityError(
        f'Refused to load {path}: it holds a pickled object outside the allow-list '
        f'({detail}). Only tensors, numpy data and mmengine log buffers are '
        'loaded; if you trust the file, re-save its state_dict as plain tensors.')


def safe_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and the allow-list above.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointSecurityError: the file holds any other pickled object.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} can not be found.')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, err) from None
    except RuntimeError as err:
        if 'Weights only load failed' in str(err) or 'Unsupported' in str(err):
            raise _refusal(path, err) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file + ``os.replace``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix='.tmp',
                               dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


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
    return save_checkpoint


_INSTALLED = False


def install_checkpoint_safety() -> None:
    """Route mmengine's local checkpoint loading through :func:`safe_load` and
    its saving through :func:`atomic_torch_save`. Idempotent."""
    global _INSTALLED
    if _INSTALLED:
        return
    from mmengine.runner import checkpoint as mm_ckpt
    from mmengine.runner import runner as mm_runner

    def load_from_local(filename: str, map_location: Any) -> Any:
        return safe_load(filename, map_location=map_location)

    mm_ckpt.CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local)
    atomic = _make_atomic_save(mm_ckpt.save_checkpoint)
    mm_ckpt.save_checkpoint = atomic
    mm_runner.save_checkpoint = atomic
    _INSTALLED = True
