"""Step time, counted FLOPs, MFU and peak memory of one method's training step.

The step is mmengine's ``model.train_step(data, optim_wrapper)`` -- data
preprocessor (host-to-device copy included), forward under the wrapper's bf16
autocast, loss, backward, gradient clipping, AdamW -- on one batch of decoded
JPEGs, the same batch for every method. ``torch.cuda.synchronize`` brackets
the timed steps only, never a step itself.

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one whole step
  (the first warm-up step), as :mod:`benchmarks.flops`; a multiply-add
  counts 2. MFU = counted FLOPs / step time / peak.
* Memory: ``torch.cuda.max_memory_allocated`` over the timed steps
  (:class:`~benchmarks.cost.MemoryMeter`; peak RSS on CPU).
* Out of memory: the batch is halved (down to ``settings.min_batch``) and the
  method retried; the methods after it keep the smaller batch.
"""
from __future__ import annotations

import gc
import math
import time

import torch

from ..cost import CIMStepProfiler, MemoryMeter
from ..flops import count_flops
from .context import CheckContext
from .models import build_model, build_optim_wrapper, method_batch


def _free(ctx: CheckContext) -> None:
    gc.collect()
    if ctx.is_cuda:
        torch.cuda.empty_cache()


def time_method(ctx: CheckContext, method: str, tokenizer_channels_last: bool = False,
                count: bool = True, breakdown: bool = False) -> dict:
    """Time ``method`` at ``ctx.batch_size``, halving it on out-of-memory."""
    s = ctx.settings
    while True:
        bs = ctx.batch_size
        try:
            out = _time_at(ctx, method, bs, tokenizer_channels_last, count, breakdown)
            out['batch_size'] = bs
            if bs != s.batch_size:
                out['note'] = f'batch halved from {s.batch_size} to {bs} (out of memory)'
            return out
        except torch.cuda.OutOfMemoryError:
            _free(ctx)
            if bs // 2 < s.min_batch:
                raise
            ctx.batch_size = bs // 2
            ctx.log(f'gpu_check | {method}: out of memory at batch {bs}; '
                    f'trying {ctx.batch_size}')
        finally:
            _free(ctx)


def _time_at(ctx: CheckContext, method: str, bs: int, tokenizer_channels_last: bool,
             count: bool, breakdown: bool) -> dict:
    s = ctx.settings
    t_build = time.perf_counter()
    model = build_model(ctx.scale, method, ctx.device)
    for name in ('tokenizer', 'target_generator'):
        if tokenizer_channels_last and getattr(model, name, None) is not None:
            getattr(model, name).to(memory_format=torch.channels_last)
    optim = build_optim_wrapper(model, ctx.scale, ctx.device)
    data = method_batch(ctx.batch, method, bs)
    build_s = time.perf_counter() - t_build

    def step() -> dict:
        return model.train_step(data, optim)

    t0 = time.perf_counter()
    flops = count_flops(step) if count else 0  # also the first warm-up step
    for _ in range(s.warmup_steps - (1 if count else 0)):
        step()
    ctx.sync()
    warmup_s = time.perf_counter() - t0

    meter = MemoryMeter(ctx.device)
    meter.start()
    ctx.sync()
    t0 = time.perf_counter()
    for _ in range(s.timed_steps):
        log_vars = step()
    ctx.sync()
    step_s = (time.perf_counter() - t0) / s.timed_steps
    mem = meter.stop()
    losses = {k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()
              if 'loss' in k}
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f'{method}: non-finite {", ".join(bad)} after '
                                 f'{s.warmup_steps + s.timed_steps} steps')
    out = dict(step_s=step_s, img_per_s=bs / step_s, build_s=round(build_s, 2),
               warmup_s=round(warmup_s, 2), timed_steps=s.timed_steps,
               peak_mem_mb=mem['peak_mem_mb'], mem_method=mem['mem_method'],
               losses=losses)
    if count:
        tflops = flops / step_s / 1e12
        out.update(flops_per_step=float(flops), gflops_per_img=flops / bs / 1e9,
                   tflops_per_s=tflops, mfu=tflops / s.peak_tflops)
    if breakdown and hasattr(model, 'corrupt'):
        out['breakdown'] = _breakdown(model, optim, data)
    return out


def _breakdown(model, optim, data: dict, steps: int = 2) -> dict:
    """Where a CIM step's time goes (:class:`CIMStepProfiler`: synchronised
    segments, so a little slower than the timed steps)."""
    prof = CIMStepProfiler(model, next(model.parameters()).device)
    for _ in range(steps):
        prof.step(data, optim)
    b = prof.breakdown()
    return dict(step_s=b['step_s'], segments_s=b['segments_s'],
                corruption_share=b['corruption_share'], enhancer_share=b['enhancer_share'])
