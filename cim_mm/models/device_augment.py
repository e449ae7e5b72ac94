"""Device side of the device-decode loader: decode, crop, resize, jitter, flip.

Applies what the workers drew (:mod:`cim_mm.datasets.device_decode`) to a whole
batch where the batch lives (the GPU in training): nvJPEG decodes the files in
one batched call, each crop is resized by PyTorch's antialiased bicubic (the
kernel of Pillow's, which the CPU pipeline uses), and the colour jitter and the
flip run batched, with Pillow's 8-bit arithmetic (every op truncates to
integers as ``ImageEnhance`` does), so that on the same crop the jitter equals
``cim_mm.datasets.CroppedColorJitter`` to the grey level.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log

from cim_mm.utils.errors import UserError

from cim_mm.utils.deferred_keys import CROP_KEY, FLIP_KEY, GREY_KEY, JITTER_KEY, OUT_KEY

# ITU-R 601-2 luma in Pillow's fixed point ("L" = (19595 R + 38470 G + 7471 B + 2^15) >> 16)
LUMA_FIXED = (19595., 38470., 7471.)
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2


def grey_means(img: torch.Tensor) -> torch.Tensor:
    """Mean grey level of an RGB image ``[3, H, W]`` (any dtype) -> ``[]``
    float64, as ``cim_mm.datasets.cropped_color_jitter.grey_mean``."""
    r, g, b = img.double().mean(dim=(1, 2))
    return 0.299 * r + 0.587 * g + 0.114 * b


def blend(base: torch.Tensor, img: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Pillow's 8-bit ``Image.blend(base, img, alpha)``: ``base + alpha (img -
    base)`` in float32, clipped to 0..255, truncated. ``img`` [B, 3, H, W],
    ``base`` broadcastable to it, ``alpha`` [B]."""
    out = base + alpha.view(-1, 1, 1, 1) * (img - base)
    return out.clamp_(0, 255).floor_()


