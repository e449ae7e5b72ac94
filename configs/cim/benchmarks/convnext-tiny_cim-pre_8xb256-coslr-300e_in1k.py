# ImageNet-1K fine-tuning of a CIM-pre-trained ConvNeXt-T enhancer (mmpretrain).
#
# SparK's ConvNeXt fine-tuning recipe (mmpretrain configs/spark/benchmarks/
# convnextv2-tiny_8xb256-coslr-300e_in1k.py): 300 epochs, batch 2048, AdamW lr 3.2e-3,
# wd 0.05, layer-wise lr decay 0.7, drop path 0.1, mixup 0.8 / cutmix 1.0, label
# smoothing 0.1, TrivialAugment, random erasing, EMA, 20 warm-up epochs, cosine.
# mmpretrain ships it for ConvNeXt V2-T; the enhancer is ConvNeXt V1 (layer scale, no
# GRN), so the backbone is the recipe's ConvNeXt-T with the V1 block. The paper
# fine-tunes ViTs and ResNet-50 only: this recipe is unverified for CIM.
#
# The enhancer keeps mmpretrain's `ConvNeXt` names; the classifier outputs stage 3 only,
# so its `norm3` is the enhancer's and the enhancer's `norm2` (a neck input) is dropped:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_convnext-tiny_mmpretrain.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::spark/benchmarks/convnextv2-tiny_8xb256-coslr-300e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_convnext-tiny_mmpretrain.pth'
model = dict(
    backbone=dict(
        layer_scale_init_value=1e-6,  # the V1 block of the enhancer (the V2 recipe: 0)
        use_grn=False,  # the V1 block of the enhancer (the V2 recipe: True)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
