# Fashion-MNIST scenes segmentation (mmseg): UperNet on the CIM Swin demo enhancer.
#
# The enhancer of ../cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px.py (three stages
# of 64 / 128 / 256 dims, 2x2 patches, 4x4 windows) as mmseg's own `SwinTransformer` (the
# same names) in UperNet on 64x64 scenes: its three stages (32x32, 16x16, 8x8) ->
# UPerHead + FCN auxiliary head on stage 1, as mmseg's Swin UperNet takes all stages and
# puts the auxiliary head on the one before last. Data, schedule length and runtime as
# ./upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py; AdamW lr 1e-3,
# wd 0.05 (the Fashion-MNIST fine-tune's), no decay on norms and position tables (mmseg's
# Swin UperNet), no layer-wise decay (mmseg's Swin recipe has none).
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/backbone_upernet-64px.pth \
#       --target-config THIS_CONFIG
_base_ = './upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = ('work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_upernet-64px.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',  # mmseg's
        pretrain_img_size=32,  # the demo enhancer's
        embed_dims=64,
        depths=[2, 2, 2],
        num_heads=[2, 4, 8],
        patch_size=2,
        strides=(2, 2, 2),  # patch embedding x2, then two patch mergings
        window_size=4,
        use_abs_pos_embed=False,
        drop_path_rate=0.1,  # the Fashion-MNIST fine-tune's
        out_indices=(0, 1, 2),  # [B, 64/128/256, 32/16/8, ...] on 64 px
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    decode_head=dict(in_channels=[64, 128, 256], in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=128, in_index=1))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.0),
        'relative_position_bias_table': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0)}))
