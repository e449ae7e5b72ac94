"""Benchmark scales: the shared backbone, data and recipe of one comparison.

A scale is read from the CIM configs, so the benchmark compares against the
backbone CIM actually uses:

* ``cpu-small`` -- the CPU demo
  (``configs/cim/cim-{respix,revdet}_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py``):
  real Fashion-MNIST at 32 px, tiny ViT (patch 4, 128 dims, 6 layers, 4 heads),
  our small VQ tokenizer (x4, 512 codes), AdamW recipe of the demo.
* ``gpu`` -- the paper recipes (``configs/cim/cim-*_vit-{base,small}-p16_*_in1k.py``):
  ViT-B/16 or ViT-S/16 at 224 px, DALL-E dVAE tokenizer at 112 px (random
  weights unless ``dalle_dir`` holds ``encoder.pkl``/``decoder.pkl``: cost
  figures do not depend on the weights), bf16 autocast; Fashion-MNIST
  upsampled to 224 px as data (throughput and memory only).
"""
from __future__ import annotations

import copy
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Optional

from .paths import REPO_ROOT

TOKENIZER_CONFIG = 'configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py'
TOKENIZER_DIR = 'work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px'

SCALES = ('cpu-small', 'gpu')
# cpu-small tracks: the tiny ViT (the CIM demo), the demo ResNet-18 (w32), the demo
# ConvNeXt / Swin (3 stages, 64-256 channels)
TRACKS = ('vit', 'resnet', 'convnext', 'swin')
# the tracks whose enhancer is a hierarchical feature-map backbone other than ResNet
FEATMAP_TRACKS = ('convnext', 'swin')
CPU_SMALL_CONFIGS = {
    'vit': {
        'cim-respix': 'configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
        'cim-revdet': 'configs/cim/cim-revdet_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    },
    'resnet': {
        'cim-respix': 'configs/cim/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
        'cim-revdet': 'configs/cim/cim-revdet_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
    },
    'convnext': {
        'cim-respix': 'configs/cim/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py',
        'cim-revdet': 'configs/cim/cim-revdet_convnext-w64_1xb64-500it_fashion-mnist-32px.py',
    },
    'swin': {
        'cim-respix': 'configs/cim/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px.py',
        'cim-revdet': 'configs/cim/cim-revdet_swin-w64_1xb64-500it_fashion-mnist-32px.py',
    },
}
EVAL_SUBSETS = {
    # train features for k-NN / linear probe, test images, fine-tune images
    'small': dict(feat_train=256, test=128, finetune_train=128),  # smoke tests
    'medium': dict(feat_train=10000, test=10000, finetune_train=5000),
    'full': dict(feat_train=60000, test=10000, finetune_train=60000),
}


@dataclass
class Scale:
    """Everything the method specs share at one scale."""
    name: str
    img_size: int
    patch_size: int
    arch: Any  # mmpretrain ViT arch (name or dict)
    embed_dims: int
    mean: list
    std: list
    to_rgb: bool
    batch_size: int
    cim_configs: dict  # method name -> CIM config path
    cim_models: dict  # method name -> model dict (tokenizer resolved)
    tokenizer: dict  # tokenizer config shared by CIM and BEiT
    tokenizer_img_size: int
    vocab_size: int
    beit_mask: dict  # BEiTMaskGenerator args (CIM, BEiT, MaskFeat)
    base_pipeline: list  # decode/resize/flip: shared by every MIM method
    data_root: str
    optim_wrapper: dict
    warmup_frac: float
    min_lr_ratio: float
    device: str = 'cpu'
    amp: bool = False
    channels_last: bool = False
    num_workers: int = 0
    default_budget_s: float = 120.
    default_eval: str = 'all'  # 'all' | 'knn' | 'none'
    default_eval_subset: str = 'medium'
    mae_decoder: dict = field(default_factory=dict)
    hog: dict = field(default_factory=dict)
    simmim_mask: dict = field(default_factory=dict)
    contrastive_hidden: int = 512
    densecl_queue: int = 4096
    notes: list = field(default_factory=list)
    track: str = 'vit'  # 'vit' | 'resnet' | 'convnext' | 'swin' (cpu-small)
    resnet: dict = field(default_factory=dict)  # resnet track: the demo ResNet's arguments
    # convnext / swin tracks: the demo enhancer's arguments (its pre-training out_indices)
    enhancer: dict = field(default_factory=dict)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def backbone_common(self) -> dict:
        """Arguments every method's ViT shares (architecture, size, init)."""
        return dict(
            arch=copy.deepcopy(self.arch), img_size=self.img_size,
            patch_size=self.patch_size, drop_path_rate=0.0,
            init_cfg=[
                dict(type='TruncNormal', std=0.02, layer='Linear'),
                dict(type='TruncNormal', std=0.02, layer='Conv2d'),
                dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
            ])


def load_config(path: str):
    """An mmengine config of this repository (``path`` relative to its root)."""
    from mmengine.config import Config
    full = path if osp.isabs(path) else osp.join(REPO_ROOT, path)
    return Config.fromfile(full)


def _find(pipeline: list, type_name: str) -> Optional[dict]:
    for t in pipeline:
        if t.get('type') == type_name:
            return dict(t)
    return None


def _embed_dims(arch: Any) -> int:
    if isinstance(arch, dict):
        return int(arch['embed_dims'])
    from mmpretrain.models import VisionTransformer
    key = arch.lower()
    for names, settings in VisionTransformer.arch_zoo.items():
        if key in names:
            return int(settings['embed_dims'])
    raise KeyError(f'unknown ViT arch {arch!r}')


def last_stage_channels(backbone: dict) -> int:
    """Channels of the last stage of an mmpretrain ConvNeXt / Swin config."""
    arch = backbone['arch']
    if 'channels' in arch:  # ConvNeXt
        return int(arch['channels'][-1])
    return int(arch['embed_dims']) * 2**(len(arch['depths']) - 1)  # Swin: x2 a stage


def _to_dict(cfg_node) -> Any:
    return cfg_node.to_dict() if hasattr(cfg_node, 'to_dict') else copy.deepcopy(cfg_node)


def _warmup_frac(cfg) -> float:
    """End of the config's LinearLR warm-up as a fraction of ``max_iters``."""
    warm = next(p for p in cfg.param_scheduler if p['type'] == 'LinearLR')
    return float(warm['end']) / float(cfg.train_cfg.max_iters)


def _min_lr_ratio(cfg) -> float:
    """The cosine schedule's ``eta_min`` over the base lr."""
    cos = next(p for p in cfg.param_scheduler if p['type'] == 'CosineAnnealingLR')
    return float(cos['eta_min']) / float(cfg.optim_wrapper.optimizer.lr)


def cpu_small(tokenizer_ckpt: Optional[str], batch_size: Optional[int] = None,
              track: str = 'vit') -> Scale:
    """The CPU demo's backbone / data / recipe (see module doc).

    ``tokenizer_ckpt``: the VQ tokenizer weights, or None for a random
    (untrained) tokenizer -- only for smoke tests. ``track='resnet'``: the CIM
    ResNet-18 (w32) demo configs; ``resnet`` then holds that backbone's
    arguments and ``embed_dims`` its C5 width (the evaluated feature).
    ``track='convnext'`` / ``'swin'``: the CIM ConvNeXt / Swin demo configs;
    ``enhancer`` holds that backbone's arguments and ``embed_dims`` its last
    stage's width.
    """
    if track not in TRACKS:
        raise ValueError(f'unknown track {track!r}; choose from {", ".join(TRACKS)}')
    configs = dict(CPU_SMALL_CONFIGS[track])
    cfgs = {k: load_config(v) for k, v in configs.items()}
    demo = cfgs['cim-respix']
    tok = _to_dict(demo.model.tokenizer)
    tok.update(checkpoint=tokenizer_ckpt, allow_random_init=tokenizer_ckpt is None)
    models = {}
    for k, c in cfgs.items():
        m = _to_dict(c.model)
        m['tokenizer'] = copy.deepcopy(tok)
        models[k] = m
    bb = demo.model.backbone
    dp = demo.model.data_preprocessor
    pipeline = [_to_dict(t) for t in demo.train_pipeline]
    mask = _find(pipeline, 'BEiTMaskGenerator')
    base = [t for t in pipeline if t['type'] not in ('BEiTMaskGenerator', 'PackInputs')]
    resnet: dict = {}
    enhancer: dict = {}
    if track == 'resnet':
        resnet = _to_dict(bb)
    elif track in FEATMAP_TRACKS:
        enhancer = _to_dict(bb)
    if resnet or enhancer:
        bb = load_config(CPU_SMALL_CONFIGS['vit']['cim-respix']).model.backbone  # grid / size
    patch = int(bb.patch_size)
    embed = _embed_dims(_to_dict(bb.arch))
    if resnet:  # ResNet basic blocks: C5 = base_channels * 2**3
        embed = int(resnet.get('base_channels', 64)) * 8
    if enhancer:
        embed = last_stage_channels(enhancer)
    scale = Scale(
        name='cpu-small', img_size=int(bb.img_size), patch_size=patch,
        arch=_to_dict(bb.arch), embed_dims=embed,
        mean=list(dp.mean), std=list(dp.std), to_rgb=bool(dp.get('to_rgb', False)),
        batch_size=int(batch_size or demo.train_dataloader.batch_size),
        cim_configs=configs, cim_models=models, tokenizer=tok,
        tokenizer_img_size=int(dp.tokenizer_img_size),
        vocab_size=int(tok['vocab_size']), beit_mask=mask, base_pipeline=base,
        data_root=osp.join(REPO_ROOT, demo.train_dataloader.dataset.data_root),
        optim_wrapper=_to_dict(demo.optim_wrapper),
        # the demo's schedule: linear warm-up then cosine to eta_min, as fractions
        warmup_frac=_warmup_frac(demo), min_lr_ratio=_min_lr_ratio(demo),
        device='cpu', amp=False, channels_last=False, num_workers=0,
        default_budget_s=120., default_eval='all', default_eval_subset='medium',
        # MAE decoder ~ the CIM generator's size (64 dims, 2 layers)
        mae_decoder=dict(decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2),
        # MaskFeat HOG: 2x2 cells of 2 px per 4 px patch (ViT-B: 2x2 cells of 8 px
        # per 16 px patch); Gaussian window = patch size, as in MaskFeat
        hog=dict(nbins=9, pool=patch // 2, gaussian_window=patch),
        # SimMIM: mask patches of 1/6 of the image side at 192 px -> 8 px at 32
        simmim_mask=dict(input_size=int(bb.img_size), mask_patch_size=2 * patch,
                         model_patch_size=patch, mask_ratio=0.6),
        contrastive_hidden=512, densecl_queue=4096,
        notes=['cpu-small: the CPU demo backbone and recipe on real Fashion-MNIST '
               '(32 px, 60000 train images).'], track=track, resnet=resnet,
        enhancer=enhancer)
    if enhancer:
        family = 'ConvNeXt' if track == 'convnext' else 'Swin'
        scale.notes = [
            f'cpu-small {track} track: the CIM demo {family} (mmpretrain '
            f'{enhancer["type"]}, 3 stages of 64 / 128 / 256 channels, stride 8 at the last: '
            f'[256, 4, 4] at 32 px) for every method, the demo\'s AdamW recipe (no decay on '
            'norms / biases) on real Fashion-MNIST (32 px).']
    if resnet:
        scale.notes = [
            'cpu-small resnet track: the CIM demo ResNet-18 (stem/base 32 channels, '
            'strides (1, 1, 1, 2): C5 [256, 4, 4] at 32 px) for every method, the demo\'s '
            'AdamW recipe (no decay on norms / biases) on real Fashion-MNIST (32 px).']
    return scale


def gpu(arch: str = 'vit-b', dalle_dir: Optional[str] = None,
        batch_size: Optional[int] = None) -> Scale:
    """Paper-recipe shapes for throughput / memory on one GPU."""
    size = {'vit-b': 'base', 'vit-s': 'small'}[arch]
    configs = {
        'cim-respix': f'configs/cim/cim-respix_vit-{size}-p16_8xb256-amp-coslr-300e_in1k.py',
        'cim-revdet': f'configs/cim/cim-revdet_vit-{size}-p16_8xb256-amp-coslr-300e_in1k.py',
    }
    cfgs = {k: load_config(v) for k, v in configs.items()}
    ref = cfgs['cim-respix']
    tok = _to_dict(ref.model.tokenizer)
    enc = osp.join(dalle_dir, 'encoder.pkl') if dalle_dir else None
    dec = osp.join(dalle_dir, 'decoder.pkl') if dalle_dir else None
    have = bool(enc and osp.isfile(enc) and dec and osp.isfile(dec))
    tok.update(encoder_path=enc if have else None, decoder_path=dec if have else None,
               allow_random_init=not have)
    models = {}
    for k, c in cfgs.items():
        m = _to_dict(c.model)
        m['tokenizer'] = copy.deepcopy(tok)
        models[k] = m
    bb = ref.model.backbone
    dp = ref.model.data_preprocessor
    img = int(bb.img_size)
    patch = int(bb.patch_size)
    mask = _find([_to_dict(t) for t in ref.train_pipeline], 'BEiTMaskGenerator')
    base = [dict(type='GrayToRGB'),
            dict(type='Resize', scale=(img, img), interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal')]
    arch_v = _to_dict(bb.arch)
    notes = [f'gpu: {arch.upper()}/16 shapes of the paper recipe, bf16 autocast, '
             'Fashion-MNIST upsampled to 224 px; throughput and memory only.']
    if not have:
        notes.append('DALL-E dVAE with random weights (no encoder.pkl/decoder.pkl '
                     'given): cost figures are exact, CIM/BEiT quality is not meaningful.')
    return Scale(
        name='gpu', img_size=img, patch_size=patch, arch=arch_v,
        embed_dims=_embed_dims(arch_v), mean=list(dp.mean), std=list(dp.std),
        to_rgb=False,  # Fashion-MNIST is gray: channel order is moot
        batch_size=int(batch_size or 64), cim_configs=configs, cim_models=models,
        tokenizer=tok, tokenizer_img_size=int(dp.tokenizer_img_size),
        vocab_size=int(ref.model.generator.vocab_size), beit_mask=mask,
        base_pipeline=base,
        data_root=osp.join(REPO_ROOT, 'data/fashion_mnist'),
        optim_wrapper=dict(_to_dict(ref.optim_wrapper)),
        warmup_frac=10 / 300, min_lr_ratio=1e-5 / 1.5e-3,
        device='cuda', amp=True, channels_last=True, num_workers=8,
        default_budget_s=60., default_eval='none', default_eval_subset='small',
        mae_decoder=dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
        hog=dict(nbins=9, pool=8, gaussian_window=16),
        simmim_mask=dict(input_size=img, mask_patch_size=32, model_patch_size=patch,
                         mask_ratio=0.6),
        contrastive_hidden=2048, densecl_queue=65536, notes=notes)


def build_scale(name: str, tokenizer_ckpt: Optional[str] = None,
                arch: str = 'vit-b', dalle_dir: Optional[str] = None,
                batch_size: Optional[int] = None,
                data_root: Optional[str] = None, track: str = 'vit') -> Scale:
    """The scale ``name``; ``data_root`` replaces its Fashion-MNIST folder
    (the extracted idx files, see ``tools/prepare_fashion_mnist.sh``);
    ``track`` picks the cpu-small backbone (``vit``, ``resnet``, ``convnext``, ``swin``)."""
    if name == 'cpu-small':
        scale = cpu_small(tokenizer_ckpt, batch_size, track)
    elif name == 'gpu':
        if track != 'vit':
            raise ValueError(f'--track {track} exists at --scale cpu-small only')
        scale = gpu(arch, dalle_dir, batch_size)
    else:
        raise ValueError(f'unknown scale {name!r}; choose from {", ".join(SCALES)}')
    if data_root is not None:
        scale.data_root = osp.abspath(data_root)
    return scale
