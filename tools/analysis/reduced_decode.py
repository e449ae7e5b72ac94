"""Would decoding JPEGs at a reduced DCT scale speed up the recipes' loader?

    python tools/analysis/reduced_decode.py [--draws 20000] [--seed 0]

A 1/2 (1/4) scale decode can stand in for the full decode only where the
``RandomResizedCrop`` drawn on the full size is at least 2x (4x) the 224 px
output on both sides. Prints, per image size, the share of the recipes' crop
draws (mmpretrain ``RandomResizedCrop``: area 0.08-1, ratio 3/4-4/3) that allow
it, and what OpenCV's reduced decode (``IMREAD_REDUCED_COLOR_2`` / ``_4``, the
recipes' decoder) saves on a JPEG of that size (quality 90, one thread).
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from mmpretrain.datasets.transforms import RandomResizedCrop
from PIL import Image

OUT = 224
SIZES = {'ImageNet-like 500x375': (500, 375), "the GPU check's 320-560 px": None,
         'photo 1024x768': (1024, 768)}


class _Shape:
    """What ``RandomResizedCrop.rand_crop_params`` reads of an image: its shape."""

    def __init__(self, h: int, w: int) -> None:
        self.shape = (h, w, 3)


def crop_share(size, draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """(share >= 2x, share >= 4x) of ``draws`` crops; ``size`` None: sides 320-560."""
    rrc = RandomResizedCrop(scale=OUT, crop_ratio_range=(0.08, 1.0))
    n2 = n4 = 0
    for _ in range(draws):
        w, h = size if size else (int(v) for v in rng.integers(320, 561, 2))
        _, _, th, tw = rrc.rand_crop_params(_Shape(h, w))
        n2 += min(th, tw) >= 2 * OUT
        n4 += min(th, tw) >= 4 * OUT
    return n2 / draws, n4 / draws


def decode_ms(size, rng: np.random.Generator, repeats: int = 100) -> dict[str, float]:
    """ms per decode at full, 1/2 and 1/4 scale of a noisy smooth JPEG of ``size``."""
    w, h = size
    low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    out = {}
    for name, flag in (('full', cv2.IMREAD_COLOR), ('1/2', cv2.IMREAD_REDUCED_COLOR_2),
                       ('1/4', cv2.IMREAD_REDUCED_COLOR_4)):
        cv2.imdecode(buf, flag)
        t0 = time.perf_counter()
        for _ in range(repeats):
            cv2.imdecode(buf, flag)
        out[name] = 1e3 * (time.perf_counter() - t0) / repeats
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--draws', type=int, default=20000)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    cv2.setNumThreads(1)
    np.random.seed(args.seed)  # RandomResizedCrop draws from numpy's global state
    rng = np.random.default_rng(args.seed)
    for name, size in SIZES.items():
        s2, s4 = crop_share(size, args.draws, rng)
        line = f'{name}: crops >= 2x the output {100 * s2:.1f} %, >= 4x {100 * s4:.1f} %'
        if size:
            ms = decode_ms(size, rng)
            line += '; decode ' + ', '.join(f'{k} {v:.2f} ms' for k, v in ms.items())
        print(line)


if __name__ == '__main__':
    main()
