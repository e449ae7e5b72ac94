"""Where a GPU training step's time goes: ``torch.profiler`` over a few steps.

    python tools/gpu_profile.py [--dry-run] [--out DIR] [--methods cim-respix,beit]
        [--batch-size 128] [--steps 3]

A follow-up to ``tools/gpu_check.sh`` (docs/gpu/README.md), whose H200 run found
11.5 % MFU for CIM-ResPix and 11.9 % for mmpretrain's own BEiT v1. Same models,
same optimizer wrapper (the recipe's ``AmpOptimWrapper``, bf16), on a synthetic
batch (random uint8 images and masks: step time does not depend on the pixels).
Per method it writes to ``OUT/profile.{json,md}``:

* the step time as built, and with the optimizer rebuilt two ways (same
  hyper-parameters per tensor): ``fused=True`` on the recipe's param groups,
  and the param groups merged by equal hyper-parameters + ``fused=True``.
  mmengine's constructor makes one group per tensor when ``paramwise_cfg`` is
  set, which defeats AdamW's ``foreach`` batching (it works within a group);
* the share of the step the GPU is busy (kernel time / wall time) and the
  kernel time by kind (matrix products, attention, element-wise, reductions,
  optimizer, copies), plus the top kernels and top CPU ops.

``--dry-run``: toy sizes on the CPU (a rehearsal of the code path; < 1 min).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import sys
import warnings
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import
import gpu_check  # noqa: E402,F401  (puts the packed OpenMMLab stack on the path)

import torch  # noqa: E402

KINDS = (  # first match wins; lower-case substrings of kernel names
    ('optimizer', ('multi_tensor', 'foreach', 'adam', 'fused_adam', 'unscale', 'non_finite')),
    ('attention', ('flash', 'fmha', 'attention', 'softmax', 'sdpa', 'efficient_attn')),
    ('matmul', ('gemm', 'cutlass', 'sm90_xmma', 'xmma', 'matmul', 'cublas', 'nvjet', 'addmm',
                'conv', 'implicit')),
    ('reduction', ('reduce', 'norm', 'sum', 'mean', 'max', 'argmax')),
    ('copy', ('copy', 'cat', 'index', 'gather', 'scatter', 'memcpy', 'memset', 'fill')),
    ('elementwise', ('elementwise', 'vectorized', 'unrolled', 'pointwise')),
)


def kind_of(name: str) -> str:
    n = name.lower()
    for kind, keys in KINDS:
        if any(k in n for k in keys):
            return kind
    return 'other'


def is_range(name: str) -> bool:
    """A ``record_function`` range (``Optimizer.step#AdamW.step``), not a kernel."""
    return re.fullmatch(r'[\w.]+#[\w.]+', name) is not None or name.startswith('ProfilerStep#')


def merged_groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's param groups merged where every hyper-parameter is equal."""
    merged: dict[tuple, dict] = {}
    for g in optimizer.param_groups:
        hp = {k: v for k, v in g.items() if k != 'params'}
        key = tuple(sorted((k, repr(v)) for k, v in hp.items()))
        merged.setdefault(key, dict(hp, params=[]))['params'].extend(g['params'])
    return list(merged.values())


def rebuild_adamw(optim_wrapper, merge: bool, fused: bool) -> None:
    """Replace the wrapper's AdamW by a fresh one (same hyper-parameters per tensor)."""
    old = optim_wrapper.optimizer
    groups = merged_groups(old) if merge else [dict(g) for g in old.param_groups]
    for g in groups:
        for k in ('foreach', 'fused', 'capturable', 'differentiable'):
            g.pop(k, None)
    new = torch.optim.AdamW(groups, lr=old.defaults['lr'], fused=fused)
    optim_wrapper.optimizer = new


def time_steps(step, n: int, sync) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - t0) / n


def stacked_variants(model, optim, step, timed: int, sync, compile_: bool) -> dict:
    """On top of merged + fused AdamW (already in ``optim``): the frozen tokenizer in
    ``channels_last``, then (``compile_``) the enhancer backbone ``torch.compile``d."""
    out: dict = {}
    try:
        for name in ('tokenizer', 'target_generator'):
            if getattr(model, name, None) is not None:
                getattr(model, name).to(memory_format=torch.channels_last)
        rebuild_adamw(optim, merge=True, fused=next(model.parameters()).is_cuda)
        for _ in range(2):
            step()
        out['merged+fused+channels_last'] = time_steps(step, timed, sync)
        if compile_:
            t0 = time.perf_counter()
            model.backbone.compile()
            for _ in range(2):
                step()
            sync()
            out['compile_s'] = time.perf_counter() - t0
            out['merged+fused+channels_last+compiled_backbone'] = time_steps(step, timed, sync)
    except Exception as err:  # noqa: BLE001  (keep the figures already taken)
        out['error'] = f'{type(err).__name__}: {err}'[:300]
    return out


