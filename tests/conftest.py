"""Shared tiny fixtures: everything on CPU, tiny shapes, no downloads."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import cim_mm  # noqa: F401  (registers modules)
from cim_mm.models.tokenizers.base import BaseTokenizer, unmap_pixels
from mmpretrain.registry import MODELS

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')


@MODELS.register_module(force=True)
class ToyTokenizer(BaseTokenizer):
    """A parameter-free tokenizer for tests.

    encode: the mean intensity of each ``s x s`` block (all channels), in
    ``vocab_size`` levels; decode: a constant gray block per id.
    """

    def __init__(self, vocab_size: int = 16, downsample: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.downsample = downsample
        self.register_buffer('dummy', torch.zeros(1))

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        x = unmap_pixels(img).mean(1, keepdim=True)  # [B, 1, H, W]
        x = F.avg_pool2d(x, self.downsample)[:, 0]  # [B, h, w]
        return (x * self.vocab_size).long().clamp_(0, self.vocab_size - 1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        v = (ids.float() + 0.5) / self.vocab_size  # [B, h, w]
        v = v[:, None].expand(-1, 3, -1, -1)
        return F.interpolate(v, scale_factor=self.downsample, mode='nearest')


def tiny_vit_cim_cfg(head: str = 'respix', img_size: int = 16, patch: int = 4,
                     tok_down: int = 2, vocab: int = 16) -> dict:
    """A CIM model config: 16 px images, 4x4 grid, toy tokenizer at 8 px."""
    grid = img_size // patch
    tok_size = grid * tok_down
    head_cfg = (dict(type='ResPixHead', in_channels=32, patch_size=patch)
                if head == 'respix' else dict(type='RevDetHead', in_channels=32))
    return dict(
        type='CIM',
        data_preprocessor=dict(type='CIMDataPreprocessor', mean=[127.5] * 3,
                               std=[127.5] * 3, tokenizer_img_size=tok_size),
        backbone=dict(type='VisionTransformer',
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64),
                      img_size=img_size, patch_size=patch, out_type='featmap',
                      final_norm=True),
        head=head_cfg,
        tokenizer=dict(type='ToyTokenizer', vocab_size=vocab, downsample=tok_down),
        generator=dict(type='BEiTGenerator', vocab_size=vocab,
                       backbone=dict(arch=dict(embed_dims=16, num_layers=1,
                                               num_heads=2, feedforward_channels=32),
                                     img_size=tok_size, patch_size=tok_down)),
    )


def make_batch(batch_size: int = 4, img_size: int = 16, grid: int = 4,
               mask_ratio: float = 0.5, seed: int = 0, smooth: bool = False) -> dict:
    """A data batch as the dataloader gives it (uint8 images + masks).

    ``smooth=True`` makes piecewise-constant images (2x2 random blocks), where a
    replaced token stands out from its neighbours.
    """
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    if smooth:
        low = torch.randint(0, 256, (batch_size, 3, 2, 2), generator=g).float()
        imgs = F.interpolate(low, size=(img_size, img_size), mode='nearest').to(torch.uint8)
    else:
        imgs = torch.randint(0, 256, (batch_size, 3, img_size, img_size), generator=g,
                             dtype=torch.uint8)
    samples = []
    for _ in range(batch_size):
        mask = (torch.rand(grid, grid, generator=g) < mask_ratio)
        ds = DataSample()
        ds.set_mask(mask)
        samples.append(ds)
    return dict(inputs=imgs, data_samples=samples)


def write_fashion_mnist(folder: str, n_train: int = 300, n_test: int = 150,
                        seed: int = 0) -> str:
    """Tiny fake Fashion-MNIST in its idx layout (the extracted files
    ``tools/prepare_fashion_mnist.sh`` leaves): 28x28 uint8 images whose mean
    brightness depends on the label, 10 classes. Returns ``folder``."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)  # [N]
        noise = rng.integers(0, 80, (n, 28, 28))  # [N, 28, 28]
        imgs = (noise + 17 * labels[:, None, None]).astype(np.uint8)
        write_idx_split(folder, prefix, imgs, labels)
    return folder


