"""CroCo's decoder: view 1's tokens attend to themselves and to view 2's.

CroCo (cross-view completion, Weinzaepfel et al., NeurIPS 2022, arXiv
2210.10716), written from the paper: the decoder takes the encoder tokens of
view 1's visible patches, puts a mask token at each masked position, and runs
blocks of self-attention, cross-attention to the encoder tokens of the whole
view 2, and an MLP; a linear layer predicts each patch's pixels.

MAE's decoder (mmpretrain's ``MAEPretrainDecoder``) already holds everything
but the blocks: the encoder -> decoder projection (applied to both views), the
mask token, the fixed 2D sin-cos position embedding (added to both views), the
final norm and the pixel predictor; only its blocks are replaced.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.models.utils import (CrossMultiheadAttention, MultiheadAttention,
                                     build_norm_layer)
from mmpretrain.registry import MODELS


class CrossDecoderBlock(BaseModule):
    """Pre-norm block: ``x += SA(x)``, ``x += CA(x, y)``, ``x += MLP(x)``.

    Args:
        embed_dims: token width ``C`` of both ``x`` and ``y``.
        num_heads: heads of both attentions.
        feedforward_channels: hidden width of the MLP.
        norm_cfg: the norm before each sub-layer (and on ``y`` before the
            cross-attention).
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 qkv_bias: bool = True,
                 norm_cfg: dict = dict(type='LN', eps=1e-6)) -> None:
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)
        self.self_attn = MultiheadAttention(embed_dims, num_heads, qkv_bias=qkv_bias)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)
        self.norm_y = build_norm_layer(norm_cfg, embed_dims)
        self.cross_attn = CrossMultiheadAttention(embed_dims, num_heads, qkv_bias=qkv_bias)
        self.norm3 = build_norm_layer(norm_cfg, embed_dims)
        self.ffn = FFN(embed_dims=embed_dims, feedforward_channels=feedforward_channels,
                       num_fcs=2, ffn_drop=0.0, act_cfg=dict(type='GELU'),
                       add_identity=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, N, C]`` (view 1), ``y`` ``[B, M, C]`` (view 2) -> ``[B, N, C]``."""
        x = x + self.self_attn(self.norm1(x))  # [B, N, C]
        y = self.norm_y(y)  # [B, M, C]
        x = x + self.cross_attn(self.norm2(x), y, y)  # [B, N, C]
        return self.ffn(self.norm3(x), identity=x)  # [B, N, C]


@MODELS.register_module(force=False)
class CroCoDecoder(MAEPretrainDecoder):
    """MAE's decoder with :class:`CrossDecoderBlock` blocks that also see view 2.

    Args: as ``MAEPretrainDecoder`` (``num_patches`` = ``L``, the patches of
    one view; ``embed_dim`` the encoder's width; ``decoder_*`` the decoder's).
    """

    def __init__(self, num_patches: int = 196, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 1024, decoder_embed_dim: int = 512,
                 decoder_depth: int = 8, decoder_num_heads: int = 16,
                 mlp_ratio: float = 4.0, norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(num_patches=num_patches, patch_size=patch_size,
                         in_chans=in_chans, embed_dim=embed_dim,
                         decoder_embed_dim=decoder_embed_dim,
                         decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads,
                         mlp_ratio=mlp_ratio, norm_cfg=norm_cfg, init_cfg=init_cfg)
        self.decoder_blocks = ModuleList([
            CrossDecoderBlock(decoder_embed_dim, decoder_num_heads,
                              int(mlp_ratio * decoder_embed_dim), norm_cfg=norm_cfg)
            for _ in range(decoder_depth)
        ])

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the pixels of every patch of view 1.

        Args:
            x: ``[B, 1 + L_vis, C_enc]`` encoder tokens of view 1 (cls token
                first, then its visible patches in shuffled order).
            ids_restore: ``[B, L]`` MAEViT's indices that undo the shuffle.
            y: ``[B, 1 + L, C_enc]`` encoder tokens of the whole view 2.

        Returns:
            ``[B, L, p * p * in_chans]`` pixel predictions, patch by patch.
        """
        if y is None:
            raise ValueError('CroCoDecoder needs view 2 (y): it cross-attends to it')
        x = self.decoder_embed(x)  # [B, 1 + L_vis, C]
        B, L, C = x.shape[0], ids_restore.shape[1], x.shape[2]
        mask_tokens = self.mask_token.expand(B, L + 1 - x.shape[1], C)  # [B, L - L_vis, C]
        patches = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [B, L, C], shuffled
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, C))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed  # [B, 1 + L, C]
        y = self.decoder_embed(y) + self.decoder_pos_embed  # [B, 1 + L, C]
        for block in self.decoder_blocks:
            x = block(x, y)  # [B, 1 + L, C]
        x = self.decoder_pred(self.decoder_norm(x))  # [B, 1 + L, p * p * in_chans]
        return x[:, 1:]  # [B, L, p * p * in_chans]