def profile_method(method: str, scale, batch: dict, device: torch.device, steps: int,
                   timed: int, stack: bool = False, compile_: bool = False) -> dict:
    from benchmarks.gpu_check.models import (build_model, build_optim_wrapper,
                                                   method_batch)
    cuda = device.type == 'cuda'

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    model = build_model(scale, method, device)
    optim = build_optim_wrapper(model, scale, device)
    data = method_batch(batch, method, batch['inputs'].shape[0])

    def step() -> None:
        model.train_step(data, optim)

    out: dict = dict(
        param_groups=len(optim.optimizer.param_groups),
        param_tensors=sum(len(g['params']) for g in optim.optimizer.param_groups),
        merged_groups=len(merged_groups(optim.optimizer)),
        optimizer=type(optim.optimizer).__name__,
        wrapper=type(optim).__name__)
    for _ in range(3):
        step()
    out['step_s'] = time_steps(step, timed, sync)

    acts = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    sync()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync()
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    dev = torch.autograd.DeviceType.CUDA
    on_gpu = [e for e in ka if e.device_type == dev] if cuda else []
    # user ranges (``Optimizer.step#AdamW.step``) show on the GPU timeline too: they
    # span kernels counted on their own, so they are reported apart, not summed
    ranges = [e for e in on_gpu if is_range(e.key)]
    kernels = [e for e in on_gpu if not is_range(e.key)]
    out['gpu_ranges_ms_per_step'] = {e.key: e.self_device_time_total / 1e3 / steps
                                     for e in ranges}
    busy_us = sum(e.self_device_time_total for e in kernels)
    by_kind: dict[str, float] = {}
    for e in kernels:
        k = kind_of(e.key)
        by_kind[k] = by_kind.get(k, 0.) + e.self_device_time_total / 1e3 / steps
    out['profiled_step_s'] = wall / steps
    out['gpu_busy_share'] = busy_us / 1e6 / wall if cuda else None
    out['kernel_ms_per_step'] = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))
    # the profiler slows the host, not the kernels: kernel time over the unprofiled step
    # says how busy the GPU is in real training (the busy share above is a lower bound)
    out['kernel_share_of_step'] = sum(by_kind.values()) / 1e3 / out['step_s'] if cuda else None
    out['kernel_launches_per_step'] = sum(e.count for e in kernels) / steps
    out['top_kernels'] = [
        dict(name=e.key[:120], kind=kind_of(e.key), ms_per_step=e.self_device_time_total
             / 1e3 / steps, calls_per_step=e.count / steps)
        for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:25]]
    cpu_ops = [e for e in ka if e.device_type != dev]
    out['top_cpu_ops'] = [
        dict(name=e.key[:120], self_cpu_ms_per_step=e.self_cpu_time_total / 1e3 / steps,
             calls_per_step=e.count / steps)
        for e in sorted(cpu_ops, key=lambda e: -e.self_cpu_time_total)[:20]]

    variants = {}
    for name, merge, fused in (('fused', False, True), ('merged+fused', True, True),
                               ('merged+foreach', True, False)):
        try:
            rebuild_adamw(optim, merge=merge, fused=fused)
            for _ in range(2):
                step()
            variants[name] = time_steps(step, timed, sync)
        except Exception as err:  # noqa: BLE001  (keep the figures already taken)
            variants[name] = f'{type(err).__name__}: {err}'[:300]
    out['optimizer_variants_step_s'] = variants
    if stack:
        out['stacked_step_s'] = stacked_variants(model, optim, step, timed, sync, compile_)
    del model, optim
    if cuda:
        torch.cuda.empty_cache()
    return out


