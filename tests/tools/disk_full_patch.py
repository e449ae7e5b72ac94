"""Imported by a config (``custom_imports``) in a ``tools/train.py`` subprocess:
the write of the checkpoint whose name is ``$CIM_MM_TEST_DISK_FULL`` fails with
``ENOSPC`` after its first bytes, as on a full disk (torch's zip writer then
raises its own ``RuntimeError`` on top, as it does there)."""
from __future__ import annotations

import errno
import os
import os.path as osp
from typing import BinaryIO

from cim_mm.utils import safe_checkpoint

FULL_AFTER = 4096  # bytes written before the disk is full


class _FullDisk:
    """A binary file whose ``write`` raises ``ENOSPC`` past ``FULL_AFTER`` bytes."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._written = 0

    def write(self, data: bytes) -> int:
        if self._written + len(data) > FULL_AFTER:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._written += len(data)
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self) -> '_FullDisk':
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


_real_temp_file = safe_checkpoint._temp_file


def _temp_file(path: str):
    f, tmp = _real_temp_file(path)
    if osp.basename(path) == os.environ.get('CIM_MM_TEST_DISK_FULL'):
        return _FullDisk(f), tmp
    return f, tmp


safe_checkpoint._temp_file = _temp_file
