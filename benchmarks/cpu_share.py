"""Did a CPU benchmark run have its cores? (``tools/benchmark.py --min-cpu-share``)

A run's CPU share is its process clock (CPU time / torch threads) over its wall
clock. On a quiet 2-core machine it is 0.91-0.96 (data loading runs on one
thread); beside other jobs it drops, and the run's steps per budget drop with
it whichever clock drives the budget.

The share alone misses part of it: a run beside one other job measured 0.91
(inside the quiet range) and still lost ~15 % of its steps, because torch's
threads spin while they wait for a core and the spinning counts as the run's
CPU time. So a run also records the CPU time *other* processes used during it
(``/proc/stat`` busy time minus the run's own, as a share of all cores):
quiet runs measure ~0.01.
"""
from __future__ import annotations

import os
import time
from typing import Optional

# A CPU run that got less of its cores than this (CPU time / threads over wall
# time) shared the machine: its step count and its timings are not comparable.
# Idle 2-core runs measure 0.91-0.96 (data loading runs on one thread).
MIN_CPU_SHARE = 0.85
# Shorter runs are smoke runs: start-up dominates their share, and their
# timings compare nothing.
MIN_GUARDED_WALL_S = 20.0
# Other processes used more than this share of the machine's cores during the
# run: it shared the machine whatever its own share says. A quiet 2-core run
# measures ~0.01 (system daemons, a shell).
MAX_OTHER_CPU = 0.10


def parse_proc_stat(text: str) -> tuple[float, int]:
    """``/proc/stat`` -> (busy CPU ticks summed over all cores, number of cores).

    Busy = user + nice + system + irq + softirq + steal of the ``cpu`` line
    (idle and iowait are not busy; guest time is already inside user).
    """
    lines = text.splitlines()
    fields = [int(v) for v in lines[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    n_cpus = sum(1 for ln in lines[1:] if ln.startswith('cpu') and ln[3:4].isdigit())
    return float(user + nice + system + irq + softirq + steal), n_cpus


class OtherCPUMeter:
    """CPU time other processes use while this one runs, as a share of all cores.

    ``start()`` then ``stop() -> float | None``: (busy time of the machine -
    this process's CPU time) / (wall time x cores). None where it cannot be
    measured fairly: no ``/proc/stat`` (not Linux), or a process limited to
    fewer cores than the machine has (a container on a larger host, where
    ``/proc/stat`` counts the neighbours' work too). Data-loader worker
    processes count as *other* processes: the CPU scales load in-process
    (``num_workers=0``), where the guard applies.
    """

    def __init__(self, proc_stat: str = '/proc/stat') -> None:
        self.proc_stat = proc_stat
        self.n_cpus = 0
        self._start: Optional[tuple[float, float, float]] = None

    def _busy_s(self) -> Optional[float]:
        try:
            with open(self.proc_stat) as f:
                ticks, n_cpus = parse_proc_stat(f.read())
            allowed = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
                else os.cpu_count()
        except (OSError, ValueError, IndexError):
            return None
        if n_cpus < 1 or n_cpus != allowed:
            return None
        self.n_cpus = n_cpus
        return ticks / os.sysconf('SC_CLK_TCK')

    def start(self) -> None:
        busy = self._busy_s()
        self._start = None if busy is None else (busy, time.process_time(), time.perf_counter())

    def stop(self) -> Optional[float]:
        busy = self._busy_s()
        if self._start is None or busy is None:
            return None
        busy0, own0, wall0 = self._start
        wall = time.perf_counter() - wall0
        if wall <= 0:
            return None
        other = (busy - busy0) - (time.process_time() - own0)  # [s of CPU]
        return max(other, 0.) / (wall * self.n_cpus)


class ContendedRun(RuntimeError):
    """A benchmark run that did not get its CPU (see :func:`check_cpu_share`);
    ``reason`` is the short form (``58% of its CPU, under 85%``)."""

    def __init__(self, message: str, reason: str = '') -> None:
        super().__init__(message)
        self.reason = reason or message


def check_cpu_share(pre: dict, min_share: float = MIN_CPU_SHARE,
                    max_other: float = MAX_OTHER_CPU) -> None:
    """Refuse a CPU pre-training that shared its cores with other work.

    ``pre`` is :func:`~benchmarks.pretrain.pretrain`'s result (``wall_s``, ``process_s``). Neither
    clock is fair on a busy machine: the wall clock charges the time other
    processes run, and the process clock charges torch's threads spinning while
    they wait for a core (2-core runs beside other jobs made 40-60 % fewer
    steps in the same process-clock budget). A run whose ``other_cpu`` (see
    :class:`OtherCPUMeter`; absent in results written before it) is above
    ``max_other`` is refused too. ``min_share <= 0`` turns both checks off;
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
            '--min-cpu-share 0 to keep such runs',
            reason=f'{share:.0%} of its CPU, under {min_share:.0%}')
    other = pre.get('other_cpu')
    if (min_share > 0 and other is not None and other > max_other
            and pre['wall_s'] >= MIN_GUARDED_WALL_S):
        raise ContendedRun(
            f'other processes used {other:.0%} of the machine\'s cores during the run '
            f'(over {max_other:.0%}; it got {share:.0%} of its own threads, '
            f'{pre["iters"]} steps): its steps and timings are not comparable; rerun it '
            'when the machine is quiet (resuming reruns it) or pass --min-cpu-share 0 '
            'to keep such runs', reason=f'other processes used {other:.0%} of the CPU')