def luma(img: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert('L')`` of an RGB batch [B, 3, H, W] (integer-valued
    float32) -> [B, 1, H, W], exact (the sums stay below 2^24)."""
    w = img.new_tensor(LUMA_FIXED).view(1, 3, 1, 1)
    return torch.floor(((img * w).sum(dim=1, keepdim=True) + 32768.) / 65536.)


def color_jitter(img: torch.Tensor, order: torch.Tensor, factors: torch.Tensor,
                 pivot: torch.Tensor) -> torch.Tensor:
    """``CroppedColorJitter`` on a batch, each sample its own order and factors.

    Args:
        img: [B, 3, H, W] RGB, integer-valued float32 in 0..255.
        order: [B, 4] int, a permutation of (brightness, contrast, saturation,
            hue); hue (3) is skipped.
        factors: [B, 3] float32 (brightness, contrast, saturation); NaN = off.
        pivot: [B] float64, the whole image's grey mean (the contrast's base,
            carried through the brightness as the CPU transform does).

    Returns:
        [B, 3, H, W] jittered, integer-valued float32.
    """
    pivot = pivot.clone()
    for step in range(order.shape[1]):
        op = order[:, step]  # [B]
        for kind in (BRIGHTNESS, CONTRAST, SATURATION):
            alpha = factors[:, kind]  # [B]
            on = (op == kind) & ~torch.isnan(alpha)  # [B]
            if kind == BRIGHTNESS:
                new = blend(img.new_zeros(()), img, alpha)
                pivot = torch.where(on, (pivot * alpha.double()).clamp(max=255.), pivot)
            elif kind == CONTRAST:
                base = torch.floor(pivot + 0.5).float().view(-1, 1, 1, 1)  # rounded as Pillow's
                new = blend(base, img, alpha)
            else:
                new = blend(luma(img), img, alpha)
            img = torch.where(on.view(-1, 1, 1, 1), new, img)
    return img


def resized_crop(img: torch.Tensor, box: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """Crop ``box`` = (top, left, height, width) of ``img`` [3, H, W] and resize it
    to ``size`` (H', W') with antialiased bicubic -> [3, H', W'] float32,
    rounded to integers in 0..255."""
    top, left, h, w = box
    crop = img[:, top:top + h, left:left + w].float()[None]  # [1, 3, h, w]
    if (h, w) != tuple(size):
        crop = F.interpolate(crop, size=tuple(size), mode='bicubic', antialias=True,
                             align_corners=False)
    return crop[0].round_().clamp_(0, 255)


def decode_jpegs(encoded: list[torch.Tensor], paths: list[str],
                 device: torch.device) -> list[Optional[torch.Tensor]]:
    """Decode JPEG bytes (uint8 [N] each) on ``device`` in one batched call ->
    RGB uint8 [3, H, W] each, or None for a file no decoder reads.

    A batch that fails is decoded file by file. A file the device decoder
    refuses is decoded by the CPU loader's decoder (OpenCV), which reads some
    damaged files the device decoder does not, so the device path trains on
    what the CPU loader would; a file that OpenCV cannot decode either is
    None (the CPU loader skips it). Each is named once in a warning. Out of
    memory is raised as it is; a batch that fails though each of its files
    decodes alone is decoded file by file with a warning (slower, not wrong).
    """
    if not encoded:
        return []
    from torchvision.io import ImageReadMode, decode_jpeg
    dev = 'cuda' if device.type == 'cuda' else 'cpu'
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=dev))
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as batch_err:
        out: list[Optional[torch.Tensor]] = []
        refused = 0
        for data, path in zip(encoded, paths):
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=dev))
            except RuntimeError as err:
                refused += 1
                out.append(_decode_like_the_cpu_loader(data, path, err, device))
        if not refused:
            print_log(f'the batched JPEG decode of {len(encoded)} files failed '
                      f'({_first_line(batch_err)}) though each file decodes alone: this '
                      'batch was decoded file by file', logger='current', level=logging.WARNING)
        return out


_reported: set[str] = set()  # files already named in a warning (once per process)


def _decode_like_the_cpu_loader(data: torch.Tensor, path: str, err: RuntimeError,
                                device: torch.device) -> Optional[torch.Tensor]:
    """``data`` (uint8 [N]) decoded by OpenCV, as ``SafeLoadImageFromFile``
    decodes it -> RGB uint8 [3, H, W] on ``device``, or None where it fails."""
    import mmcv
    try:
        bgr = mmcv.imfrombytes(data.cpu().numpy().tobytes(), flag='color',
                               backend='cv2')  # [H, W, 3] | None
    except Exception:  # noqa: BLE001  (any decoder error: unreadable, as below)
        bgr = None
    why = f'the device decoder refused it: {_first_line(err)}'
    if path not in _reported:
        _reported.add(path)
        msg = (f'skipping {path}: unreadable image ({why}; OpenCV cannot decode it either): '
               'its sample is replaced by another image of its batch' if bgr is None else
               f'{path} decoded on the CPU by OpenCV, as the CPU loader decodes it ({why})')
        print_log(msg, logger='current', level=logging.WARNING)
    if bgr is None:
        return None
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)  # [3, H, W]
    return rgb.contiguous().to(device)


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:120]


def decode_and_augment(inputs: Sequence[torch.Tensor], metas: Sequence[dict],
                       device: torch.device) -> torch.Tensor:
    """The device-decode loader's batch -> the CPU loader's batch.

    Args:
        inputs: per sample, the encoded JPEG (uint8 [N]) or a crop the worker
            decoded and resized (uint8 [3, H, W], BGR).
        metas: per sample, the data sample's metainfo (``crop_box``,
            ``img_shape``, ``jitter_params``, ``flip``; ``jitter_grey_mean``
            for a worker-decoded crop).
        device: where to decode and augment.

    Returns:
        [B, 3, H, W] float32 BGR, integer-valued in 0..255: what
        ``default_collate`` of the CPU pipeline's crops gives, cast to float.
    """
    jpeg_idx = [i for i, x in enumerate(inputs) if x.dim() == 1]
    paths = [str(m.get('img_path')) for m in metas]
    decoded = dict(zip(jpeg_idx, decode_jpegs([inputs[i] for i in jpeg_idx],
                                              [paths[i] for i in jpeg_idx], device)))
    # a file no decoder reads takes another sample's image and draws, as the
    # CPU loader's dataset takes another file in its place
    readable = [i for i in range(len(inputs)) if i not in decoded or decoded[i] is not None]
    if not readable:
        raise UserError(f'no image of a batch could be decoded ({", ".join(paths[:4])}, ...): '
                        'remove the files named in the log, or train with the CPU loader '
                        '(configs/_base_/datasets/imagenet_bs256_cim.py)')
    ok = set(readable)
    src = [i if i in ok else readable[i % len(readable)] for i in range(len(inputs))]
    metas = [metas[j] for j in src]
    crops: list[torch.Tensor] = []
    pivots = torch.empty(len(inputs), dtype=torch.float64, device=device)
    for i, j in enumerate(src):
        full = decoded.get(j)  # RGB uint8 [3, H0, W0] | None: decoded by the worker
        if full is not None:
            pivots[i] = grey_means(full)
            crops.append(resized_crop(full, metas[i][CROP_KEY], metas[i][OUT_KEY]))
        else:  # the worker's crop: BGR uint8 [3, H, W]
            crops.append(inputs[j].to(device, non_blocking=True).flip(0).float())
            pivots[i] = float(metas[i][GREY_KEY])
    img = torch.stack(crops)  # [B, 3, H, W] RGB
    params = [m[JITTER_KEY] for m in metas]
    order = torch.tensor([p[0] for p in params], device=device)  # [B, 4]
    factors = torch.tensor([[float('nan') if f is None else f for f in p[1:]]
                            for p in params], dtype=torch.float32, device=device)  # [B, 3]
    img = color_jitter(img, order, factors, pivots)
    flip = torch.tensor([bool(m[FLIP_KEY]) for m in metas], device=device)  # [B]
    img = torch.where(flip.view(-1, 1, 1, 1), img.flip(-1), img)
    return img.flip(1)  # [B, 3, H, W] BGR, as the CPU loader packs it
