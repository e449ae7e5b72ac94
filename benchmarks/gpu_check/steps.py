"""Step time, counted FLOPs, MFU, host syncs and memory of one method's step,
as the recipe configures it.

The step is mmengine's ``model.train_step(data, optim_wrapper)`` -- data
preprocessor (host-to-device copy included), forward under the wrapper's bf16
autocast, loss, backward, gradient clipping, the optimizer -- on one batch of
decoded JPEGs, the same batch for every method. What the Runner would set up
is set up here the same way (:mod:`.fast_path`): ``cudnn.benchmark`` from
``env_cfg``, the optimizer from the recipe's ``optim_wrapper`` (its
constructor: merged groups, fused AdamW on CUDA), the model dict's switches as
written, then the recipe's ``CompileBlocksHook`` on the built model.

Order of the steps, so each figure is of the step it names:

1. eager steps (before compiling): FLOPs counted over one whole step
   (``FlopCounterMode``, :mod:`benchmarks.flops`; a multiply-add counts 2),
   then the sync ops of one step (:class:`~.syncs.HostSyncCounter`);
2. the compile hook; the first step after it compiles: its time less the
   timed step's is ``compile_s``, never part of the step time;
3. warm-up, then the timed steps (``torch.cuda.synchronize`` around the block
   only); memory (``max_memory_allocated``) over them;
4. on CUDA one more step under ``set_sync_debug_mode('warn')``: host syncs.

MFU = the *plain* step's FLOPs (``settings.plain_gflops``: counted on the
step without the fast path, e.g. 229.3 GFLOPs/image for CIM-ResPix; this
step's own count where none is known) / step time / peak: the fast path
computes less (masked-only generator head, low-resolution 1x1 decoder
convolutions), and MFU measures the speed of the same work.
Out of memory: the batch is halved (down to ``settings.min_batch``) and the
method retried; the methods after it keep the smaller batch.
"""
from __future__ import annotations

import gc
import math
import time
from typing import Optional

import torch

from cim_mm.engine.dynamo_counts import dynamo_counts

from ..cost import CIMStepProfiler, MemoryMeter
from ..flops import count_flops
from .context import CheckContext
from .fast_path import (TRACED_FLIPS, apply_env, channels_last_like_runner, compile_like_runner,
                        flip_switches, model_overrides, recipe_speed, switches)
from .models import build_model, build_optim_wrapper, method_batch, speed_recipe
from .syncs import count_sync_ops, cuda_sync_warnings


def _free(ctx: CheckContext) -> None:
    gc.collect()
    if ctx.is_cuda:
        torch.cuda.empty_cache()


def time_method(ctx: CheckContext, method: str, count: bool = True,
                breakdown: bool = False, batch_size: Optional[int] = None,
                flip: Optional[dict] = None) -> dict:
    """Time ``method`` at ``batch_size`` (default ``ctx.batch_size``), halving
    it on out-of-memory (and ``ctx.batch_size`` with it, when that was used).

    ``flip``: GPU switches set against the recipe (:func:`.fast_path.flip_switches`).
    """
    s = ctx.settings
    asked = batch_size or s.batch_size
    fixed = batch_size is not None
    bs = batch_size or ctx.batch_size
    while True:
        try:
            out = _time_at(ctx, method, bs, count, breakdown, flip or {})
            out['batch_size'] = bs
            if bs != asked:
                out['note'] = f'batch halved from {asked} to {bs} (out of memory)'
            return out
        except torch.cuda.OutOfMemoryError:
            _free(ctx)
            if bs // 2 < s.min_batch:
                raise
            ctx.log(f'gpu_check | {method}: out of memory at batch {bs}; '
                    f'trying {bs // 2}')
            bs //= 2
            if not fixed:
                ctx.batch_size = bs
        finally:
            _free(ctx)


