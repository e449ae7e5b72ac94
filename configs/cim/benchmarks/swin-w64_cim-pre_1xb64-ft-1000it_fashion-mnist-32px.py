# Fashion-MNIST fine-tuning of the CIM Swin demo enhancer (CPU).
#
# The enhancer of configs/cim/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px.py
# (mmpretrain SwinTransformer: three stages of 64 / 128 / 256 dims, 2x2 patches, 4x4
# windows) in the ViT demo's fine-tune (./vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-
# mnist-32px.py: data, 1000 iterations of batch 64, AdamW lr 1e-3 wd 0.05, layer-wise lr
# decay 0.75, label smoothing, warm-up + cosine), with Swin's classifier feature (stage 2
# after norm2, globally averaged) and drop path 0.1; no decay on norms, biases and
# relative position tables (SimMIM's Swin fine-tune).
#
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/backbone_ft.pth \
#       --target-config THIS_CONFIG
#   python tools/train.py THIS_CONFIG
_base_ = './vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py'

pretrained = ('work_dirs/cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px/'
              'backbone_ft.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch=dict(embed_dims=64, depths=[2, 2, 2], num_heads=[2, 4, 8]),  # the demo's
        img_size=32,
        patch_size=2,
        window_size=4,
        pad_small_map=True,
        out_indices=(2, ),  # the last stage: [B, 256, 4, 4]
        drop_path_rate=0.1,  # the ViT demo fine-tune's
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(_delete_=True, type='GlobalAveragePooling'),
    head=dict(in_channels=256))
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.75,  # the ViT demo fine-tune's (Swin.get_layer_depth: per block)
        merge_groups=True,
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
