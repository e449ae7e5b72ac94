"""The methods of the ConvNeXt and Swin tracks (``--track convnext`` / ``--track swin``).

Every method pre-trains the CIM demo's enhancer of the track (mmpretrain
``ConvNeXt`` / ``SwinTransformer`` in three stages of 64 / 128 / 256 channels,
stride 8 at the last: ``[B, 256, 4, 4]`` at 32 px) on the same data with the
same optimizer recipe (the demo config's AdamW). The peers are mmpretrain's
algorithms as they are, at this backbone's sizes:

* the family's masked-image-modeling peer: SparK with ``SparseConvNeXt`` (the
  same ConvNeXt with sparse convolutions / norms, masked on the 4x4 grid of its
  last stage, hierarchical decoding from its three stages) for ConvNeXt; SimMIM
  with ``SimMIMSwinTransformer`` (the same Swin with a mask token, 8 px mask
  patches, linear decoder from the last stage) for Swin; mask ratio 0.6 as in
  mmpretrain for both;
* SimCLR (contrastive; the ResNet track's neck / head at this width);
* random init.

The evaluated backbone is the track's class with its last stage out
(``out_indices=(2,)``); the feature is the global average of that stage after
its output norm ``norm2``, which starts fresh (identity affine) for every
method: SparK's sparse ConvNeXt has no output norms, so no method keeps its own.
"""
from __future__ import annotations

import copy
from typing import Callable

from .scales import Scale, last_stage_channels
from .spec_parts import MethodSpec, contrastive_views, mask_options, pack, preproc
from .specs_vit import LABELS

FEATMAP_METHODS = {
    'convnext': ('cim-respix', 'cim-revdet', 'spark', 'simclr', 'random'),
    'swin': ('cim-respix', 'cim-revdet', 'simmim', 'simclr', 'random'),
}
FEATMAP_LABELS = dict(LABELS, spark='SparK')
FAMILY = {'convnext': 'ConvNeXt', 'swin': 'Swin'}
MASK_RATIO = 0.6  # SparK's and SimMIM's (mmpretrain)


def _num_stages(scale: Scale) -> int:
    return len(scale.enhancer['arch']['depths'])


def _stride(scale: Scale) -> int:
    """The last stage's stride (8 for the demo enhancers at 32 px)."""
    bb = scale.enhancer
    first = bb.get('stem_patch_size', bb.get('patch_size', 4))
    return int(first) * 2**(_num_stages(scale) - 1)


def track_backbone(scale: Scale, **kw) -> dict:
    """The track's enhancer, its last stage only, with ``kw``."""
    bb = copy.deepcopy(scale.enhancer)
    bb['out_indices'] = (_num_stages(scale) - 1, )
    bb.update(kw)
    return bb


def featmap_eval(scale: Scale) -> dict:
    bb = track_backbone(scale)
    bb.pop('init_cfg', None)
    return bb


def _fresh(scale: Scale) -> tuple:
    """The output norms: fresh for every method (see the module doc)."""
    return tuple(f'norm{i}.' for i in range(_num_stages(scale)))


def _spec(scale: Scale, name: str, model, pipeline: list, notes: list, **kw) -> MethodSpec:
    return MethodSpec(name, FEATMAP_LABELS[name], model, pipeline, featmap_eval(scale),
                      eval_fresh=_fresh(scale), notes=notes, **kw)


def _cim(scale: Scale, name: str) -> MethodSpec:
    model = copy.deepcopy(scale.cim_models[name])
    return _spec(scale, name, model,
                 pack(scale, dict(type='BEiTMaskGenerator', **mask_options(scale))),
                 [f'{LABELS[name]}: model = {scale.cim_configs[name]} (enhancer: the demo '
                  f'{FAMILY[scale.track]} + CNNPatchNeck on the 8x8 token grid).'],
                 needs_tokenizer=True, is_cim=True)


