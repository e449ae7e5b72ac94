"""The interface every CIM tokenizer implements."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from mmengine.model import BaseModule

# DALL-E's logit-Laplace pixel mapping: x in [0, 1] -> [eps, 1 - eps].
LOGIT_LAPLACE_EPS = 0.1


def map_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """[0, 1] image -> tokenizer input space, ``(1 - 2 eps) x + eps``."""
    return (1 - 2 * eps) * x + eps


def unmap_pixels(x: torch.Tensor, eps: float = LOGIT_LAPLACE_EPS) -> torch.Tensor:
    """Inverse of :func:`map_pixels`, clamped to [0, 1]."""
    return torch.clamp((x - eps) / (1 - 2 * eps), 0, 1)


class BaseTokenizer(BaseModule, metaclass=ABCMeta):
    """A discrete image tokenizer: image <-> grid of codebook ids.

    Shape contract (``s = downsample``):
        ``encode(img [B, 3, H, W]) -> ids [B, H/s, W/s]`` (int64 in [0, vocab_size)),
        ``decode(ids [B, h, w]) -> img [B, 3, h*s, w*s]`` in [0, 1].

    ``img`` given to ``encode`` is in the tokenizer input space, i.e.
    :func:`map_pixels` of a [0, 1] image (the CIM data preprocessor produces it).
    """

    vocab_size: int
    downsample: int

    @abstractmethod
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, H/s, W/s] ids."""

    @abstractmethod
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, h, w] ids -> [B, 3, h*s, w*s] image in [0, 1]."""

    def freeze(self) -> None:
        """Make the tokenizer frozen: eval mode, no parameter gradients."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
