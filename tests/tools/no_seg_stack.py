"""Imported first in a subprocess: the segmentation stack is not there.

``mmseg`` (and its submodules), ``mmcv.ops`` and ``mmcv._ext`` then fail to
import with ``ModuleNotFoundError``, as on a machine with mmcv-lite (mmcv without
compiled ops) and no mmsegmentation. Every refused name is kept in
:data:`BLOCKED`, in order.
"""
from __future__ import annotations

import importlib.abc
import sys
from typing import Optional, Sequence

#: the modules of the seg stack (a name or a package prefix)
SEG_STACK = ('mmseg', 'mmcv.ops', 'mmcv._ext')
#: every import of the seg stack refused so far
BLOCKED: list[str] = []


def is_seg_stack(name: str) -> bool:
    return any(name == p or name.startswith(p + '.') for p in SEG_STACK)


class _NoSegStack(importlib.abc.MetaPathFinder):
    """Refuses the seg stack before any other finder can find it."""

    def find_spec(self, name: str, path: Optional[Sequence[str]] = None, target=None):
        if is_seg_stack(name):
            BLOCKED.append(name)
            raise ModuleNotFoundError(f'No module named {name!r} (no seg stack here)',
                                      name=name)
        return None


_already = sorted(m for m in sys.modules if is_seg_stack(m))
if _already:
    raise RuntimeError(f'import no_seg_stack first: {_already} are already imported')
sys.meta_path.insert(0, _NoSegStack())
