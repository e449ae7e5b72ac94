"""The DALL-E decoder with its 1x1 convolutions run before each upsampling.

A 1x1 convolution (and a ReLU) acts on each pixel alone, so it commutes with a
nearest-neighbour upsampling: ``conv1x1(up(x)) == up(conv1x1(x))``. In the
DALL-E decoder every ``upsample`` (end of groups 1-3) feeds the next group's
first block, whose ``id_path`` (the width change) and ``res_path.conv_1`` are
1x1: both run at the low resolution, on a quarter of the pixels. The output
layer (ReLU + 1x1) computes only the channels asked for (the 3 means of the
logit-Laplace statistics; the 3 log-scales are not used by ``decode``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F



def _is_1x1(module: nn.Module) -> bool:
    w = getattr(module, 'w', None)
    return isinstance(module, nn.Identity) or (w is not None and w.shape[-1] == 1)


def upsampled_block(block: nn.Module, x: torch.Tensor, up: nn.Upsample) -> torch.Tensor:
    """``block(up(x))`` with the block's leading 1x1 work before ``up``.

    Args:
        x: ``[B, n_in, h, w]`` (before the upsampling).
    Returns:
        ``[B, n_out, s*h, s*w]``, ``s`` the upsampling factor.
    """
    res = list(block.res_path.named_children())  # relu_1, conv_1, relu_2, conv_2, ...
    if not (_is_1x1(block.id_path) and _is_1x1(res[1][1])):
        return block(up(x))
    identity = up(block.id_path(x))  # [B, n_out, s*h, s*w]
    h = res[2][1](res[1][1](res[0][1](x)))  # relu_2(conv_1(relu_1(x))), [B, n_hid, h, w]
    h = up(h)  # [B, n_hid, s*h, s*w]
    for _, layer in res[3:]:  # conv_2, relu_3, conv_3, relu_4, conv_4
        h = layer(h)
    return identity + block.post_gain * h


def decode_features_lowres(decoder: nn.Module, x: torch.Tensor,
                           out_channels: Optional[int] = None) -> torch.Tensor:
    """:meth:`DALLEDecoder.forward_features` with the 1x1 convolutions moved
    before each upsampling (equal up to float rounding).

    Args:
        x: ``[B, n_init, h, w]`` (the output of the input convolution).
        out_channels: the first that many output channels (None: all 6).
    Returns:
        ``[B, out_channels, 8h, 8w]``.
    """
    pending: Optional[nn.Upsample] = None
    for name, group in decoder.blocks.named_children():
        if name == 'input':
            continue
        if name == 'output':
            conv = group.conv
            w, b = conv.w[:out_channels], conv.b[:out_channels]
            return F.conv2d(group.relu(x), w, b, padding=conv.padding)
        for module in group.children():
            if isinstance(module, nn.Upsample):
                pending = module
            elif pending is not None:
                x, pending = upsampled_block(module, x, pending), None
            else:
                x = module(x)
    raise ValueError('a DALL-E decoder ends with an output layer')
