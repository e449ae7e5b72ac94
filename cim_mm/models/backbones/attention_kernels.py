"""Attention with an additive bias on PyTorch's kernels: one function per ``attn_impl``.

Each function computes ``softmax(q k^T * scale + bias) v`` for ``q, k, v
[B, nH, N, d]`` and a bias ``[nH, N, N]`` (or ``None``), with the same
signature, so :class:`~cim_mm.models.backbones.sdpa_beit_attention.SDPABEiTAttention`
picks one by name (:data:`KERNELS`):

- ``'sdpa'``: ``F.scaled_dot_product_attention`` with the bias as an additive
  float mask in the query's dtype. On CUDA a float mask rules out flash
  attention, so this runs the memory-efficient kernel.
- ``'flex'``: FlexAttention, the bias added by a ``score_mod`` that indexes it.
  Its gradient (and so the tables') comes back from the kernel. Fast only
  inside ``torch.compile`` (``CompileBlocksHook``); called eagerly, PyTorch
  runs an unfused reference, forward only on the CPU. No attention drop-out.
- ``'cudnn'``: SDPA restricted to cuDNN attention (CUDA, fp16 / bf16). PyTorch's
  cuDNN attention returns no gradient for its bias, so it runs only where the
  bias needs none (frozen tables, ``no_grad``, or no bias at all).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

try:
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # torch < 2.5
    _flex_attention = None

__all__ = ['ATTN_IMPLS', 'KERNELS', 'check_attn_impl', 'attend_sdpa', 'attend_flex',
           'attend_cudnn', 'cudnn_bias']

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], float,
                   float], torch.Tensor]

#: the one SDPA kernel ``'cudnn'`` may run, and the device it runs on
CUDNN_BACKEND = SDPBackend.CUDNN_ATTENTION
CUDNN_DEVICE = 'cuda'


def attend_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: Optional[torch.Tensor], dropout_p: float,
                scale: float) -> torch.Tensor:
    """q, k, v [B, nH, N, d], bias [nH, N, N] | None -> [B, nH, N, d]."""
    if bias is not None:
        # the fused kernels want the mask in the query's (autocast) dtype
        bias = bias.to(q.dtype).unsqueeze(0)  # [1, nH, N, N]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                          scale=scale)


def attend_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                bias: Optional[torch.Tensor], dropout_p: float,
                scale: float) -> torch.Tensor:
    """q, k, v [B, nH, N, d], bias [nH, N, N] | None -> [B, nH, N, d].

    The bias keeps its own dtype (fp32 tables under autocast): the kernel adds
    it to fp32 scores and accumulates its gradient in fp32.
    """
    if dropout_p > 0:
        raise ValueError(f"attn_impl='flex' has no attention drop-out (got {dropout_p}): "
                         "set the backbone's attn_drop_rate=0 or use attn_impl='sdpa'")
    score_mod = None
    if bias is not None:
        def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor,
                      q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
            return score + bias[h, q_idx, kv_idx]
    return _flex_attention(q, k, v, score_mod=score_mod, scale=scale)


def cudnn_bias(bias: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """bias [nH, N, N] -> [1, nH, N, N] in ``dtype`` whose rows start on
    16-byte boundaries (a slice of a zero-padded ``[1, nH, N, N_pad]``), the
    layout PyTorch gives the memory-efficient kernel's mask; ``None`` stays."""
    if bias is None:
        return None
    per_16_bytes = 16 // dtype.itemsize
    pad = -bias.shape[-1] % per_16_bytes
    return F.pad(bias.to(dtype), (0, pad))[..., :bias.shape[-1]].unsqueeze(0)


def attend_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 bias: Optional[torch.Tensor], dropout_p: float,
                 scale: float) -> torch.Tensor:
    """q, k, v [B, nH, N, d] (fp16 / bf16, CUDA), bias [nH, N, N] | None
    (without gradient) -> [B, nH, N, d]."""
    if bias is not None and bias.requires_grad and torch.is_grad_enabled():
        raise RuntimeError("attn_impl='cudnn': PyTorch's cuDNN attention gives the relative "
                           "position bias no gradient; train with attn_impl='flex' or 'sdpa' "
                           "(or freeze the bias tables)")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise RuntimeError(f"attn_impl='cudnn' needs fp16 / bf16 inputs (autocast), got "
                           f"{q.dtype}; run under autocast or use attn_impl='sdpa'")
    if q.device.type != CUDNN_DEVICE:
        raise RuntimeError(f"attn_impl='cudnn' runs on {CUDNN_DEVICE} only, got "
                           f"{q.device.type} tensors; use attn_impl='sdpa' here")
    with sdpa_kernel(CUDNN_BACKEND):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=cudnn_bias(bias, q.dtype),
                                              dropout_p=dropout_p, scale=scale)


#: ``attn_impl`` -> its kernel
KERNELS: dict[str, Kernel] = {'sdpa': attend_sdpa, 'flex': attend_flex,
                              'cudnn': attend_cudnn}
ATTN_IMPLS = tuple(KERNELS)


def check_attn_impl(attn_impl: str) -> str:
    """``attn_impl`` if this torch has it, else a one-line error."""
    if attn_impl not in KERNELS:
        raise ValueError(f'attn_impl={attn_impl!r} is not one of {ATTN_IMPLS}: set the '
                         "backbone's attn_impl to one of them")
    if attn_impl == 'flex' and _flex_attention is None:
        raise RuntimeError("attn_impl='flex' needs torch.nn.attention.flex_attention "
                           f"(torch >= 2.5, this is {torch.__version__}): use attn_impl='sdpa'")
    return attn_impl
