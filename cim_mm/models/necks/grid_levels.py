"""Which backbone levels can reach CIM's token grid, and what to change when one cannot.

CIM's heads take one feature vector per token (an ``h x w`` grid). Any backbone
that returns 2-D feature maps can give them through :class:`CNNPatchNeck`, which
resamples every selected level onto the grid. A level *reaches* the grid when
its map is the grid, an integer multiple of it (area-pooled down), or an integer
fraction of it at most ``max_upsample`` times coarser (interpolated up): a 1x1
map stretched over an 8x8 grid would give every token the same vector.

:func:`probe_levels` reads the shapes a backbone returns for one image of a
given size (on the meta device when it can: no memory, no compute);
:func:`check_levels` applies the rules and raises a one-line :class:`UserError`
naming the setting to change (``backbone.out_indices``, ``neck.in_channels``,
``neck.scale_factor``, the image or patch size).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from cim_mm.utils.errors import UserError

__all__ = ['probe_levels', 'select_levels', 'check_levels', 'grid_from_levels']

Pair = tuple[int, int]


def _fmt(p: Sequence[int]) -> str:
    return 'x'.join(str(int(v)) for v in p)


def _in_channels(backbone: nn.Module) -> int:
    """The channels of the backbone's input: its first convolution's, else 3."""
    first = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (list, tuple)) else (out, )


def probe_levels(backbone: nn.Module, img_size: Pair) -> list[tuple[int, ...]]:
    """The shape of each output of ``backbone`` for one ``img_size`` image.

    Runs the backbone, in eval mode (no SyncBN collective, no random draw), on
    meta tensors of its parameters' shapes (no memory, no compute, no state
    touched); a backbone whose forward cannot run on meta tensors (a
    data-dependent branch) runs once on a zero image, without gradients. The
    backbone gets its mode back.
    """
    x = torch.zeros(1, _in_channels(backbone), *img_size, device='meta')
    state = {k: torch.empty_like(v, device='meta')
             for k, v in [*backbone.named_parameters(), *backbone.named_buffers()]}
    # eval mode for both probes: a training-mode SyncBN would run collectives
    # (other ranks never join them), dropout / drop path would draw random numbers
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            try:
                out = torch.func.functional_call(backbone, state, (x, ), strict=False)
            except Exception:  # noqa: BLE001  (fall back to one real forward)
                param = next(iter(backbone.parameters()), None)
                device = param.device if param is not None else torch.device('cpu')
                out = backbone(torch.zeros(1, x.shape[1], *img_size, device=device))
    finally:
        backbone.train(training)
    return [tuple(o.shape) if isinstance(o, torch.Tensor) else () for o in _as_tuple(out)]


def select_levels(shapes: list[tuple[int, ...]], in_channels: Sequence[int],
                  in_indices: Optional[Sequence[int]]) -> list[tuple[int, tuple[int, ...]]]:
    """``(backbone output index, shape)`` of each level the neck takes, checked:
    2-D maps, as many as ``in_channels``, each with its channels."""
    n = len(shapes)
    if in_indices is None:
        if n != len(in_channels):
            chans = tuple(s[1] if len(s) == 4 else '?' for s in shapes)
            raise UserError(
                f'the backbone returns {n} outputs (backbone.out_indices) but '
                f'neck.in_channels has {len(in_channels)} {tuple(in_channels)}: set '
                f'neck.in_channels={chans} or change backbone.out_indices')
        picked = list(range(n))
    else:
        bad = [i for i in in_indices if not -n <= i < n]
        if bad:
            raise UserError(
                f'neck.in_indices {tuple(in_indices)} out of range for the {n} outputs of '
                'the backbone (backbone.out_indices): use indices into those outputs')
        picked = [i % n for i in in_indices]
    levels = []
    for i, c in zip(picked, in_channels):
        shape = shapes[i]
        if len(shape) != 4:
            raise UserError(
                f'backbone output {i} has shape {shape or "(not a tensor)"}, not a 2-D '
                'feature map [B, C, H, W]: drop it from backbone.out_indices or make the '
                "backbone return feature maps (e.g. out_type='featmap' for a ViT, "
                'gap_before_final_norm=False for a ConvNeXt)')
        if shape[1] != c:
            chans = tuple(shapes[j][1] if len(shapes[j]) == 4 else '?' for j in picked)
            raise UserError(
                f'backbone output {i} has {shape[1]} channels but neck.in_channels gives '
                f'{c}: set neck.in_channels={chans}')
        levels.append((i, shape))
    return levels


def grid_from_levels(last: Sequence[int], out_size: Optional[Pair],
                     scale_factor: Optional[float]) -> Pair:
    """The grid a neck makes: ``out_size``, else the last level x ``scale_factor``
    (integral), else the last level's size."""
    if out_size is not None:
        return out_size
    if scale_factor is None:
        return int(last[0]), int(last[1])
    grid = []
    for s in last:
        g = s * scale_factor
        if abs(g - round(g)) > 1e-6 or round(g) < 1:
            raise UserError(
                f'the last neck level {_fmt(last)} x neck.scale_factor {scale_factor} is not '
                'an integer grid: set neck.out_size to the token grid instead, or change '
                'the image size')
        grid.append(int(round(g)))
    return grid[0], grid[1]


def _reach(size: Pair, grid: Pair, max_upsample: int) -> Optional[str]:
    """Why a ``size`` map cannot reach ``grid`` (None: it can)."""
    g = f'the {_fmt(grid)} token grid'
    if size == grid:
        return None
    if size[0] >= grid[0] and size[1] >= grid[1]:
        if size[0] % grid[0] == 0 and size[1] % grid[1] == 0:
            return None
        return f'is not an integer multiple of {g}'
    if size[0] <= grid[0] and size[1] <= grid[1]:
        if grid[0] % size[0] or grid[1] % size[1]:
            return f'does not divide {g}'
        up = max(grid[0] // size[0], grid[1] // size[1])
        if up <= max_upsample:
            return None
        return f'is {up}x coarser than {g} (the neck upsamples at most x{max_upsample})'
    return f'is finer than {g} in one direction and coarser in the other'


def check_levels(levels: list[tuple[int, tuple[int, ...]]], grid: Pair, max_upsample: int,
                 img_size: Optional[Pair] = None) -> None:
    """One-line :class:`UserError` for the first level that cannot reach ``grid``."""
    for i, shape in levels:
        size = (int(shape[2]), int(shape[3]))
        why = _reach(size, grid, max_upsample)
        if why is None:
            continue
        where = ''
        if img_size is not None:
            stride = [img_size[k] / size[k] for k in range(2)]
            st = (f'stride {int(stride[0])}' if stride[0] == stride[1] and stride[0].is_integer()
                  else f'strides {stride[0]:g}x{stride[1]:g}')
            where = f' ({st} on {_fmt(img_size)} px)'
        patch = ''
        if img_size is not None and img_size[0] % grid[0] == 0:
            patch = f' / patch size {img_size[0] // grid[0]}'
        raise UserError(
            f'backbone output {i} is {_fmt(size)}{where}, which {why}: drop it from '
            f'backbone.out_indices, or change the image size'
            f'{" " + _fmt(img_size) if img_size else ""}{patch} so that the level\'s stride '
            f'divides the patch size or is at most {max_upsample}x it')
