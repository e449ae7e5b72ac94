"""What to resume from when the checkpoint given to ``--resume`` is cut off."""
from __future__ import annotations

import glob
import os.path as osp
import re
from typing import Optional

from .safe_checkpoint import CheckpointCorruptError, safe_load

#: the names mmengine's CheckpointHook gives its checkpoints, and their step
_CHECKPOINT_NAME = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def previous_checkpoint(path: str) -> Optional[str]:
    """The checkpoint beside ``path`` to resume from instead: of the other
    ``iter_*.pth`` / ``epoch_*.pth`` files in its folder, the one with the
    highest step that loads (each candidate is loaded, highest first)."""
    path = osp.abspath(path)
    candidates = []
    for other in glob.glob(osp.join(osp.dirname(path), '*.pth')):
        match = _CHECKPOINT_NAME.match(osp.basename(other))
        if match and osp.abspath(other) != path:
            candidates.append((int(match.group(2)), match.group(1) == 'iter', other))
    for _, _, other in sorted(candidates, reverse=True):
        try:
            safe_load(other)
        except (CheckpointCorruptError, OSError, RuntimeError):
            continue
        return other
    return None


def corrupt_resume_error(err: CheckpointCorruptError) -> CheckpointCorruptError:
    """``err`` (the resume checkpoint is cut off) with what to resume from."""
    path = err.path
    size = osp.getsize(path) if osp.isfile(path) else 0
    msg = (f'--resume: {path} is truncated or corrupt (not a complete torch '
           f'checkpoint; {size} bytes)')
    prev = previous_checkpoint(path)
    if prev is not None:
        msg += (f'; the previous checkpoint {prev} loads: run the same command with '
                f'--resume {prev}')
    else:
        msg += (f'; no other checkpoint in {osp.dirname(osp.abspath(path))} loads: '
                'train from the start without --resume')
    return CheckpointCorruptError(msg, path=path)