def _time_at(ctx: CheckContext, method: str, bs: int, count: bool,
             breakdown: bool, flip: dict) -> dict:
    s = ctx.settings
    speed = flip_switches(recipe_speed(speed_recipe(ctx.scale, method)), flip)
    apply_env(speed)
    t_build = time.perf_counter()
    model = build_model(ctx.scale, method, ctx.device, model_overrides(flip))
    # NHWC convolutions (the ResNet recipes' ChannelsLastHook; same Parameters)
    nhwc = channels_last_like_runner(model, speed['channels_last_hook'])
    optim = build_optim_wrapper(model, ctx.scale, ctx.device, method)
    data = method_batch(ctx.batch, method, bs)
    build_s = time.perf_counter() - t_build

    def step() -> dict:
        return model.train_step(data, optim)

    t0 = time.perf_counter()
    uncounted = _why_uncounted(model)
    if uncounted is None:
        flops = count_flops(step) if count else 0  # eager steps: warm-up too
        _, sync_ops = count_sync_ops(step)
    else:
        step()
        flops, sync_ops = 0, dict(total=None, by_op={}, not_counted=uncounted)
    ctx.sync()
    eager_s = time.perf_counter() - t0

    compiled = compile_like_runner(model, speed['compile_hook'], method, ctx.is_cuda,
                                   trace=ctx.is_cuda or not ctx.compile_traced
                                   or any(flip.get(k) for k in TRACED_FLIPS))
    ctx.compile_traced = ctx.compile_traced or bool(compiled['compiled'])
    before_compile = dynamo_counts()
    t0 = time.perf_counter()
    step()  # compiles, when anything was set to compile
    ctx.sync()
    first_s = time.perf_counter() - t0
    after_first = dynamo_counts()
    t0 = time.perf_counter()
    for _ in range(max(s.warmup_steps - 1, 0)):
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
    first, later = after_first - before_compile, dynamo_counts() - after_first
    losses = {k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()
              if 'loss' in k}
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f'{method}: non-finite {", ".join(bad)} after '
                                 f'{s.warmup_steps + s.timed_steps + 2} steps')
    if ctx.is_cuda:  # every synchronizing CUDA call of one compiled step
        _, syncs = cuda_sync_warnings(step)
        sync_method = "torch.cuda.set_sync_debug_mode('warn'), one step"
    else:
        syncs = sync_ops['total']
        sync_method = 'sync ops of one eager step (dispatch mode; no CUDA)'
    on = compiled['status'].startswith('on')
    out = dict(step_s=step_s, img_per_s=bs / step_s, build_s=round(build_s, 2),
               eager_s=round(eager_s, 2), first_step_s=round(first_s, 2),
               compile_s=round(max(first_s - step_s, 0.), 2) if on else None,
               compiled=compiled['compiled'], warmup_s=round(warmup_s, 2),
               timed_steps=s.timed_steps, host_syncs_per_step=syncs,
               host_syncs_method=sync_method, sync_ops_per_step=sync_ops,
               peak_mem_mb=mem['peak_mem_mb'], mem_method=mem['mem_method'],
               losses=losses, recipe=speed['config'],
               dynamo=dict(frames_first_step=first.frames, graph_breaks=first.graph_breaks
                           + later.graph_breaks, recompiles=later.frames,
                           reasons={**first.reasons, **later.reasons},
                           steps_after_first=s.warmup_steps - 1 + s.timed_steps),
               flipped=dict(flip),
               switches=switches(model, optim, compiled,
                                  nhwc if speed['channels_last_hook'] else None))
    if count and uncounted is None:
        out.update(flops_per_step=float(flops), gflops_per_img=flops / bs / 1e9,
                   tflops_per_s=flops / step_s / 1e12,
                   mfu_counted=flops / step_s / 1e12 / s.peak_tflops)
    elif count:
        out['flops_not_counted'] = uncounted
    plain = s.plain_gflops.get(method) or (flops / bs / 1e9 if flops else None)
    if count and plain:
        plain_tflops = plain * bs / step_s / 1e3
        out.update(plain_gflops_per_img=plain,
                   plain_flops_source='settings.plain_gflops (the plain step, counted)'
                   if s.plain_gflops.get(method) else 'this step (no plain count at this size)',
                   plain_tflops_per_s=plain_tflops, mfu=plain_tflops / s.peak_tflops)
    if breakdown and hasattr(model, 'corrupt'):
        out['breakdown'] = _breakdown(model, optim, data)
    return out


def _why_uncounted(model: torch.nn.Module) -> Optional[str]:
    """None where the counting modes (FLOPs, sync ops: dispatch modes) can run
    the model's eager step; else why they cannot."""
    if any(getattr(m, 'attn_impl', None) == 'flex' for m in model.modules()):
        return ("FlexAttention's eager call compiles itself, which dynamo refuses under "
                'a dispatch mode: not counted')
    return None


def _breakdown(model, optim, data: dict, steps: int = 2) -> dict:
    """Where a CIM step's time goes (:class:`CIMStepProfiler`: synchronised
    segments, so a little slower than the timed steps)."""
    prof = CIMStepProfiler(model, next(model.parameters()).device)
    for _ in range(steps):
        prof.step(data, optim)
    b = prof.breakdown()
    return dict(step_s=b['step_s'], segments_s=b['segments_s'],
                corruption_share=b['corruption_share'], enhancer_share=b['enhancer_share'])
