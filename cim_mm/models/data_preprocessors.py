"""The corruption data preprocessor: enhancer view + tokenizer view + mask."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from cim_mm.utils.deferred_keys import JITTER_KEY
from cim_mm.utils.errors import UserError

from .device_augment import decode_and_augment
from .tokenizers.base import map_pixels


@MODELS.register_module()
class CIMDataPreprocessor(SelfSupDataPreprocessor):
    """Builds, on the device and batched, everything one CIM step needs.

    From one uint8 view ``img [B, 3, H, W]`` (0..255) and the per-sample masks
    packed by ``BEiTMaskGenerator`` (``data_sample.mask [h, w]``, 1 = masked):

    - ``inputs[0]`` enhancer view: ``(img - mean) / std`` -> ``[B, 3, H, W]``;
    - ``inputs[1]`` tokenizer view: ``map_pixels(resize(img / 255))`` ->
      ``[B, 3, H', W']`` with ``H' = tokenizer_img_size`` (112 for 224 px, as
      BEiT), the dVAE's logit-Laplace input mapping ``0.8 x + 0.1``;
    - ``inputs[2]`` mask: ``[B, h, w]`` bool, 1 = masked / to be replaced.

    From the device-decode loader (``imagenet_bs256_cim_device-decode.py``:
    per sample the encoded JPEG and the drawn crop, jitter and flip, collated
    as lists) it first decodes and augments the batch on the device
    (:func:`cim_mm.models.device_augment.decode_and_augment`), then goes on
    as above.

    Args:
        mean, std: enhancer normalisation (0..255 scale), as mmpretrain.
        tokenizer_img_size: side of the tokenizer view (int or (H', W')).
        interpolation: resize mode for the tokenizer view ('bicubic' as BEiT's
            ``second_interpolation`` is lanczos; antialiased bicubic is its
            closest on-device equivalent).
        non_blocking: copy the images to the device without waiting.
        batched_masks: stack the masks on the host and copy them in one
            (pinned, non-blocking) transfer; the data samples stay on the host.
            False: mmengine's per-sample ``DataSample.to(device)`` (one blocking
            copy per image), then a stack on the device.
    """

    def __init__(self,
                 mean: Optional[Sequence[Union[float, int]]] = None,
                 std: Optional[Sequence[Union[float, int]]] = None,
                 tokenizer_img_size: Union[int, Sequence[int]] = 112,
                 interpolation: str = 'bicubic',
                 to_rgb: bool = False,
                 non_blocking: Optional[bool] = True,
                 batched_masks: bool = True) -> None:
        super().__init__(mean=mean, std=std, to_rgb=to_rgb,
                         non_blocking=non_blocking)
        if isinstance(tokenizer_img_size, int):
            tokenizer_img_size = (tokenizer_img_size, tokenizer_img_size)
        self.tokenizer_img_size = tuple(int(s) for s in tokenizer_img_size)
        self.interpolation = interpolation
        self.batched_masks = batched_masks

    @property
    def converts_to_rgb(self) -> bool:
        """Whether the loader's BGR images are flipped to RGB (``to_rgb=True``)."""
        return bool(self._channel_conversion)

    @property
    def normalizes(self) -> bool:
        """Whether the enhancer view is ``(img - mean) / std`` (mean and std given)."""
        return self._enable_normalize

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float in 0..255 -> the enhancer view's values (as is
        without mean / std)."""
        return (img - self.mean) / self.std if self.normalizes else img

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: the enhancer view's values -> float 0..255
        (not clamped)."""
        x = x.float()
        return x * self.std.float() + self.mean.float() if self.normalizes else x

    def tokenizer_view(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in 0..255 -> [B, 3, H', W'] in map_pixels space."""
        x = img / 255.
        if tuple(x.shape[-2:]) != self.tokenizer_img_size:
            antialias = self.interpolation in ('bilinear', 'bicubic')
            x = F.interpolate(x, size=self.tokenizer_img_size,
                              mode=self.interpolation, antialias=antialias,
                              align_corners=False if antialias else None)
        return map_pixels(x.clamp(0, 1))

    def host_masks(self, data_samples: Optional[list]) -> Optional[torch.Tensor]:
        """The samples' masks as one host tensor ``[B, h, w]`` bool, pinned
        when CUDA is there (so the copy can overlap), or None without masks."""
        if not data_samples or not all('mask' in ds for ds in data_samples):
            return None
        mask = torch.stack([torch.as_tensor(ds.mask) for ds in data_samples]).bool()
        if self.device.type == 'cuda' and mask.device.type == 'cpu':
            mask = mask.pin_memory()
        return mask  # [B, h, w]

    @staticmethod
    def is_deferred(data: dict) -> bool:
        """Whether ``data`` comes from the device-decode loader (its samples
        carry the drawn jitter: pixels still to be made here)."""
        samples = data.get('data_samples') or []
        return isinstance(data.get('inputs'), (list, tuple)) and len(samples) > 0 \
            and all(JITTER_KEY in ds.metainfo for ds in samples)

    def forward(self, data: dict, training: bool = False) -> dict:
        data_samples = data.get('data_samples')
        if self.is_deferred(data):
            img = decode_and_augment(data['inputs'], [ds.metainfo for ds in data_samples],
                                     self.device)  # [B, 3, H, W] BGR
            mask = self.host_masks(data_samples)
            data = dict(data, inputs=img)
            if mask is not None:
                mask = mask.to(self.device, non_blocking=True)
        elif self.batched_masks:
            mask = self.host_masks(data_samples)  # [B, h, w] on the host
            if mask is not None:
                mask = mask.to(self.device, non_blocking=True)
            data = dict(data, inputs=self.cast_data(data['inputs']))
        else:
            data = self.cast_data(data)
            data_samples = data.get('data_samples')
            mask = self.host_masks(data_samples)  # stacked on the device
        img = data['inputs']
        if isinstance(img, (list, tuple)):
            img = img[0]
        if img.dim() != 4:
            raise UserError(
                f'CIMDataPreprocessor expects a batch of images [B, C, H, W], '
                f'got shape {tuple(img.shape)}; use default_collate in the '
                'dataloader (collate_fn=dict(type="default_collate")).')
        if self._channel_conversion:
            img = img[:, [2, 1, 0]]
        img = img.float()  # [B, 3, H, W], 0..255
        enh = self.normalize(img)
        tok = self.tokenizer_view(img)  # [B, 3, H', W']
        inputs = [enh, tok]
        if mask is not None:
            inputs.append(mask)  # [B, h, w] bool
        return {'inputs': inputs, 'data_samples': data_samples}
