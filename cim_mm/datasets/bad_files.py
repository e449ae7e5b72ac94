"""Which images of a dataset could not be loaded: one tally shared by the
DataLoader worker processes of a rank and read by its main process."""
from __future__ import annotations

from typing import Iterable

import torch


class BadFileTally:
    """One flag per dataset index in shared memory; 1 = the image is bad.

    The flags live in a shared-memory tensor made before the DataLoader starts
    its workers, so a worker that marks an index is seen by the other workers
    (they skip it without decoding it again) and by the main process (which
    counts, logs and stops on too many). Works with ``fork`` (inherited
    mapping) and ``spawn`` (torch passes shared storage by handle).
    Each rank of a distributed run has its own tally; ``merge`` adds the
    indices other ranks found.

    Args:
        size: number of samples in the dataset.
    """

    def __init__(self, size: int) -> None:
        self.flags = torch.zeros(int(size), dtype=torch.uint8).share_memory_()  # [N]

    def __len__(self) -> int:
        return self.flags.numel()

    def is_bad(self, idx: int) -> bool:
        return bool(self.flags[idx])

    def mark(self, idx: int) -> bool:
        """Flag ``idx`` as bad; True if it was not flagged before."""
        new = not self.flags[idx]
        self.flags[idx] = 1
        return new

    def merge(self, indices: Iterable[int]) -> None:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel():
            self.flags[idx] = 1

    def count(self) -> int:
        return int(self.flags.sum())

    def indices(self) -> list[int]:
        return self.flags.nonzero().flatten().tolist()
