"""The methods of the ResNet track (``--track resnet``): CIM against the CNN peers.

Every method pre-trains the CIM demo's ResNet-18 (stem / base 32 channels,
strides ``(1, 1, 1, 2)``: C4 ``[B, 128, 8, 8]`` and C5 ``[B, 256, 4, 4]`` at
32 px) on the same data with the same optimizer recipe. The peers are
mmpretrain's algorithms with their own necks, heads and two-view
augmentations, widths scaled from ResNet-50 (2048 channels) to this C5 (256):

* SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, DenseCL: the mmpretrain
  ``configs/<method>/*_resnet50_*`` models (neck / head types, temperatures,
  momenta, loss weights as there), hidden widths / 4..8, ``SyncBN`` -> ``BN``;
* SparK: mmpretrain's ``SparK`` + ``SparseResNet`` (the same ResNet-18 with
  sparse convolutions / norms) + ``SparKLightDecoder``, on the two stages with
  distinct strides (C4 at /4, C5 at /8): a 4x4 mask grid of 8 px cells at
  32 px, mask ratio 0.6 as in mmpretrain;
* MEC: :class:`cim_mm.models.algorithms.MEC` (written from the paper);
* random init.

The evaluated backbone is a plain ``ResNet`` (``out_indices=(3,)``); the
feature is the global average of C5 (256 dims).
"""
from __future__ import annotations

import copy
from typing import Callable

from .scales import Scale
from .spec_parts import MethodSpec, contrastive_views, mask_options, pack, preproc
from .specs_vit import LABELS

RESNET_METHODS = ('cim-respix', 'cim-revdet', 'simclr', 'mocov2', 'byol', 'simsiam',
                  'barlowtwins', 'densecl', 'spark', 'mec', 'random')
RESNET_LABELS = dict(LABELS, mocov2='MoCo v2', byol='BYOL', simsiam='SimSiam',
                     barlowtwins='Barlow Twins', spark='SparK', mec='MEC')


def resnet_backbone(scale: Scale, **kw) -> dict:
    """The track's ResNet, C5 only, with ``kw`` (e.g. the method's own
    ``zero_init_residual``)."""
    bb = copy.deepcopy(scale.resnet)
    bb.update(type='ResNet', out_indices=(3, ))
    bb.update(kw)
    return bb


def resnet_eval(scale: Scale) -> dict:
    bb = resnet_backbone(scale)
    bb.pop('init_cfg', None)
    return bb


def _c(scale: Scale) -> int:
    return scale.embed_dims  # C5 channels (256)


def _siamese_note(name: str, what: str) -> list:
    return [f'{RESNET_LABELS[name]}: {what}; two views: random resized crop (0.2-1), flip, '
            'brightness/contrast jitter, random grayscale (no blur / solarisation at 32 px).']


def _simclr(scale: Scale) -> MethodSpec:
    c = _c(scale)
    model = dict(
        type='SimCLR', data_preprocessor=preproc(scale),
        backbone=resnet_backbone(scale, zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=2 * c, out_channels=128,
                  num_layers=2, with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.1))
    return MethodSpec('simclr', 'SimCLR', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'simclr', f'NonLinearNeck {c}-{2 * c}-128, ContrastiveHead T 0.1'))


def _queue(scale: Scale) -> int:  # MoCo / DenseCL assert queue_len % batch == 0
    return max(scale.batch_size, scale.densecl_queue // scale.batch_size * scale.batch_size)


def _mocov2(scale: Scale) -> MethodSpec:
    c = _c(scale)
    q = _queue(scale)
    model = dict(
        type='MoCo', data_preprocessor=preproc(scale), queue_len=q, feat_dim=128,
        momentum=0.001, backbone=resnet_backbone(scale, zero_init_residual=False),
        neck=dict(type='MoCoV2Neck', in_channels=c, hid_channels=2 * c, out_channels=128,
                  with_avg_pool=True),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.2))
    return MethodSpec('mocov2', 'MoCo v2', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'mocov2', f'MoCoV2Neck {c}-{2 * c}-128, queue {q}, momentum '
                          '0.999, ContrastiveHead T 0.2'))


