"""A per-patch neck that puts CNN feature maps on CIM's token grid."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS

from cim_mm.utils.errors import UserError

__all__ = ['CNNPatchNeck']


def _pair(size: Union[int, Sequence[int]], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise UserError(f'CNNPatchNeck {name} must be a positive int or a pair '
                         f'of positive ints, got {size!r}')
    return size  # type: ignore[return-value]


@MODELS.register_module()
class CNNPatchNeck(BaseModule):
    """CNN feature map(s) -> one per-patch map on the token grid.

    The CIM enhancer must give one feature vector per patch of the ``h x w``
    token grid (the tokenizer's grid; 14x14 for 224 px with the DALL-E dVAE on a
    112 px view). A ResNet's C5 is at stride 32 (7x7 for 224 px), so this neck
    projects each selected level with a 1x1 conv, resamples it to the grid
    (bilinear/nearest up, area down), sums the levels (C4 at stride 16 is already
    on the grid and brings back the detail C5 lost), then applies ``num_convs``
    3x3 conv + norm + GELU blocks (as FPN's output conv, against the upsampling
    artefacts) and a final norm (``out_norm_cfg``, like a ViT's final norm: the
    CIM heads are linear).

    Shape contract (``N = len(in_indices)`` selected levels)::

        inputs: tuple of [B, C_i, H_i, W_i] (the backbone's outputs)
        -> (out [B, out_channels, h, w], )  # one tensor: CIM takes feats[-1]

    The grid ``(h, w)`` is ``out_size`` if given, otherwise the last selected
    level's size times ``scale_factor`` (must come out integral), otherwise the
    last selected level's size.

    Args:
        in_channels: channels of each selected level (an int for one level).
        out_channels: ``C`` of the per-patch features (the head's in_channels).
        in_indices: which backbone outputs to use (indices into the tuple the
            backbone returns, e.g. ``(0, 1)`` for ResNet ``out_indices=(2, 3)``).
            ``None``: all of them (their number must equal ``len(in_channels)``).
        out_size: the token grid ``h`` or ``(h, w)``; exclusive with
            ``scale_factor``.
        scale_factor: grid = last selected level's size x this (e.g. 2 for ResNet
            C5 at 224 px -> 14x14); exclusive with ``out_size``.
        upsample_mode: ``'bilinear'`` or ``'nearest'`` for levels coarser than the
            grid (finer levels are area-pooled to it).
        num_convs: 3x3 conv + norm + GELU blocks after the fusion.
        norm_cfg: norm of those blocks (default channel LayerNorm ``LN2d``:
            independent of the batch).
        out_norm_cfg: final norm; ``None`` for none.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 out_channels: int,
                 in_indices: Optional[Sequence[int]] = None,
                 out_size: Optional[Union[int, Sequence[int]]] = None,
                 scale_factor: Optional[Union[int, float]] = None,
                 upsample_mode: str = 'bilinear',
                 num_convs: int = 1,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 out_norm_cfg: Optional[dict] = dict(type='LN2d', eps=1e-6),
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        if not in_channels or not all(isinstance(c, int) and c > 0 for c in in_channels):
            raise UserError(f'CNNPatchNeck in_channels must be positive ints, got {in_channels}')
        if in_indices is not None:
            in_indices = [int(i) for i in in_indices]
            if len(in_indices) != len(in_channels):
                raise UserError(
                    f'CNNPatchNeck: {len(in_indices)} in_indices {in_indices} but '
                    f'{len(in_channels)} in_channels {in_channels}')
        if out_size is not None and scale_factor is not None:
            raise UserError('CNNPatchNeck: give either out_size or scale_factor, not both')
        self.out_size = _pair(out_size, 'out_size') if out_size is not None else None
        if scale_factor is not None and not (
                isinstance(scale_factor, (int, float)) and scale_factor > 0):
            raise UserError(f'CNNPatchNeck scale_factor must be > 0, got {scale_factor!r}')
        self.scale_factor = scale_factor
        if upsample_mode not in ('bilinear', 'nearest'):
            raise UserError("upsample_mode must be 'bilinear' or 'nearest', "
                             f'got {upsample_mode!r}')
        if num_convs < 0:
            raise UserError(f'num_convs must be >= 0, got {num_convs}')
        self.in_channels = in_channels
        self.in_indices = in_indices
        self.out_channels = out_channels
        self.upsample_mode = upsample_mode

        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(c, out_channels, kernel_size=1) for c in in_channels)
        self.convs = nn.Sequential(*[
            nn.Sequential(
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                build_norm_layer(norm_cfg, out_channels), nn.GELU())
            for _ in range(num_convs)
        ])
        self.out_norm = (build_norm_layer(out_norm_cfg, out_channels)
                         if out_norm_cfg is not None else nn.Identity())

    def grid_size(self, ref_size: Sequence[int]) -> tuple[int, int]:
        """The token grid ``(h, w)`` for a last selected level of ``ref_size``."""
        if self.out_size is not None:
            return self.out_size
        if self.scale_factor is None:
            return int(ref_size[0]), int(ref_size[1])
        grid = []
        for s in ref_size:
            g = s * self.scale_factor
            if abs(g - round(g)) > 1e-6 or round(g) < 1:
                raise UserError(
                    f'CNNPatchNeck: feature size {tuple(ref_size)} x scale_factor '
                    f'{self.scale_factor} is not an integer grid; set out_size '
                    'instead or change the input size')
            grid.append(int(round(g)))
        return grid[0], grid[1]

    def _select(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs, )
        inputs = list(inputs)
        if self.in_indices is None:
            if len(inputs) != len(self.in_channels):
                raise UserError(
                    f'CNNPatchNeck got {len(inputs)} feature maps but has '
                    f'{len(self.in_channels)} in_channels: set in_indices or match '
                    "the backbone's out_indices")
            feats = inputs
        else:
            try:
                feats = [inputs[i] for i in self.in_indices]
            except IndexError:
                raise UserError(
                    f'CNNPatchNeck in_indices {self.in_indices} out of range for '
                    f'{len(inputs)} backbone outputs') from None
        for i, (x, c) in enumerate(zip(feats, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise UserError(
                    f'CNNPatchNeck level {i}: expected [B, {c}, H, W], got '
                    f'{tuple(x.shape)}')
        return feats

    def _resample(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, h, w]."""
        size = tuple(x.shape[-2:])
        if size == grid:
            return x
        if size[0] >= grid[0] and size[1] >= grid[1]:
            return F.adaptive_avg_pool2d(x, grid)  # area: finer level -> grid
        if self.upsample_mode == 'bilinear':
            return F.interpolate(x, size=grid, mode='bilinear', align_corners=False)
        return F.interpolate(x, size=grid, mode='nearest')

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> tuple[torch.Tensor]:
        """tuple of [B, C_i, H_i, W_i] -> ([B, out_channels, h, w], )."""
        feats = self._select(inputs)
        grid = self.grid_size(feats[-1].shape[-2:])
        out: Optional[torch.Tensor] = None
        for x, lateral in zip(feats, self.lateral_convs):
            y = self._resample(lateral(x), grid)  # [B, C, h, w]
            out = y if out is None else out + y
        out = self.convs(out)  # [B, C, h, w]
        return (self.out_norm(out), )  # ([B, C, h, w], )
