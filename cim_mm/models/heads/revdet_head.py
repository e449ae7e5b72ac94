"""RevDet: tell, per patch, whether its visual token was replaced."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class RevDetHead(BaseModule):
    """Replaced-token detection, one binary logit per patch.

    Shape contract: ``forward(feats [B, L, C]) -> logits [B, L]``;
    ``loss(feats, replaced=[B, h, w] (1 = replaced), original=...) ->
    dict(loss=BCE, acc=...)``. A sampled id equal to the original id is *not*
    replaced (label 0): the algorithm computes ``replaced = sampled != original``.

    Args:
        in_channels: feature dims ``C``.
        pos_weight: weight of the positive (replaced) class in the BCE, to
            balance the ~40 % replaced / ~60 % kept split; 1.0 = plain BCE.
    """

    def __init__(self,
                 in_channels: int,
                 pos_weight: float = 1.0,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.classifier = nn.Linear(in_channels, 1)
        self.pos_weight = float(pos_weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [B, L]."""
        return self.classifier(feats).squeeze(-1)

    def loss(self, feats: torch.Tensor, *, replaced: torch.Tensor,
             original: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        logits = self.forward(feats).float()  # [B, L]
        labels = replaced.flatten(1).to(logits.dtype)  # [B, L]
        pos_weight = logits.new_tensor(self.pos_weight)
        loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
        with torch.no_grad():
            acc = ((logits > 0).to(labels.dtype) == labels).float().mean()
        return dict(loss=loss, acc=acc)
