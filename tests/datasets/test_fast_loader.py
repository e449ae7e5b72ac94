"""Colour jitter after the crop (RecordGreyMean + CroppedColorJitter) against
BEiT v1's jitter before it (mmpretrain ColorJitter, RandomFlip, RandomResizedCrop)."""
from __future__ import annotations

import numpy as np
import pytest
from mmengine.dataset import Compose
from mmpretrain.datasets.transforms import RandomResizedCrop
from PIL import Image, ImageEnhance, ImageStat

from cim_mm.datasets.cropped_color_jitter import blend_lut, grey_mean, saturate

JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)
CROP = dict(type='RandomResizedCrop', scale=32, interpolation='bicubic', backend='pillow')
BOX = (10, 35, 60, 50)  # (top, left, h, w): a fixed crop, centred (flip-symmetric)


def photo(rng: np.random.Generator, h: int = 90, w: int = 120) -> np.ndarray:
    """A smooth random BGR uint8 scene with noise ``[h, w, 3]``."""
    low = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def test_lookup_tables_equal_pil_blends():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        f = float(rng.uniform(0.6, 1.4))
        lut = blend_lut(0., f)
        assert np.array_equal(lut[np.asarray(rgb)],
                              np.asarray(ImageEnhance.Brightness(rgb).enhance(f)))
        mean = int(ImageStat.Stat(rgb.convert('L')).mean[0] + 0.5)
        assert np.array_equal(blend_lut(mean, f)[np.asarray(rgb)],
                              np.asarray(ImageEnhance.Contrast(rgb).enhance(f)))


def test_grey_mean_and_saturation_follow_pil():
    rng = np.random.default_rng(1)
    bgr = photo(rng)
    rgb = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    assert grey_mean(bgr) == pytest.approx(ImageStat.Stat(rgb.convert('L')).mean[0], abs=0.05)
    ref = np.asarray(ImageEnhance.Color(rgb).enhance(1.3))[..., ::-1]
    assert np.array_equal(saturate(bgr, 1.3), ref)


def _run(pipeline: list[dict], img: np.ndarray, seed: int) -> np.ndarray:
    composed = Compose(pipeline)
    for t in composed.transforms:
        if isinstance(t, RandomResizedCrop):
            t.rand_crop_params = lambda img: BOX
    np.random.seed(seed)  # same jitter factors and order, same flip, in both orders
    return composed(dict(img=img.copy()))['img'].astype(np.int16)


def test_jitter_after_the_crop_equals_jitter_before_it():
    """Per image, with the same random factors and a fixed crop box: the two
    orders differ only by uint8 rounding and clipping."""
    before = [dict(type='ColorJitter', **JITTER),
              dict(type='RandomFlip', prob=0.5, direction='horizontal'), CROP]
    after = [dict(type='RecordGreyMean'), CROP, dict(type='CroppedColorJitter', **JITTER),
             dict(type='RandomFlip', prob=0.5, direction='horizontal')]
    without_grey = after[1:]  # contrast towards the crop's own mean: not the same
    rng = np.random.default_rng(2)
    diffs, own, bias = [], [], []
    for seed in range(200):
        img = photo(rng)
        ref = _run(before, img, seed)
        out = _run(after, img, seed)
        diffs.append(np.abs(out - ref))
        bias.append((out - ref).mean())
        own.append(np.abs(_run(without_grey, img, seed) - ref))
    diffs, own, bias = np.stack(diffs), np.stack(own), np.array(bias)  # [N, 32, 32, 3]
    # measured: mean |diff| 0.69 grey level, 99 % of pixels within 4; per image the
    # mean moves by at most 4.4 (clipping of bright images); no bias over images
    assert diffs.mean() < 1.0 and np.quantile(diffs, 0.99) <= 6, (
        diffs.mean(), np.quantile(diffs, 0.99))
    assert np.abs(bias).max() < 6 and abs(bias.mean()) < 0.5, (np.abs(bias).max(), bias.mean())
    # the whole image's grey mean matters: towards the crop's own, 2.5 grey levels
    assert own.mean() > 2.5 * diffs.mean()
