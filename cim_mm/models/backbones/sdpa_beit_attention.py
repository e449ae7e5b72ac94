"""mmpretrain's ``BEiTAttention`` computed by a fused attention kernel.

mmpretrain 1.2's ``BEiTAttention`` materialises ``softmax(q k^T + bias)`` by
hand: on a GPU that is several memory-bound kernels per layer instead of one
fused attention kernel. :class:`SDPABEiTAttention` computes the same function
with PyTorch's fused attention, the relative position bias (the layer's own
table and/or the backbone's shared one) added to the scores by the kernel
``attn_impl`` names (:mod:`~cim_mm.models.backbones.attention_kernels`):
``'sdpa'`` (an additive float mask, the default), ``'flex'`` (FlexAttention)
or ``'cudnn'`` (cuDNN attention, bias without gradient).

Same parameters, buffers and state-dict keys as ``BEiTAttention``: it only
replaces ``forward``, so :func:`use_sdpa_attention` switches a built model in
place (checkpoints of either load strictly into the other). Honoured as in
mmpretrain: ``bias`` (``'qv_bias'``: learnt q and v biases, k bias zero;
``True``; ``False``), ``qk_scale``, the attention drop-out ``attn_drop``
(applied to the attention weights, training only) and ``proj_drop``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import BEiTAttention

from .attention_kernels import KERNELS, check_attn_impl

__all__ = ['SDPABEiTAttention', 'use_sdpa_attention']


class SDPABEiTAttention(BEiTAttention):
    """``BEiTAttention`` (same arguments, same keys) with a fused forward.

    Shape contract: ``forward(x [B, N, C], rel_pos_bias [nH, N, N] | None)
    -> [B, N, C]``; ``N = 1 + Wh * Ww`` when the layer has its own table.

    ``attn_impl`` (set by :func:`use_sdpa_attention`; not in the state dict)
    names the kernel, a key of ``attention_kernels.KERNELS``.
    """
    attn_impl: str = 'sdpa'

    def own_position_bias(self) -> Optional[torch.Tensor]:
        """The layer's relative position bias ``[nH, N, N]`` (``None`` without
        a table), gathered as mmpretrain's ``BEiTAttention`` does."""
        if self.relative_position_bias_table is None:
            return None
        n = self.window_size[0] * self.window_size[1] + 1
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)  # [nH, N, N]

    def forward(self, x: torch.Tensor,
                rel_pos_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, N, C], shared bias [nH, N, N] or None -> [B, N, C]."""
        B, N, C = x.shape
        if self.bias == 'qv_bias':
            k_bias = torch.zeros_like(self.v_bias, requires_grad=False)
            qkv_bias = torch.cat((self.q_bias, k_bias, self.v_bias))  # [3C]
            qkv = F.linear(x, self.qkv.weight, qkv_bias)  # [B, N, 3C]
        else:
            qkv = self.qkv(x)  # [B, N, 3C]
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, nH, N, C / nH]

        bias = self.own_position_bias()  # [nH, N, N] or None
        if rel_pos_bias is not None:  # the backbone's shared table
            bias = rel_pos_bias if bias is None else bias + rel_pos_bias

        drop = self.attn_drop.p if self.training else 0.0
        x = KERNELS[self.attn_impl](q, k, v, bias, drop, self.scale)  # [B, nH, N, C / nH]
        x = x.transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj_drop(self.proj(x))


def use_sdpa_attention(module: nn.Module, attn_impl: str = 'sdpa') -> int:
    """Turn every mmpretrain ``BEiTAttention`` inside ``module`` into a
    :class:`SDPABEiTAttention` running the kernel ``attn_impl``, in place;
    returns how many were switched.

    Only the class and the kernel's name change (no tensor state), so weights,
    buffers, hooks and keys stay as they are. Subclasses of ``BEiTAttention``
    other than ours are left alone: their forward may differ.
    """
    check_attn_impl(attn_impl)
    switched = 0
    for m in module.modules():
        if type(m) is BEiTAttention:
            m.__class__ = SDPABEiTAttention
            m.attn_impl = attn_impl
            switched += 1
    return switched
