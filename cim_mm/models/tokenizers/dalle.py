"""The DALL-E dVAE (OpenAI, 2021) as a frozen CIM tokenizer, with its precision policy.

The architecture is in :mod:`.dalle_arch`, the safe reading of the official
weight files in :mod:`.dalle_weights`; point ``encoder_path`` / ``decoder_path``
at OpenAI's ``encoder.pkl`` / ``decoder.pkl`` or at a converted file.
"""
from __future__ import annotations

import functools
import os.path as osp
from contextlib import nullcontext
from typing import ContextManager

import torch
from mmpretrain.registry import MODELS

from cim_mm.utils.errors import UserError

from .base import BaseTokenizer, unmap_pixels
from .dalle_arch import DALLEDecoder, DALLEEncoder
from .dalle_weights import DALLE_URLS, load_dalle_state_dict

__all__ = [
    'DALLEEncoder', 'DALLEDecoder', 'DALLETokenizer', 'load_dalle_state_dict'
]

#: device types where a low-precision ``decode_dtype`` applies without an outer
#: autocast (when the device has the dtype); elsewhere only inside one
LOW_PRECISION_DEVICES: tuple[str, ...] = ('cuda', )


@functools.lru_cache(maxsize=None)
def device_has_dtype(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``device_type`` computes in ``dtype`` (asked once per process)."""
    if device_type == 'cuda' and dtype == torch.bfloat16:
        return torch.cuda.is_bf16_supported()
    return True


@MODELS.register_module()
class DALLETokenizer(BaseTokenizer):
    """Frozen DALL-E dVAE: ``encode`` image -> ids, ``decode`` ids -> image.

    Shape contract (``downsample = 8``):
        ``encode(img [B, 3, H, W]) -> ids [B, H/8, W/8]`` int64 (argmax of the logits),
        ``encode_logits(img) -> [B, vocab, H/8, W/8]`` float32,
        ``decode(ids [B, h, w]) -> img [B, 3, 8h, 8w]`` float32 in [0, 1]
        (``unmap_pixels(sigmoid(stats[:, :3]))``).
    ``img`` is in the tokenizer space (``map_pixels`` of a [0, 1] image).

    Args:
        encoder_path: official ``encoder.pkl`` or a converted file (see
            ``tools/model_converters/dalle_to_state_dict.py``).
        decoder_path: official ``decoder.pkl`` or the same converted file.
        vocab_size, n_hid, n_blk_per_group, group_count, n_init: architecture;
            the defaults are the official model's.
        decode_dtype: ``'bfloat16'`` / ``'float16'`` runs encoder and decoder
            under autocast in that dtype (the encoder's last and the decoder's
            first layer stay float32, like the reference): on CUDA always (if
            the GPU has the dtype), on CPU only inside an outer CPU autocast
            (``AmpOptimWrapper`` / ``torch.autocast('cpu')``), elsewhere float32.
            None or ``'float32'``: full precision, also inside an outer
            autocast (it is switched off in the tokenizer).
        channels_last: weights and activations in NHWC (what cuDNN's fast
            convolutions use: no layout conversion around each one).
        lowres_1x1: the decoder's 1x1 convolutions after an upsampling run
            before it, and only the 3 used output channels are computed
            (:mod:`.dalle_lowres`; exact up to float rounding).
        allow_random_init: build without weights (tests, FLOP counts).
        init_cfg: mmengine init config (unused: weights come from the paths).
    """

    downsample = 8

    def __init__(self,
                 encoder_path: str | None = None,
                 decoder_path: str | None = None,
                 vocab_size: int = 8192,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 group_count: int = 4,
                 n_init: int = 128,
                 decode_dtype: str | None = None,
                 channels_last: bool = True,
                 lowres_1x1: bool = True,
                 allow_random_init: bool = False,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.vocab_size = vocab_size
        dtypes = {None: None, 'float32': None, 'bfloat16': torch.bfloat16,
                  'float16': torch.float16}
        if decode_dtype not in dtypes:
            raise UserError(f'decode_dtype must be one of {list(dtypes)}, got {decode_dtype!r}')
        self.amp_dtype: torch.dtype | None = dtypes[decode_dtype]

        self.encoder = DALLEEncoder(n_hid, n_blk_per_group, vocab_size, group_count)
        self.decoder = DALLEDecoder(n_init, n_hid, n_blk_per_group, vocab_size,
                                    group_count)
        for part, path in (('encoder', encoder_path), ('decoder', decoder_path)):
            if path is None or not osp.isfile(osp.expanduser(path)):
                if allow_random_init:
                    continue
                raise FileNotFoundError(
                    f'DALL-E {part} weights not found (model.tokenizer.{part}_path='
                    f'{path!r}); download {DALLE_URLS[part]} (linked by the BEiT '
                    f'README) and set model.tokenizer.{part}_path to it.')
            getattr(self, part).load_state_dict(load_dalle_state_dict(path, part))
        self.freeze()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.decoder.lowres_1x1 = lowres_1x1
        self.to(memory_format=self.memory_format)

    def train(self, mode: bool = True) -> 'DALLETokenizer':
        """Always stays in eval mode: the tokenizer is frozen."""
        return super().train(False)

    @property
    def lowres_1x1(self) -> bool:
        return self.decoder.lowres_1x1

    def run_dtype(self, device_type: str) -> torch.dtype | None:
        """The low-precision dtype the tokenizer runs in on ``device_type``
        (None: float32), whatever autocast is open outside.

        ``decode_dtype`` bf16 / fp16: always on the devices of
        :data:`LOW_PRECISION_DEVICES` that have the dtype (CUDA); on CPU only
        inside an outer CPU autocast (bf16 convolutions are slow on most CPUs);
        float32 otherwise. ``decode_dtype`` None / float32: float32.
        """
        dtype = self.amp_dtype
        if dtype is None:
            return None
        if device_type in LOW_PRECISION_DEVICES:
            return dtype if device_has_dtype(device_type, dtype) else None
        if device_type == 'cpu' and torch.is_autocast_enabled('cpu'):
            return dtype
        return None

    def _autocast(self, device: torch.device) -> ContextManager:
        """The precision context of :meth:`run_dtype` for ``device``: autocast in
        that dtype, or autocast off (an outer bf16 autocast, as in
        ``AmpOptimWrapper``, does not reach a float32 tokenizer).

        Entered by the eager methods around the encoder / decoder compute, so
        a compiled ``encoder.forward`` / ``decoder.forward_features`` holds no
        context object of its own.
        """
        dev = device.type
        dtype = self.run_dtype(dev)
        if dtype is not None:
            return torch.autocast(dev, dtype=dtype)
        if torch.amp.is_autocast_available(dev):
            return torch.autocast(dev, enabled=False)
        return nullcontext()

    @torch.no_grad()
    def encode_logits(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, vocab, H/8, W/8] float32 logits."""
        if img.dim() != 4 or img.shape[-2] % 8 or img.shape[-1] % 8:
            raise ValueError(f'expected [B, 3, H, W] with H, W divisible by 8, '
                             f'got {tuple(img.shape)}')
        x = img.float().contiguous(memory_format=self.memory_format)  # [B, 3, H, W]
        with self._autocast(img.device):
            return self.encoder(x)

    @torch.no_grad()
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, H/8, W/8] int64 ids."""
        return self.encode_logits(img).argmax(dim=1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, h, w] ids -> [B, 3, 8h, 8w] float32 image in [0, 1]."""
        # The input 1x1 conv on a one-hot map is a table lookup: no dense
        # [B, vocab, h, w] tensor is ever built.
        x = self.decoder.embed(ids.long(), self.memory_format)  # [B, n_init, h, w] float32
        with self._autocast(ids.device):
            stats = self.decoder.forward_features(x, 3)  # [B, 3, 8h, 8w]
        img = unmap_pixels(torch.sigmoid(stats.float()))  # [B, 3, 8h, 8w]
        return img.contiguous()