def _byol(scale: Scale) -> MethodSpec:
    c = _c(scale)
    model = dict(
        type='BYOL', data_preprocessor=preproc(scale), base_momentum=0.01,
        backbone=resnet_backbone(scale, zero_init_residual=False),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=4 * c, out_channels=128,
                  num_layers=2, with_bias=True, with_last_bn=False, with_avg_pool=True,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=128,
                                 hid_channels=4 * c, out_channels=128, num_layers=2,
                                 with_bias=True, with_last_bn=False, with_avg_pool=False,
                                 norm_cfg=dict(type='BN1d'))))
    return MethodSpec('byol', 'BYOL', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'byol', f'NonLinearNeck {c}-{4 * c}-128 + predictor '
                          f'128-{4 * c}-128, cosine-EMA target (0.99 -> 1 over the budget)'))


def _simsiam(scale: Scale) -> MethodSpec:
    c = _c(scale)
    d = 2 * c
    model = dict(
        type='SimSiam', data_preprocessor=preproc(scale),
        backbone=resnet_backbone(scale, zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=d, out_channels=d,
                  num_layers=3, with_last_bn_affine=False, with_avg_pool=True,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='LatentPredictHead', loss=dict(type='CosineSimilarityLoss'),
                  predictor=dict(type='NonLinearNeck', in_channels=d, hid_channels=d // 4,
                                 out_channels=d, with_avg_pool=False, with_last_bn=False,
                                 with_last_bias=True, norm_cfg=dict(type='BN1d'))))
    return MethodSpec('simsiam', 'SimSiam', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'simsiam', f'3-layer NonLinearNeck {c}-{d}-{d} + predictor '
                          f'{d}-{d // 4}-{d}, stop-gradient'))


def _barlowtwins(scale: Scale) -> MethodSpec:
    c = _c(scale)
    d = 4 * c
    model = dict(
        type='BarlowTwins', data_preprocessor=preproc(scale),
        backbone=resnet_backbone(scale, zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=d, out_channels=d,
                  num_layers=3, with_last_bn=False, with_last_bn_affine=False,
                  with_avg_pool=True, norm_cfg=dict(type='BN1d'),
                  init_cfg=dict(type='Kaiming', distribution='uniform', layer=['Linear'])),
        head=dict(type='LatentCrossCorrelationHead', in_channels=d,
                  loss=dict(type='CrossCorrelationLoss')))
    return MethodSpec('barlowtwins', 'Barlow Twins', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'barlowtwins', f'3-layer NonLinearNeck {c}-{d}-{d}, '
                          'cross-correlation loss (lambda 0.0051 as mmpretrain); AdamW of '
                          'the recipe instead of LARS'))


def _densecl(scale: Scale) -> MethodSpec:
    c = _c(scale)
    q = _queue(scale)
    model = dict(
        type='DenseCL', data_preprocessor=preproc(scale), queue_len=q, feat_dim=128,
        momentum=0.001, loss_lambda=0.5,
        backbone=resnet_backbone(scale, zero_init_residual=False),
        neck=dict(type='DenseCLNeck', in_channels=c, hid_channels=2 * c, out_channels=128,
                  num_grid=None),
        head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                  temperature=0.2))
    return MethodSpec('densecl', 'DenseCL', model, contrastive_views(scale),
                      resnet_eval(scale), notes=_siamese_note(
                          'densecl', f'DenseCLNeck {c}-{2 * c}-128 on the 4x4 C5 map, queue '
                          f'{q}, loss_lambda 0.5 (no warm-up hook)'))


