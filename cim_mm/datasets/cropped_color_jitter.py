"""Colour jitter on the crop, distributed as colour jitter on the whole image.

BEiT v1 jitters the whole image, then flips and crops it. Brightness and
saturation act on each pixel alone and the bicubic resize is linear, so they
commute with crop, resize and flip (up to uint8 rounding and clipping). Contrast
blends every pixel with the image's grey mean, the one global statistic:
:class:`RecordGreyMean` measures it on the whole image before the crop and
:class:`CroppedColorJitter` blends towards it. The jitter then runs on the
224 px crop instead of the full photo.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import ColorJitter
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageEnhance

from cim_mm.utils.deferred_keys import GREY_KEY


def grey_mean(bgr: np.ndarray) -> float:
    """Mean grey level of a BGR uint8 image ``[H, W, 3]``: PIL's ``L`` (ITU-R
    601-2 luma, what ``ImageEnhance.Contrast`` blends towards) is linear in the
    channels, so its mean is the same mix of the channel means (up to PIL's
    unbiased per-pixel rounding)."""
    b, g, r, _ = cv2.mean(bgr)
    return 0.299 * r + 0.587 * g + 0.114 * b


def blend_lut(base: float, alpha: float) -> np.ndarray:
    """``Image.blend(constant base, img, alpha)`` as a lookup table ``[256]``
    uint8: PIL's float32 ``base + alpha * (v - base)``, clipped to 0..255,
    truncated (equal to PIL's, checked on every value)."""
    v = np.arange(256, dtype=np.float32)
    out = np.float32(base) + np.float32(alpha) * (v - np.float32(base))
    return np.clip(out, 0, 255).astype(np.uint8)


def saturate(bgr: np.ndarray, factor: float) -> np.ndarray:
    """``ImageEnhance.Color(factor)`` of a BGR uint8 image ``[H, W, 3]``."""
    rgb = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    rgb = ImageEnhance.Color(rgb).enhance(factor)
    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)


@TRANSFORMS.register_module()
class RecordGreyMean(BaseTransform):
    """Store the whole image's grey mean (``results['jitter_grey_mean']``) for a
    :class:`CroppedColorJitter` after the crop."""

    def transform(self, results: dict) -> dict:
        results[GREY_KEY] = grey_mean(results['img'])
        return results


@TRANSFORMS.register_module()
class CroppedColorJitter(ColorJitter):
    """mmpretrain's ``ColorJitter`` (pillow backend: same random order and
    factors, same ops), contrast blending towards ``results['jitter_grey_mean']``
    (:class:`RecordGreyMean`, before the crop) when it is there.

    The grey level is carried through the ops before the contrast: brightness
    scales it (clipped at 255), saturation keeps it (a blend with the image's
    own grey keeps the grey). Brightness and contrast are blends with a
    constant, applied as lookup tables (equal to PIL's blend; consecutive ones
    composed into one); hue must be 0.
    Works on the loader's BGR uint8 ``[H, W, 3]`` image.
    """

    def __init__(self, **kwargs: Any) -> None:  # ColorJitter's arguments
        super().__init__(**kwargs)
        if self.hue is not None:
            raise ValueError('CroppedColorJitter: hue jitter is not supported, use hue=0')

    def transform(self, results: dict) -> dict:
        bgr = results['img']
        pivot: Optional[float] = results.pop(GREY_KEY, None)
        if pivot is None:
            pivot = grey_mean(bgr)
        order, brightness, contrast, saturation, _ = self._rand_params()
        lut: Optional[np.ndarray] = None  # brightness / contrast in a row: one table
        for index in order:
            if index == 0 and brightness is not None:
                step = blend_lut(0., brightness)
                pivot = min(255., pivot * brightness)
            elif index == 1 and contrast is not None:
                # as ImageEnhance.Contrast, which rounds its mean
                step = blend_lut(int(pivot + 0.5), contrast)
            elif index == 2 and saturation is not None:
                if lut is not None:
                    bgr, lut = cv2.LUT(bgr, lut), None
                bgr = saturate(bgr, saturation)
                continue
            else:
                continue
            lut = step if lut is None else step[lut]
        results['img'] = bgr if lut is None else cv2.LUT(bgr, lut)
        return results
