"""Model, data-loader and optimizer configs of the GPU check.

The four methods are built exactly as the benchmark builds them
(:func:`benchmarks.scales.build_scale` ``('gpu')`` +
:func:`benchmarks.specs.build_spec`): CIM-ResPix / CIM-RevDet are the
paper recipes' models (``configs/cim/cim-*_vit-base-p16_*_in1k.py``), BEiT v1
is mmpretrain's ``BEiT`` (``BEiTPretrainViT`` + ``BEiTV1Head``) whose targets
come from the *same* DALL-E tokenizer, MAE is mmpretrain's ``MAE`` with the
same ViT-B/16; CIM-ResPix-R50, -ConvNeXt-T and -Swin-T are the feature-map
recipes' models (``configs/cim/cim-respix_{resnet50,convnext-tiny,swin-tiny}_*_in1k.py``:
that enhancer + ``CNNPatchNeck``, the same generator and tokenizer) with their
own optimizers (LAMB for ResNet-50, AdamW for the others). The loader is the
recipe's ``train_dataloader`` (its pipeline, sampler, collate, workers)
pointed at a folder of JPEGs.

``toy=True`` shrinks every model to the dry run's sizes
(:data:`~.settings.TOY_VIT`, :data:`~.settings.TOY_DALLE`, 64 px, 4x4 grid).
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any, Optional

import torch
from mmengine.config import Config

from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain

from ..paths import REPO_ROOT
from .fast_path import set_dotted
from .settings import TOY_DALLE, TOY_GENERATOR, TOY_VIT

RECIPE = 'configs/cim/cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'
RESNET_RECIPE = 'configs/cim/cim-respix_resnet50_8xb256-amp-coslr-300e_in1k.py'
RESNET_METHOD = 'cim-resnet50'
#: the feature-map enhancers' CIM-ResPix recipes, each timed as it is written
FEATMAP_RECIPES = {
    RESNET_METHOD: RESNET_RECIPE,
    'cim-convnext-t': 'configs/cim/cim-respix_convnext-tiny_8xb256-amp-coslr-300e_in1k.py',
    'cim-swin-t': 'configs/cim/cim-respix_swin-tiny_8xb256-amp-coslr-300e_in1k.py',
}
# the toy ResNet-50: 16 base channels (C4 256, C5 512 channels), a 32-channel neck
TOY_RESNET_BASE, TOY_NECK = 16, 32
TOY_IMG, TOY_TOK_IMG, TOY_GRID = 64, 32, 4
TOY_MASK = dict(type='BEiTMaskGenerator', input_size=(TOY_GRID, TOY_GRID),
                num_masking_patches=6, max_num_patches=None, min_num_patches=2)


def _recipe(path: str) -> Config:
    return Config.fromfile(osp.join(REPO_ROOT, path))


def build_gpu_scale(dalle_dir: str, batch_size: int, toy: bool):
    """The benchmark's ``gpu`` scale (ViT-B/16) with the DALL-E files of
    ``dalle_dir``; shrunk to toy sizes when ``toy``."""
    from benchmarks.scales import build_scale
    scale = build_scale('gpu', arch='vit-b', dalle_dir=dalle_dir, batch_size=batch_size)
    if not scale.tokenizer.get('encoder_path'):
        raise FileNotFoundError(f'no encoder.pkl / decoder.pkl in {dalle_dir}')
    if toy:
        _shrink(scale)
    for method, recipe in FEATMAP_RECIPES.items():
        scale.cim_configs[method] = recipe
        scale.cim_models[method] = _featmap_model(scale, recipe, toy)
    return scale


def _featmap_model(scale, recipe: str, toy: bool) -> dict:
    """A feature-map recipe's model dict with the scale's tokenizer files
    (and, when ``toy``, the toy sizes: a narrow enhancer, the toy generator)."""
    model = _recipe(recipe).model.to_dict()
    model['tokenizer'] = copy.deepcopy(scale.tokenizer)
    return toy_recipe_model(model) if toy else model


def toy_recipe_model(model: dict) -> dict:
    """A recipe's CIM model dict at the dry run's toy sizes, every switch and
    rate as written (drop path, layer scale, SDPA, ``num_masked``, ...): a
    2-layer ViT at 64 px, or a narrow ResNet-50 (16 base channels) / ConvNeXt /
    Swin whose last two levels (256 and 512 channels) reach the 4x4 grid, the toy
    generator, the tokenizer at :data:`TOY_DALLE` sizes and 32 px.
    """
    model = copy.deepcopy(model)
    backbone = model['backbone']
    family = str(backbone['type'])
    if model.get('neck') is not None:  # a feature-map enhancer + CNNPatchNeck
        base = TOY_RESNET_BASE
        if 'ResNet' in family:
            backbone.update(base_channels=base, stem_channels=base)
        elif 'ConvNeXt' in family:  # the last two stages at 4x4 and 2x2 on 64 px, as at 224
            backbone.update(arch=dict(depths=[1, 1, 2, 1], channels=[base * c for c in
                                                                     (2, 4, 16, 32)]))
        elif 'Swin' in family:
            backbone.update(arch=dict(embed_dims=base * 4, depths=[2, 2, 2, 2],
                                      num_heads=[1, 2, 4, 8]), img_size=TOY_IMG)
        model['neck'].update(in_channels=(base * 16, base * 32), out_channels=TOY_NECK,
                             out_size=(TOY_GRID, TOY_GRID))
        if model['neck'].get('img_size') is not None:
            model['neck']['img_size'] = TOY_IMG
        model['head']['in_channels'] = TOY_NECK
    else:
        backbone.update(arch=dict(TOY_VIT), img_size=TOY_IMG)
        model['head']['in_channels'] = TOY_VIT['embed_dims']
    model['tokenizer'].update(TOY_DALLE)
    model['data_preprocessor']['tokenizer_img_size'] = TOY_TOK_IMG
    gen = model['generator']
    gen['vocab_size'] = TOY_DALLE['vocab_size']
    if gen.get('num_masked') is not None:  # = the toy mask's exact count
        gen['num_masked'] = TOY_MASK['num_masking_patches']
    gen['backbone'].update(arch=dict(TOY_GENERATOR), img_size=TOY_TOK_IMG)
    return model


def _shrink(scale) -> None:
    """Toy sizes in place: tiny ViT at 64 px, tiny DALL-E at 32 px, 4x4 grid."""
    scale.img_size = TOY_IMG
    scale.arch = dict(TOY_VIT)
    scale.embed_dims = TOY_VIT['embed_dims']
    scale.tokenizer.update(TOY_DALLE)
    scale.tokenizer_img_size = TOY_TOK_IMG
    scale.vocab_size = TOY_DALLE['vocab_size']
    scale.beit_mask = dict(TOY_MASK)
    scale.mae_decoder = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    for name, model in scale.cim_models.items():
        scale.cim_models[name] = toy_recipe_model(
            dict(model, tokenizer=copy.deepcopy(scale.tokenizer)))


def speed_recipe(scale, method: str) -> str:
    """The recipe file whose ``env_cfg`` and ``CompileBlocksHook`` ``method``
    runs with: its own for the CIM recipes, the ViT CIM-ResPix recipe's for
    the peers (BEiT v1, MAE), which get the same fixes."""
    return scale.cim_configs.get(method, RECIPE)


def model_config(scale, method: str) -> dict:
    """The mmpretrain model dict of ``method`` at ``scale``."""
    from benchmarks.specs import build_spec
    if method in FEATMAP_RECIPES:
        return copy.deepcopy(scale.cim_models[method])
    return copy.deepcopy(build_spec(method, scale).model)


def build_model(scale, method: str, device: torch.device,
                overrides: Optional[dict] = None):
    """Built, initialised, on ``device``, in train mode; SyncBN as BN (what
    the Runner does outside a distributed run). ``overrides``: dotted model-dict
    keys to set first (a GPU switch set against the recipe)."""
    import benchmarks.models.adapters  # noqa: F401  (BEiT's TokenizerTargetGenerator)
    from mmengine.model import revert_sync_batchnorm
    from mmpretrain.registry import MODELS
    cfg = set_dotted(model_config(scale, method), overrides or {})
    model = revert_sync_batchnorm(MODELS.build(cfg))
    model.init_weights()
    model.to(device)
    model.train()
    return model


def optim_config(scale, method: str) -> dict:
    """The optimizer wrapper config of ``method``'s recipe, as written: the ViT
    recipe's (AdamW) for the ViT methods, each feature-map recipe's its own."""
    if method in FEATMAP_RECIPES:
        return _recipe(FEATMAP_RECIPES[method]).optim_wrapper.to_dict()
    return copy.deepcopy(scale.optim_wrapper)


def build_optim_wrapper(model, scale, device: torch.device, method: str = 'cim-respix'):
    """The recipe's optimizer wrapper (``AmpOptimWrapper``, bf16, its constructor
    and ``paramwise_cfg``: merged groups, fused AdamW on CUDA); plain fp32
    ``OptimWrapper`` off CUDA (mmengine 0.10.7 refuses AMP there)."""
    import logging

    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper as _build
    cfg = optim_config(scale, method)
    amp_to_plain(cfg, accelerator=torch.device(device).type == 'cuda')
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # a warning per frozen tokenizer parameter
    try:
        return _build(model, cfg)
    finally:
        logger.setLevel(level)


DEVICE_DECODE_DATA = 'configs/_base_/datasets/imagenet_bs256_cim_device-decode.py'


def recipe_loader_config(repo_root: str, data_root: str, batch_size: int,
                         num_workers: int, toy: bool, device_decode: bool = False) -> dict:
    """The recipe's ``train_dataloader`` reading ``data_root`` (a JPEG folder);
    ``device_decode``: with the device-decode loader's pipeline and collate
    (``DEVICE_DECODE_DATA``), the rest the recipe's."""
    cfg = Config.fromfile(osp.join(repo_root, RECIPE))
    loader: dict[str, Any] = cfg.train_dataloader.to_dict()
    if device_decode:
        dd = Config.fromfile(osp.join(repo_root, DEVICE_DECODE_DATA)).train_dataloader
        loader['dataset'] = dict(loader['dataset'], pipeline=list(dd.dataset.pipeline))
        loader['collate_fn'] = dict(dd.collate_fn)
    dataset = dict(loader['dataset'])
    dataset['data_root'] = data_root
    if dataset.get('type') in ('ImageNet', 'mmpretrain.ImageNet'):
        # a recipe that still reads mmpretrain's ImageNet (meta files, 1000
        # classes): the same images through a label-free CustomDataset
        dataset = dict(type='CustomDataset', data_root=data_root, with_label=False,
                       pipeline=dataset['pipeline'])
    if toy:
        dataset['pipeline'] = [_toy_transform(t) for t in dataset['pipeline']]
    loader.update(dataset=dataset, batch_size=batch_size, num_workers=num_workers,
                  persistent_workers=num_workers > 0, pin_memory=True)
    return loader


