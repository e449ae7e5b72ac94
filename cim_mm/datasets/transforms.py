"""Transforms mmpretrain lacks."""
from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from cim_mm.utils.errors import UserError


@TRANSFORMS.register_module()
class GrayToRGB(BaseTransform):
    """Make ``results['img']`` a 3-channel ``[H, W, 3]`` uint8 image.

    ``[H, W]`` and ``[H, W, 1]`` gray images are repeated over 3 channels,
    ``[H, W, 4]`` (RGBA) loses its alpha channel, 3-channel images pass through.
    Integer images deeper than 8 bits (e.g. 16-bit PNG) are rescaled to uint8.
    """

    def transform(self, results: dict) -> dict:
        img = np.asarray(results['img'])
        if img.dtype == np.uint16:
            img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
        elif img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        elif img.shape[-1] == 4:
            img = img[..., :3]
        elif img.shape[-1] != 3:
            raise UserError(f'GrayToRGB: unsupported image shape {img.shape}')
        results['img'] = np.ascontiguousarray(img)
        results['img_shape'] = img.shape[:2]
        return results
