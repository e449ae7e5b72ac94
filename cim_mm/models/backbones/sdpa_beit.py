"""mmpretrain's BEiT-layout backbones with fused attention (a config switch).

``SDPABEiTViT`` / ``SDPABEiTPretrainViT`` are mmpretrain's ``BEiTViT`` /
``BEiTPretrainViT`` (same arguments, outputs, state-dict keys and
``get_layer_depth``) whose attention layers run
:class:`~cim_mm.models.backbones.sdpa_beit_attention.SDPABEiTAttention`::

    backbone=dict(type='SDPABEiTViT', arch='base', ...)  # or 'BEiTViT': plain attention

Checkpoints move between the plain and the fused backbone both ways, strictly.
"""
from __future__ import annotations

from mmpretrain.models import BEiTPretrainViT, BEiTViT
from mmpretrain.registry import MODELS

from .sdpa_beit_attention import use_sdpa_attention

__all__ = ['SDPABEiTViT', 'SDPABEiTPretrainViT']


@MODELS.register_module()
class SDPABEiTViT(BEiTViT):
    """``BEiTViT`` with ``F.scaled_dot_product_attention`` in every layer.

    Shape contract: as ``BEiTViT`` (``forward(x [B, 3, H, W]) -> tuple``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        use_sdpa_attention(self.layers)


@MODELS.register_module()
class SDPABEiTPretrainViT(BEiTPretrainViT):
    """``BEiTPretrainViT`` with ``F.scaled_dot_product_attention`` in every
    layer.

    Shape contract: as ``BEiTPretrainViT`` (``forward(x [B, 3, H, W],
    mask [B, h, w] | None) -> tuple``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        use_sdpa_attention(self.layers)
