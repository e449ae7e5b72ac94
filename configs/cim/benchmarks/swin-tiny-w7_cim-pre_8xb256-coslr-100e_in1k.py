# ImageNet-1K fine-tuning of a CIM-pre-trained Swin-T enhancer (mmpretrain).
#
# SimMIM's Swin fine-tuning recipe (mmpretrain configs/simmim/benchmarks/
# swin-base-w7_8xb256-coslr-100e_in1k.py) with Swin-T: 100 epochs, batch 2048, AdamW lr
# 5e-3, wd 0.05, layer-wise lr decay 0.9, drop path 0.1, RandAugment, random erasing,
# mixup / cutmix of the base, 20 warm-up epochs, cosine; 224 px, 7x7 windows (the
# enhancer's). The paper fine-tunes ViTs and ResNet-50 only: unverified for CIM.
#
# The enhancer keeps mmpretrain's `SwinTransformer` names; the classifier outputs stage 3
# only, so its `norm3` is the enhancer's and the enhancer's `norm2` (a neck input) is
# dropped:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_swin-tiny_mmpretrain.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::simmim/benchmarks/swin-base-w7_8xb256-coslr-100e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_swin-tiny_mmpretrain.pth'
model = dict(
    backbone=dict(
        arch='tiny',
        pad_small_map=True,  # the enhancer's (no map is smaller than a window at 224 px)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(in_channels=768))
