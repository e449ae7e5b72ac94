"""The methods of the benchmark: model config, data pipeline, eval backbone.

Every method pre-trains the same ViT (the scale's architecture, image size
and patch size) on the same data with the same optimizer recipe; only the
pre-training objective differs. CIM comes from our configs; the peers are
mmpretrain's algorithms, heads and necks as they are, with the backbone sizes
of the scale (and the three adapters of :mod:`cim_mm.benchmark.adapters`).

After pre-training, the backbone's weights are loaded into a plain
``VisionTransformer`` (``BEiTViT`` for BEiT, whose pre-training ViT has layer
scale and a shared relative position bias) for evaluation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

from .scales import Scale

# The order of the table.
METHODS = ('cim-respix', 'cim-revdet', 'mae', 'simmim', 'beit', 'maskfeat',
           'simclr', 'densecl', 'random')
LABELS = {
    'cim-respix': 'CIM-ResPix', 'cim-revdet': 'CIM-RevDet', 'mae': 'MAE',
    'simmim': 'SimMIM', 'beit': 'BEiT v1', 'maskfeat': 'MaskFeat',
    'simclr': 'SimCLR', 'densecl': 'DenseCL', 'random': 'random init',
}
# mean / std of DALL-E's map_pixels, 0..255 scale: (x/255 * 0.8 + 0.1)
MAP_PIXELS_MEAN = [-31.875] * 3
MAP_PIXELS_STD = [318.75] * 3


@dataclass
class MethodSpec:
    name: str
    label: str
    model: Optional[dict]  # None: no pre-training (random init)
    pipeline: list  # train pipeline (after loading the image)
    eval_backbone: dict  # plain backbone the pre-trained weights load into
    needs_tokenizer: bool = False
    is_cim: bool = False
    notes: list = field(default_factory=list)
    # dotted options of the optimizer wrapper (ablations), e.g. {'clip_grad.max_norm': 1}
    optim_options: dict = field(default_factory=dict)


def _vit_eval(scale: Scale) -> dict:
    b = scale.backbone_common()
    b.update(type='VisionTransformer', out_type='raw', final_norm=True)
    return b


def _beit_kwargs() -> dict:
    # BEiT v1 (mmpretrain configs/beit): layer scale 0.1, shared rel. pos. bias
    return dict(use_abs_pos_emb=False, use_rel_pos_bias=False,
                use_shared_rel_pos_bias=True, layer_scale_init_value=0.1)


def _pack(scale: Scale, *extra: dict) -> list:
    return copy.deepcopy(scale.base_pipeline) + [copy.deepcopy(e) for e in extra] + [
        dict(type='PackInputs')]


def _preproc(scale: Scale, **kw) -> dict:
    d = dict(type='SelfSupDataPreprocessor', mean=scale.mean, std=scale.std,
             to_rgb=scale.to_rgb)
    d.update(kw)
    return d


def _cim(scale: Scale, name: str) -> MethodSpec:
    model = copy.deepcopy(scale.cim_models[name])
    bb = model['backbone']
    eval_bb = dict(bb, out_type='raw')
    return MethodSpec(
        name, LABELS[name], model, _pack(scale, dict(type='BEiTMaskGenerator', **_mask(scale))),
        eval_bb, needs_tokenizer=True, is_cim=True,
        notes=[f'{LABELS[name]}: model = {scale.cim_configs[name]} (tokenizer shared with BEiT).'])


def _mask(scale: Scale) -> dict:
    m = dict(scale.beit_mask)
    m.pop('type', None)
    return m


def _mae(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.pop('init_cfg')
    bb.update(type='MAEViT', mask_ratio=0.75)
    model = dict(
        type='MAE', data_preprocessor=_preproc(scale), backbone=bb,
        neck=dict(type='MAEPretrainDecoder', num_patches=scale.grid**2,
                  patch_size=scale.patch_size, in_chans=3, embed_dim=scale.embed_dims,
                  mlp_ratio=4., **scale.mae_decoder),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=scale.patch_size,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
                  dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])
    d = scale.mae_decoder
    return MethodSpec('mae', 'MAE', model, _pack(scale), _vit_eval(scale), notes=[
        f"MAE: MAEViT (mask ratio 0.75), decoder {d['decoder_embed_dim']} dims x "
        f"{d['decoder_depth']} layers, normalised-pixel L2 loss."])


def _simmim(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='SimMIMViT', out_type='raw', final_norm=True)
    model = dict(
        type='SimMIM', data_preprocessor=_preproc(scale), backbone=bb,
        neck=dict(type='SimMIMLinearDecoder', in_channels=scale.embed_dims,
                  encoder_stride=scale.patch_size),
        head=dict(type='SimMIMHead', patch_size=scale.patch_size,
                  loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
    m = scale.simmim_mask
    return MethodSpec('simmim', 'SimMIM', model,
                      _pack(scale, dict(type='SimMIMMaskGenerator', **m)),
                      _vit_eval(scale), notes=[
        'SimMIM: mmpretrain ships only a Swin SimMIM backbone; SimMIMViT (adapter: '
        "MaskFeatViT's masked ViT returning a feature map) + mmpretrain's linear "
        f"decoder and L1 head; mask {m['mask_patch_size']} px patches, ratio "
        f"{m['mask_ratio']}."])


def _beit(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='BEiTPretrainViT', final_norm=True, out_type='raw', **_beit_kwargs())
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
    pipeline = _pack(scale, dict(type='MultiView', num_views=2, transforms=[[]]),
                     dict(type='BEiTMaskGenerator', **_mask(scale)))
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
        type='MaskFeat', data_preprocessor=_preproc(scale), backbone=bb,
        neck=dict(type='LinearNeck', in_channels=scale.embed_dims,
                  out_channels=3 * hog['nbins'] * cells, norm_cfg=None,
                  init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0)),
        head=dict(type='MIMHead', loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        target_generator=dict(type='GridHOGGenerator', patch_size=scale.patch_size, **hog))
    return MethodSpec('maskfeat', 'MaskFeat', model,
                      _pack(scale, dict(type='BEiTMaskGenerator', **_mask(scale))),
                      _vit_eval(scale), notes=[
        f"MaskFeat: MaskFeatViT + HOG targets ({hog['pool']} px cells, GridHOGGenerator "
        "adapter: mmpretrain's HOGGenerator hard-codes a 14x14 grid), CIM's block mask."])


def _contrastive_views(scale: Scale) -> list:
    s = scale.img_size
    view = [
        dict(type='RandomResizedCrop', scale=s, crop_ratio_range=(0.2, 1.0),
             interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomApply', prob=0.8, transforms=[
            # Fashion-MNIST is gray: saturation / hue would be no-ops (and mmcv's
            # adjust_hue overflows for negative hues with numpy 2)
            dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.,
                 hue=0.)]),
        dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
             channel_weights=(0.114, 0.587, 0.2989)),
    ]
    head = [t for t in scale.base_pipeline if t['type'] == 'GrayToRGB']
    return copy.deepcopy(head) + [dict(type='MultiView', num_views=2, transforms=[view]),
                                  dict(type='PackInputs')]


def _simclr(scale: Scale) -> MethodSpec:
    bb = scale.backbone_common()
    bb.update(type='VisionTransformer', out_type='featmap', final_norm=True)
    model = dict(
        type='SimCLR', data_preprocessor=_preproc(scale), backbone=bb,
        neck=dict(type='NonLinearNeck', in_channels=scale.embed_dims,
                  hid_channels=scale.contrastive_hidden, out_channels=128, num_layers=2,
                  with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.1))
    return MethodSpec('simclr', 'SimCLR', model, _contrastive_views(scale),
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
        type='DenseCL', data_preprocessor=_preproc(scale), backbone=bb,
        queue_len=queue, feat_dim=128, momentum=0.001, loss_lambda=0.5,
        neck=dict(type='DenseCLNeck', in_channels=scale.embed_dims,
                  hid_channels=scale.contrastive_hidden, out_channels=128, num_grid=None),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.2))
    return MethodSpec('densecl', 'DenseCL', model, _contrastive_views(scale),
                      _vit_eval(scale), notes=[
        "DenseCL: works on a ViT: out_type='featmap' gives the [B, C, h, w] map "
        'DenseCLNeck and the dense loss need (dense matching over the patch grid); '
        f'queue {queue}; the loss_lambda warm-up hook (first 1000 of '
        '~1M iterations in mmpretrain) is not used.'])


def _random(scale: Scale) -> MethodSpec:
    return MethodSpec('random', 'random init', None, [], _vit_eval(scale),
                      notes=['random init: the ViT with its initialisation, no pre-training.'])


_BUILDERS: dict[str, Callable[[Scale], MethodSpec]] = {
    'cim-respix': lambda s: _cim(s, 'cim-respix'),
    'cim-revdet': lambda s: _cim(s, 'cim-revdet'),
    'mae': _mae, 'simmim': _simmim, 'beit': _beit, 'maskfeat': _maskfeat,
    'simclr': _simclr, 'densecl': _densecl, 'random': _random,
}


def track_methods(track: str = 'vit') -> tuple:
    """The methods of a track, in table order."""
    if track == 'resnet':
        from .specs_resnet import RESNET_METHODS
        return RESNET_METHODS
    return METHODS


def label_of(name: str) -> str:
    """Table label of a method or an ablation (``cim-revdet@temp0``)."""
    from .specs_resnet import RESNET_LABELS
    if '@' in name:
        from .ablations import ablation_label
        return ablation_label(name)
    return RESNET_LABELS.get(name, name)


def parse_methods(text: Optional[str], track: str = 'vit') -> list[str]:
    """'cim-respix,mae' -> ['cim-respix', 'mae'] in table order; None/'all': all
    methods of ``track``."""
    methods = track_methods(track)
    if not text or text == 'all':
        return list(methods)
    wanted = [m.strip().lower() for m in text.split(',') if m.strip()]
    unknown = [m for m in wanted if m not in methods]
    if unknown:
        raise ValueError(f'unknown method(s) {", ".join(unknown)} for --track {track}; '
                         f'choose from {", ".join(methods)}')
    return [m for m in methods if m in wanted]


def build_spec(name: str, scale: Scale) -> MethodSpec:
    """The spec of method ``name`` on ``scale`` (its track), or of an ablation
    ``<cim method>@<knob>`` (:mod:`.ablations`)."""
    if '@' in name:
        from .ablations import build_ablation_spec
        return build_ablation_spec(name, scale)
    if scale.track == 'resnet':
        from .specs_resnet import RESNET_BUILDERS, RESNET_METHODS
        if name not in RESNET_BUILDERS:
            raise ValueError(f'unknown method {name!r} for --track resnet; choose from '
                             f'{", ".join(RESNET_METHODS)}')
        return RESNET_BUILDERS[name](scale)
    if name not in _BUILDERS:
        raise ValueError(f'unknown method {name!r}; choose from {", ".join(METHODS)}')
    return _BUILDERS[name](scale)
