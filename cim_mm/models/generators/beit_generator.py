"""The CIM generator: a small BEiT that proposes replacement visual tokens."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS


def gumbel_max_sample(logits: torch.Tensor, temperature: float = 1.0,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample ids from ``softmax(logits / temperature)`` along the last dim.

    Gumbel-max: ``argmax(logits / T + g)``, ``g = -log(-log(u))``, is an exact,
    batched, sync-free sample. ``temperature == 0`` gives the argmax.

    Args:
        logits: ``[..., V]``.
    Returns:
        ids ``[...]`` (int64).
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    u = torch.rand(logits.shape, device=logits.device, dtype=torch.float32,
                   generator=generator).clamp_(min=1e-10)  # (0, 1)
    neg_log_u = (-torch.log(u)).clamp_(min=1e-10)  # (0, inf)
    gumbel = -torch.log(neg_log_u)
    return (logits.float() / temperature + gumbel).argmax(dim=-1)


def masked_positions(mask: torch.Tensor, num_masked: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``num_masked`` masked positions of each sample, static shapes.

    A stable sort puts each sample's masked positions first (in raster order):
    no boolean indexing, no ``nonzero``, no host sync. ``num_masked`` is an upper
    bound on the masked count per sample (``BEiTMaskGenerator`` masks exactly
    ``num_masking_patches``); a sample with more is refused by a device-side
    assertion (no sync either).

    Args:
        mask: ``[B, h, w]`` (1 = masked).
    Returns:
        ``idx [B, K]`` int64 positions in ``[0, L)`` and ``valid [B, K]`` bool
        (False: a padding slot on an unmasked position, when a sample has fewer
        than ``K`` masked), ``K = num_masked``.
    """
    flat = mask.flatten(1).to(torch.uint8)  # [B, L]
    torch._assert_async((flat.sum(1) <= num_masked).all(),
                        'a sample has more masked positions than generator.num_masked')
    idx = flat.sort(dim=1, descending=True, stable=True).indices[:, :num_masked]  # [B, K]
    return idx, flat.gather(1, idx).bool()


@MODELS.register_module()
class BEiTGenerator(BaseModule):
    """A small BEiT that predicts visual tokens at masked positions.

    Shape contract (``h x w`` = the tokenizer's token grid = the generator's
    patch grid, ``L = h * w``, ``V = vocab_size``):

    - ``forward(img [B, 3, H', W'], mask [B, h, w]) -> logits [B, L, V]``, or
      ``[B, K, V]`` at the masked positions only when ``num_masked = K`` is set;
    - ``loss(logits, target_ids [B, h, w], mask) -> scalar``: cross-entropy on
      masked positions only (mean over masked tokens of the batch);
    - ``sample(logits, target_ids, mask) -> ids [B, h, w]``: a sample from
      ``softmax(logits / temperature)`` where ``mask`` is 1, ``target_ids``
      elsewhere; run under ``no_grad``.

    Args:
        backbone: an mmpretrain ``BEiTPretrainViT`` config (it owns the mask
            token), fed the tokenizer view, patch size = tokenizer downsample.
        vocab_size: codebook size of the tokenizer.
        temperature: sampling temperature (1.0 = sample from the softmax).
        num_masked: masked positions per sample (an upper bound, e.g.
            ``BEiTMaskGenerator.num_masking_patches``): head, loss and sampling
            then run on those ``K`` positions only, found without a host sync
            (:func:`masked_positions`). None: on all ``L`` positions.
    """

    def __init__(self,
                 backbone: dict,
                 vocab_size: int = 8192,
                 temperature: float = 1.0,
                 num_masked: Optional[int] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        backbone = dict(backbone)
        backbone.setdefault('type', 'BEiTPretrainViT')
        self.backbone = MODELS.build(backbone)
        self.vocab_size = vocab_size
        self.temperature = float(temperature)
        self.num_masked = num_masked
        self.head = nn.Linear(self.backbone.embed_dims, vocab_size)

    def init_weights(self) -> None:
        super().init_weights()
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def patch_resolution(self) -> tuple[int, int]:
        return tuple(self.backbone.patch_resolution)

    def forward(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, 3, H', W'], [B, h, w] -> logits [B, L, V] (``[B, K, V]``)."""
        x = self.backbone(img, mask)[-1]  # [B, 1 + L, C]
        x = x[:, self.backbone.num_extra_tokens:]  # [B, L, C]
        if self.num_masked is not None:
            idx, _ = masked_positions(mask, self.num_masked)  # [B, K]
            x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))  # [B, K, C]
        return self.head(x)  # [B, L, V] or [B, K, V]

    def loss(self, logits: torch.Tensor, target_ids: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Masked-token cross-entropy; no host sync (no boolean indexing)."""
        target = target_ids.flatten(1)  # [B, L]
        w = mask.flatten(1)  # [B, L]
        if self.num_masked is not None:
            idx, w = masked_positions(mask, self.num_masked)  # [B, K]
            target = target.gather(1, idx)  # [B, K]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                             reduction='none')  # [B * L] or [B * K]
        w = w.flatten().to(ce.dtype)
        return (ce * w).sum() / w.sum().clamp(min=1.)

    @torch.no_grad()
    def sample(self, logits: torch.Tensor, target_ids: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """[B, L, V] (``[B, K, V]``), [B, h, w], [B, h, w] -> corrupted ids [B, h, w]."""
        sampled = gumbel_max_sample(logits.detach(), self.temperature)  # [B, L] or [B, K]
        if self.num_masked is None:
            return torch.where(mask.bool(), sampled.view_as(target_ids), target_ids)
        idx, valid = masked_positions(mask, self.num_masked)  # [B, K]
        flat = target_ids.flatten(1)  # [B, L]
        sampled = torch.where(valid, sampled, flat.gather(1, idx))  # [B, K]
        return flat.scatter(1, idx, sampled).view_as(target_ids)  # [B, h, w]
