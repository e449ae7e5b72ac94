"""The methods of the benchmark: model config, data pipeline, eval backbone.

Every method pre-trains the same ViT (the scale's architecture, image size
and patch size) on the same data with the same optimizer recipe; only the
pre-training objective differs. CIM comes from our configs; the peers are
mmpretrain's algorithms, heads and necks as they are, with the backbone sizes
of the scale (and the three adapters of :mod:`benchmarks.models.adapters`).

After pre-training, the backbone's weights are loaded into a plain
``VisionTransformer`` (``BEiTViT`` for BEiT, whose pre-training ViT has layer
scale and a shared relative position bias) for evaluation.
"""
from __future__ import annotations

import copy
from typing import Callable

from .scales import Scale, load_config
from .spec_parts import (MAP_PIXELS_MEAN, MAP_PIXELS_STD, MethodSpec, contrastive_views,
                         mask_options, pack, preproc)

# The order of the table.
METHODS = ('cim-respix', 'cim-revdet', 'mae', 'simmim', 'beit', 'maskfeat',
           'simclr', 'densecl', 'croco', 'croco-other', 'random')
LABELS = {
    'cim-respix': 'CIM-ResPix', 'cim-revdet': 'CIM-RevDet', 'mae': 'MAE',
    'simmim': 'SimMIM', 'beit': 'BEiT v1', 'maskfeat': 'MaskFeat',
    'simclr': 'SimCLR', 'densecl': 'DenseCL',
    # the paper's pairs are two views of one scene; here two crops of one image
    'croco': 'CroCo, two crops of one image: not multi-view',
    # the control: does the decoder use view 2? (view 2 from the previous image)
    'croco-other': 'CroCo control: view 2 from another image', 'random': 'random init',
}
# CroCo's objective (mask ratio, crops) comes from its Fashion-MNIST config
CROCO_CONFIG = 'configs/benchmarks_peers/croco_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'
def _vit_eval(scale: Scale) -> dict:
    b = scale.backbone_common()
    b.update(type='VisionTransformer', out_type='raw', final_norm=True)
    return b


def _beit_kwargs() -> dict:
    # BEiT v1 (mmpretrain configs/beit): layer scale 0.1, shared rel. pos. bias
    return dict(use_abs_pos_emb=False, use_rel_pos_bias=False,
                use_shared_rel_pos_bias=True, layer_scale_init_value=0.1)


def _cim(scale: Scale, name: str) -> MethodSpec:
    model = copy.deepcopy(scale.cim_models[name])
    bb = model['backbone']
    eval_bb = dict(bb, out_type='raw')
    return MethodSpec(
        name, LABELS[name], model, pack(scale, dict(type='BEiTMaskGenerator', **mask_options(scale))),
        eval_bb, needs_tokenizer=True, is_cim=True,
        notes=[f'{LABELS[name]}: model = {scale.cim_configs[name]} (tokenizer shared with BEiT).'])


def _mae(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.pop('init_cfg')
    bb.update(type='MAEViT', mask_ratio=0.75)
    model = dict(
        type='MAE', data_preprocessor=preproc(scale), backbone=bb,
        neck=dict(type='MAEPretrainDecoder', num_patches=scale.grid**2,
                  patch_size=scale.patch_size, in_chans=3, embed_dim=scale.embed_dims,
                  mlp_ratio=4., **scale.mae_decoder),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=scale.patch_size,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
                  dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])
    d = scale.mae_decoder
    return MethodSpec('mae', 'MAE', model, pack(scale), _vit_eval(scale), notes=[
        f"MAE: MAEViT (mask ratio 0.75), decoder {d['decoder_embed_dim']} dims x "
        f"{d['decoder_depth']} layers, normalised-pixel L2 loss."])


