# CroCo (cross-view completion) on Fashion-MNIST at 32 px: the dense peer, CIM demo sized.
#
# Encoder: the CIM demo enhancer's ViT (../cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-
# mnist-32px.py: patch 4 on 32 px = 8x8 grid, 6 layers, 128 dims, 4 heads) as mmpretrain's
# MAEViT; decoder: CroCo blocks (self-attention, cross-attention to view 2, MLP) at the
# benchmark's MAE decoder size; MAE's normalised-pixel L2 loss on view 1's masked patches.
# Pairs: two overlapping crops of one image (no multi-view data here).
#   python tools/train.py THIS_CONFIG
#   python tools/train.py THIS_CONFIG --cfg-options model.view2=other_image   # the control
_base_ = [
    '../_base_/fashion_mnist_cim_32px.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable', 'benchmarks.models'],
                      allow_failed_imports=False)
default_scope = 'mmpretrain'

img_size = 32  # the CIM demo's input size
patch_size = 4  # the CIM demo enhancer's patch
embed_dims = 128  # the CIM demo enhancer's width
model = dict(
    type='CroCo',
    view2='pair',  # 'other_image': the control, view 2 from the previous image of the batch
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean={{_base_.fmnist_mean}},  # Fashion-MNIST pixel statistics (the CIM demo's)
        std={{_base_.fmnist_std}},
        to_rgb=False),  # gray images repeated on 3 channels: nothing to swap
    backbone=dict(
        type='MAEViT',
        arch=dict(embed_dims=embed_dims, num_layers=6, num_heads=4,
                  feedforward_channels=embed_dims * 4),  # the CIM demo enhancer
        img_size=img_size,
        patch_size=patch_size,
        mask_ratio=0.9),  # CroCo's: 90 % of view 1's patches masked
    neck=dict(
        type='CroCoDecoder',
        num_patches=(img_size // patch_size)**2,  # 8x8 patches per view
        patch_size=patch_size,
        in_chans=3,
        embed_dim=embed_dims,
        # the benchmark's MAE decoder at this scale (benchmarks/scales.py)
        decoder_embed_dim=64,
        decoder_depth=2,
        decoder_num_heads=2,
        mlp_ratio=4.0),  # MAE's / CroCo's MLP ratio
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,  # CroCo's and MAE's per-patch-normalised pixel targets
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    # MAE's initialisation (mmpretrain's MAE configs)
    init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
              dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)])

# Two crops of one image, each >= 60 % of its area (less ~2 % of rounding): two such
# regions share >= 15 % of the image (area(A) + area(B) - 1), so every pair overlaps.
view = [dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.6, 1.0),
             backend='pillow', interpolation='bicubic')]
train_dataloader = dict(
    batch_size=64,  # the CIM demo's
    num_workers=0,  # 2 CPU cores: load in the main process (the CIM demo's finding)
    persistent_workers=False,
    dataset=dict(pipeline=[
        dict(type='GrayToRGB'),  # 28x28 gray -> 3 channels
        dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
        dict(type='MultiView', num_views=2, transforms=[view]),
        dict(type='PackInputs'),
    ]))

max_iters = 500  # the CIM demo's length
# MAE's recipe scaled down as the CIM demo's: AdamW, wd 0.05, betas (0.9, 0.95) (MAE's)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'ln': dict(decay_mult=0.0), 'bias': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.0), 'mask_token': dict(decay_mult=0.0),
        'cls_token': dict(decay_mult=0.0)}))
param_scheduler = [  # the CIM demo's warm-up and cosine decay
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=250, max_keep_ckpts=2,
                    save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
