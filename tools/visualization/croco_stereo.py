"""CroCo on a real stereo pair: complete one view from the other.

    python tools/visualization/croco_stereo.py \
        [--out benchmarks/results/croco_stereo/croco_stereo.png] \
        [--steps 600] [--crop 64] [--patch 8] [--width 320] [--seed 0] [--pair-dir DIR]

The pair is the Middlebury 2014 "motorcycle" pair that scikit-image ships in
its wheel (``skimage.data.stereo_motorcycle``): read from an installed
scikit-image, else from the wheel itself (``pip download scikit-image
--no-deps`` into ``work_dirs/stereo_pair/``; nothing is installed), or from
``--pair-dir`` (``left.png`` + ``right.png``, rectified). Both views are
resized to ``--width``.

Training pairs are crops at the same place of the left and the right view (the
pair is rectified: a point of one lies on the same row of the other, shifted by
its disparity), from the top 70 % of the rows, roles swapped at random. A
CroCo of the benchmark's size (``configs/benchmarks_peers/croco_vit-tiny-p4_*``:
MAEViT 6x128 encoder, 2-block CroCo decoder, 90 % of view 1 masked, normalised
pixel loss) at ``--patch`` on ``--crop`` px is trained for ``--steps`` steps.

Held out: crops of the bottom 30 % of the rows. Each is completed twice with
the same mask: with its own view 2 (the right view at that place) and with a
view 2 from elsewhere in the held-out rows (the control). The picture: view 1,
its visible patches, view 2, the completion, the control's view 2 and its
completion; the completions are un-normalised with each masked patch's own mean
and variance (what the normalised-pixel loss leaves free, as MAE's pictures do).
``OUT.json``: the loss with the pair and with the control over 256 held-out crops
(mean, its standard error, the share of crops the pair completes better).
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import logging
import math
import os
import os.path as osp
import subprocess
import sys
import warnings
import zipfile

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from PIL import Image  # noqa: E402

import benchmarks.models  # noqa: E402,F401  (registers CroCo)
from cim_mm.engine.hooks.visualization_hook import save_png  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402

CONFIG = 'configs/benchmarks_peers/croco_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'
OUT = 'benchmarks/results/croco_stereo/croco_stereo.png'
WHEEL_DIR = osp.join(ROOT, 'work_dirs', 'stereo_pair')
WHEEL_FILES = ('skimage/data/motorcycle_left.png', 'skimage/data/motorcycle_right.png')
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)  # ImageNet RGB, 0..255
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
TRAIN_ROWS = 0.7  # the top 70 % of the rows train, the rest is held out
BATCH = 32
HELD_OUT = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=osp.join(ROOT, OUT),
                   help=f'the picture; the figures go beside it, as .json (default: {OUT})')
    p.add_argument('--steps', type=int, default=600)
    p.add_argument('--crop', type=int, default=64)
    p.add_argument('--patch', type=int, default=8)
    p.add_argument('--width', type=int, default=320)
    p.add_argument('--num', type=int, default=4, help='rows of the picture')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--pair-dir', help='a folder with left.png and right.png')
    return p.parse_args(argv)


# ------------------------------------------------------------------ the pair
def _from_wheel() -> list[Image.Image]:
    wheels = sorted(glob.glob(osp.join(WHEEL_DIR, 'scikit_image-*.whl')))
    if not wheels:
        os.makedirs(WHEEL_DIR, exist_ok=True)
        rc = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-q',
                             '-d', WHEEL_DIR, 'scikit-image'], capture_output=True).returncode
        wheels = sorted(glob.glob(osp.join(WHEEL_DIR, 'scikit_image-*.whl')))
        if rc or not wheels:
            raise UserError('no stereo pair: scikit-image (which ships the Middlebury '
                            'motorcycle pair) is neither installed nor downloadable; '
                            'pip install scikit-image, or give --pair-dir DIR with '
                            'left.png and right.png')
    with zipfile.ZipFile(wheels[-1]) as z:
        return [Image.open(io.BytesIO(z.read(name))).convert('RGB') for name in WHEEL_FILES]


def load_pair(pair_dir: str | None, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The left and right views ``[H, W, 3]`` uint8, resized to ``width``."""
    if pair_dir is not None:
        paths = [osp.join(pair_dir, f'{side}.png') for side in ('left', 'right')]
        missing = [p for p in paths if not osp.isfile(p)]
        if missing:
            raise UserError(f'--pair-dir {pair_dir}: {missing[0]} not found (the folder '
                            'needs left.png and right.png, a rectified pair)')
        views = [Image.open(p).convert('RGB') for p in paths]
    else:
        try:
            from skimage.data import stereo_motorcycle
            left, right, _ = stereo_motorcycle()
            views = [Image.fromarray(left), Image.fromarray(right)]
        except ImportError:
            views = _from_wheel()
    if views[0].size != views[1].size:
        raise UserError(f'the two views differ in size ({views[0].size} vs {views[1].size}): '
                        'a rectified pair has one size')
    w, h = views[0].size
    size = (width, round(h * width / w))
    return tuple(np.asarray(v.resize(size, Image.BICUBIC)) for v in views)


