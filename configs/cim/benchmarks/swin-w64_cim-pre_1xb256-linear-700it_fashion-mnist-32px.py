# Fashion-MNIST linear probing of the CIM Swin demo enhancer (CPU).
#
# The ViT demo's linear probe (./vit-tiny-p4_cim-pre_1xb256-linear-700it_fashion-mnist-
# 32px.py: frozen backbone, BatchNorm without affine, linear classifier, SGD lr 0.1,
# batch 256, 700 iterations, cosine) on Swin's classifier feature (stage 2 after the
# enhancer's norm2, globally averaged), all frozen.
#
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/backbone_linear.pth \
#       --target-config THIS_CONFIG
_base_ = './vit-tiny-p4_cim-pre_1xb256-linear-700it_fashion-mnist-32px.py'

pretrained = ('work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_linear.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch=dict(embed_dims=64, depths=[2, 2, 2], num_heads=[2, 4, 8]),  # the demo's
        img_size=32,
        patch_size=2,
        window_size=4,
        pad_small_map=True,
        out_indices=(2, ),
        frozen_stages=2,  # Swin counts from 0: patch embedding, stages 0-2 and norm2
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # [B, 256, 4, 4] -> global average -> BatchNorm (no affine); a list: one Sequential
    neck=[dict(type='GlobalAveragePooling'), dict(type='ClsBatchNormNeck', input_features=256)],
    head=dict(in_channels=256))
