"""Did a CPU benchmark run have its cores? (``tools/benchmark.py --min-cpu-share``)

A run's CPU share is its process clock (CPU time / torch threads) over its wall
clock. On a quiet 2-core machine it is 0.91-0.96 (data loading runs on one
thread); beside other jobs it drops, and the run's steps per budget drop with
it whichever clock drives the budget.
"""
from __future__ import annotations

# A CPU run that got less of its cores than this (CPU time / threads over wall
# time) shared the machine: its step count and its timings are not comparable.
# Idle 2-core runs measure 0.91-0.96 (data loading runs on one thread).
MIN_CPU_SHARE = 0.85
# Shorter runs are smoke runs: start-up dominates their share, and their
# timings compare nothing.
MIN_GUARDED_WALL_S = 20.0


class ContendedRun(RuntimeError):
    """A benchmark run that did not get its CPU (see :func:`check_cpu_share`)."""


def check_cpu_share(pre: dict, min_share: float = MIN_CPU_SHARE) -> None:
    """Refuse a CPU pre-training that shared its cores with other work.

    ``pre`` is :func:`~cim_mm.benchmark.pretrain.pretrain`'s result (``wall_s``, ``process_s``). Neither
    clock is fair on a busy machine: the wall clock charges the time other
    processes run, and the process clock charges torch's threads spinning while
    they wait for a core (2-core runs beside other jobs made 40-60 % fewer
    steps in the same process-clock budget). ``min_share <= 0`` turns it off;
    runs under ``MIN_GUARDED_WALL_S`` of wall clock are only measured.
    """
    share = pre['process_s'] / max(pre['wall_s'], 1e-9)
    pre['cpu_share'] = round(share, 3)
    if min_share > 0 and share < min_share and pre['wall_s'] >= MIN_GUARDED_WALL_S:
        raise ContendedRun(
            f'the run got {share:.0%} of its CPU threads ({pre["process_s"]:.0f} s of '
            f'CPU time per thread in {pre["wall_s"]:.0f} s wall, {pre["iters"]} steps): '
            'other work shared the machine, so its steps and timings are not comparable; '
            'rerun it when the machine is quiet (resuming reruns it) or pass '
            '--min-cpu-share 0 to keep such runs')


