"""Fashion-MNIST scenes in ADE20K's layout: a small semantic-segmentation set.

Each scene is a black RGB canvas (64x64 by default) with 1-4 Fashion-MNIST
items pasted at random positions and scales. A pixel is covered by an item where
the (resized) item's intensity is above ``--threshold``; a later item covers an
earlier one. Labels: class index + 1 of the item covering the pixel, 0 =
background (11 classes), stored as single-channel uint8 PNGs, which mmseg's
``LoadAnnotations`` reads as they are (``reduce_zero_label=False``). Training
scenes use only items of the Fashion-MNIST training split, validation scenes
only items of its test split. The same ``--seed`` writes the same files.

    OUT/images/{training,validation}/000000.png       # [H, W, 3] uint8, RGB
    OUT/annotations/{training,validation}/000000.png  # [H, W] uint8, 0..10
    OUT/scenes_{training,validation}.json             # the items of each scene

    bash tools/prepare_fashion_mnist.sh        # extracted idx files in data/fashion_mnist
    python tools/dataset_converters/fashion_mnist_scenes.py data/fashion_mnist \\
        data/fashion_mnist_scenes

Read with ``FashionMNISTScenesDataset`` (registered by ``cim_mm.seg``).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402

#: Fashion-MNIST split -> (idx file prefix, scene split written from it)
SPLITS = {'train': ('train', 'training'), 'test': ('t10k', 'validation')}
#: the item size the scale range multiplies (Fashion-MNIST images are 28x28)
ITEM_SIZE = 28
PREPARE_HINT = ('run tools/prepare_fashion_mnist.sh DIR (it installs the Debian package '
                'dataset-fashion-mnist and extracts its gz files into DIR) and pass DIR')


@dataclass(frozen=True)
class Item:
    """One pasted item: its source image, class and square box on the canvas."""
    index: int  # index into its Fashion-MNIST split
    label: int  # Fashion-MNIST class index, 0..9
    top: int  # box row of the item's top-left pixel
    left: int  # box column of the item's top-left pixel
    size: int  # box side in pixels (the item is resized to size x size)
    tint: tuple[float, float, float]  # RGB factors applied to the item's intensity


def load_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[N, h, w]`` uint8 and labels ``[N]`` int64 of one split
    (``'train'`` / ``'test'``) from the extracted idx files in ``root``, read
    with mmpretrain's own idx readers (what its ``FashionMNIST`` reads)."""
    from mmpretrain.datasets.mnist import read_image_file, read_label_file
    prefix = SPLITS[split][0]
    paths = [osp.join(root, f'{prefix}-images-idx3-ubyte'),
             osp.join(root, f'{prefix}-labels-idx1-ubyte')]
    if not osp.isdir(root):
        raise UserError(f'{root} is not a folder: {PREPARE_HINT}')
    for p in paths:
        if not osp.isfile(p):
            gz = ' (only its .gz is there: gunzip it)' if osp.isfile(p + '.gz') else ''
            raise UserError(f'{p} is missing{gz}: {PREPARE_HINT}')
    try:
        with warnings.catch_warnings():  # its tensors view a read-only buffer: harmless
            warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
            images = read_image_file(paths[0]).numpy()  # [N, h, w] uint8
            labels = read_label_file(paths[1]).numpy()  # [N] int64
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        raise UserError(f'{paths[0]} / {paths[1]} are not Fashion-MNIST idx files '
                        f'({type(err).__name__}: {err}): {PREPARE_HINT}') from err
    if len(images) != len(labels) or len(images) == 0:
        raise UserError(f'{paths[0]} holds {len(images)} images but {paths[1]} '
                        f'{len(labels)} labels: {PREPARE_HINT}')
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f'{paths[1]}: labels outside 0..9: {PREPARE_HINT}')
    return images, labels


def sample_items(rng: np.random.Generator, labels: np.ndarray, canvas: int,
                 num_items: tuple[int, int], scale: tuple[float, float],
                 tint: bool) -> list[Item]:
    """The items of one scene, in paste order: ``num_items`` (min, max) items,
    each a uniformly drawn image of the split (``labels``: ``[N]``), resized to
    ``round(28 * s)``, ``s ~ U(scale)``, at a uniform position inside the canvas;
    ``tint``: a random RGB factor in [0.4, 1] per item, else gray."""
    n = int(rng.integers(num_items[0], num_items[1] + 1))
    items = []
    for _ in range(n):
        index = int(rng.integers(0, len(labels)))
        size = max(1, int(round(ITEM_SIZE * rng.uniform(*scale))))
        top, left = (int(v) for v in rng.integers(0, canvas - size + 1, 2))
        rgb = rng.uniform(0.4, 1.0, 3) if tint else np.ones(3)
        items.append(Item(index=index, label=int(labels[index]), top=top, left=left,
                          size=size, tint=tuple(float(c) for c in rgb)))
    return items