def _spark(scale: Scale) -> MethodSpec:
    c = last_stage_channels(scale.enhancer)
    n = _num_stages(scale)
    down = _stride(scale)
    bb = track_backbone(scale, type='SparseConvNeXt', out_indices=tuple(range(n)),
                        gap_before_output=False)
    bb.pop('gap_before_final_norm', None)  # SparseConvNeXt's is gap_before_output
    bb.pop('init_cfg', None)
    model = dict(
        type='SparK', data_preprocessor=preproc(scale), input_size=scale.img_size,
        downsample_raito=down, mask_ratio=MASK_RATIO,
        enc_dec_norm_cfg=dict(type='SparseLN2d', eps=1e-6), enc_dec_norm_dim=c,
        backbone=bb,
        neck=dict(type='SparKLightDecoder', feature_dim=c // 2, upsample_ratio=down,
                  mid_channels=0, last_act=False, norm_cfg=dict(type='BN')),
        head=dict(type='SparKPretrainHead', patch_size=down,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))
    grid = scale.img_size // down
    return _spec(scale, 'spark', model, pack(scale), [
        f'SparK: SparseConvNeXt (the same ConvNeXt, sparse conv / LN) masked on a '
        f'{grid}x{grid} grid of {down} px cells (ratio {MASK_RATIO}), hierarchical decoding '
        f'from its {n} stages (SparKLightDecoder {c // 2} dims, SparseLN2d between encoder and '
        'decoder, as mmpretrain\'s SparK ConvNeXt), normalised-pixel L2 on masked cells; the '
        'CIM demo augmentation (resize, flip).'])


def _simmim(scale: Scale) -> MethodSpec:
    c = last_stage_channels(scale.enhancer)
    down = _stride(scale)
    patch = int(scale.enhancer.get('patch_size', 4))
    bb = track_backbone(scale, type='SimMIMSwinTransformer')
    # SimMIMSwinTransformer takes the patch and window sizes through these two
    bb['patch_cfg'] = dict(kernel_size=patch, stride=patch)
    bb['stage_cfgs'] = dict(block_cfgs=dict(window_size=bb.pop('window_size', 7)))
    bb.pop('patch_size', None)
    bb.pop('init_cfg', None)
    model = dict(
        type='SimMIM', data_preprocessor=preproc(scale), backbone=bb,
        neck=dict(type='SimMIMLinearDecoder', in_channels=c, encoder_stride=down),
        head=dict(type='SimMIMHead', patch_size=patch,
                  loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
    mask = dict(type='SimMIMMaskGenerator', input_size=scale.img_size, mask_patch_size=down,
                model_patch_size=patch, mask_ratio=MASK_RATIO)
    return _spec(scale, 'simmim', model, pack(scale, mask), [
        f'SimMIM: SimMIMSwinTransformer (the same Swin + a mask token), {down} px mask patches '
        f'(the last stage\'s stride, as SimMIM\'s 32 px at 192 px), ratio {MASK_RATIO}, linear '
        'decoder from the last stage, L1 on masked pixels; the CIM demo augmentation.'])


def _simclr(scale: Scale) -> MethodSpec:
    c = last_stage_channels(scale.enhancer)
    model = dict(
        type='SimCLR', data_preprocessor=preproc(scale), backbone=track_backbone(scale),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=2 * c, out_channels=128,
                  num_layers=2, with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.1))
    return _spec(scale, 'simclr', model, contrastive_views(scale), [
        f'SimCLR: the last stage\'s map -> NonLinearNeck {c}-{2 * c}-128 (average pool, BN1d) '
        '-> ContrastiveHead (T 0.1); two views: random resized crop (0.2-1), flip, '
        'brightness/contrast jitter, random grayscale.'])


def _random(scale: Scale) -> MethodSpec:
    return _spec(scale, 'random', None, [], [
        f'random init: the {FAMILY[scale.track]} with its initialisation, no pre-training.'])


FEATMAP_BUILDERS: dict[str, Callable[[Scale], MethodSpec]] = {
    'cim-respix': lambda s: _cim(s, 'cim-respix'),
    'cim-revdet': lambda s: _cim(s, 'cim-revdet'),
    'spark': _spark, 'simmim': _simmim, 'simclr': _simclr, 'random': _random,
}
