"""AMP kill-and-resume through ``tools/train.py`` (the case the CPU tests skip).

A tiny CIM run (2-layer ViT at 64 px, the tiny DALL-E files, the JPEG folder,
random crops / flips / masks, Gumbel sampling) with ``AmpOptimWrapper(bf16,
dynamic loss scale)`` on CUDA (``OptimWrapper``, fp32, elsewhere):

1. ``tools/train.py`` SIGKILLed right after the checkpoint of iteration N,
   and, at the same time, the same run uninterrupted to 2N;
2. ``tools/train.py --resume`` of the killed run's work dir, to 2N.

Every iteration's losses are written by :class:`.hooks.GPUCheckLossLogHook`;
the resumed run must give the uninterrupted run's losses (within bf16
tolerance under AMP, like ``tests/engine/test_reliability.py``).
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import signal
import subprocess
import sys
import time

from .context import REPO_ROOT, CheckContext
from .models import TOY_GRID, TOY_IMG, TOY_MASK, TOY_TOK_IMG
from .settings import TOY_DALLE, TOY_GENERATOR, TOY_VIT

TOL_AMP = dict(rtol=1e-2, atol=1e-3)
TOL_FP32 = dict(rtol=1e-5, atol=1e-6)


def _dataset_type() -> dict:
    from mmpretrain.registry import DATASETS

    import cim_mm  # noqa: F401
    from cim_mm.compat import apply_all
    apply_all()
    if DATASETS.get('UnlabeledImageFolder') is not None:
        return dict(type='UnlabeledImageFolder')
    return dict(type='CustomDataset', with_label=False)


def train_config(ctx: CheckContext, iters: int, amp: bool, kill_at: int | None) -> dict:
    """The tiny run's config (no ``mmpretrain::`` bases: every key is here)."""
    tok = dict(type='DALLETokenizer', encoder_path=osp.join(ctx.toy_dalle_dir, 'encoder.pkl'),
               decoder_path=osp.join(ctx.toy_dalle_dir, 'decoder.pkl'),
               decode_dtype='bfloat16', **TOY_DALLE)
    model = dict(
        type='CIM',
        data_preprocessor=dict(type='CIMDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True,
                               tokenizer_img_size=TOY_TOK_IMG),
        backbone=dict(type='BEiTViT', arch=dict(TOY_VIT), img_size=TOY_IMG, patch_size=16,
                      out_type='featmap', final_norm=True, use_abs_pos_emb=False,
                      use_rel_pos_bias=False, use_shared_rel_pos_bias=True,
                      layer_scale_init_value=0.1),
        head=dict(type='ResPixHead', in_channels=TOY_VIT['embed_dims'], patch_size=16,
                  window_size=17),
        tokenizer=tok,
        generator=dict(type='BEiTGenerator', vocab_size=TOY_DALLE['vocab_size'],
                       backbone=dict(arch=dict(TOY_GENERATOR), img_size=TOY_TOK_IMG,
                                     patch_size=8)))
    pipeline = [
        dict(type='SafeLoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=TOY_IMG, crop_ratio_range=(0.08, 1.0),
             interpolation='bicubic', backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(TOY_MASK),
        dict(type='PackInputs'),
    ]
    assert TOY_MASK['input_size'] == (TOY_GRID, TOY_GRID)
    optim = dict(type='OptimWrapper', clip_grad=dict(max_norm=3.0),
                 optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    if amp:
        optim.update(type='AmpOptimWrapper', dtype='bfloat16', loss_scale='dynamic')
    hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'),
             dict(type='GPUCheckLossLogHook')]
    if kill_at is not None:
        hooks.append(dict(type='GPUCheckKillAtIterHook', at=kill_at))
    return dict(
        custom_imports=dict(imports=['cim_mm', 'cim_mm.compat.enable', 'benchmarks.gpu_check.hooks'],
                            allow_failed_imports=False),
        default_scope='mmpretrain',
        model=model,
        train_dataloader=dict(
            batch_size=4, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(_dataset_type(), data_root=ctx.jpeg_dir, pipeline=pipeline)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters),
        optim_wrapper=optim,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=2, end=iters)],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=iters // 2),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks,
        log_processor=dict(by_epoch=False),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl')),
        randomness=dict(seed=0),
        log_level='WARNING',
    )