def crops(left: np.ndarray, right: np.ndarray, tops: np.ndarray, lefts: np.ndarray,
          size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View 1 (left) and view 2 (right) crops at the same places, ``[N, 3, s, s]``
    float 0..255."""
    def cut(img: np.ndarray) -> torch.Tensor:
        out = np.stack([img[t:t + size, x:x + size] for t, x in zip(tops, lefts)])
        return torch.from_numpy(out).permute(0, 3, 1, 2).float()  # [N, 3, s, s]
    return cut(left), cut(right)


def places(rng: np.random.Generator, n: int, rows: tuple[int, int], width: int,
           size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random crop corners whose crops lie inside rows ``[r0, r1)``."""
    r0, r1 = rows
    if r1 - r0 < size or width < size:
        raise UserError(f'--crop {size} does not fit the {r1 - r0} x {width} px region: '
                        'lower --crop or raise --width')
    return rng.integers(r0, r1 - size + 1, n), rng.integers(0, width - size + 1, n)


# ----------------------------------------------------------------- the model
def build_croco(crop: int, patch: int) -> torch.nn.Module:
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = Config.fromfile(osp.join(ROOT, CONFIG)).model
    model.pop('data_preprocessor')  # the views are normalised here
    model.backbone.update(img_size=crop, patch_size=patch)
    model.neck.update(num_patches=(crop // patch)**2, patch_size=patch)
    model.head.update(patch_size=patch)
    croco = MODELS.build(model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every tensor's initialiser
    try:
        croco.init_weights()
    finally:
        logger.setLevel(level)
    return croco


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def completion(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss per image ``[N]``, the completed view 1 ``[N, 3, s, s]`` (normalised)
    and the mask ``[N, L]`` (1 = masked); the mask drawn from ``seed``."""
    torch.manual_seed(seed)  # the same mask for the pair and the control
    pred, mask = model.reconstruct(x1, x2)  # [N, L, p * p * 3], [N, L]
    target = model.head.construct_target(x1)  # [N, L, p * p * 3], per-patch normalised
    per_patch = ((pred - target)**2).mean(-1)  # [N, L]
    loss = (per_patch * mask).sum(1) / mask.sum(1)  # [N]
    patches = model.head.patchify(x1)  # [N, L, p * p * 3]
    mu = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    filled = pred * (var + 1e-6).sqrt() + mu  # the patch's own statistics
    out = torch.where(mask.bool()[..., None], filled, patches)
    return loss, model.head.unpatchify(out), mask


def train(model: torch.nn.Module, left: np.ndarray, right: np.ndarray, args: argparse.Namespace,
          rows: tuple[int, int]) -> list[float]:
    rng = np.random.default_rng(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    warm = max(1, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1., (i + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(1., i / max(1, args.steps)))))
    losses = []
    model.train()
    for step in range(args.steps):
        x1, x2 = crops(left, right, *places(rng, BATCH, rows, left.shape[1], args.crop),
                       args.crop)
        swap = torch.from_numpy(rng.random(BATCH) < 0.5)[:, None, None, None]
        x1, x2 = torch.where(swap, x2, x1), torch.where(swap, x1, x2)  # either view first
        pred, mask = model.reconstruct(normalise(x1), normalise(x2))
        loss = model.head.loss(pred, normalise(x1), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            print(f'croco_stereo: step {step + 1}/{args.steps}, loss '
                  f'{np.mean(losses[-100:]):.4f}', flush=True)
    return losses


# ---------------------------------------------------------------- the picture
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    img = (x * STD + MEAN).clamp(0, 255).round().byte()  # [N, 3, s, s]
    return img.permute(0, 2, 3, 1).numpy()


def _visible(x: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    g = x.shape[-1] // patch
    m = mask.view(-1, 1, g, g).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    grey = normalise(torch.full_like(x[:1], 128.))
    return torch.where(m.bool(), grey, x)


def picture(columns: list[np.ndarray], scale: int = 2, gap: int = 4) -> np.ndarray:
    """Columns of ``[N, s, s, 3]`` images side by side, one row per image."""
    n, s = columns[0].shape[:2]
    big = s * scale
    canvas = np.full((n * (big + gap) + gap, len(columns) * (big + gap) + gap, 3), 255, np.uint8)
    for c, col in enumerate(columns):
        for r in range(n):
            tile = col[r].repeat(scale, 0).repeat(scale, 1)
            y, x = gap + r * (big + gap), gap + c * (big + gap)
            canvas[y:y + big, x:x + big] = tile
    return canvas


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with user_errors_as_one_line('croco_stereo.py'):
        if args.crop % args.patch:
            raise UserError(f'--crop {args.crop} is not a multiple of --patch {args.patch}')
        torch.manual_seed(args.seed)
        left, right = load_pair(args.pair_dir, args.width)
        h, w = left.shape[:2]
        split = int(h * TRAIN_ROWS)
        model = build_croco(args.crop, args.patch)
        losses = train(model, left, right, args, (0, split))
        model.eval()
        rng = np.random.default_rng(args.seed + 1)
        tops, xs = places(rng, HELD_OUT, (split, h), w, args.crop)
        other = rng.permutation(HELD_OUT)  # the control's view 2: another held-out place
        other = np.where(other == np.arange(HELD_OUT), (other + 1) % HELD_OUT, other)
        x1, x2 = (normalise(v) for v in crops(left, right, tops, xs, args.crop))
        with torch.no_grad():
            loss_pair, done_pair, mask = completion(model, x1, x2, args.seed)
            loss_other, done_other, _ = completion(model, x1, x2[other], args.seed)
        diff = (loss_other - loss_pair).numpy()
        res = dict(pair=dict(mean=float(loss_pair.mean()),
                             sem=float(loss_pair.std() / math.sqrt(HELD_OUT))),
                   other_view2=dict(mean=float(loss_other.mean()),
                                    sem=float(loss_other.std() / math.sqrt(HELD_OUT))),
                   pair_better_share=float((diff > 0).mean()),
                   held_out_crops=HELD_OUT, steps=args.steps, crop=args.crop,
                   patch=args.patch, width=args.width, seed=args.seed,
                   train_loss_first=losses[0], train_loss_last=float(np.mean(losses[-20:])),
                   source=args.pair_dir or 'scikit-image motorcycle pair (Middlebury 2014)')
        k = slice(0, args.num)
        cols = [_to_uint8(x1[k]), _to_uint8(_visible(x1[k], mask[k], args.patch)),
                _to_uint8(x2[k]), _to_uint8(done_pair[k]), _to_uint8(x2[other][k]),
                _to_uint8(done_other[k])]
        save_png(picture(cols), args.out)
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump(res, f, indent=1)
        print(f'croco_stereo: {args.out}: loss with the pair {res["pair"]["mean"]:.4f} '
              f'(± {res["pair"]["sem"]:.4f}), with another view 2 '
              f'{res["other_view2"]["mean"]:.4f} (± {res["other_view2"]["sem"]:.4f}); the pair '
              f'completes {100 * res["pair_better_share"]:.0f} % of {HELD_OUT} held-out crops better')
    return 0


if __name__ == '__main__':
    sys.exit(main())
