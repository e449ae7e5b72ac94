"""A per-patch neck that puts any backbone's feature maps on CIM's token grid."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS

from cim_mm.utils.errors import UserError

from .grid_levels import check_levels, grid_from_levels, probe_levels, select_levels

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
    """Feature map(s) of any backbone -> one per-patch map on the token grid.

    The CIM enhancer must give one feature vector per patch of the ``h x w``
    token grid (the tokenizer's grid; 14x14 for 224 px with the DALL-E dVAE on a
    112 px view). Any backbone that returns 2-D feature maps can be the
    enhancer: a ResNet's C4 (stride 16) is on that grid and its C5 (stride 32,
    7x7) half of it, and so are ConvNeXt's and Swin's last two stages. This neck
    projects each selected level with a 1x1 conv, resamples it to the grid
    (bilinear/nearest up, area down), sums the levels, then applies
    ``num_convs`` 3x3 conv + norm + GELU blocks (as FPN's output conv, against
    the upsampling artefacts) and a final norm (``out_norm_cfg``, like a ViT's
    final norm: the CIM heads are linear).

    A level must *reach* the grid (:mod:`.grid_levels`): be the grid, an integer
    multiple of it, or an integer fraction at most ``max_upsample`` times
    coarser. :meth:`check_backbone` probes the backbone once at build time
    (``CIM`` calls it when the image size is known: ``img_size`` here, or the
    ResPix head's ``patch_size`` x the token grid) and refuses, in one line
    naming the setting to change, outputs that are not 2-D maps, channels that
    are not ``in_channels``, and levels that cannot reach the grid; the forward
    pass applies the same rules to the shapes it gets.

    Shape contract (``N = len(in_channels)`` selected levels)::

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
        img_size: the enhancer's input size ``H`` or ``(H, W)``, for the build-time
            check only (the forward pass takes any size); ``None``: the ResPix
            head's ``patch_size`` x the token grid, else checked on the first batch.
        max_upsample: the largest factor a level coarser than the grid is
            interpolated by (2: a ResNet's C5 onto the C4 grid).
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
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 max_upsample: int = 2,
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
        self.img_size = _pair(img_size, 'img_size') if img_size is not None else None
        if not isinstance(max_upsample, int) or max_upsample < 1:
            raise UserError(f'CNNPatchNeck max_upsample must be an int >= 1, got {max_upsample!r}')
        self.max_upsample = max_upsample
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
        return grid_from_levels(ref_size, self.out_size, self.scale_factor)

    def check_backbone(self, backbone: nn.Module, token_grid: Optional[Sequence[int]] = None,
                       img_size: Optional[Sequence[int]] = None) -> None:
        """Probe ``backbone`` once on an image of ``self.img_size`` (else
        ``img_size``) and raise a one-line :class:`UserError` when its outputs
        cannot make ``token_grid`` (else this neck's grid) through this neck.
        Without an image size there is nothing to probe: the forward pass checks."""
        size = self.img_size or (tuple(img_size) if img_size is not None else None)
        if size is None:
            return
        levels = select_levels(probe_levels(backbone, size), self.in_channels, self.in_indices)
        last = levels[-1][1][2:]
        grid = self.grid_size(last)
        if token_grid is not None and tuple(grid) != tuple(token_grid):
            what = ('neck.scale_factor ' + str(self.scale_factor) if self.scale_factor
                    is not None else 'the last level')
            raise UserError(
                f'{what} makes a {grid[0]}x{grid[1]} grid from the last neck level '
                f'{last[0]}x{last[1]} ({size[0]}x{size[1]} px) but the token grid is '
                f'{token_grid[0]}x{token_grid[1]}: set neck.out_size=({token_grid[0]}, '
                f'{token_grid[1]}) (or neck.scale_factor to match)')
        check_levels(levels, grid, self.max_upsample, size)

    def _select(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs, )
        inputs = list(inputs)
        shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else () for x in inputs]
        levels = select_levels(shapes, self.in_channels, self.in_indices)
        return [inputs[i] for i, _ in levels]

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
        check_levels([(i, tuple(x.shape)) for i, x in enumerate(feats)], grid,
                     self.max_upsample)
        out: Optional[torch.Tensor] = None
        for x, lateral in zip(feats, self.lateral_convs):
            y = self._resample(lateral(x), grid)  # [B, C, h, w]
            out = y if out is None else out + y
        out = self.convs(out)  # [B, C, h, w]
        return (self.out_norm(out), )  # ([B, C, h, w], )
