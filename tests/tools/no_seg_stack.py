"""Imported first in a subprocess: the segmentation stack is not there.

``mmseg`` (and its submodules), ``mmcv.ops`` and ``mmcv._ext`` are then not
found, as on a machine with mmcv-lite (mmcv without compiled ops) and no
mmsegmentation: ``import`` raises ``ModuleNotFoundError``, and
``importlib.util.find_spec`` / ``pkgutil.find_loader`` give ``None`` (mmengine
asks the latter whether mmcv has its ops). Every refused name is kept in
:data:`BLOCKED`, in order.
"""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

#: the modules of the seg stack (a name or a package prefix)
SEG_STACK = ('mmseg', 'mmcv.ops', 'mmcv._ext')
#: every look-up of the seg stack refused so far
BLOCKED: list[str] = []


def is_seg_stack(name: str) -> bool:
    return any(name == p or name.startswith(p + '.') for p in SEG_STACK)


class _Hiding:
    """A meta path finder that finds what ``finder`` finds, except the seg stack."""

    def __init__(self, finder: Any) -> None:
        self._finder = finder

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target=None):
        if is_seg_stack(name):
            if not BLOCKED or BLOCKED[-1] != name:
                BLOCKED.append(name)
            return None
        find = getattr(self._finder, 'find_spec', None)
        return find(name, path, target) if find is not None else None

    def __getattr__(self, attr: str) -> Any:  # invalidate_caches, find_distributions, ...
        return getattr(self._finder, attr)


_already = sorted(m for m in sys.modules if is_seg_stack(m))
if _already:
    raise RuntimeError(f'import no_seg_stack first: {_already} are already imported')
sys.meta_path[:] = [_Hiding(f) for f in sys.meta_path]