def _toy_transform(t: dict) -> dict:
    t = dict(t)
    if t['type'] in ('RandomResizedCrop', 'DeferredRandomResizedCrop'):
        t['scale'] = TOY_IMG
    elif t['type'] == 'BEiTMaskGenerator':
        t = dict(TOY_MASK)
    return t


def method_batch(batch: dict, method: str, n: int) -> dict:
    """The first ``n`` images of a CIM loader batch, as ``method`` takes them
    (the batch repeated when it holds fewer than ``n``: the large batch).

    CIM / MAE: ``inputs`` ``[n, 3, H, W]`` uint8 (+ masks, unused by MAE);
    BEiT v1: the same crop twice (``[img, img]``: ViT view, tokenizer view).
    """
    inputs, samples = batch['inputs'], list(batch['data_samples'])
    reps = -(-n // len(samples))  # ceil
    if reps > 1:
        inputs, samples = inputs.repeat(reps, 1, 1, 1), samples * reps
    inputs, samples = inputs[:n], samples[:n]
    if method == 'beit':
        inputs = [inputs, inputs]
    return dict(inputs=inputs, data_samples=samples)


def synthetic_batch(scale, n: int, seed: int = 0) -> dict:
    """Random uint8 images + random masks of the scale's grid, shaped like a
    CIM loader batch: the step timings' fallback when the loader stage failed."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    s, grid = scale.img_size, scale.img_size // scale.patch_size
    num_mask = int(scale.beit_mask.get('num_masking_patches', grid * grid // 3))
    imgs = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8)
    samples = []
    for _ in range(n):
        mask = torch.zeros(grid * grid, dtype=torch.bool)  # 1 = masked
        mask[torch.randperm(grid * grid, generator=g)[:num_mask]] = True
        ds = DataSample()
        ds.set_mask(mask.view(grid, grid))
        samples.append(ds)
    return dict(inputs=imgs, data_samples=samples)
