# ImageNet-1K linear probing of a CIM-pre-trained Swin-T enhancer (mmpretrain).
#
# MAE's linear-probing recipe (mmpretrain configs/mae/benchmarks/
# vit-base-p16_8xb2048-linear-coslr-90e_in1k.py), as the ViT configs here: frozen
# backbone, BatchNorm (no affine) before a linear classifier, LARS lr 6.4 for batch 16384,
# 90 epochs, 10 warm-up, cosine, no weight decay (SimMIM reports no linear probe). The
# feature: the global average of stage 3 after the enhancer's `norm3` (Swin's classifier
# feature), all frozen.
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_swin-tiny_mmpretrain-linear.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_swin-tiny_mmpretrain-linear.pth'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch='tiny',
        img_size=224,
        window_size=7,
        pad_small_map=True,  # the enhancer's
        out_indices=(3, ),
        frozen_stages=3,  # Swin counts from 0: patch embedding, stages 0-3 and norm3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # [B, 768, 7, 7] -> global average -> BatchNorm (no affine); a list: one Sequential
    neck=[dict(type='GlobalAveragePooling'), dict(type='ClsBatchNormNeck', input_features=768)],
    head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768))
