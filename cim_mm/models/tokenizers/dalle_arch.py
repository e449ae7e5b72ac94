"""The DALL-E dVAE architecture (OpenAI, 2021): encoder and decoder.

A re-implementation of ``dall_e.Encoder`` / ``dall_e.Decoder`` (pip package
``dall-e==0.1``, ``dall_e/{utils,encoder,decoder}.py``) whose ``state_dict``
keys are exactly the reference ones (``blocks.input.w``,
``blocks.group_1.block_1.res_path.conv_1.w``, ...).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dalle_lowres import decode_features_lowres

__all__ = ['Conv2d', 'ResBlock', 'DALLEEncoder', 'DALLEDecoder']


class Conv2d(nn.Module):
    """``dall_e.utils.Conv2d``: params ``w`` [out, in, k, k], ``b`` [out], 'same' padding.

    ``fp32=True`` runs it in float32 even under autocast, like the reference's
    ``use_float16=False`` layers (encoder output, decoder input).
    """

    def __init__(self, n_in: int, n_out: int, kw: int, fp32: bool = False) -> None:
        super().__init__()
        assert kw % 2 == 1, 'kernel width must be odd'
        # dall_e's default init; real weights are loaded over it.
        self.w = nn.Parameter(
            torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw**2))
        self.b = nn.Parameter(torch.zeros(n_out))
        self.padding = (kw - 1) // 2
        self.fp32 = fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        if self.fp32:
            with torch.autocast(x.device.type, enabled=False):
                return F.conv2d(x.float(), self.w, self.b, padding=self.padding)
        return F.conv2d(x, self.w, self.b, padding=self.padding)


class ResBlock(nn.Module):
    """``dall_e.{Encoder,Decoder}Block``: ``id_path(x) + res_path(x) / n_layers**2``.

    ``kernels`` are the widths of ``conv_1..conv_4``: (3, 3, 3, 1) in the
    encoder, (1, 3, 3, 3) in the decoder. Hidden width is ``n_out // 4``.
    """

    def __init__(self, n_in: int, n_out: int, n_layers: int,
                 kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        n_hid = n_out // 4
        self.post_gain = 1 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [n_in, n_hid, n_hid, n_hid, n_out]
        layers: list[tuple[str, nn.Module]] = []
        for i, kw in enumerate(kernels):
            layers += [(f'relu_{i + 1}', nn.ReLU()),
                       (f'conv_{i + 1}', Conv2d(widths[i], widths[i + 1], kw))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_in, H, W] -> [B, n_out, H, W]."""
        return self.id_path(x) + self.post_gain * self.res_path(x)


def _group(blocks: list[ResBlock], last: nn.Module | None,
           last_name: str) -> nn.Sequential:
    mods: list[tuple[str, nn.Module]] = [
        (f'block_{i + 1}', b) for i, b in enumerate(blocks)
    ]
    if last is not None:
        mods.append((last_name, last))
    return nn.Sequential(OrderedDict(mods))


class DALLEEncoder(nn.Module):
    """``dall_e.Encoder``: mapped image [B, 3, H, W] -> logits [B, vocab, H/8, W/8].

    Widths per group: n_hid, 2 n_hid, 4 n_hid, 8 n_hid; a 2x2 max-pool ends
    groups 1-3.
    """

    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2,
                 vocab_size: int = 8192, group_count: int = 4,
                 input_channels: int = 3) -> None:
        super().__init__()
        assert group_count == 4, 'the DALL-E layout has exactly 4 groups'
        n_layers = group_count * n_blk_per_group
        width = [n_hid, 1 * n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid]  # [0]: stem, [g]: group g

        groups: list[tuple[str, nn.Module]] = []
        for g in range(1, 5):
            blocks = [
                ResBlock(width[g - 1] if i == 0 else width[g], width[g], n_layers,
                         (3, 3, 3, 1)) for i in range(n_blk_per_group)
            ]
            pool = nn.MaxPool2d(kernel_size=2) if g < 4 else None
            groups.append((f'group_{g}', _group(blocks, pool, 'pool')))
        self.blocks = nn.Sequential(OrderedDict([
            ('input', Conv2d(input_channels, n_hid, 7)),
            *groups,
            ('output', nn.Sequential(OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', Conv2d(8 * n_hid, vocab_size, 1, fp32=True)),
            ]))),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, vocab, H/8, W/8] (float32 logits)."""
        return self.blocks(x)


class DALLEDecoder(nn.Module):
    """``dall_e.Decoder``: one-hot ids [B, vocab, h, w] -> stats [B, 6, 8h, 8w].

    Widths per group: 8 n_hid, 4 n_hid, 2 n_hid, n_hid; a nearest x2 upsample
    ends groups 1-3. The 6 output channels are logit-Laplace statistics
    (3 means, 3 log-scales). Use :meth:`embed` + :meth:`forward_features` to
    skip the dense one-hot input; ``lowres_1x1``: see :meth:`forward_features`.
    """

    def __init__(self, n_init: int = 128, n_hid: int = 256,
                 n_blk_per_group: int = 2, vocab_size: int = 8192,
                 group_count: int = 4, output_channels: int = 3,
                 lowres_1x1: bool = False) -> None:
        super().__init__()
        self.lowres_1x1 = lowres_1x1
        assert group_count == 4, 'the DALL-E layout has exactly 4 groups'
        n_layers = group_count * n_blk_per_group
        width = [n_init, 8 * n_hid, 4 * n_hid, 2 * n_hid, 1 * n_hid]  # [0]: stem, [g]: group g

        groups: list[tuple[str, nn.Module]] = []
        for g in range(1, 5):
            blocks = [
                ResBlock(width[g - 1] if i == 0 else width[g], width[g], n_layers,
                         (1, 3, 3, 3)) for i in range(n_blk_per_group)
            ]
            up = nn.Upsample(scale_factor=2, mode='nearest') if g < 4 else None
            groups.append((f'group_{g}', _group(blocks, up, 'upsample')))
        self.blocks = nn.Sequential(OrderedDict([
            ('input', Conv2d(vocab_size, n_init, 1, fp32=True)),
            *groups,
            ('output', nn.Sequential(OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', Conv2d(n_hid, 2 * output_channels, 1)),
            ]))),
        ]))

    def embed(self, ids: torch.Tensor,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """ids [B, h, w] -> [B, n_init, h, w] (float32).

        Equal to ``blocks.input`` applied to the one-hot map, as a table lookup.
        ``torch.channels_last`` keeps the lookup's own layout (no copy).
        """
        conv = self.blocks.input
        table = conv.w[:, :, 0, 0].t()  # [vocab, n_init]
        x = F.embedding(ids, table) + conv.b  # [B, h, w, n_init]
        return x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)

    def forward_features(self, x: torch.Tensor,
                         out_channels: int | None = None) -> torch.Tensor:
        """[B, n_init, h, w] (output of the input conv) -> [B, out_channels, 8h, 8w].

        ``out_channels``: the first that many statistics (None: all 6). With
        ``lowres_1x1`` the 1x1 convolutions run before each upsampling
        (:mod:`.dalle_lowres`; equal up to float rounding).
        """
        if self.lowres_1x1:
            return decode_features_lowres(self, x, out_channels)
        for name, module in self.blocks.named_children():
            if name != 'input':
                x = module(x)
        return x if out_channels is None else x[:, :out_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference path: one-hot [B, vocab, h, w] -> [B, 6, 8h, 8w]."""
        return self.blocks(x)
