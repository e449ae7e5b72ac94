# Fashion-MNIST linear probing of the CIM ConvNeXt demo enhancer (CPU).
#
# The ViT demo's linear probe (./vit-tiny-p4_cim-pre_1xb256-linear-700it_fashion-mnist-
# 32px.py: frozen backbone, BatchNorm without affine, linear classifier, SGD lr 0.1,
# batch 256, 700 iterations, cosine) on ConvNeXt's classifier feature (stage 2 pooled,
# then the enhancer's norm2; ConvNeXt's `frozen_stages` leaves that norm trainable: its lr
# is 0 here, so nothing but the classifier changes).
#
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/backbone_linear.pth \
#       --target-config THIS_CONFIG
_base_ = './vit-tiny-p4_cim-pre_1xb256-linear-700it_fashion-mnist-32px.py'

pretrained = ('work_dirs/cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_linear.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch=dict(depths=[2, 4, 2], channels=[64, 128, 256]),  # the demo enhancer's
        stem_patch_size=2,
        out_indices=(2, ),
        frozen_stages=3,  # all three stages (and their downsampling layers)
        gap_before_final_norm=True,  # [B, 256]
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(input_features=256),
    head=dict(in_channels=256))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone.norm2': dict(lr_mult=0.0, decay_mult=0.0)}))
