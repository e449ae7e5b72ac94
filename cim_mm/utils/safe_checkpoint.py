"""Safe checkpoint files: ``weights_only=True`` loading with an allow-list, atomic saving.

torch >= 2.6 loads with ``weights_only=True`` by default, so mmengine's own
``load_checkpoint`` and ``Runner.resume`` fail on mmengine's own checkpoints:
their ``meta`` and ``message_hub`` hold numpy arrays/scalars and mmengine
``HistoryBuffer`` objects. We keep ``weights_only=True`` on and allow-list only
those few safe types (numeric / string numpy dtypes: no object arrays).
Anything else pickled in a file (e.g. an object whose ``__reduce__`` would run
a command, or a numpy array of Python objects) is refused with a one-line
:class:`CheckpointSecurityError`.

:func:`atomic_torch_save` writes a checkpoint to a temporary file in the same
folder and moves it into place with :func:`os.replace`, so a kill during a save
never leaves the latest checkpoint unreadable; a failed write (a full disk) is
one :class:`CheckpointWriteError` line naming the file and the checkpoint that
is still intact. mmengine uses both once
:mod:`cim_mm.compat.checkpoint` is applied.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import tempfile
import zipfile
from typing import Any, BinaryIO, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from .errors import UserError

__all__ = [
    'CheckpointSecurityError', 'CheckpointCorruptError', 'CheckpointWriteError',
    'safe_load', 'atomic_torch_save', 'refusal', 'is_truncated', 'corrupt_file_error',
    'intact_checkpoint', 'write_error', 'SAFE_GLOBALS'
]


class CheckpointSecurityError(RuntimeError):
    """A checkpoint holds a pickled object that is not on the allow-list."""


class CheckpointCorruptError(UserError):
    """A checkpoint file that is cut off (a full disk, a killed copy) or damaged.

    Attributes:
        path: the file.
    """

    def __init__(self, message: str, path: str = '') -> None:
        super().__init__(message)
        self.path = path


class CheckpointWriteError(UserError):
    """A checkpoint that could not be written (a full disk, no permission)."""


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
    # mmengine's own checkpoints hold none (tests/compat/test_compat.py, resume tests)
    for name in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'complex64', 'complex128', 'str_', 'bytes_'):
        items.append(type(np.dtype(getattr(np, name))))
    return items


SAFE_GLOBALS: list[Any] = _numpy_safe_globals() + [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
]


def refusal(path: str, err: BaseException,
            allowed: str = 'tensors, numpy data and mmengine log buffers') -> CheckpointSecurityError:
    """The one-line refusal of a file that pickles an object outside the allow-list."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if 'GLOBAL' in ln or 'global' in ln),
                  lines[-1] if lines else repr(err))
    if len(detail) > 300:
        detail = detail[:300] + '...'
    return CheckpointSecurityError(
        f'Refused to load {path}: it holds a pickled object outside the allow-list '
        f'({detail}). Only {allowed} are loaded; if you trust the file, re-save its '
        'state_dict as plain tensors.')


def is_truncated(path: str, err: BaseException) -> bool:
    """Whether a failed load is a cut-off or damaged file, not a refused object:
    the file ends early, or starts as a zip (torch's format) without a readable
    zip directory (which a cut-off file loses: it sits at the end)."""
    if isinstance(err, EOFError) or 'PytorchStreamReader' in str(err):
        return True
    with open(path, 'rb') as f:
        head = f.read(4)
    return head.startswith(b'PK') and not zipfile.is_zipfile(path)


def corrupt_file_error(path: str) -> CheckpointCorruptError:
    return CheckpointCorruptError(
        f'{path} is truncated or corrupt (not a complete torch checkpoint; '
        f'{osp.getsize(path)} bytes): use an earlier checkpoint or save it again',
        path=path)


def safe_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and the allow-list above.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointCorruptError: the file is cut off or damaged.
        CheckpointSecurityError: the file holds any other pickled object.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} can not be found.')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, pickle.UnpicklingError, RuntimeError) as err:
        if is_truncated(path, err):
            raise corrupt_file_error(path) from None
        if isinstance(err, pickle.UnpicklingError) or any(
                m in str(err) for m in ('Weights only load failed', 'Unsupported')):
            raise refusal(path, err) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_file(path: str) -> tuple[BinaryIO, str]:
    """A new, empty, hidden file beside ``path`` (same file system, so
    :func:`os.replace` is atomic), open for binary writing, and its name."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix='.tmp',
                               dir=folder)
    return os.fdopen(fd, 'wb'), tmp


def _os_error_in(err: BaseException) -> Optional[OSError]:
    """The ``OSError`` that ``err`` is or was raised while handling: torch's
    zip writer turns a failed ``write`` (a full disk) into a ``RuntimeError``
    (``inline_container.cc``) raised on top of the ``OSError``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def intact_checkpoint(folder: str) -> Optional[str]:
    """The checkpoint that ``folder/last_checkpoint`` (mmengine's pointer to
    the latest saved checkpoint) names, if that file exists."""
    pointer = osp.join(folder, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        named = f.read().strip()
    return named if named and osp.isfile(named) else None


def write_error(path: str, err: OSError) -> CheckpointWriteError:
    """The one-line error for a checkpoint that could not be written."""
    reason = f'[Errno {err.errno}] {os.strerror(err.errno)}' if err.errno else str(err)
    msg = f'could not write {path} ({reason}); nothing was replaced'
    intact = intact_checkpoint(osp.dirname(osp.abspath(path)))
    if intact is not None:
        msg += (f'; the last saved checkpoint {intact} is intact: free space, then '
                f'run the same command with --resume to continue from it')
    return CheckpointWriteError(msg)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file + ``os.replace``.

    Raises:
        CheckpointWriteError: an ``OSError`` (a full disk, no permission, a
            quota) while writing; the temporary file is removed and ``path``,
            if it existed, is unchanged.
    """
    tmp: Optional[str] = None
    try:
        f, tmp = _temp_file(path)
        with f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)
        os_error = _os_error_in(err) if isinstance(err, Exception) else None
        if os_error is not None:
            raise write_error(path, os_error) from err
        raise
