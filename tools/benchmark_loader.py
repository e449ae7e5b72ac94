"""Images/s of one data-loader worker on real JPEGs, per transform.

    python tools/benchmark_loader.py [--config CONFIG] [--images 300] [--size 500 375]
        [--rounds 5] [--workers 1] [--seed 0] [--device-decode CONFIG]

Writes ``--images`` JPEGs (quality 90, ImageNet-like sizes: ``--size`` W H,
smooth random scenes with noise, as photos compress) to a temporary folder, then
runs two pipelines over them, in this process, one image after another (what
one worker does), timing each transform: the config's ``train_pipeline`` and
the baseline, BEiT v1's order (mmpretrain ``ColorJitter`` on the full image,
before the flip and the crop: the recipes' pipeline before
:class:`cim_mm.datasets.CroppedColorJitter`). The two alternate for
``--rounds`` rounds, so a machine shared with other jobs slows both alike; the
median round is reported. ``--workers N`` also times the config's pipeline
through a ``DataLoader`` with ``N`` workers and the config's collate function.

The device-decode loader (``--device-decode``, default
``configs/_base_/datasets/imagenet_bs256_cim_device-decode.py``; ``none`` to
skip) joins the rounds as a third pipeline: its workers read the file and draw
the parameters; the decode and the augmentation they leave to the device are
timed apart, here on this CPU (one thread, batches of 32): on a GPU,
``tools/gpu_check.sh`` times them.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers the transforms)

CONFIG = 'configs/_base_/datasets/imagenet_bs256_cim.py'
DEVICE_DECODE = 'configs/_base_/datasets/imagenet_bs256_cim_device-decode.py'
BASELINE = [  # BEiT v1 (mmpretrain configs/beit): colour jitter on the full image
    dict(type='SafeLoadImageFromFile', on_error='skip'),
    dict(type='GrayToRGB'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='BEiTMaskGenerator', input_size=(14, 14), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackInputs'),
]


def write_jpegs(folder: str, n: int, size: tuple[int, int], seed: int) -> list[str]:
    """``n`` JPEGs of ``size`` (W, H): a few smooth colour blobs plus noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        path = osp.join(folder, f'img_{i:05d}.jpg')
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def time_pipeline(pipeline: list[dict], paths: list[str], repeats: int
                  ) -> tuple[float, dict[str, float]]:
    """(images/s, ms per image per transform), one image after another."""
    transforms = Compose(pipeline).transforms
    per = {f'{i}:{type(t).__name__}': 0. for i, t in enumerate(transforms)}
    n = 0
    t_all = time.perf_counter()
    for _ in range(repeats):
        for path in paths:
            results = dict(img_path=path)
            for key, t in zip(per, transforms):
                t0 = time.perf_counter()
                results = t(results)
                per[key] += time.perf_counter() - t0
            n += 1
    seconds = time.perf_counter() - t_all
    return n / seconds, {k: 1e3 * v / n for k, v in per.items()}


def time_device_stage(pipeline: list[dict], paths: list[str], batch: int = 32) -> float:
    """ms per image of the device-decode loader's device stage (decode, crop,
    resize, jitter, flip), run here on the CPU in batches of ``batch``."""
    from mmengine.dataset import pseudo_collate

    from cim_mm.models.device_augment import decode_and_augment
    composed = Compose(pipeline)
    packed = pseudo_collate([composed(dict(img_path=p)) for p in paths])
    metas = [ds.metainfo for ds in packed['data_samples']]
    t0 = time.perf_counter()
    for i in range(0, len(paths), batch):
        decode_and_augment(packed['inputs'][i:i + batch], metas[i:i + batch],
                           torch.device('cpu'))
    return 1e3 * (time.perf_counter() - t0) / len(paths)


def time_dataloader(cfg: Config, pipeline: list[dict], folder: str, workers: int,
                    images: int) -> float:
    """Images/s through a ``DataLoader`` with ``workers`` workers (after the first batch)."""
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.train_dataloader)
    loader_cfg.update(batch_size=32, num_workers=workers, persistent_workers=False,
                      pin_memory=False)
    loader_cfg['dataset'] = dict(loader_cfg['dataset'], data_root=folder, pipeline=pipeline)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += batch['inputs'].shape[0]
        if n >= images:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--images', type=int, default=300)
    parser.add_argument('--size', type=int, nargs=2, default=(500, 375), metavar=('W', 'H'))
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--workers', type=int, default=0,
                        help='also time a DataLoader with this many workers (0: skip)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device-decode', default=DEVICE_DECODE,
                        help="the device-decode loader's config ('none': skip it)")
    args = parser.parse_args()

    init_default_scope('mmpretrain')
    torch.set_num_threads(1)  # a worker's share: one core
    cfg = Config.fromfile(osp.join(ROOT, args.config) if not osp.isabs(args.config)
                          else args.config)
    pipelines = {'baseline (jitter before crop)': BASELINE, args.config: cfg.train_pipeline}
    deferred = None
    if args.device_decode != 'none':
        dd = Config.fromfile(osp.join(ROOT, args.device_decode)
                             if not osp.isabs(args.device_decode) else args.device_decode)
        deferred = dd.train_dataloader.dataset.pipeline
        pipelines[f'{args.device_decode} (worker side)'] = deferred
    np.random.seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images, tuple(args.size), args.seed)
        rounds: dict[str, list[tuple[float, dict[str, float]]]] = {k: [] for k in pipelines}
        for name, pipeline in pipelines.items():
            time_pipeline(pipeline, paths[:10], 1)  # warm-up (imports, caches)
        for _ in range(args.rounds):
            for name, pipeline in pipelines.items():
                rounds[name].append(time_pipeline(pipeline, paths, 1))
        print(f'{args.images} JPEGs {args.size[0]}x{args.size[1]}, {args.rounds} rounds, '
              'median round:')
        rates = {}
        for name, runs in rounds.items():
            rate, per = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            rates[name] = rate
            print(f'{name}: {rate:.1f} images/s per worker ({1e3 / rate:.2f} ms/image; '
                  f'rounds {", ".join(f"{r:.1f}" for r, _ in runs)})')
            for key, ms in per.items():
                print(f'  {key:32s} {ms:6.2f} ms')
        base, new = list(rates.values())[:2]
        print(f'speed-up: {new / base:.2f}x')
        if deferred is not None:
            worker = list(rates.values())[2]
            print(f'device-decode worker against {args.config}: {worker / new:.2f}x')
            ms = time_device_stage(deferred, paths)
            print(f'its device stage on this CPU (1 thread, batches of 32): {ms:.2f} ms/image')
        if args.workers:
            rate = time_dataloader(cfg, cfg.train_pipeline, folder, args.workers,
                                   args.images)
            print(f'DataLoader, {args.workers} worker(s): {rate:.1f} images/s')

if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
