"""The stages of the GPU check other than the step timings and the resume run.

Each stage takes the :class:`~.context.CheckContext` and returns a dict of
figures; the runner (:mod:`.check`) times it, bounds it and records failures.
"""
from __future__ import annotations

import os
import os.path as osp
import time

import torch
import torch.nn.functional as F

from .assets import write_jpegs, write_official_dalle
from .context import REPO_ROOT, CheckContext
from .models import build_gpu_scale, recipe_loader_config
from .settings import TOY_DALLE


def assets(ctx: CheckContext, given_dalle_dir: str | None = None) -> dict:
    """DALL-E files in the official format (random weights unless given),
    the tiny ones of the resume run, and the JPEG folder; builds the scale."""
    s = ctx.settings
    out: dict = {}
    t0 = time.perf_counter()
    if given_dalle_dir:
        ctx.dalle_dir = given_dalle_dir
        out['dalle'] = dict(dir=given_dalle_dir, weights='given')
    else:
        ctx.dalle_dir = osp.join(ctx.tmp, 'dalle')
        info = write_official_dalle(ctx.dalle_dir, TOY_DALLE if s.dry_run else None)
        out['dalle'] = dict(info, weights='random (official format, written on the fly)')
    out['dalle']['write_s'] = round(time.perf_counter() - t0, 2)
    if s.dry_run and not given_dalle_dir:
        ctx.toy_dalle_dir = ctx.dalle_dir
    else:
        ctx.toy_dalle_dir = osp.join(ctx.tmp, 'dalle_toy')
        write_official_dalle(ctx.toy_dalle_dir, TOY_DALLE)
    t0 = time.perf_counter()
    jpegs = write_jpegs(osp.join(ctx.tmp, 'images'), s.num_images, s.jpeg_side)
    jpegs['write_s'] = round(time.perf_counter() - t0, 2)
    ctx.jpeg_dir = jpegs['dir']
    out['jpegs'] = jpegs
    ctx.scale = build_gpu_scale(ctx.dalle_dir, s.batch_size, toy=s.dry_run)
    ctx.batch_size = s.batch_size
    return out


def matmul(ctx: CheckContext) -> dict:
    """The device's measured matrix-product rate: bf16 8192^3 on CUDA (fp32
    512^3 on CPU), the mean of 10 after 3 warm-ups, on random data."""
    n, dtype = (8192, torch.bfloat16) if ctx.is_cuda else (512, torch.float32)
    a = torch.randn(n, n, device=ctx.device, dtype=dtype)
    b = torch.randn(n, n, device=ctx.device, dtype=dtype)
    for _ in range(3):
        a @ b
    ctx.sync()
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        a @ b
    ctx.sync()
    dt = (time.perf_counter() - t0) / reps
    return dict(n=n, dtype=str(dtype).replace('torch.', ''), tflops=2 * n**3 / dt / 1e12)


def loader(ctx: CheckContext) -> dict:
    """Images/s the recipe's loader sustains on the JPEG folder.

    The recipe's pipeline, collate and worker count (capped at CPUs - 1), with
    an ``InfiniteSampler`` (steady state: no epoch boundary on a small folder);
    the loader alone, nothing else runs. The first batch (worker start-up) is
    left out, then batches are drawn for ``settings.loader_seconds`` (at least
    3). When the machine has more CPUs than the recipe uses workers, the same
    again with CPUs - 1 workers (``img_per_s_all_cpus``). Keeps one batch in
    ``ctx.batch`` for the step timings.
    """
    s = ctx.settings
    top = max((os.cpu_count() or 1) - 1, 0)
    workers = min(s.num_workers, top)
    out = _time_loader(ctx, workers, keep_batch=True)
    if top > workers:
        more = _time_loader(ctx, top, keep_batch=False)
        out.update(img_per_s_all_cpus=more['img_per_s'], num_workers_all_cpus=top)
    return out


