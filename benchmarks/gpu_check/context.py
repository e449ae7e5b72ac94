"""What the stages of one GPU check share."""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..paths import REPO_ROOT
from .settings import CheckSettings


@dataclass
class CheckContext:
    """Settings, device, scratch folder and what earlier stages left.

    ``batch`` is one collated CIM batch from the recipe's loader (real JPEG
    decoding); ``batch_size`` is the batch every method is timed at (halved
    on an out-of-memory error, for the methods that follow too).
    """
    settings: CheckSettings
    device: torch.device
    tmp: str
    log: Callable[[str], None]
    dalle_dir: Optional[str] = None  # full-size (or toy) DALL-E files
    toy_dalle_dir: Optional[str] = None  # tiny DALL-E files (the resume run)
    jpeg_dir: Optional[str] = None
    scale: Any = None
    batch: Optional[dict] = None
    batch_size: int = 0
    notes: list = field(default_factory=list)
    # off CUDA the compile path (backend eager) is traced once, for the first
    # method timed; later ones only resolve what they would compile
    compile_traced: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.type == 'cuda'

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)
