"""Run a small multi-process training N times and count the clean ones.

    python tools/dist_stress.py [--runs 20] [--procs 2] [--out DIR]
        [--config CONFIG] [-- extra tools/train.py args]

Each run is ``bash tools/dist_train.sh CONFIG PROCS --work-dir DIR/run_K`` on a
generated folder of images. A run counts as clean when it exits 0 and its
``epoch_1.pth`` (named by ``last_checkpoint``) loads. The default config is the
ResNet-50 recipe's launch setup at toy size: ``UnlabeledImageFolder``, batch 2,
2 persistent dataloader workers, pinned memory, one epoch, a checkpoint at the
epoch's end, SyncBN, and the recipe's hooks (NaN stop, RNG states, pictures,
skipped images, block compilation), on a half-width ResNet-18 with a random VQ
tokenizer (no weights needed). A failed run's log is kept and its last line
printed.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASE = osp.join(ROOT, 'configs', 'cim', 'cim-revdet_resnet18-w32_1xb64-500it_fashion-mnist-32px.py')


def write_images(folder: str, n: int, size: int = 40) -> str:
    """``folder/class_{0,1}/img_K.png``: ``n`` random RGB images."""
    import cv2
    import numpy as np
    rng = np.random.RandomState(0)
    for i in range(n):
        sub = osp.join(folder, f'class_{i % 2}')
        os.makedirs(sub, exist_ok=True)
        cv2.imwrite(osp.join(sub, f'img_{i}.png'),
                    rng.randint(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def write_config(path: str, data: str, workers: int) -> str:
    """The toy config described in the module docstring."""
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f'''\
            _base_ = {BASE!r}
            model = dict(backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
                         tokenizer=dict(checkpoint=None, allow_random_init=True))
            train_pipeline = [
                dict(type='SafeLoadImageFromFile', on_error='skip'),
                dict(type='GrayToRGB'),
                dict(type='RecordGreyMean'),
                dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.08, 1.0),
                     interpolation='bicubic', backend='pillow'),
                dict(type='CroppedColorJitter', brightness=0.4, contrast=0.4,
                     saturation=0.4, hue=0.),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='BEiTMaskGenerator', input_size=(8, 8), num_masking_patches=26,
                     max_num_patches=None, min_num_patches=4),
                dict(type='PackInputs'),
            ]
            train_dataloader = dict(
                _delete_=True, batch_size=2, num_workers={workers},
                persistent_workers={workers > 0}, pin_memory=True,
                sampler=dict(type='DefaultSampler', shuffle=True),
                collate_fn=dict(type='default_collate'),
                dataset=dict(type='UnlabeledImageFolder', data_root={data!r},
                             max_bad_share=0.01, pipeline=train_pipeline))
            param_scheduler = [dict(type='LinearLR', start_factor=1e-3, by_epoch=True,
                                    begin=0, end=1, convert_to_iter_based=True)]
            train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=1)
            default_hooks = dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                max_keep_ckpts=3))
            log_processor = dict(by_epoch=True)
            custom_hooks = [
                dict(type='NonFiniteLossHook'),
                dict(type='RNGStateHook'),
                dict(type='CIMVisualizationHook', interval=5000, num_images=8),
                dict(type='SkippedImagesHook'),
                dict(type='CompileBlocksHook', modules=('generator.backbone.layers', )),
            ]
        '''))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def checkpoint_ok(work: str) -> bool:
    """``last_checkpoint`` names ``epoch_1.pth`` and it loads."""
    sys.path.insert(0, ROOT)
    from cim_mm.utils import safe_load
    pointer = osp.join(work, 'last_checkpoint')
    if not osp.isfile(pointer):
        return False
    with open(pointer) as f:
        path = f.read().strip()
    if osp.basename(path) != 'epoch_1.pth' or not osp.isfile(path):
        return False
    try:
        return int(safe_load(path)['meta']['epoch']) == 1
    except Exception:  # noqa: BLE001  (any unreadable file is a failed run)
        return False


def last_line(log: str) -> str:
    """The most telling line of a failed run's log."""
    with open(log, errors='replace') as f:
        lines = [ln.rstrip() for ln in f if ln.strip()]
    for key in ('terminate called', 'Signal ', 'Error', 'error'):
        hits = [ln for ln in lines if key in ln]
        if hits:
            return hits[-1]
    return lines[-1] if lines else '(empty log)'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=20, help='how many runs (default 20)')
    parser.add_argument('--procs', type=int, default=2, help='processes per run (default 2)')
    parser.add_argument('--images', type=int, default=16,
                        help='images in the generated folder (default 16)')
    parser.add_argument('--workers', type=int, default=2,
                        help='dataloader workers per process, default config (default 2)')
    parser.add_argument('--config', default=None,
                        help='train this config instead of the toy one (its data_root '
                        'is set to the generated folder)')
    parser.add_argument('--out', default=None,
                        help='folder for data, config and runs (default: a temporary one)')
    parser.add_argument('--keep', action='store_true', help='keep the work dirs of clean runs')
    parser.add_argument('extra', nargs=argparse.REMAINDER,
                        help='after --: more tools/train.py arguments')
    args = parser.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ['--'] else args.extra

    out = args.out or tempfile.mkdtemp(prefix='dist_stress_')
    os.makedirs(out, exist_ok=True)
    data = write_images(osp.join(out, 'images'), args.images)
    if args.config is None:
        config = write_config(osp.join(out, 'stress.py'), data, args.workers)
    else:
        config = args.config
        extra = ['--cfg-options', f'train_dataloader.dataset.data_root={data}', *extra]
    env = dict(os.environ, PYTHON=os.environ.get('PYTHON', sys.executable),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH'))
                                          if p))
    clean, start = 0, time.time()
    for k in range(1, args.runs + 1):
        work = osp.join(out, f'run_{k}')
        shutil.rmtree(work, ignore_errors=True)
        log = osp.join(out, f'run_{k}.log')
        t0 = time.time()
        with open(log, 'w') as f:
            rc = subprocess.call(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config,
                                  str(args.procs), '--work-dir', work, *extra],
                                 cwd=ROOT, env=dict(env, PORT=str(free_port())),
                                 stdout=f, stderr=subprocess.STDOUT)
        ok = rc == 0 and checkpoint_ok(work)
        clean += ok
        print(f'run {k}/{args.runs}: {"ok" if ok else "FAILED"} (exit {rc}, '
              f'{time.time() - t0:.0f} s)' + ('' if ok else f': {last_line(log)} [{log}]'),
              flush=True)
        if ok:
            os.remove(log)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print(f'{clean}/{args.runs} runs exited 0 with their checkpoint '
          f'({time.time() - start:.0f} s; {out})')
    return 0 if clean == args.runs else 1


if __name__ == '__main__':
    sys.exit(main())
