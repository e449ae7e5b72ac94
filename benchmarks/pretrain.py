"""Pre-train one method for a wall-clock budget (or a fixed number of steps).

The loop is mmengine's ``model.train_step(data, optim_wrapper)`` (data
preprocessor, loss, backward, clip, step), driven by hand so that it can stop
when the budget is spent and measure cost:

* the budget clock starts after the first step (one-time lazy initialisation:
  allocator, kernels, optimizer state -- taken at a ~0 learning rate), so a
  short budget is not eaten by it; ``first_step_s`` records it;
* the learning rate follows the scale's recipe (linear warm-up, then cosine
  to ``min_lr_ratio``) over the *fraction of the budget spent* (or of the
  steps, with ``iters``), so every method gets a complete schedule whatever
  its step time;
* throughput = images / time inside ``train_step`` (data loading excluded,
  first ``warmup_steps`` excluded); ``wall_img_per_s`` includes data loading;
* the budget is counted on ``clock``: ``'wall'`` (``time.perf_counter``, the
  default) or ``'process'`` (:func:`process_clock`: this process's CPU time over
  torch's thread count, so that a method run while other jobs share the cores
  is not charged for their time); both are recorded (``wall_s``,
  ``process_s``);
* momentum encoders whose EMA follows mmengine's ``max_iters`` (mmpretrain's
  ``CosineEMA``: BYOL, MEC) see ``max_iters`` such that their cosine momentum
  schedule runs over the budget, like the learning rate;
* peak memory of the loop (:class:`~benchmarks.cost.MemoryMeter`);
* for CIM, every ``profile_every``-th step (every step on CPU, every 4th
  on CUDA) goes through
  :class:`~benchmarks.cost.CIMStepProfiler` (same maths, timed parts).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch

from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain

from .cost import CIMStepProfiler, MemoryMeter, synchronizer
from .cpu_share import OtherCPUMeter


CLOCKS = ('wall', 'process')


def process_clock() -> float:
    """This process's CPU seconds (all its threads) / torch's thread count.

    On an idle machine it equals the wall clock for work that keeps all
    threads busy (the forward / backward passes); work on one thread (data
    loading in the main process, Python overhead) is charged 1 / threads of its
    wall time, and time spent waiting for the CPU while other processes run is
    not charged at all. CPU time of dataloader worker processes is not counted
    (``--num-workers 0``, the cpu-small default, loads in this process).
    """
    return time.process_time() / max(torch.get_num_threads(), 1)


def get_clock(name: str):
    if name == 'wall':
        return time.perf_counter
    if name == 'process':
        return process_clock
    raise ValueError(f'unknown clock {name!r}; choose from {", ".join(CLOCKS)}')


def _tell_max_iters(it: int, progress: float, iters: Optional[int]) -> None:
    """Expose the (estimated) number of steps to mmengine's MessageHub."""
    from mmengine.logging import MessageHub
    if iters is not None:
        total = iters
    else:  # so that steps / max_iters follows the budget spent
        total = max(it + 1, int(round(it / progress))) if progress > 0 else 10**9
    hub = MessageHub.get_current_instance()
    hub.update_info('max_iters', total)
    hub.update_info('iter', it)


