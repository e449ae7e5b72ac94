"""Pick torch's CPU thread count so dataloader workers and compute do not fight."""
from __future__ import annotations

import os

import torch


def set_cpu_threads(num_workers: int, threads: int | None = None) -> int | None:
    """Set ``torch.set_num_threads`` for a CPU-only run; return what was set.

    With ``threads=None`` nothing is changed when a GPU is visible or
    ``OMP_NUM_THREADS`` is set by the user; otherwise the usable cores minus the
    dataloader workers (at least 1). On a 2-core machine an oversubscribed torch
    (2 compute threads + 2 workers) made a training step >10x slower.
    """
    if threads is None:
        if torch.cuda.is_available() or 'OMP_NUM_THREADS' in os.environ:
            return None
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        threads = max(1, cores - int(num_workers))
    torch.set_num_threads(threads)
    return threads
