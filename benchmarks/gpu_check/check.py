"""Runs the stages of the GPU check in order, each under a hard time limit.

A stage that fails or runs past its limit is recorded (error line, seconds)
and the next one runs; results.json / results.md are rewritten after every
stage, so a run stopped from outside still leaves what it measured. A stage
gets ``min(its limit, what is left of the total budget)``; the limit is a
``SIGALRM`` in this process (and a kill of the child processes of the resume
run), the shell wrapper adds an outer ``timeout``.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from typing import Callable, Iterator, Optional

import torch

from . import results as R
from . import stages
from .context import REPO_ROOT, CheckContext
from .models import synthetic_batch
from .resume import amp_resume
from .fast_path import ENHANCER_SWITCH, GPU_SWITCHES, cpu_stand_in, gpu_switches, recipe_speed
from .models import model_config, speed_recipe
from .regressions import TOLERANCE, find_regressions
from .settings import (ENHANCER_METHODS, LARGE_BATCH_METHODS, METHODS, SWITCH_METHODS,
                       CheckSettings)
from .steps import time_method

# in order of what matters most, should the budget run out: the two loaders, the CIM-ResPix /
# BEiT v1 pair at both batch sizes first, the reference peers, then the
# ConvNeXt-T / Swin-T recipes last
STAGES = ('assets', 'matmul', 'loader', 'loader_device_decode', 'cim-respix', 'beit', 'switches', 'large_batch',
          'cim-resnet50', 'decode', 'amp_resume', 'cim-revdet', 'mae', 'cim-convnext-t',
          'cim-swin-t', 'enhancer_compile')
assert set(METHODS) <= set(STAGES)
# without these, nothing after can run
ESSENTIAL = ('assets', )
# these run on the batch the loader stage keeps
BATCH_STAGES = (*METHODS, 'large_batch', 'switches', 'enhancer_compile', 'decode')


class StageTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise StageTimeout(f'stopped at its {seconds:.0f} s limit')
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def device_info(device: torch.device) -> dict:
    import mmcv
    import mmengine
    import mmpretrain

    from ..cost import device_name
    info = dict(name=device_name(device), torch=torch.__version__,
                cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                python=platform.python_version(), mmengine=mmengine.__version__,
                mmcv=mmcv.__version__, mmpretrain=mmpretrain.__version__,
                cpu_count=os.cpu_count())
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        info.update(memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f'{props.major}.{props.minor}',
                    multiprocessors=props.multi_processor_count)
        info['driver'] = _run(['nvidia-smi', '--query-gpu=driver_version',
                               '--format=csv,noheader'])
    info['commit'] = project_commit()
    return info


def project_commit() -> str:
    """The project's commit: from git when this folder is a checkout (``+dirty``
    with uncommitted changes), else the one ``--pack-deps`` recorded beside the
    packed dependencies (a copy of the tree without ``.git``), else 'unknown'."""
    head = _run(['git', '-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])
    if head:
        dirty = _run(['git', '-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no'])
        return head + ('+dirty' if dirty else '')
    from .deps import read_commit
    packed = read_commit(os.environ.get('CIM_GPU_DEPS')
                         or os.path.join(REPO_ROOT, 'work_dirs', 'gpu_deps'))
    return f'{packed} (recorded by --pack-deps)' if packed else 'unknown'


def _run(cmd: list[str]) -> Optional[str]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _stage_fns(ctx: CheckContext, dalle_dir: Optional[str], res: dict) -> dict[str, Callable]:
    fns: dict[str, Callable] = dict(
        assets=lambda: stages.assets(ctx, dalle_dir),
        matmul=lambda: stages.matmul(ctx),
        loader=lambda: stages.loader(ctx),
        loader_device_decode=lambda: stages.loader_device_decode(ctx),
        decode=lambda: stages.decode(ctx),
        amp_resume=lambda: amp_resume(ctx),
        large_batch=lambda: _large_batch(ctx, res),
        switches=lambda: _switches(ctx, res),
        enhancer_compile=lambda: _enhancer_compile(ctx, res))
    for m in METHODS:
        fns[m] = (lambda m=m: time_method(ctx, m, breakdown=m == 'cim-respix'))
    return fns


def _large_batch(ctx: CheckContext, res: dict) -> dict:
    """CIM-ResPix and BEiT v1 at ``settings.large_batch``; each method's
    figures go into ``res['large_batch']`` as soon as they are there, so a
    stage stopped at its limit keeps the first."""
    out = res.setdefault('large_batch', {})
    out.clear()
    for m in LARGE_BATCH_METHODS:
        out[m] = time_method(ctx, m, batch_size=ctx.settings.large_batch)
    return out


def _switches(ctx: CheckContext, res: dict) -> dict:
    """Each GPU switch of the recipe set against it, one at a time, for the
    methods of ``SWITCH_METHODS``: the step with it on and off (the other
    value is the step as shipped, from the method's own stage)."""
    out = res.setdefault('switches', {})
    out.clear()
    for m in SWITCH_METHODS:
        rows = out.setdefault(m, {})
        for name in GPU_SWITCHES:
            rows[name] = _flipped_row(ctx, res, m, name)
    return out


def _enhancer_compile(ctx: CheckContext, res: dict) -> dict:
    """The feature-map recipes' ``compile_enhancer`` set against each recipe:
    the step with it on and off, per method as soon as it is there (a stage
    stopped at its limit keeps the first)."""
    out = res.setdefault('enhancer_compile', {})
    out.clear()
    for m in ENHANCER_METHODS:
        out[m] = {ENHANCER_SWITCH: _flipped_row(ctx, res, m, ENHANCER_SWITCH)}
    return out


def _flipped_row(ctx: CheckContext, res: dict, method: str, name: str) -> dict:
    """GPU switch ``name`` of ``method`` set against its recipe: the step with it
    on and off, the other value the step as shipped (the method's own stage)."""
    shipped = res['steps'].get(method) or {}
    on = gpu_switches(recipe_speed(speed_recipe(ctx.scale, method)),
                      model_config(ctx.scale, method))[name]
    with cpu_stand_in(name, ctx.is_cuda) as stand_in:
        x = time_method(ctx, method, count=False, flip={name: not on})
    flipped = dict(step_s=x['step_s'], compile_s=x['compile_s'], compiled=x['compiled'],
                   dynamo=x['dynamo'], compile_status=x['switches']['compile'],
                   attn_impl=x['switches'].get('attn_impl'),
                   host_syncs_per_step=x['host_syncs_per_step'])
    if stand_in:
        flipped['stand_in'] = stand_in
    step_on, step_off = ((shipped.get('step_s'), x['step_s']) if on
                         else (x['step_s'], shipped.get('step_s')))
    return dict(shipped='on' if on else 'off', step_on_s=step_on, step_off_s=step_off,
                flipped=flipped,
                on_over_off=step_on / step_off if step_on and step_off else None)


def run_check(settings: CheckSettings, out_dir: str, dalle_dir: Optional[str] = None,
              only: Optional[list[str]] = None, keep_tmp: bool = False,
              log: Callable[[str], None] = print, tolerance: float = TOLERANCE) -> dict:
    """Run the stages (``only``: a subset, plus what they need) and write
    ``out_dir/results.{json,md}``. Returns the results dict."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import cim_mm  # noqa: F401
    from cim_mm.compat import apply_all
    apply_all()
    init_default_scope('mmpretrain')
    # the current logger: mmengine's INFO lines (one per parameter group) off
    MMLogger.get_instance('cim_gpu_check', log_level='WARNING')
    if settings.dry_run:  # toy sizes: one thread is fastest and never oversubscribes
        torch.set_num_threads(1)
    t_start = time.perf_counter()
    deadline = t_start + settings.total_budget_s
    device = torch.device('cuda' if torch.cuda.is_available() and not settings.dry_run
                          else 'cpu')
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='cim_gpu_check_')
    ctx = CheckContext(settings=settings, device=device, tmp=tmp, log=log)
    res: dict = dict(
        dry_run=settings.dry_run, status='running',
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        device=device_info(device),
        settings=dict(settings.as_dict(), arch='ViT-B/16' if not settings.dry_run else
                      'toy ViT (2 layers, 32 dims, 16 px patches)',
                      peak_note='H100 SXM5 dense bf16 (datasheet); pass --peak-tflops '
                      'for another card (H100 PCIe: 756)',
                      precision='bf16 autocast (AmpOptimWrapper dtype=bfloat16)'
                      if device.type == 'cuda' else 'fp32 (no CUDA: OptimWrapper)'),
        stages={}, steps={}, notes=ctx.notes)
    log(f"gpu_check | device {res['device']['name']} | torch {torch.__version__} | "
        f"{'dry run' if settings.dry_run else 'full size'} | out {out_dir}")
    need_batch = only is not None and any(o in BATCH_STAGES for o in only)
    wanted = [s for s in STAGES if only is None or s in only or s in ESSENTIAL
              or (s == 'loader' and need_batch)]
    fns = _stage_fns(ctx, dalle_dir, res)
    try:
        for name in wanted:
            left = deadline - time.perf_counter()
            limit = min(settings.stage_limits_s.get(name, 60), left)
            rec: dict = dict(ok=False, limit_s=round(limit, 1))
            res['stages'][name] = rec
            needs_batch = name in BATCH_STAGES
            if limit < 3:
                rec.update(error='skipped: the total budget is spent', seconds=0.)
            elif any(not res['stages'].get(e, {}).get('ok') for e in ESSENTIAL) \
                    and name not in ESSENTIAL:
                rec.update(error='skipped: the assets stage failed', seconds=0.)
            else:
                if needs_batch and ctx.batch is None:  # the loader stage failed
                    ctx.batch = synthetic_batch(ctx.scale, settings.batch_size)
                    ctx.notes.append('the loader stage failed: the steps ran on random '
                                     'images and masks (synthetic batch)')
                _run_stage(name, fns[name], limit, rec, res, ctx, log)
            res['summary'] = R.summarise(res)
            res['wall_s'] = time.perf_counter() - t_start
            R.write(res, out_dir)
        failed = [n for n, st in res['stages'].items() if not st['ok']]
        res['status'] = 'complete' if not failed else f"{len(failed)} stage(s) failed: " \
            + ', '.join(failed)
        res['regressions'] = find_regressions(res, tolerance=tolerance)
        if res['regressions']:
            res['status'] = f"REGRESSION ({len(res['regressions'])}); " + res['status']
            for line in res['regressions']:
                log(f'gpu_check | REGRESSION: {line}')
        res['missing_fields'] = R.missing_fields(res) if only is None else []
    finally:
        res['wall_s'] = time.perf_counter() - t_start
        if res['status'] == 'running':
            res['status'] = 'interrupted'
        R.write(res, out_dir)
        if not keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"gpu_check | {res['status']} in {res['wall_s']:.0f} s | "
        f"{out_dir}/results.md")
    return res


def _run_stage(name: str, fn: Callable, limit: float, rec: dict, res: dict,
               ctx: CheckContext, log: Callable[[str], None]) -> None:
    log(f'gpu_check | {name} (limit {limit:.0f} s) ...')
    t0 = time.perf_counter()
    try:
        with time_limit(limit):
            out = fn()
        if name in METHODS:
            res['steps'][name] = out
        else:
            res[name] = out
        rec['ok'] = True
    except (Exception, StageTimeout) as err:  # recorded, not fatal
        msg = str(err).strip().splitlines()
        rec['error'] = f"{type(err).__name__}: {msg[0] if msg else ''}"[:300]
        rec['traceback'] = traceback.format_exc()[-3000:]
        log(f'gpu_check | {name} FAILED: {rec["error"]}')
    finally:
        rec['seconds'] = round(time.perf_counter() - t0, 2)
        if ctx.is_cuda:
            torch.cuda.empty_cache()
    if rec['ok']:
        log(f'gpu_check | {name} ok in {rec["seconds"]:.1f} s: {_brief(name, res)}')


def _brief_step(x: dict) -> str:
    mfu, comp = x.get('mfu'), x.get('compile_s')
    dyn = x.get('dynamo') or {}
    return (f"batch {x['batch_size']}, {x['step_s']:.4f} s/step, "
            f"{x['img_per_s']:.1f} img/s, peak {x['peak_mem_mb']:.0f} MB"
            + (f', MFU {100 * mfu:.1f} %' if mfu is not None else '')
            + f", {x['host_syncs_per_step']} host syncs"
            + (f', compile {comp:.1f} s' if comp is not None else '')
            + f", {dyn.get('recompiles', 0)} recompiles"
            + f", {dyn.get('graph_breaks', 0)} graph breaks")


def _f4(v: Optional[float]) -> str:
    return '–' if v is None else f'{v:.4f}'


def _brief(name: str, res: dict) -> str:
    x = res['steps'].get(name) if name in METHODS else res.get(name)
    if name in METHODS:
        return _brief_step(x)
    if name == 'large_batch':
        return '; '.join(f'{m}: {_brief_step(v)}' for m, v in x.items())
    if name in ('switches', 'enhancer_compile'):
        return '; '.join(f"{m} {k} (shipped {v['shipped']}): " + (
            f"skipped ({v['skipped']})" if v.get('skipped') else
            f"on {_f4(v['step_on_s'])} / off {_f4(v['step_off_s'])} s")
            for m, sw in x.items() for k, v in sw.items())
    if name == 'loader':
        return f"{x['img_per_s']:.1f} img/s with {x['num_workers']} workers"
    if name == 'loader_device_decode':
        return (f"workers {x['worker_img_per_s']:.1f} img/s ({x['num_workers']}), device "
                f"stage {x['device_stage_ms_per_batch']:.1f} ms per batch")
    if name == 'matmul':
        return f"{x['tflops']:.1f} TFLOP/s"
    if name == 'decode':
        return f"max |bf16 - fp32| {x['max_abs_diff_bf16_fp32']:.3g}"
    if name == 'amp_resume':
        return f"equal {x['equal']} (max rel. diff {x['max_rel_diff']:.2g})"
    return ''
