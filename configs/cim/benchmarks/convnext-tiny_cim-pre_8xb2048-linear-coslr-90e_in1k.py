# ImageNet-1K linear probing of a CIM-pre-trained ConvNeXt-T enhancer (mmpretrain).
#
# MAE's linear-probing recipe (mmpretrain configs/mae/benchmarks/
# vit-base-p16_8xb2048-linear-coslr-90e_in1k.py), as the ViT configs here: frozen
# backbone, BatchNorm (no affine) before a linear classifier, LARS lr 6.4 for batch 16384,
# 90 epochs, 10 warm-up, cosine, no weight decay. mmpretrain has no ConvNeXt linear
# protocol and SparK reports none; the BatchNorm neck makes the probe independent of the
# feature scale, which differs between families. The feature: the global average of
# stage 3 through the enhancer's `norm3` (ConvNeXt's classifier feature). ConvNeXt's
# `frozen_stages` leaves its output norm trainable: its lr is 0 here, so nothing but the
# classifier (and the BatchNorm statistics) changes.
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_convnext-tiny_mmpretrain-linear.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_convnext-tiny_mmpretrain-linear.pth'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(3, ),
        frozen_stages=4,  # all four stages (and their downsampling layers)
        gap_before_final_norm=True,  # [B, 768]: norm3 of the pooled stage 3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone.norm3': dict(lr_mult=0.0, decay_mult=0.0)}))
