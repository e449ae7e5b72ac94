"""The few adapters the peer methods need to run on the benchmark's ViT.

mmpretrain's algorithms, heads and necks are used as they are; only three
places assume a backbone or an image size the benchmark does not have:

* :class:`TokenizerTargetGenerator` -- mmpretrain's ``BEiT`` calls
  ``target_generator(view2)`` and its ``BEiTV1Head`` takes ``argmax(dim=1)`` of
  the result, i.e. it expects DALL-E-encoder-like logits ``[B, V, h, w]``. This
  wraps any CIM tokenizer (``VQTokenizer``, ``DALLETokenizer``) so BEiT trains
  against exactly the tokens CIM's generator predicts.
* :class:`SimMIMViT` -- mmpretrain's ``SimMIM`` only ships a Swin backbone
  (``SimMIMSwinTransformer``); the SimMIM paper also pre-trains plain ViTs. This
  is mmpretrain's ``MaskFeatViT`` (a ``VisionTransformer`` with a learnable mask
  token) whose masked forward returns the patch tokens as a feature map
  ``([B, C, h, w],)``, which ``SimMIMLinearDecoder`` expects.
* :class:`GridHOGGenerator` -- mmpretrain's ``HOGGenerator._reshape`` hard-codes
  a 14x14 patch grid (224 px / 16); this takes the grid from the input size.

All three are registered in mmpretrain's ``MODELS`` under these names.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.selfsup.maskfeat import HOGGenerator, MaskFeatViT
from mmpretrain.registry import MODELS

from cim_mm.models.tokenizers.base import LOGIT_LAPLACE_EPS

__all__ = ['TokenizerTargetGenerator', 'SimMIMViT', 'GridHOGGenerator']


@MODELS.register_module()
class TokenizerTargetGenerator(BaseModule):
    """A frozen CIM tokenizer as mmpretrain BEiT's ``target_generator``.

    ``forward(view [B, 3, H, W]) -> [B, V, h, w]`` whose ``argmax(dim=1)`` is
    ``tokenizer.encode(view)``: the tokenizer's logits when it has
    ``encode_logits`` (DALL-E, like mmpretrain's ``DALL-E`` target generator),
    a one-hot map otherwise (VQ tokenizer).

    ``view`` is in the tokenizer input space (``map_pixels``; mmpretrain's
    ``TwoNormDataPreprocessor`` with ``second_mean=-31.875, second_std=318.75``
    gives exactly that). It is resized (antialiased bicubic, as
    ``CIMDataPreprocessor``) to ``img_size`` when that differs, e.g. 224 -> 112
    px for the DALL-E dVAE.

    Args:
        tokenizer: config (or module) of a CIM tokenizer; frozen here.
        img_size: side of the tokenizer view (None: as given).
    """

    def __init__(self, tokenizer: Union[dict, nn.Module],
                 img_size: Optional[Union[int, Sequence[int]]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.tokenizer = tokenizer if isinstance(tokenizer, nn.Module) \
            else MODELS.build(tokenizer)
        self.tokenizer.freeze()
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size = tuple(img_size) if img_size is not None else None

    def init_weights(self) -> None:
        """The tokenizer's weights are loaded at build time: keep them."""

    def train(self, mode: bool = True) -> 'TokenizerTargetGenerator':
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, V, h, w] (argmax = ids)."""
        if self.img_size is not None and tuple(x.shape[-2:]) != self.img_size:
            x = F.interpolate(x.float(), size=self.img_size, mode='bicubic',
                              antialias=True, align_corners=False)
            x = x.clamp(LOGIT_LAPLACE_EPS, 1 - LOGIT_LAPLACE_EPS)
        if hasattr(self.tokenizer, 'encode_logits'):
            return self.tokenizer.encode_logits(x)
        ids = self.tokenizer.encode(x)  # [B, h, w]
        onehot = F.one_hot(ids, self.tokenizer.vocab_size)  # [B, h, w, V]
        return onehot.permute(0, 3, 1, 2).float()


@MODELS.register_module()
class SimMIMViT(MaskFeatViT):
    """A ViT for mmpretrain's ``SimMIM``: masked forward -> ``([B, C, h, w],)``.

    Same parameters as ``MaskFeatViT`` (a ``VisionTransformer`` plus
    ``mask_token``), so the pre-trained weights load into a plain
    ``VisionTransformer``. ``forward(x, None)`` is the ordinary ViT forward.
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]):
        if mask is None:
            return super().forward(x, None)
        tokens = super().forward(x, mask.flatten(1))  # [B, 1 + L, C] (normed)
        h, w = self.patch_resolution
        patch = tokens[:, self.num_extra_tokens:]  # [B, L, C]
        fmap = patch.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return (fmap.contiguous(), )


@MODELS.register_module()
class GridHOGGenerator(HOGGenerator):
    """``HOGGenerator`` whose per-patch grouping follows the image size.

    mmpretrain's version groups HOG cells into ``14 x 14`` patches whatever the
    input size; this one uses ``patch_size`` (pixels per ViT patch), so a
    32 px image with 4 px patches gives an ``8 x 8`` grid. Output:
    ``[B, L, 3 * nbins * (patch_size / pool)**2]``.
    """

    def __init__(self, patch_size: int = 16, nbins: int = 9, pool: int = 8,
                 gaussian_window: int = 16) -> None:
        super().__init__(nbins=nbins, pool=pool, gaussian_window=gaussian_window)
        if patch_size % pool:
            raise ValueError(f'patch_size {patch_size} must be a multiple of '
                             f'the HOG cell size (pool) {pool}')
        self.patch_size = patch_size

    def _reshape(self, hog_feat: torch.Tensor) -> torch.Tensor:
        hog_feat = hog_feat.flatten(1, 2)  # [B, 3 * nbins, h_cells, w_cells]
        self.unfold_size = self.patch_size // self.pool
        hog_feat = hog_feat.permute(0, 2, 3, 1)
        hog_feat = hog_feat.unfold(1, self.unfold_size, self.unfold_size).unfold(
            2, self.unfold_size, self.unfold_size)
        return hog_feat.flatten(1, 2).flatten(2)
