"""The segmentation extra: mmsegmentation on mmcv 2.1.0 with compiled ops.

Pre-training and fine-tuning need only torch, mmengine, mmcv (mmcv-lite is
enough), mmpretrain and timm. What needs mmseg (the seg datasets, mmseg
converter targets, seg configs) asks for it here first, so a missing extra is
one line that says what to install, not a traceback from deep inside mmseg.

The error is a :class:`UserError`, deliberately not an ``ImportError``:
mmengine's ``custom_imports`` would wrap an ``ImportError`` into a long hint
about ``sys.path``.
"""
from __future__ import annotations

from mmengine.config import Config

from .errors import UserError

#: what to install for the seg side
SEG_EXTRA = 'pip install "cim_mm[seg]" (mmcv 2.1.0 with compiled ops)'


def require_seg_stack(who: str = 'cim_mm.seg') -> None:
    """Raise a one-line :class:`UserError` naming the extra unless mmseg and
    mmcv's compiled ops import; ``who`` is what needs them (said first)."""
    try:
        import mmseg  # noqa: F401
    except ImportError:
        raise UserError(f'{who} needs mmsegmentation: {SEG_EXTRA}') from None
    try:
        import mmcv.ops  # noqa: F401  (mmseg's models import it)
    except ImportError as err:
        raise UserError(f'{who} needs mmcv 2.1.0 with compiled ops (import mmcv.ops: '
                        f'{err}): {SEG_EXTRA}; bash tools/setup_env.sh builds it') from None


def load_config(path: str) -> Config:
    """``Config.fromfile(path)``; a config with ``mmseg::`` bases where
    mmsegmentation is not installed fails with the one line of
    :func:`require_seg_stack` instead of mmengine's ``ModuleNotFoundError``."""
    try:
        return Config.fromfile(path)
    except ModuleNotFoundError as err:
        if str(err).startswith('mmsegmentation is not installed'):  # mmengine's words
            raise UserError(f'{path} needs mmsegmentation: {SEG_EXTRA}') from None
        raise