def _write_config(cfg: dict, path: str) -> str:
    with open(path, 'w') as f:
        for k, v in cfg.items():
            f.write(f'{k} = {v!r}\n')
    return path


def _read_losses(work_dir: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    path = osp.join(work_dir, 'losses.jsonl')
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                out[int(rec.pop('iter'))] = rec
    return out


def _train_cmd(cfg_path: str, work_dir: str, resume: bool = False) -> list[str]:
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), cfg_path,
           '--work-dir', work_dir]
    return cmd + ['--resume'] if resume else cmd


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()[-n:]
    except OSError:
        return ''


def amp_resume(ctx: CheckContext) -> dict:
    """Kill, resume, compare (see the module doc)."""
    n = ctx.settings.resume_iters
    amp = ctx.is_cuda
    root = osp.join(ctx.tmp, 'resume')
    os.makedirs(root, exist_ok=True)
    cfg = _write_config(train_config(ctx, 2 * n, amp, None), osp.join(root, 'cfg.py'))
    cfg_kill = _write_config(train_config(ctx, 2 * n, amp, n), osp.join(root, 'cfg_kill.py'))
    killed, full = osp.join(root, 'killed'), osp.join(root, 'full')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    env.setdefault('OMP_NUM_THREADS', '1')
    procs: list[subprocess.Popen] = []
    t0 = time.perf_counter()

    def start(cmd: list[str], name: str) -> subprocess.Popen:
        log = open(osp.join(root, f'{name}.log'), 'w')
        p = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        p_kill = start(_train_cmd(cfg_kill, killed), 'killed')
        p_full = start(_train_cmd(cfg, full), 'full')
        rc_kill, rc_full = p_kill.wait(), p_full.wait()
        if rc_kill != -signal.SIGKILL:
            raise RuntimeError(f'the run to kill ended with {rc_kill}, not SIGKILL: '
                               + _tail(osp.join(root, 'killed.log')))
        if rc_full != 0:
            raise RuntimeError(f'the uninterrupted run failed ({rc_full}): '
                               + _tail(osp.join(root, 'full.log')))
        ckpt = osp.join(killed, f'iter_{n}.pth')
        if not osp.isfile(ckpt):
            raise RuntimeError(f'no checkpoint {ckpt} before the kill')
        rc_res = start(_train_cmd(cfg, killed, resume=True), 'resumed').wait()
        if rc_res != 0:
            raise RuntimeError(f'the resumed run failed ({rc_res}): '
                               + _tail(osp.join(root, 'resumed.log')))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    want, got = _read_losses(full), _read_losses(killed)
    its = list(range(1, 2 * n + 1))
    missing = [i for i in its if i not in want or i not in got]
    if missing:
        raise RuntimeError(f'losses missing at iterations {missing}')
    tol = TOL_AMP if amp else TOL_FP32
    max_abs = max_rel = 0.
    ok = exact = True
    for i in its:
        for k in ('loss_gen', 'loss_enh'):
            a, b = got[i][k], want[i][k]
            d = abs(a - b)
            max_abs = max(max_abs, d)
            max_rel = max(max_rel, d / max(abs(b), 1e-12))
            ok &= math.isfinite(a) and d <= tol['atol'] + tol['rtol'] * abs(b)
            exact &= a == b
    return dict(equal=bool(ok), bitwise_equal=bool(exact), max_abs_diff=max_abs,
                max_rel_diff=max_rel, iters=2 * n, killed_after=n, amp=amp,
                optim_wrapper='AmpOptimWrapper (bf16, dynamic loss scale)' if amp
                else 'OptimWrapper (fp32: no CUDA)', tolerance=tol,
                resumed_losses={i: got[i] for i in its if i > n},
                uninterrupted_losses={i: want[i] for i in its if i > n},
                seconds=round(time.perf_counter() - t0, 1))
