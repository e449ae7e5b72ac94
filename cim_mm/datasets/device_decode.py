"""Worker side of the device-decode loader: draw the augmentation, ship the JPEG.

The recipes' loader decodes each JPEG, crops, resizes, jitters and flips it in a
worker process (``configs/_base_/datasets/imagenet_bs256_cim.py``). In the
device-decode loader (``imagenet_bs256_cim_device-decode.py``) a worker reads the
file's bytes and its header only, and draws every random parameter with the very
same samplers, in the same order (so the same seed gives the same crop, jitter,
flip and mask as the CPU pipeline):

- :class:`LoadJPEGBytes`: the encoded file, its size from the header;
- :class:`DeferredRandomResizedCrop`: mmpretrain's ``RandomResizedCrop`` box,
  drawn on the full size (``crop_box`` = top, left, height, width);
- :class:`DeferredColorJitter`: ``ColorJitter``'s order and factors;
- :class:`DeferredRandomFlip`: mmcv's ``RandomFlip`` decision;
- ``BEiTMaskGenerator`` as before; :class:`PackJPEGInputs`.

:func:`cim_mm.models.device_augment.decode_and_augment` (called by
``CIMDataPreprocessor`` on the device) decodes the batch and applies them.
Files the device cannot decode the same way (not a JPEG, CMYK, an EXIF
rotation) are decoded, cropped and resized here, as the CPU pipeline does; only
their jitter and flip wait for the device.
"""
from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np
from mmcv.transforms import BaseTransform, RandomFlip
from mmengine.fileio import get
from mmpretrain.datasets.transforms import PackInputs, RandomResizedCrop
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from cim_mm.utils.deferred_keys import (BYTES_KEY, CROP_KEY, FLIP_KEY, GREY_KEY, JITTER_KEY,
                                        OUT_KEY)

from .cropped_color_jitter import CroppedColorJitter, grey_mean
from .safe_loading import SafeLoadImageFromFile

META_KEYS = ('img_path', CROP_KEY, JITTER_KEY, FLIP_KEY, OUT_KEY, GREY_KEY)
EXIF_ORIENTATION = 0x0112


def device_decodable(header: Image.Image) -> bool:
    """Whether the device decoder gives the same pixels as the CPU loader: a
    baseline or progressive JPEG in YCbCr / grey, without an EXIF rotation
    (OpenCV applies it, the device decoder would not)."""
    if header.format != 'JPEG' or header.mode not in ('RGB', 'L'):
        return False
    try:
        return int(header.getexif().get(EXIF_ORIENTATION, 1)) == 1
    except Exception:  # an unreadable EXIF block: leave the file to OpenCV
        return False


@TRANSFORMS.register_module()
class LoadJPEGBytes(SafeLoadImageFromFile):
    """Read a file's bytes and its size; decode only what the device cannot.

    A JPEG the device decodes (:func:`device_decodable`) gives
    ``results['img_bytes']`` (uint8 ``[N]``) and ``img_shape`` / ``ori_shape``
    ``(H, W)`` from its header; any other image is decoded here, as
    :class:`SafeLoadImageFromFile` does (``results['img']``, BGR ``[H, W, 3]``,
    unreadable files skipped or refused alike). A JPEG whose header reads but
    whose data is damaged is left to the device side, which decodes it as the
    CPU loader would or replaces its sample
    (:func:`cim_mm.models.device_augment.decode_jpegs`).
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get('color_type', 'color') != 'color':
            raise ValueError("LoadJPEGBytes decodes to 3-channel colour: leave "
                             "color_type='color'")
        super().__init__(**kwargs)

    def transform(self, results: dict) -> Optional[dict]:
        filename = str(results.get('img_path'))
        try:
            data = get(filename, backend_args=self.backend_args)
            header = Image.open(io.BytesIO(data))
            w, h = header.size
            decodable = device_decodable(header)
        except Exception:  # missing, empty, not an image: the CPU loader's message
            return super().transform(results)
        if not decodable:
            return super().transform(results)
        if self.min_size is not None and (h < self.min_size[0] or w < self.min_size[1]):
            return self._fail(filename, f'image is {h}x{w} px, smaller than min_size='
                              f'{self.min_size[0]}x{self.min_size[1]}')
        results[BYTES_KEY] = np.frombuffer(data, np.uint8)
        results['img_shape'] = results['ori_shape'] = (h, w)
        return results


@TRANSFORMS.register_module()
class DeferredRandomResizedCrop(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop``, its box drawn here and cut on the device.

    With ``results['img_bytes']``: ``results['crop_box']`` = (top, left,
    height, width), drawn by ``rand_crop_params`` on the header's size, and
    ``img_shape`` = the output size. With a decoded ``results['img']`` (a file
    the device cannot decode): the whole image's grey mean is recorded for the
    jitter, then the crop is cut and resized here, as the CPU pipeline does.
    """

    def transform(self, results: dict) -> dict:
        if BYTES_KEY not in results:
            results[GREY_KEY] = grey_mean(results['img'])
            return super().transform(results)
        h, w = results['img_shape']
        shape_only = np.broadcast_to(np.uint8(0), (h, w))  # no pixels: the size is all it reads
        top, left, ch, cw = self.rand_crop_params(shape_only)
        results[CROP_KEY] = (int(top), int(left), int(ch), int(cw))
        results[OUT_KEY] = (int(self.scale[0]), int(self.scale[1]))
        return results


@TRANSFORMS.register_module()
class DeferredColorJitter(CroppedColorJitter):
    """``CroppedColorJitter``'s random order and factors, drawn here, applied on
    the device (``results['jitter_params']`` = (order, brightness, contrast,
    saturation); None for a factor that is off). Hue must be 0."""

    def transform(self, results: dict) -> dict:
        order, brightness, contrast, saturation, _ = self._rand_params()
        results[JITTER_KEY] = (tuple(int(i) for i in order),
                               *(None if f is None else float(f)
                                 for f in (brightness, contrast, saturation)))
        return results


@TRANSFORMS.register_module()
class DeferredRandomFlip(RandomFlip):
    """mmcv's ``RandomFlip`` decision (``results['flip']``), the flip done on the
    device. Horizontal only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.direction != 'horizontal':
            raise ValueError("DeferredRandomFlip flips horizontally only: direction='horizontal'")

    def _flip(self, results: dict) -> None:
        return None  # results['flip'] is set by RandomFlip; the pixels move on the device


@TRANSFORMS.register_module()
class PackJPEGInputs(BaseTransform):
    """mmpretrain's ``PackInputs`` for the device-decode loader: ``inputs`` is the
    encoded JPEG (uint8 ``[N]``) or, for a file decoded here, the resized crop
    (uint8 ``[3, H, W]``, BGR); the mask and the drawn parameters go to the data
    sample (its ``mask`` and metainfo). Collate with ``pseudo_collate``: the
    inputs differ in length."""

    def __init__(self) -> None:
        self.packer = PackInputs(meta_keys=META_KEYS)

    def transform(self, results: dict) -> dict:
        if BYTES_KEY in results:
            results = dict(results, img=results.pop(BYTES_KEY))
        return self.packer(results)