def resize_item(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` ``[h, w]`` uint8 as ``[size, size]`` uint8 (bilinear; as is
    when it already has that size)."""
    import mmcv
    if image.shape == (size, size):
        return image
    return mmcv.imresize(image, (size, size), interpolation='bilinear')


def render_scene(items: Sequence[Item], images: np.ndarray, canvas: int,
                 threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene image ``[canvas, canvas, 3]`` uint8 (RGB) and its label map
    ``[canvas, canvas]`` uint8 (class + 1 of the top item, 0 = background).

    An item covers the pixels where its resized intensity is above
    ``threshold`` (0..255); there the image takes the item's tinted intensity
    and the label its class; later items are pasted over earlier ones.
    """
    img = np.zeros((canvas, canvas, 3), np.float32)  # [H, W, 3]
    label = np.zeros((canvas, canvas), np.uint8)  # [H, W]
    for it in items:
        patch = resize_item(images[it.index], it.size).astype(np.float32)  # [s, s]
        cover = patch > threshold  # [s, s] bool
        box = (slice(it.top, it.top + it.size), slice(it.left, it.left + it.size))
        img[box][cover] = patch[cover][:, None] * np.asarray(it.tint, np.float32)
        label[box][cover] = it.label + 1
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label


def split_rng(seed: int, split: str) -> np.random.Generator:
    """An independent random stream per (seed, split)."""
    return np.random.default_rng([seed, list(SPLITS).index(split)])


def write_split(out: str, split: str, images: np.ndarray, labels: np.ndarray,
                num_scenes: int, seed: int, canvas: int, num_items: tuple[int, int],
                scale: tuple[float, float], threshold: int, tint: bool) -> list[dict]:
    """Write ``num_scenes`` scenes made from one Fashion-MNIST split (``images``
    ``[N, h, w]``, ``labels`` ``[N]``); returns each scene's record (file name
    and items), also written to ``OUT/scenes_<scene split>.json``."""
    import mmcv
    name = SPLITS[split][1]
    rng = split_rng(seed, split)
    for sub in ('images', 'annotations'):
        os.makedirs(osp.join(out, sub, name), exist_ok=True)
    records = []
    for i in range(num_scenes):
        items = sample_items(rng, labels, canvas, num_items, scale, tint)
        img, label = render_scene(items, images, canvas, threshold)
        fname = f'{i:06d}.png'
        # mmcv writes colour images as BGR: flip so the file holds RGB
        mmcv.imwrite(np.ascontiguousarray(img[..., ::-1]),
                     osp.join(out, 'images', name, fname))
        mmcv.imwrite(label, osp.join(out, 'annotations', name, fname))
        records.append(dict(file=fname, source_split=split,
                            items=[asdict(it) for it in items]))
    with open(osp.join(out, f'scenes_{name}.json'), 'w') as f:
        json.dump(dict(seed=seed, canvas=canvas, threshold=threshold, scenes=records), f)
    return records


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Fashion-MNIST scenes (ADE20K layout) for semantic segmentation')
    p.add_argument('src', help='folder with the extracted Fashion-MNIST idx files '
                   '(tools/prepare_fashion_mnist.sh)')
    p.add_argument('out', help='output folder (images/, annotations/)')
    p.add_argument('--size', type=int, default=64, help='canvas side in pixels')
    p.add_argument('--num-train', type=int, default=2000, help='training scenes')
    p.add_argument('--num-val', type=int, default=500, help='validation scenes')
    p.add_argument('--items', type=int, nargs=2, default=(1, 4), metavar=('MIN', 'MAX'),
                   help='items per scene (uniform, inclusive)')
    p.add_argument('--scale', type=float, nargs=2, default=(0.75, 1.5),
                   metavar=('MIN', 'MAX'), help='item side = 28 px x U(MIN, MAX)')
    p.add_argument('--threshold', type=int, default=32,
                   help='an item covers a pixel where its intensity (0..255) is above this')
    p.add_argument('--tint', action='store_true',
                   help='a random RGB colour per item (default: gray items, as in '
                   'Fashion-MNIST pre-training)')
    p.add_argument('--seed', type=int, default=0, help='the same seed writes the same files')
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for option values that can not make scenes."""
    lo, hi = args.items
    if not 1 <= lo <= hi:
        raise UserError(f'--items {lo} {hi}: need 1 <= MIN <= MAX')
    s_lo, s_hi = args.scale
    if not 0 < s_lo <= s_hi:
        raise UserError(f'--scale {s_lo} {s_hi}: need 0 < MIN <= MAX')
    if round(ITEM_SIZE * s_hi) > args.size:
        raise UserError(f'--scale MAX {s_hi} makes items of {round(ITEM_SIZE * s_hi)} px, '
                        f'larger than the {args.size} px canvas: lower it or raise --size')
    if args.num_train < 0 or args.num_val < 0:
        raise UserError('--num-train / --num-val must be >= 0')
    if not 0 <= args.threshold < 255:
        raise UserError(f'--threshold {args.threshold}: need 0 <= T < 255')


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    with user_errors_as_one_line('fashion_mnist_scenes.py'):
        check_args(args)
        data = {split: load_split(args.src, split) for split in SPLITS}
        os.makedirs(args.out, exist_ok=True)
        for split, num in (('train', args.num_train), ('test', args.num_val)):
            images, labels = data[split]
            write_split(args.out, split, images, labels, num, args.seed, args.size,
                        tuple(args.items), tuple(args.scale), args.threshold, args.tint)
        print(f'wrote {args.num_train} training and {args.num_val} validation scenes '
              f'({args.size}x{args.size}) to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