def markdown(res: dict) -> str:
    lines = ['# GPU step profile', '',
             f"- device: **{res['device']}**, torch {res['torch']}; batch {res['batch_size']}; "
             f"{res['steps']} profiled steps; {'dry run (CPU, toy sizes)' if res['dry_run'] else 'ViT-B/16, bf16 autocast'}",
             f"- date: {res['date']}; wall {res['wall_s']:.0f} s", '']
    for m, r in res['methods'].items():
        if 'error' in r:
            lines += [f'## {m}', '', f"error: {r['error']}", '']
            continue
        busy = r['gpu_busy_share']
        lines += [f'## {m}', '',
                  f"- step {r['step_s']:.4f} s as built ({r['wrapper']}, {r['optimizer']}: "
                  f"{r['param_groups']} param groups for {r['param_tensors']} tensors; "
                  f"{r['merged_groups']} groups when merged by equal hyper-parameters)",
                  '- optimizer rebuilt: ' + (', '.join(
                      f'{k} {v:.4f} s' if isinstance(v, float) else f'{k}: {v}'
                      for k, v in r['optimizer_variants_step_s'].items())
                      or 'none (CPU)'),
                  f"- kernel time {sum(r['kernel_ms_per_step'].values()):.1f} ms per step = "
                  f"{r['kernel_share_of_step']:.0%} of the unprofiled step; GPU busy {busy:.0%} "
                  f"of the profiled step ({r['profiled_step_s']:.4f} s), "
                  f"{r['kernel_launches_per_step']:.0f} kernel launches per step; GPU span of "
                  + (', '.join(f'{k} {v:.1f} ms' for k, v in r['gpu_ranges_ms_per_step'].items())
                     or 'no range')
                  if busy is not None else '- no GPU (dry run)', '']
        if r['kernel_ms_per_step']:
            lines += ['| kernel kind | ms / step |', '|---|---|'] + [
                f'| {k} | {v:.1f} |' for k, v in r['kernel_ms_per_step'].items()] + ['']
            lines += ['| top kernel | kind | ms / step | calls / step |', '|---|---|---|---|'] + [
                f"| `{k['name'][:80]}` | {k['kind']} | {k['ms_per_step']:.2f} | "
                f"{k['calls_per_step']:.0f} |" for k in r['top_kernels'][:15]] + ['']
        if r.get('stacked_step_s'):
            lines += ['- stacked: ' + ', '.join(
                f'{k} {v:.4f} s' if isinstance(v, float) else f'{k}: {v}'
                for k, v in r['stacked_step_s'].items()), '']
        lines += ['| top CPU op | self CPU ms / step | calls / step |', '|---|---|---|'] + [
            f"| `{k['name'][:60]}` | {k['self_cpu_ms_per_step']:.1f} | {k['calls_per_step']:.0f} |"
            for k in r['top_cpu_ops'][:12]] + ['']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dry-run', action='store_true')
    p.add_argument('--out', default=None)
    p.add_argument('--methods', default='cim-respix,beit')
    p.add_argument('--batch-size', type=int, default=None)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--stack', action='store_true',
                   help='also time merged + fused AdamW with a channels_last tokenizer')
    p.add_argument('--compile', action='store_true',
                   help='with --stack: then torch.compile the enhancer backbone too')
    a = p.parse_args(argv)
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import cim_mm  # noqa: F401
    from cim_mm.compat import apply_all
    apply_all()
    from benchmarks.gpu_check.assets import write_official_dalle
    from benchmarks.gpu_check.check import device_info
    from benchmarks.gpu_check.models import build_gpu_scale, synthetic_batch
    from benchmarks.gpu_check.settings import TOY_DALLE
    init_default_scope('mmpretrain')
    MMLogger.get_instance('cim_gpu_profile', log_level='WARNING')
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available() and not a.dry_run
    if not cuda and not a.dry_run:
        print('gpu_profile.py: no CUDA device; use --dry-run to rehearse on the CPU',
              file=sys.stderr)
        return 2
    device = torch.device('cuda' if cuda else 'cpu')
    if not cuda:
        torch.set_num_threads(1)
    bs = a.batch_size or (128 if cuda else 4)
    out_dir = a.out or tempfile.mkdtemp(prefix='cim_gpu_profile_')
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='cim_gpu_profile_dalle_')
    write_official_dalle(tmp, None if cuda else TOY_DALLE)
    scale = build_gpu_scale(tmp, bs, toy=not cuda)
    batch = synthetic_batch(scale, bs)
    res: dict = dict(device=device_info(device)['name'], torch=torch.__version__,
                     dry_run=not cuda, batch_size=bs, steps=a.steps,
                     date=time.strftime('%Y-%m-%dT%H:%M:%S%z'), methods={})
    for m in a.methods.split(','):
        print(f'gpu_profile | {m} ...', flush=True)
        try:
            res['methods'][m] = profile_method(m, scale, batch, device, a.steps,
                                               timed=10 if cuda else 2, stack=a.stack,
                                               compile_=a.compile)
        except Exception as err:  # noqa: BLE001  (record it; the next method runs)
            res['methods'][m] = dict(error=f'{type(err).__name__}: {err}')
        r = res['methods'][m]
        print(f"gpu_profile | {m}: " + (r.get('error') or
              f"step {r['step_s']:.4f} s, variants {json.dumps(r['optimizer_variants_step_s'])}, "
              f"busy {r['gpu_busy_share']}"), flush=True)
        res['wall_s'] = time.perf_counter() - t_start
        with open(osp.join(out_dir, 'profile.json'), 'w') as f:
            json.dump(res, f, indent=1)
        with open(osp.join(out_dir, 'profile.md'), 'w') as f:
            f.write(markdown(res))
    print(f'gpu_profile | done in {res["wall_s"]:.0f} s | {out_dir}/profile.md')
    return 1 if any('error' in r for r in res['methods'].values()) else 0


if __name__ == '__main__':
    sys.exit(main())
