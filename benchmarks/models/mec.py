"""MEC: Maximum Entropy Coding (Liu et al., NeurIPS 2022, arXiv 2210.11464).

Written from the paper (Sec. 3, "Maximum Entropy Coding"); the equation
numbers below are the paper's as read here and are unverified.

The coding length of ``m`` samples of a ``d``-dim representation ``Z`` up to a
distortion ``eps`` (the lossy-coding / rate-distortion estimate the paper
starts from) is::

    L = mu * log det(I_m + lambda * Z Z^T),  mu = (m + d) / 2,  lambda = d / (m eps^2)

and MEC maximises it between two augmented views, replacing ``Z Z^T`` by
the cross term of the two views' L2-normalised representations
``Z1, Z2 in R^{m x d}`` (rows = samples)::

    L_MEC = -mu * log det(I + lambda * Z1^T Z2)
          = -mu * tr(log(I + lambda * C)),                     C = Z1^T Z2
          ~ -mu * sum_{k=1}^{n} (-1)^{k+1} / k * tr((lambda C)^k)   (Taylor, order n)

(``log det = tr log``; the series converges for spectral radius of
``lambda C`` < 1 and the paper truncates it at a small order, 4 by default).
``tr((Z1^T Z2)^k) = tr((Z2 Z1^T)^k)``, so the trace is taken on the smaller
of the ``d x d`` and ``m x m`` products.

Architecture (the paper's Siamese setup, as BYOL): an online encoder
(backbone + projector) followed by a predictor, a momentum (EMA) target
encoder; the loss is symmetrised over the two views,
``(L(p1, z2') + L(p2, z1')) / 2`` with ``p`` the online predictions and ``z'``
the target projections (no gradient into the target).

Defaults marked unverified: ``eps_sq`` (the paper's ``eps^2``) = 64, chosen
so that ``lambda * m = d / eps^2`` stays a few units for ``d`` of a few hundred
(the order-4 series is then meaningful); ``base_momentum`` 0.01 (target
momentum 0.99 -> 1 by cosine, mmpretrain's BYOL schedule).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from mmpretrain.registry import MODELS

from cim_mm.utils.errors import UserError
from mmpretrain.structures import DataSample


def mec_trace_series(z1: torch.Tensor, z2: torch.Tensor, lam: float,
                     order: int = 4) -> torch.Tensor:
    """``sum_{k=1}^{order} (-1)^{k+1} / k * tr((lam * z1^T z2)^k)``.

    The order-``order`` Taylor series of ``tr log(I + lam * z1^T z2)``.

    Args:
        z1, z2: ``[m, d]`` (rows already normalised by the caller).
    Returns:
        scalar (float32 or the inputs' dtype).
    """
    m, d = z1.shape
    if m <= d:
        c = lam * (z2 @ z1.t())  # [m, m], same traces of powers as z1^T z2
    else:
        c = lam * (z1.t() @ z2)  # [d, d]
    power = c
    total = torch.diagonal(power).sum()
    for k in range(2, order + 1):
        power = power @ c
        sign = 1. if k % 2 == 1 else -1.
        total = total + sign / k * torch.diagonal(power).sum()
    return total


def mec_loss(z1: torch.Tensor, z2: torch.Tensor, eps_sq: float = 64.,
             order: int = 4) -> torch.Tensor:
    """``-mu * tr log(I + lambda Z1^T Z2)`` by its Taylor series.

    ``Z = normalize(z)`` (rows), ``mu = (m + d) / 2``, ``lambda = d / (m eps^2)``.

    Args:
        z1, z2: ``[m, d]`` representations of the two views (any scale).
    """
    m, d = z1.shape
    z1 = F.normalize(z1.float(), dim=1)
    z2 = F.normalize(z2.float(), dim=1)
    lam = d / (m * eps_sq)
    mu = (m + d) / 2.
    return -mu * mec_trace_series(z1, z2, lam, order)


@MODELS.register_module()
class MECHead(BaseModule):
    """The predictor and the MEC loss.

    ``loss(online [m, d], target [m, d]) -> scalar``:
    ``mec_loss(predictor(online), target.detach())``.

    Args:
        predictor: config of the predictor (e.g. ``NonLinearNeck``).
        eps_sq: the distortion ``eps^2`` (``lambda = d / (m eps^2)``).
        order: order of the Taylor series.
    """

    def __init__(self, predictor: dict, eps_sq: float = 64., order: int = 4,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.predictor = MODELS.build(predictor)
        if order < 1:
            raise UserError(f'MECHead order must be >= 1, got {order}')
        self.eps_sq = float(eps_sq)
        self.order = int(order)

    def loss(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = self.predictor([online])[0]  # [m, d]
        return mec_loss(pred, target.detach(), self.eps_sq, self.order)


@MODELS.register_module()
class MEC(BaseSelfSupervisor):
    """Maximum Entropy Coding with an online / momentum-target Siamese pair.

    One step, views ``x1, x2 [B, 3, H, W]``:
    ``z_i = neck(backbone(x_i))`` (online), ``z'_i`` = the EMA target's
    (no grad), ``loss = (head.loss(z1, z'2) + head.loss(z2, z'1)) / 2``.

    Args:
        backbone, neck, head: the encoder, its projector, :class:`MECHead`.
        base_momentum: start of the target's cosine momentum (``1 - m``; 0.01
            = momentum 0.99 rising to 1 over ``max_iters``).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 base_momentum: float = 0.01,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.target_net = CosineEMA(nn.Sequential(self.backbone, self.neck),
                                    momentum=base_momentum)

    def init_weights(self) -> None:
        """Initialise the online networks, then start the target as their copy."""
        super().init_weights()
        self.target_net.module.load_state_dict(
            nn.Sequential(self.backbone, self.neck).state_dict())
        for p in self.target_net.parameters():
            p.requires_grad_(False)

    def loss(self, inputs: list[torch.Tensor], data_samples: list[DataSample],
             **kwargs) -> dict[str, torch.Tensor]:
        """inputs = [view1 [B, 3, H, W], view2 [B, 3, H, W]]."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise UserError('MEC needs two views per image: use '
                             "dict(type='MultiView', num_views=2, ...) in the pipeline")
        x1, x2 = inputs[0], inputs[1]
        z1 = self.neck(self.backbone(x1))[0]  # [B, d]
        z2 = self.neck(self.backbone(x2))[0]  # [B, d]
        with torch.no_grad():
            self.target_net.update_parameters(nn.Sequential(self.backbone, self.neck))
            t1 = self.target_net(x1)[0]  # [B, d]
            t2 = self.target_net(x2)[0]  # [B, d]
        loss = 0.5 * (self.head.loss(z1, t2) + self.head.loss(z2, t1))
        return dict(loss=loss)