def loader_device_decode(ctx: CheckContext) -> dict:
    """The device-decode loader (``imagenet_bs256_cim_device-decode.py``):
    its workers' images/s as in :func:`loader` (the workers read the files and
    draw the augmentation), and its device stage (batched decode, crop, resize,
    jitter, flip: ``decode_and_augment``) on one batch, synchronised, the mean
    of ``settings.timed_steps`` after 2 warm-ups. ``img_per_s`` is the lower
    of the two: what the pair sustains when the device stage runs on the
    training stream (it adds its time to every step). ``decode_mean_abs_diff``:
    mean |device decode - CPU decode| of the batch's JPEGs, in grey levels."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from cim_mm.models.device_augment import decode_and_augment
    s = ctx.settings
    workers = min(s.num_workers, max((os.cpu_count() or 1) - 1, 0))
    batch: dict = {}
    out = _time_loader(ctx, workers, keep_batch=False, device_decode=True, keep=batch)
    first = batch['first']
    metas = [ds.metainfo for ds in first['data_samples']]
    run = lambda: decode_and_augment(first['inputs'], metas, ctx.device)  # noqa: E731
    for _ in range(2):
        run()
    ctx.sync()
    t0 = time.perf_counter()
    for _ in range(s.timed_steps):
        run()
    ctx.sync()
    dt = (time.perf_counter() - t0) / s.timed_steps
    n = len(metas)
    worker_rate = out['img_per_s']
    out.update(worker_img_per_s=worker_rate, device_stage_ms_per_batch=1e3 * dt,
               device_stage_img_per_s=n / dt, img_per_s=min(worker_rate, n / dt),
               worker_decoded=sum(1 for x in first['inputs'] if x.dim() != 1))
    jpegs = [x for x in first['inputs'] if x.dim() == 1][:32]
    if jpegs and ctx.is_cuda:
        dev = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device='cuda')
        cpu = decode_jpeg(jpegs, mode=ImageReadMode.RGB)
        out['decode_mean_abs_diff'] = float(torch.stack(
            [(a.cpu().float() - b.float()).abs().mean() for a, b in zip(dev, cpu)]).mean())
    return out


def _time_loader(ctx: CheckContext, workers: int, keep_batch: bool,
                 device_decode: bool = False, keep: dict | None = None) -> dict:
    from mmengine.runner import Runner
    s = ctx.settings
    cfg = recipe_loader_config(REPO_ROOT, ctx.jpeg_dir, s.batch_size, workers, s.dry_run,
                               device_decode=device_decode)
    recipe_sampler = cfg['sampler'].get('type')
    cfg['sampler'] = dict(type='InfiniteSampler', shuffle=True)
    t0 = time.perf_counter()
    dl = Runner.build_dataloader(cfg, seed=0)
    it = iter(dl)
    first = next(it)
    if keep_batch:
        ctx.batch = first
    if keep is not None:
        keep['first'] = first
    first_s = time.perf_counter() - t0
    n_img = n_batch = 0
    t0 = time.perf_counter()
    try:
        while n_batch < 3 or time.perf_counter() - t0 < s.loader_seconds:
            n_img += len(next(it)['data_samples'])
            n_batch += 1
        dt = time.perf_counter() - t0
    finally:
        del it, dl  # stops the workers
    ds = cfg['dataset']
    return dict(img_per_s=n_img / dt, batches=n_batch, seconds=round(dt, 2),
                first_batch_s=round(first_s, 2), num_workers=workers,
                cpu_count=os.cpu_count(), batch_size=s.batch_size,
                dataset=ds['type'], recipe_sampler=recipe_sampler,
                pipeline=[t['type'] for t in ds['pipeline']])


def decode(ctx: CheckContext) -> dict:
    """bf16 against fp32 DALL-E on the tokens of real crops, both inside an
    outer bf16 autocast (as ``AmpOptimWrapper`` runs the model).

    ``max_abs_diff_bf16_fp32``: max |image(decode_dtype bf16) - image(fp32)|
    in [0, 1] units; ``fp32_under_autocast_max_diff``: a ``decode_dtype=None``
    tokenizer inside the outer autocast against outside it (0: the outer
    autocast does not reach it); ``ids_agree``: share of tokens the bf16 and
    fp32 encoders agree on.
    """
    from mmpretrain.registry import MODELS

    from cim_mm.models.tokenizers import map_pixels
    s = ctx.settings
    cfg = dict(ctx.scale.tokenizer)
    toks = {}
    for dtype in (None, 'bfloat16'):
        toks[dtype] = MODELS.build(dict(cfg, decode_dtype=dtype)).to(ctx.device)
    size = ctx.scale.tokenizer_img_size
    img = ctx.batch['inputs'][:s.decode_batch].to(ctx.device).float() / 255.  # [B, 3, H, W]
    img = F.interpolate(img, size=(size, size), mode='bicubic', antialias=True,
                        align_corners=False).clamp(0, 1)
    x = map_pixels(img)  # [B, 3, h*8, w*8]
    outer = dict(device_type=ctx.device.type, dtype=torch.bfloat16)
    ids = toks[None].encode(x)  # [B, h, w]
    ref = toks[None].decode(ids)  # [B, 3, h*8, w*8] float32, no autocast
    with torch.autocast(**outer):
        ids16 = toks['bfloat16'].encode(x)
        img16 = toks['bfloat16'].decode(ids)
        img32_outer = toks[None].decode(ids)
        logits32_outer = toks[None].encode_logits(x)
    logits32 = toks[None].encode_logits(x)
    diff = (img16 - ref).abs()
    return dict(
        max_abs_diff_bf16_fp32=float(diff.max()), mean_abs_diff_bf16_fp32=float(diff.mean()),
        fp32_under_autocast_max_diff=float(
            max((img32_outer - ref).abs().max(), (logits32_outer - logits32).abs().max())),
        dtypes=dict(bf16=str(img16.dtype), fp32_outer=str(img32_outer.dtype)),
        ids_agree=float((ids16 == ids).float().mean()), images=int(img.shape[0]),
        tokenizer_px=size)
