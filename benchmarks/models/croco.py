"""CroCo: cross-view completion (Weinzaepfel et al., NeurIPS 2022, arXiv 2210.10716).

Written from the paper. One ViT encoder, with the same weights for both views,
encodes the visible patches of view 1 (90 % of its patches masked, at random)
and all patches of view 2; the decoder (:class:`CroCoDecoder`) reconstructs
view 1's patches from its visible tokens and cross-attention to view 2's tokens;
the loss is MAE's: the mean squared error on per-patch-normalised pixels of the
masked patches of view 1.

Parts reused from mmpretrain: ``MAEViT`` (the encoder and its random masking,
mask 1 = masked), ``MAEPretrainDecoder`` (under ``CroCoDecoder``),
``CrossMultiheadAttention``, ``MAEPretrainHead`` with ``PixelReconstructionLoss``.

The paper's pairs are two views of one scene; this project has no multi-view
data, so the pairs are two overlapping crops of one image (``MultiView`` in the
pipeline). ``view2='other_image'`` is the control: view 2 comes from the
previous image of the batch (the batch rolled by one), so any gain over MAE-like
completion that the pairs give disappears if the decoder really uses view 2.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .croco_decoder import CroCoDecoder  # noqa: F401  (registers the decoder)

VIEW2_SOURCES = ('pair', 'other_image')


@MODELS.register_module(force=False)
class CroCo(BaseSelfSupervisor):
    """CroCo pre-training.

    Args:
        backbone: an ``MAEViT`` config (``mask_ratio`` 0.9 in the paper).
        neck: a :class:`CroCoDecoder` config.
        head: a ``MAEPretrainHead`` config (``norm_pix=True``).
        view2: ``'pair'`` (view 2 is the other crop of the same image) or
            ``'other_image'`` (the control: the other crop of the previous
            image in the batch).
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, view2: str = 'pair',
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[list[dict], dict]] = None) -> None:
        if view2 not in VIEW2_SOURCES:
            raise ValueError(f'view2={view2!r}: one of {VIEW2_SOURCES}')
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.view2 = view2

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The encoder on whole images ``[B, 3, H, W]`` (no mask)."""
        return self.backbone(inputs, mask=None)

    def second_view(self, x2: torch.Tensor) -> torch.Tensor:
        """View 2 ``[B, 3, H, W]`` as the decoder will see it (rolled by one
        image for the ``'other_image'`` control)."""
        if self.view2 == 'pair':
            return x2
        if x2.shape[0] < 2:
            raise ValueError("view2='other_image' needs batches of 2 or more images")
        return x2.roll(1, dims=0)

    def reconstruct(self, x1: torch.Tensor, x2: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode both views with the one encoder and decode view 1.

        Args:
            x1: ``[B, 3, H, W]`` view 1 (masked at random by the encoder).
            x2: ``[B, 3, H, W]`` view 2 (seen whole).

        Returns:
            pred ``[B, L, p * p * 3]`` (every patch of view 1) and
            mask ``[B, L]`` (1 = masked).
        """
        latent1, mask, ids_restore = self.backbone(x1)  # [B, 1 + L_vis, C], [B, L], [B, L]
        latent2 = self.backbone(x2, mask=None)[0]  # [B, 1 + L, C]
        pred = self.neck(latent1, ids_restore, latent2)  # [B, L, p * p * 3]
        return pred, mask

    def loss(self, inputs: list[torch.Tensor], data_samples: list[DataSample],
             **kwargs) -> dict[str, torch.Tensor]:
        """``inputs``: the two views ``[B, 3, H, W]`` (``MultiView``, 2 views)."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('CroCo needs two views per image: MultiView(num_views=2) '
                             'in the pipeline')
        x1, x2 = inputs[0], self.second_view(inputs[1])
        pred, mask = self.reconstruct(x1, x2)
        return dict(loss=self.head.loss(pred, x1, mask))