def _spark(scale: Scale) -> MethodSpec:
    c = _c(scale)
    bb = resnet_backbone(scale, type='SparseResNet', out_indices=(2, 3),
                         norm_cfg=dict(type='SparseBatchNorm2d'), zero_init_residual=False)
    bb.pop('init_cfg', None)
    down = 8  # C5 stride at 32 px: stem /4, last stage /2
    model = dict(
        type='SparK', data_preprocessor=preproc(scale), input_size=scale.img_size,
        downsample_raito=down, mask_ratio=0.6,
        enc_dec_norm_cfg=dict(type='SparseBatchNorm2d'), enc_dec_norm_dim=c,
        backbone=bb,
        neck=dict(type='SparKLightDecoder', feature_dim=c // 2, upsample_ratio=down,
                  mid_channels=0, last_act=False, norm_cfg=dict(type='BN')),
        head=dict(type='SparKPretrainHead', patch_size=down,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))
    return MethodSpec('spark', 'SparK', model, pack(scale), resnet_eval(scale), notes=[
        f'SparK: SparseResNet (the same ResNet-18, sparse conv / BN) masked on a '
        f'{scale.img_size // down}x{scale.img_size // down} grid of {down} px cells '
        '(ratio 0.6), hierarchical decoding from C4 and C5 (the two stages with distinct '
        f'strides here), SparKLightDecoder {c // 2} dims, normalised-pixel L2 on masked '
        'cells; the CIM demo augmentation (resize, flip).'])


def _mec(scale: Scale) -> MethodSpec:
    c = _c(scale)
    d = 2 * c
    model = dict(
        type='MEC', data_preprocessor=preproc(scale), base_momentum=0.01,
        backbone=resnet_backbone(scale, zero_init_residual=True),
        neck=dict(type='NonLinearNeck', in_channels=c, hid_channels=d, out_channels=d,
                  num_layers=3, with_last_bn_affine=False, with_avg_pool=True,
                  norm_cfg=dict(type='BN1d')),
        head=dict(type='MECHead', predictor=dict(
            type='NonLinearNeck', in_channels=d, hid_channels=d // 4, out_channels=d,
            with_avg_pool=False, with_last_bn=False, with_last_bias=True,
            norm_cfg=dict(type='BN1d')), order=4))
    return MethodSpec('mec', 'MEC', model, contrastive_views(scale), resnet_eval(scale),
                      notes=_siamese_note(
                          'mec', f'3-layer projector {c}-{d}-{d} + predictor {d}-{d // 4}-{d}, '
                          'cosine-EMA target (0.99 -> 1), loss -mu tr log(I + lambda Z1^T Z2) '
                          'by its order-4 Taylor series (benchmarks/models/mec.py)'))


def _cim(scale: Scale, name: str) -> MethodSpec:
    model = copy.deepcopy(scale.cim_models[name])
    return MethodSpec(
        name, LABELS[name], model,
        pack(scale, dict(type='BEiTMaskGenerator', **mask_options(scale))), resnet_eval(scale),
        needs_tokenizer=True, is_cim=True,
        notes=[f'{LABELS[name]}: model = {scale.cim_configs[name]} (enhancer: the demo '
               'ResNet-18 + CNNPatchNeck on the 8x8 token grid).'])


def _random(scale: Scale) -> MethodSpec:
    return MethodSpec('random', 'random init', None, [], resnet_eval(scale),
                      notes=['random init: the ResNet-18 with its initialisation, no '
                             'pre-training.'])


RESNET_BUILDERS: dict[str, Callable[[Scale], MethodSpec]] = {
    'cim-respix': lambda s: _cim(s, 'cim-respix'),
    'cim-revdet': lambda s: _cim(s, 'cim-revdet'),
    'simclr': _simclr, 'mocov2': _mocov2, 'byol': _byol, 'simsiam': _simsiam,
    'barlowtwins': _barlowtwins, 'densecl': _densecl, 'spark': _spark, 'mec': _mec,
    'random': _random,
}
