"""Fashion-MNIST for the benchmark: a pre-training loader and eval arrays.

Pre-training goes through mmpretrain's ``FashionMNIST`` dataset and each
method's pipeline (mmengine dataloader, ``InfiniteSampler``). Evaluation reads
the idx files once into arrays and makes model inputs per batch the way the
pre-training pipeline does (gray -> 3 channels, bicubic resize with mmcv,
normalisation with the scale's mean / std).
"""
from __future__ import annotations

import copy
import gzip
import os.path as osp
import warnings
from typing import Iterator, Optional

import numpy as np
import torch

_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


def _read_idx(path: str) -> np.ndarray:
    """An idx file (plain or .gz) -> numpy array."""
    for p in (path, path + '.gz'):
        if osp.isfile(p):
            opener = gzip.open if p.endswith('.gz') else open
            with opener(p, 'rb') as f:
                data = f.read()
            break
    else:
        raise FileNotFoundError(
            f'{path} not found: run tools/prepare_fashion_mnist.sh (Fashion-MNIST '
            'idx files extracted into data/fashion_mnist)')
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(data_root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """-> images uint8 [N, 28, 28], labels int64 [N]."""
    img_f, lab_f = _FILES[split]
    images = _read_idx(osp.join(data_root, img_f))
    labels = _read_idx(osp.join(data_root, lab_f)).astype(np.int64)
    return images, labels


def subset_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """The first ``n`` of a fixed permutation (all when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


class EvalImages:
    """Model inputs for evaluation, made per batch.

    ``images`` uint8 ``[N, h, w]`` -> float ``[B, 3, S, S]``: gray to RGB,
    mmcv bicubic resize to ``img_size`` (as ``Resize`` in the pre-training
    pipeline), ``(x - mean) / std``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, img_size: int,
                 mean: list, std: list) -> None:
        self.images = images
        self.labels = torch.as_tensor(labels)
        self.img_size = img_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: np.ndarray, flip: Optional[np.ndarray] = None) -> torch.Tensor:
        import mmcv
        s = self.img_size
        out = np.empty((len(idx), s, s), dtype=np.float32)
        for j, i in enumerate(idx):
            img = self.images[i]
            if img.shape != (s, s):
                img = mmcv.imresize(img, (s, s), interpolation='bicubic')
            if flip is not None and flip[j]:
                img = img[:, ::-1]
            out[j] = img
        x = torch.from_numpy(out)[:, None].expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield self.batch(idx), self.labels[idx]


_DATASETS: dict = {}


def _train_dataset(data_root: str, pipeline: list):
    """mmpretrain's ``FashionMNIST`` train split with ``pipeline``.

    The parsed data list is cached per process (parsing 60000 images takes a
    few seconds); each call gets its own shallow copy with its own pipeline.
    """
    from mmcv.transforms import Compose
    from mmpretrain.registry import DATASETS
    key = osp.abspath(data_root)
    if key not in _DATASETS:
        # mmpretrain's MNIST loader warns once per image (numpy 2 / torch):
        # 60000 warnings are slow to record (pytest) and say nothing here
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            _DATASETS[key] = DATASETS.build(dict(
                type='FashionMNIST', data_root=data_root, split='train',
                download=False, pipeline=[]))
    ds = copy.copy(_DATASETS[key])
    ds.pipeline = Compose(pipeline)
    return ds


def build_pretrain_loader(data_root: str, pipeline: list, batch_size: int,
                          num_workers: int = 0, seed: int = 0):
    """An infinite mmengine dataloader over the Fashion-MNIST train split."""
    from mmengine.runner import Runner
    cfg = dict(
        batch_size=batch_size, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=False,
        sampler=dict(type='InfiniteSampler', shuffle=True, seed=seed),
        collate_fn=dict(type='default_collate'),
        dataset=_train_dataset(data_root, pipeline))
    return Runner.build_dataloader(cfg, seed=seed)
