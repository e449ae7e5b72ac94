"""mmpretrain's BEiT-layout backbones with fused attention (a config switch).

``SDPABEiTViT`` / ``SDPABEiTPretrainViT`` are mmpretrain's ``BEiTViT`` /
``BEiTPretrainViT`` (same arguments, outputs, state-dict keys and
``get_layer_depth``) whose attention layers run
:class:`~cim_mm.models.backbones.sdpa_beit_attention.SDPABEiTAttention`::

    backbone=dict(type='SDPABEiTViT', arch='base', ...)  # or 'BEiTViT': plain attention
    backbone=dict(type='SDPABEiTViT', attn_impl='flex', ...)  # 'sdpa' (default), 'flex', 'cudnn'

Checkpoints move between the plain and the fused backbone, and between the
kernels, both ways, strictly (``attn_impl`` is no state).
"""
from __future__ import annotations

from mmpretrain.models import BEiTPretrainViT, BEiTViT
from mmpretrain.registry import MODELS

from .attention_kernels import check_attn_impl
from .sdpa_beit_attention import use_sdpa_attention

__all__ = ['SDPABEiTViT', 'SDPABEiTPretrainViT']


@MODELS.register_module()
class SDPABEiTViT(BEiTViT):
    """``BEiTViT`` with fused attention in every layer.

    Shape contract: as ``BEiTViT`` (``forward(x [B, 3, H, W]) -> tuple``).
    ``attn_impl``: the attention kernel (``attention_kernels.ATTN_IMPLS``).
    """

    def __init__(self, *args, attn_impl: str = 'sdpa', **kwargs) -> None:
        check_attn_impl(attn_impl)  # before the layers are built
        super().__init__(*args, **kwargs)
        use_sdpa_attention(self.layers, attn_impl)


@MODELS.register_module()
class SDPABEiTPretrainViT(BEiTPretrainViT):
    """``BEiTPretrainViT`` with fused attention in every layer.

    Shape contract: as ``BEiTPretrainViT`` (``forward(x [B, 3, H, W],
    mask [B, h, w] | None) -> tuple``). ``attn_impl``: the attention kernel
    (``attention_kernels.ATTN_IMPLS``).
    """

    def __init__(self, *args, attn_impl: str = 'sdpa', **kwargs) -> None:
        check_attn_impl(attn_impl)  # before the layers are built
        super().__init__(*args, **kwargs)
        use_sdpa_attention(self.layers, attn_impl)