def write_idx_split(folder: str, prefix: str, imgs, labels) -> None:
    """One Fashion-MNIST split in its extracted idx layout: ``imgs`` ``[N, h, w]``
    uint8 and ``labels`` ``[N]`` (0..9) as ``<prefix>-images-idx3-ubyte`` and
    ``<prefix>-labels-idx1-ubyte`` (``prefix``: ``'train'`` / ``'t10k'``)."""
    import struct

    import numpy as np
    os.makedirs(folder, exist_ok=True)
    imgs, labels = np.asarray(imgs, np.uint8), np.asarray(labels, np.uint8)
    n, h, w = imgs.shape
    with open(os.path.join(folder, f'{prefix}-images-idx3-ubyte'), 'wb') as f:
        f.write(struct.pack('>IIII', 2051, n, h, w) + imgs.tobytes())
    with open(os.path.join(folder, f'{prefix}-labels-idx1-ubyte'), 'wb') as f:
        f.write(struct.pack('>II', 2049, n) + labels.tobytes())


def benchmark_opts(work_dir, **kw) -> dict:
    """The options ``tools/benchmark.py`` makes from its command line, for a
    quick in-process run in ``work_dir`` (random tokenizer, no evaluation,
    1 s budget); ``kw``: more ``--flag value`` pairs (``methods='mae'``)."""
    import sys
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools')
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from benchmark import options, parse_args
    argv = ['--work-dir', str(work_dir), '--in-process', '--tokenizer', 'random',
            '--eval', 'none', '--budget-s', '1']
    for k, v in kw.items():
        argv += [f'--{k.replace("_", "-")}', str(v)]
    return options(parse_args(argv), argv)


@pytest.fixture(scope='session')
def fake_fashion_mnist(tmp_path_factory) -> str:
    """A session-wide tiny fake Fashion-MNIST folder (see ``write_fashion_mnist``)."""
    return write_fashion_mnist(str(tmp_path_factory.mktemp('fashion_mnist')))


@pytest.fixture
def toy_batch() -> dict:
    return make_batch()


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the session's torch thread count.

    ``tools/train.py``'s ``main()`` (called in-process by some tests) sets the
    thread count; a later test comparing an in-process run with a subprocess
    would then compare different float reduction orders.
    """
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _mmpretrain_default_scope():
    """Each test starts in mmpretrain's scope.

    mmengine's Runner (and mmseg tests) leave their own default scope current, and
    a later ``MODELS.build`` would then resolve e.g. ``ResNet`` in mmseg's registry.
    """
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope('mmpretrain')
    yield
    # leave no stale scope either
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name != 'mmpretrain':
        init_default_scope('mmpretrain')


@pytest.fixture(autouse=True)
def _mmengine_loggers_forgotten():
    """Loggers made during a test die with it.

    mmengine keeps every ``MMLogger`` by name and a Runner names its logger
    ``<config name>_<timestamp to the second>``: two tests that train the same
    config file name within one second would share a logger whose stream
    handler still writes to the first test's (closed) captured stderr, and
    every later log line prints a ``--- Logging error ---`` traceback.
    The Runner's visualizer is kept by the same name (and would write into the
    first test's work dir), so new visualizers are forgotten too.
    """
    from mmengine.logging import MMLogger
    from mmengine.visualization import Visualizer

    def visualizer_classes(cls: type = Visualizer) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__()
                        for c in visualizer_classes(sub)]

    before = {cls: set(cls._instance_dict)
              for cls in [MMLogger] + visualizer_classes()}
    yield
    for cls in [MMLogger] + visualizer_classes():
        for name in list(cls._instance_dict):
            if name in before.get(cls, ()):
                continue
            instance = cls._instance_dict.pop(name)
            if isinstance(instance, MMLogger):
                for handler in list(instance.handlers):
                    handler.close()
                    instance.removeHandler(handler)
