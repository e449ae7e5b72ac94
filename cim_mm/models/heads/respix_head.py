"""ResPix: regress the sliding-window-normalised pixels of all patches."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from cim_mm.utils.errors import UserError

from .sliding_window import patchify, sliding_window_normalize


@MODELS.register_module()
class ResPixHead(BaseModule):
    """Per-patch pixel regression of the *original* image (all patches).

    Shape contract (``L`` patches on the enhancer's grid, patch side ``p``):
    ``forward(feats [B, L, C]) -> pred [B, L, p*p*3]``;
    ``target(original [B, 3, h*p, w*p]) -> [B, L, p*p*3]``: the original image
    normalised per pixel by a sliding window (:func:`sliding_window_normalize`);
    ``loss(feats, original=..., replaced=...) -> dict(loss=MSE)`` over all
    pixels of all patches (``replaced`` is unused: ResPix recovers every patch).

    Args:
        in_channels: feature dims ``C``.
        patch_size: side ``p`` of one patch of the enhancer's grid, in pixels.
        window_size: side of the normalisation window (odd). Default ``None``
            means ``patch_size + 1``: each pixel is normalised by the statistics of
            about one patch around it (our choice; the paper's value, in its
            appendix, could not be checked here).
        out_channels: image channels.
        separable_window: window statistics by two 1-D pools (exact, faster);
            False: one 2-D pool.
    """

    def __init__(self,
                 in_channels: int,
                 patch_size: int,
                 window_size: Optional[int] = None,
                 out_channels: int = 3,
                 eps: float = 1e-6,
                 separable_window: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.window_size = window_size if window_size is not None else patch_size + 1
        if self.window_size % 2 != 1:
            raise UserError(f'ResPixHead window_size must be odd, got {self.window_size}: '
                            'set model.head.window_size to an odd number')
        self.out_channels = out_channels
        self.eps = eps
        self.separable_window = separable_window
        self.decoder = nn.Linear(in_channels, patch_size * patch_size * out_channels)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [B, L, p*p*3]."""
        return self.decoder(feats)

    def target(self, original: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, L, p*p*3]."""
        normed = sliding_window_normalize(original, self.window_size, self.eps,
                                          self.separable_window)
        return patchify(normed, self.patch_size)

    def loss(self, feats: torch.Tensor, *, original: torch.Tensor,
             replaced: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        pred = self.forward(feats).float()  # [B, L, p*p*3]
        target = self.target(original)  # [B, L, p*p*3]
        return dict(loss=F.mse_loss(pred, target))
