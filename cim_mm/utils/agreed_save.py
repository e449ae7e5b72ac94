"""A checkpoint save that every rank of a multi-process run ends the same way.

mmengine writes checkpoints on rank 0 only (``Runner.save_checkpoint`` is
``master_only``; every rank calls it). When rank 0's write fails (a full disk:
:class:`~.safe_checkpoint.CheckpointWriteError`), rank 0 stops with its one line
while the other ranks run on into the next collective and die there with the
backend's error (gloo: ``Connection closed by peer``), or finish "successfully"
when it was the last checkpoint. :func:`agreed_save` runs the save, then rank 0
broadcasts its outcome: one int64 per save (the length of its one-line error, 0
when the file was written) and, only after a failure, the line itself. Every rank
then stops with that same line.
"""
from __future__ import annotations

from typing import Callable

import torch
from mmengine import dist

from .cli import one_line
from .errors import UserError
from .safe_checkpoint import CheckpointWriteError

__all__ = ['agreed_save', 'line_from_rank0']


def line_from_rank0(line: str) -> str:
    """Rank 0's ``line`` on every rank (``''``: nothing went wrong).

    One collective of one int64 when ``line`` is empty on rank 0; a second one,
    of its UTF-8 bytes, when it is not. Other ranks' ``line`` is ignored.
    """
    data = line.encode('utf-8') if dist.get_rank() == 0 else b''
    length = torch.tensor([len(data)], dtype=torch.int64)  # [1]
    dist.broadcast(length, src=0)
    n = int(length.item())
    if n == 0:
        return ''
    buf = torch.zeros(n, dtype=torch.uint8)  # [n]
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return bytes(buf.tolist()).decode('utf-8')


def agreed_save(save: Callable[[], None], filename: str) -> None:
    """Run ``save`` (on every rank; it writes on rank 0), then end every rank as
    rank 0 ended.

    Single process: just ``save()``. Several: when rank 0's save raised, rank 0
    re-raises its own exception (a bug keeps its traceback) and every other rank
    raises a :class:`CheckpointWriteError` with the same one line (rank 0's
    :class:`UserError` message, or for any other exception its type and message
    and where its traceback is). ``filename`` names the checkpoint in that line.
    """
    if not dist.is_distributed():
        save()
        return
    error = None
    line = ''
    try:
        save()
    except Exception as err:  # told to every rank, then re-raised below
        error = err
        line = one_line(err) if isinstance(err, UserError) else (
            f'rank 0 could not save the checkpoint {filename}: {type(err).__name__}: '
            f'{one_line(err)} (the traceback is in rank 0\'s output)')
    line = line_from_rank0(line)
    if error is not None:
        raise error
    if line:
        raise CheckpointWriteError(line)
