# Fashion-MNIST fine-tuning of the CIM ConvNeXt demo enhancer (CPU).
#
# The enhancer of configs/cim/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py
# (mmpretrain ConvNeXt: three stages of 64 / 128 / 256 channels behind a x2 stem) in the
# ViT demo's fine-tune (./vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py: data,
# 1000 iterations of batch 64, AdamW lr 1e-3 wd 0.05, label smoothing, warm-up + cosine),
# with ConvNeXt's classifier feature (stage 2 pooled, then norm2) and drop path 0.1. No
# layer-wise lr decay: mmpretrain's ConvNeXt.get_layer_depth assumes four stages.
#
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/backbone_ft.pth \
#       --target-config THIS_CONFIG
#   python tools/train.py THIS_CONFIG
_base_ = './vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py'

pretrained = ('work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_ft.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch=dict(depths=[2, 4, 2], channels=[64, 128, 256]),  # the demo enhancer's
        stem_patch_size=2,  # the demo enhancer's
        out_indices=(2, ),  # the last stage (ConvNeXt's -1 means stage 3 of four)
        gap_before_final_norm=True,  # [B, 256]: norm2 of the pooled stage 2
        drop_path_rate=0.1,  # the ViT demo fine-tune's
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(in_channels=256))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    # no decay on norms, biases and the layer scales (gamma), as mmpretrain's ConvNeXt
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.gamma': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))
