# Fashion-MNIST scenes segmentation (mmseg): UperNet on the CIM demo's tiny ViT, fine-tuned.
#
# The small seg track: the enhancer of ../cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-
# 32px.py (ViT: patch 4, 6 layers, 128 dims, 4 heads) in mmseg's ViT-UperNet recipe
# (mmseg's upernet_vit-b16_ln_mln: blocks 3/6/9/12 -> MultiLevelNeck -> UPerHead + FCN
# auxiliary head) with BEiT/MAE-style layer-wise lr decay, on 64x64 scenes
# (tools/dataset_converters/fashion_mnist_scenes.py), sized for 2 CPU cores.
#
#   bash tools/prepare_fashion_mnist.sh
#   python tools/dataset_converters/fashion_mnist_scenes.py data/fashion_mnist \
#       data/fashion_mnist_scenes
#   python tools/train.py configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/backbone_upernet-64px.pth \
#       --target-config THIS_CONFIG
#   python tools/train.py THIS_CONFIG
# (from scratch, for comparison: --cfg-options model.backbone.init_cfg=None)
#
# Backbone: mmseg's `MAE` (a ViT with layer scale and relative position bias), as in
# ./upernet_vit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py: mmseg's
# LayerDecayOptimizerConstructor accepts only BEiT / MAE / ConvNeXt backbones, and the
# converter fills MAE exactly from a plain ViT (layer scale 1, relative bias 0, the 8x8
# position embedding of 32 px resized to the 16x16 grid of 64 px).
_base_ = [
    '../../_base_/datasets/fashion_mnist_scenes_64x64.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable', 'cim_mm.seg'],
                      allow_failed_imports=False)
default_scope = 'mmseg'

# the converted CIM enhancer (commands above)
pretrained = ('work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/'
              'backbone_upernet-64px.pth')
embed_dims = 128  # the demo enhancer's width
num_layers = 6  # the demo enhancer's depth
crop_size = {{_base_.crop_size}}
num_classes = {{_base_.num_classes}}
norm_cfg = dict(type='BN', requires_grad=True)  # one process: BN (mmseg's SyncBN needs DDP)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[72.94] * 3,  # Fashion-MNIST pixel mean, the pre-training normalisation
        std=[90.02] * 3,  # Fashion-MNIST pixel std, the pre-training normalisation
        bgr_to_rgb=True,  # LoadImageFromFile reads BGR; the scenes are stored RGB
        pad_val=0,  # mmseg's image padding value
        seg_pad_val=255,  # mmseg's label padding value (ignored)
        size=crop_size),  # pad every batch to 64x64
    pretrained=None,  # the backbone loads its own file (init_cfg below)
    backbone=dict(
        type='MAE',
        img_size=crop_size,  # 64 px scenes: a 16x16 grid of 4 px patches
        patch_size=4,  # the demo enhancer's patch
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=4,  # the demo enhancer's heads
        mlp_ratio=4,  # the demo enhancer's feedforward_channels = 4 x 128
        init_values=1.0,  # layer scale 1: the plain-ViT enhancer's function, exactly
        drop_path_rate=0.1,  # the Fashion-MNIST classification fine-tune's
        norm_cfg=dict(type='LN', eps=1e-6),  # = mmpretrain's ViT
        final_norm=False,  # mmseg's MAE UperNet: the neck takes un-normalised blocks
        # blocks 2, 3, 5, 6 of 6: mmseg's 3, 6, 9, 12 of 12, halved (rounded down)
        out_indices=[1, 2, 4, 5],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[embed_dims] * 4,
        out_channels=embed_dims,  # mmseg keeps the ViT width
        # strides 4, 8, 16, 32 as mmseg's ViT-UperNet (patch 16 with scales 4, 2, 1, 0.5);
        # patch 4 is already stride 4
        scales=[1, 0.5, 0.25, 0.125]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[embed_dims] * 4,
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),  # mmseg's UPerHead pyramid pooling
        channels=128,  # mmseg: 512 for 768-wide ViT-B; ~the backbone width here
        dropout_ratio=0.1,  # mmseg's
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=embed_dims,
        in_index=3,  # mmseg's ViT-UperNet: the coarsest neck level
        channels=64,  # mmseg: 256 for ViT-B (a third of the width), rounded up
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))  # 64 px scenes fit whole

# 400 iterations x 8 scenes (1.6 passes over the 2000 training scenes): ~4 min 50 s a run on
# 2 free CPU cores (0.65 s an iteration, validation on 500 scenes ~13 s; measured on a machine
# that runs the CPU demo at 0.88 s an iteration). At 120 iterations every row, random init
# included, stayed at ~10 mIoU (background and little else); at 480, 18-20.
max_iters = 400
# AdamW with layer-wise lr decay (mmseg's MAE/BEiT recipe); lr 1e-3, wd 0.05 and decay 0.75
# are the Fashion-MNIST classification fine-tune's
# (./vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py), not tuned here
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=num_layers, layer_decay_rate=0.75))
param_scheduler = [
    # linear warm-up over the first 10 % (mmseg's MAE: 1500 of 160k, longer here: fresh heads)
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=max_iters // 10),
    # mmseg's poly decay to 0
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=max_iters // 10, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
