"""Shared test helpers: a toy tokenizer, tiny CIM configs, data batches, fake data.

Importing this module registers :class:`ToyTokenizer` in mmpretrain's ``MODELS``.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from PIL import Image

import cim_mm  # noqa: F401  (registers the CIM modules)
from benchmarks.gpu_check.syncs import count_host_syncs  # noqa: F401  (one home: the GPU check's)
from cim_mm.models.tokenizers.base import BaseTokenizer, unmap_pixels

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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



def load_tool(*parts: str) -> ModuleType:
    """The script ``tools/<parts>`` as a module (``tools/`` is not a package),
    registered in ``sys.modules`` under its file name (dataclasses look it up)."""
    name = osp.splitext(parts[-1])[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO_ROOT, 'tools', *parts))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod

def offline_tokenizer(cfg):
    """``cfg`` (an mmengine ``Config`` of a CIM recipe) with its tokenizer built
    without weights: the DALL-E paths and the VQ checkpoint dropped, random init
    allowed. Returns ``cfg``."""
    tok = cfg.model.tokenizer
    if tok.type == 'DALLETokenizer':
        tok.encoder_path = tok.decoder_path = None
        tok.allow_random_init = True
    elif 'checkpoint' in tok:
        tok.checkpoint = None
        tok.allow_random_init = True
    return cfg


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


def tiny_resnet_cim_cfg(head: str = 'respix', img_size: int = 16, patch: int = 4,
                        tok_down: int = 2, vocab: int = 16) -> dict:
    """:func:`tiny_vit_cim_cfg` with a tiny ResNet-18 enhancer + ``CNNPatchNeck``.

    The stem is x4 (16 px -> 4x4 = the grid); strides (1, 1, 1, 2) keep C4 on
    the grid and put C5 at 2x2, the ResNet-50-at-224-px layout in miniature.
    """
    cfg = tiny_vit_cim_cfg(head, img_size, patch, tok_down, vocab)
    cfg['backbone'] = dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                           strides=(1, 1, 1, 2), out_indices=(2, 3))
    cfg['neck'] = dict(type='CNNPatchNeck', in_channels=(32, 64), out_channels=32,
                       out_size=img_size // patch)
    return cfg


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
    tools = os.path.join(REPO_ROOT, 'tools')
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from benchmark import options, parse_args
    argv = ['--work-dir', str(work_dir), '--in-process', '--tokenizer', 'random',
            '--eval', 'none', '--budget-s', '1']
    for k, v in kw.items():
        argv += [f'--{k.replace("_", "-")}', str(v)]
    return options(parse_args(argv), argv)


#: the images of ``write_images`` (relative paths) and its one undecodable file
GOOD = ['a/b/deep.webp', 'a/flat.PNG', 'img0.png', 'img1.webp', 'img2.png', 'img3.Jpg',
        'x/img4.png', 'x/y/img5.webp']
BROKEN = 'a/broken.jpg'


def write_images(root: str, good=GOOD, broken=(BROKEN, )) -> str:
    """Small RGB images (PNG, WebP, JPEG; nested; upper-case endings), files
    that are not images by name, and undecodable ``.jpg`` files."""
    rng = np.random.default_rng(0)
    for rel in good:
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        fmt = {'.png': 'PNG', '.webp': 'WEBP', '.jpg': 'JPEG'}[osp.splitext(rel)[1].lower()]
        img = (rng.random((20, 24, 3)) * 255).astype(np.uint8)  # [H, W, 3]
        Image.fromarray(img).save(path, format=fmt)
    for rel in broken:
        os.makedirs(osp.dirname(osp.join(root, rel)), exist_ok=True)
        with open(osp.join(root, rel), 'wb') as f:
            f.write(b'\xff\xd8\xff this is not a JPEG')
    with open(osp.join(root, 'notes.txt'), 'w') as f:
        f.write('not an image')
    os.makedirs(osp.join(root, '.cache'), exist_ok=True)
    for hidden in ('._img0.png', osp.join('.cache', 'thumb.png')):  # e.g. macOS copies
        with open(osp.join(root, hidden), 'wb') as f:
            f.write(b'junk')
    return root


def tiny_pipeline(grid: int = 4, img_size: int = 16) -> list[dict]:
    """The recipes' self-supervised pipeline at toy size."""
    return [dict(type='SafeLoadImageFromFile', on_error='skip'),
            dict(type='GrayToRGB'),
            dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0),
                 backend='pillow'),
            dict(type='BEiTMaskGenerator', input_size=(grid, grid), num_masking_patches=6,
                 max_num_patches=None, min_num_patches=2),
            dict(type='PackInputs')]


def tiny_train_cfg(data_root: str, work_dir: str, **overrides) -> str:
    """A tiny CIM pre-training config file (ViT 16 px, toy tokenizer, the folder
    dataset, 2 images per batch, 2 epochs); returns its path."""
    cfg = dict(
        custom_imports=dict(imports=['cim_mm'], allow_failed_imports=False),
        default_scope='mmpretrain',
        model=tiny_vit_cim_cfg(),
        train_dataloader=dict(
            batch_size=2, num_workers=1, persistent_workers=False,  # fresh workers each epoch
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='UnlabeledImageFolder', data_root=data_root,
                         pipeline=tiny_pipeline())),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=2),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[dict(type='SkippedImagesHook')],
        env_cfg=dict(mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                     dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
        work_dir=work_dir,
    )
    cfg.update(overrides)
    path = osp.join(work_dir + '_cfg.py')
    with open(path, 'w') as f:
        f.write(''.join(f'{k} = {v!r}\n' for k, v in cfg.items()))
    return path


