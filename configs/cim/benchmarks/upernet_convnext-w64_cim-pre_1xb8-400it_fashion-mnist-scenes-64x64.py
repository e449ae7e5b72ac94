# Fashion-MNIST scenes segmentation (mmseg): UperNet on the CIM ConvNeXt demo enhancer.
#
# The enhancer of ../cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py (three
# stages of 64 / 128 / 256 channels behind a x2 stem) as `mmpretrain.ConvNeXt` (mmseg's
# own ConvNeXt configs use it) in UperNet on 64x64 scenes: its three stages (32x32, 16x16,
# 8x8) -> UPerHead + FCN auxiliary head on stage 1, as mmseg's ConvNeXt UperNet takes all
# stages and puts the auxiliary head on the one before last. Data, schedule length and
# runtime as ./upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py;
# AdamW lr 1e-3, wd 0.05 (the Fashion-MNIST fine-tune's), no layer-wise decay (mmseg's
# ConvNeXt decay assumes four stages).
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/backbone_upernet-64px.pth \
#       --target-config THIS_CONFIG
_base_ = './upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = ('work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_upernet-64px.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ConvNeXt',
        arch=dict(depths=[2, 4, 2], channels=[64, 128, 256]),  # the demo enhancer's
        stem_patch_size=2,  # the demo enhancer's
        out_indices=(0, 1, 2),  # [B, 64/128/256, 32/16/8, ...] on 64 px
        gap_before_final_norm=False,
        drop_path_rate=0.1,  # the Fashion-MNIST fine-tune's
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=None,
    decode_head=dict(in_channels=[64, 128, 256], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=128, in_index=1))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.gamma': dict(decay_mult=0.0)}))