def lr_factor(progress: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup_frac``, cosine to ``min_ratio`` at 1."""
    progress = min(max(progress, 0.), 1.)
    if warmup_frac > 0 and progress < warmup_frac:
        return 1e-3 + (1 - 1e-3) * progress / warmup_frac
    p = (progress - warmup_frac) / max(1 - warmup_frac, 1e-8)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def build_optim_wrapper(model, cfg: dict, device: torch.device):
    from mmengine.optim import build_optim_wrapper as _build
    cfg = dict(cfg)
    amp_to_plain(cfg, accelerator=torch.device(device).type == 'cuda')
    return _build(model, cfg)


def pretrain(model, loader, optim_wrapper, *, device: torch.device,
             budget_s: float, iters: Optional[int] = None, warmup_frac: float = 0.05,
             min_lr_ratio: float = 0.01, profile_every: Optional[int] = None,
             warmup_steps: int = 2, log: Callable[[str], None] = print,
             log_every_s: float = 10., is_cim: bool = False,
             clock: str = 'wall') -> dict:
    """Train ``model`` until ``budget_s`` seconds (or ``iters`` steps) pass.

    Returns a dict of figures (iterations, images, losses, throughput, memory,
    and the CIM step breakdown when ``is_cim``).
    """
    device = torch.device(device)
    budget_clock = get_clock(clock)
    sync = synchronizer(device)
    model.train()
    groups = optim_wrapper.optimizer.param_groups
    base_lrs = [g['lr'] for g in groups]
    profiler = CIMStepProfiler(model, device) if is_cim else None
    if profile_every is None:  # timing syncs cost nothing on CPU
        profile_every = 4 if device.type == 'cuda' else 1
    batch_size = loader.batch_size
    meter = MemoryMeter(device)
    data_iter = iter(loader)
    step_times: list[float] = []
    losses_first: Optional[dict] = None
    losses_last: dict = {}
    it = 0
    data_time = 0.
    meter.start()
    sync()
    t_loop = time.perf_counter()
    p_loop = process_clock()
    others = OtherCPUMeter()  # other processes' CPU time during the loop
    others.start()
    t_start = budget_clock()  # the budget clock; restarted after the first step
    first_step_s = 0.
    t_log = t_loop
    while True:
        elapsed = budget_clock() - t_start
        if iters is not None:
            if it >= iters:
                break
            progress = it / iters
        else:
            if elapsed >= budget_s:
                break
            progress = elapsed / budget_s
        f = lr_factor(progress, warmup_frac, min_lr_ratio)
        for g, lr in zip(groups, base_lrs):
            g['lr'] = lr * f
        _tell_max_iters(it, progress, iters)
        t0 = time.perf_counter()
        data = next(data_iter)
        t1 = time.perf_counter()
        data_time += t1 - t0
        if profiler is not None and it % profile_every == 0:
            log_vars = profiler.step(data, optim_wrapper)
        else:
            log_vars = model.train_step(data, optim_wrapper)
        sync()
        step_times.append(time.perf_counter() - t1)
        vals = {k: float(v.detach() if torch.is_tensor(v) else v)
                for k, v in log_vars.items()}
        if not all(math.isfinite(v) for v in vals.values()):
            raise FloatingPointError(f'non-finite loss at step {it}: {vals}')
        if losses_first is None:
            losses_first = vals
        losses_last = vals
        it += 1
        now = time.perf_counter()
        if it == 1:  # one-time lazy initialisation is not charged to the budget
            c = budget_clock()
            first_step_s = c - t_start
            t_start = c
        if now - t_log >= log_every_s:
            t_log = now
            done = budget_clock() - t_start
            if iters is not None:
                eta = done / max(it - 1, 1) * (iters - it)
                where = f'step {it}/{iters}'
            else:
                eta = max(budget_s - done, 0.)
                where = f'step {it}, {done:.0f}/{budget_s:.0f} s'
            log(f'pretrain | {where} | loss {vals.get("loss", 0.):.4f} | '
                f'lr {groups[0]["lr"]:.2e} | ETA {eta:.0f} s')
    sync()
    wall = time.perf_counter() - t_loop
    process_s = process_clock() - p_loop
    other_cpu = others.stop()
    mem = meter.stop()
    timed = step_times[warmup_steps:] if len(step_times) > warmup_steps else step_times
    step_s = sum(timed) / max(len(timed), 1)
    out = dict(
        iters=it, images=it * batch_size, batch_size=batch_size, wall_s=round(wall, 2),
        process_s=round(process_s, 2), clock=clock,
        other_cpu=None if other_cpu is None else round(other_cpu, 3),
        first_step_s=round(first_step_s, 2),
        data_s=round(data_time, 2), step_s_mean=step_s,
        step_s_median=sorted(timed)[len(timed) // 2] if timed else 0.,
        img_per_s=batch_size / step_s if step_s else 0.,
        wall_img_per_s=it * batch_size / wall if wall else 0.,
        loss_first=losses_first or {}, loss_last=losses_last, **mem)
    if profiler is not None:
        skip = -(-warmup_steps // profile_every)  # profiled steps among the warm-up
        out['cim_breakdown'] = profiler.breakdown(skip=skip)
        out['cim_breakdown']['profile_every'] = profile_every
    return out