def _simmim(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='SimMIMViT', out_type='raw', final_norm=True)
    model = dict(
        type='SimMIM', data_preprocessor=preproc(scale), backbone=bb,
        neck=dict(type='SimMIMLinearDecoder', in_channels=scale.embed_dims,
                  encoder_stride=scale.patch_size),
        head=dict(type='SimMIMHead', patch_size=scale.patch_size,
                  loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
    m = scale.simmim_mask
    return MethodSpec('simmim', 'SimMIM', model,
                      pack(scale, dict(type='SimMIMMaskGenerator', **m)),
                      _vit_eval(scale), notes=[
        'SimMIM: mmpretrain ships only a Swin SimMIM backbone; SimMIMViT (adapter: '
        "MaskFeatViT's masked ViT returning a feature map) + mmpretrain's linear "
        f"decoder and L1 head; mask {m['mask_patch_size']} px patches, ratio "
        f"{m['mask_ratio']}."])


def _beit(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    # fused attention (SDPA), the same maths as mmpretrain's BEiTPretrainViT
    bb.update(type='SDPABEiTPretrainViT', final_norm=True, out_type='raw', **_beit_kwargs())
    model = dict(
        type='BEiT',
        data_preprocessor=dict(type='TwoNormDataPreprocessor', mean=scale.mean,
                               std=scale.std, second_mean=MAP_PIXELS_MEAN,
                               second_std=MAP_PIXELS_STD, to_rgb=scale.to_rgb),
        backbone=bb, neck=None,
        head=dict(type='BEiTV1Head', embed_dims=scale.embed_dims,
                  num_embed=scale.vocab_size, loss=dict(type='CrossEntropyLoss')),
        target_generator=dict(type='TokenizerTargetGenerator',
                              tokenizer=copy.deepcopy(scale.tokenizer),
                              img_size=scale.tokenizer_img_size))
    eval_bb = scale.backbone_common()
    eval_bb.update(type='BEiTViT', out_type='raw', final_norm=True, **_beit_kwargs())
    # one augmented view, twice: view 1 normalised for the ViT, view 2 mapped
    # for the tokenizer (BEiT v1: one crop at two resolutions)
    pipeline = pack(scale, dict(type='MultiView', num_views=2, transforms=[[]]),
                     dict(type='BEiTMaskGenerator', **mask_options(scale)))
    return MethodSpec('beit', 'BEiT v1', model, pipeline, eval_bb, needs_tokenizer=True,
                      notes=['BEiT v1: BEiTPretrainViT (layer scale 0.1, shared '
                             'relative position bias) + BEiTV1Head; targets = the SAME '
                             "tokenizer as CIM (TokenizerTargetGenerator adapter), "
                             "CIM's block mask."])


def _maskfeat(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='MaskFeatViT', out_type='raw', final_norm=True)
    hog = scale.hog
    cells = (scale.patch_size // hog['pool'])**2
    model = dict(
        type='MaskFeat', data_preprocessor=preproc(scale), backbone=bb,
        neck=dict(type='LinearNeck', in_channels=scale.embed_dims,
                  out_channels=3 * hog['nbins'] * cells, norm_cfg=None,
                  init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0)),
        head=dict(type='MIMHead', loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        target_generator=dict(type='GridHOGGenerator', patch_size=scale.patch_size, **hog))
    return MethodSpec('maskfeat', 'MaskFeat', model,
                      pack(scale, dict(type='BEiTMaskGenerator', **mask_options(scale))),
                      _vit_eval(scale), notes=[
        f"MaskFeat: MaskFeatViT + HOG targets ({hog['pool']} px cells, GridHOGGenerator "
        "adapter: mmpretrain's HOGGenerator hard-codes a 14x14 grid), CIM's block mask."])


def _simclr(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='VisionTransformer', out_type='featmap', final_norm=True)
    model = dict(
        type='SimCLR', data_preprocessor=preproc(scale), backbone=bb,
        neck=dict(type='NonLinearNeck', in_channels=scale.embed_dims,
                  hid_channels=scale.contrastive_hidden, out_channels=128, num_layers=2,
                  with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.1))
    return MethodSpec('simclr', 'SimCLR', model, contrastive_views(scale),
                      _vit_eval(scale), notes=[
        "SimCLR: ViT with out_type='featmap' -> NonLinearNeck(with_avg_pool, BN1d "
        'instead of SyncBN) -> ContrastiveHead (T 0.1); two views: random resized '
        'crop (0.2-1), flip, colour jitter, grayscale (no blur at 32 px).'])


def _densecl(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='VisionTransformer', out_type='featmap', final_norm=True)
    # DenseCL asserts queue_len % batch_size == 0
    queue = max(scale.batch_size, scale.densecl_queue // scale.batch_size * scale.batch_size)
    model = dict(
        type='DenseCL', data_preprocessor=preproc(scale), backbone=bb,
        queue_len=queue, feat_dim=128, momentum=0.001, loss_lambda=0.5,
        neck=dict(type='DenseCLNeck', in_channels=scale.embed_dims,
                  hid_channels=scale.contrastive_hidden, out_channels=128, num_grid=None),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.2))
    return MethodSpec('densecl', 'DenseCL', model, contrastive_views(scale),
                      _vit_eval(scale), notes=[
        "DenseCL: works on a ViT: out_type='featmap' gives the [B, C, h, w] map "
        'DenseCLNeck and the dense loss need (dense matching over the patch grid); '
        f'queue {queue}; the loss_lambda warm-up hook (first 1000 of '
        '~1M iterations in mmpretrain) is not used.'])


def _croco(scale: Scale, name: str = 'croco') -> MethodSpec:
    """CroCo (``croco``) or its control (``croco-other``: view 2 from the
    previous image of the batch, ``CroCo(view2='other_image')``)."""
    cfg = load_config(CROCO_CONFIG)
    bb = scale.backbone_common()
    bb.pop('init_cfg')
    bb.update(type='MAEViT', mask_ratio=float(cfg.model.backbone.mask_ratio))
    neck = cfg.model.neck.to_dict()
    # the decoder at the scale's MAE decoder size (the config's is cpu-small's)
    neck.update(num_patches=scale.grid**2, patch_size=scale.patch_size,
                embed_dim=scale.embed_dims, **scale.mae_decoder)
    view2 = 'other_image' if name == 'croco-other' else cfg.model.view2
    model = dict(type='CroCo', view2=view2, data_preprocessor=preproc(scale),
                 backbone=bb, neck=neck, head=cfg.model.head.to_dict(),
                 init_cfg=[dict(c) for c in cfg.model.init_cfg])
    views = next(t for t in cfg.train_dataloader.dataset.pipeline
                 if t['type'] == 'MultiView').to_dict()
    for t in views['transforms'][0]:  # the crops at the scale's image size
        if t['type'] == 'RandomResizedCrop':
            t['scale'] = scale.img_size
    # gray -> RGB and the resize of the shared pipeline, then the two crops (no flip:
    # the config's pairs)
    head = [t for t in scale.base_pipeline if t['type'] != 'RandomFlip']
    pipeline = copy.deepcopy(head) + [views, dict(type='PackInputs')]
    notes = [f'CroCo: MAEViT encoder (mask ratio {bb["mask_ratio"]}) shared by both views, '
             'CroCoDecoder (cross-attention to view 2) at the MAE decoder size, MAE\'s '
             f'normalised-pixel L2 loss ({CROCO_CONFIG}); the pairs are two overlapping '
             'crops of one image, not two views of a scene.']
    if view2 == 'other_image':
        notes.append('croco-other: the control, view 2 is the second crop of the previous '
                     'image of the batch (CroCo(view2=\'other_image\')).')
    return MethodSpec(name, LABELS[name], model, pipeline, _vit_eval(scale), notes=notes)


def _random(scale: Scale) -> MethodSpec:
    return MethodSpec('random', 'random init', None, [], _vit_eval(scale),
                      notes=['random init: the ViT with its initialisation, no pre-training.'])


VIT_BUILDERS: dict[str, Callable[[Scale], MethodSpec]] = {
    'cim-respix': lambda s: _cim(s, 'cim-respix'),
    'cim-revdet': lambda s: _cim(s, 'cim-revdet'),
    'mae': _mae, 'simmim': _simmim, 'beit': _beit, 'maskfeat': _maskfeat,
    'simclr': _simclr, 'densecl': _densecl, 'croco': _croco,
    'croco-other': lambda s: _croco(s, 'croco-other'), 'random': _random,
}


def build_vit_spec(name: str, scale: Scale) -> MethodSpec:
    """The spec of ViT-track method ``name`` on ``scale``."""
    if name not in VIT_BUILDERS:
        raise ValueError(f'unknown method {name!r}; choose from {", ".join(METHODS)}')
    return VIT_BUILDERS[name](scale)
