# Fashion-MNIST scenes segmentation (mmseg): a frozen CIM demo ViT with a linear head.
#
# The probe of the small seg track: what the pre-trained features hold per patch, without
# fine-tuning. The enhancer of ../cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py,
# frozen, its last block's 16x16 patch features (final norm on) -> a 1x1 convolution
# (FCNHead without convs: a per-patch linear classifier) -> bilinear upsampling in the loss.
# Data, schedule and runtime as ./upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-
# scenes-64x64.py. Convert the enhancer for THIS config (another backbone class):
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/backbone_frozen-64px.pth \
#       --target-config THIS_CONFIG
#
# Freezing: mmseg's `VisionTransformer` has `frozen_exclude` (every parameter whose name
# contains none of the listed strings gets requires_grad=False; [] freezes all), which
# mmseg's MAE / BEiT lack; a frozen backbone gets no gradient and costs no backward, unlike
# an lr_mult=0 paramwise_cfg (which mmseg's LayerDecayOptimizerConstructor also ignores).
_base_ = './upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = ('work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/'
              'backbone_frozen-64px.pth')
embed_dims = 128  # the demo enhancer's width
model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        img_size=(64, 64),  # 64 px scenes: a 16x16 grid of 4 px patches
        patch_size=4,  # the demo enhancer's patch
        patch_bias=True,  # the enhancer's patch embedding has a bias (mmseg's default: none)
        embed_dims=embed_dims,
        num_layers=6,  # the demo enhancer's depth
        num_heads=4,  # the demo enhancer's heads
        mlp_ratio=4,  # the demo enhancer's feedforward_channels = 4 x 128
        out_indices=-1,  # the last block only
        qkv_bias=True,  # the enhancer's qkv has a bias
        drop_rate=0.0,  # frozen: no dropout
        drop_path_rate=0.0,  # frozen: no stochastic depth
        with_cls_token=True,  # the enhancer has one (not output)
        norm_cfg=dict(type='LN', eps=1e-6),  # = mmpretrain's ViT
        final_norm=True,  # the enhancer's final norm, kept: normalised features to probe
        interpolate_mode='bicubic',  # = the converter's position-embedding resize
        frozen_exclude=[],  # freeze every backbone parameter (see above)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    decode_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=embed_dims,
        in_index=0,  # the one backbone output
        channels=embed_dims,  # no convs: must equal in_channels
        num_convs=0,  # no convolution before the classifier: a linear head
        concat_input=False,
        dropout_ratio=0.1,  # mmseg's default before the classifier
        num_classes={{_base_.num_classes}},
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)

# AdamW on the head only (the backbone is frozen): the fine-tune's lr, wd, no layer decay
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05))
