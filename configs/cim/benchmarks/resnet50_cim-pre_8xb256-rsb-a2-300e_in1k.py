# ImageNet-1K fine-tuning of a CIM-pre-trained ResNet-50 enhancer (mmpretrain).
#
# "ResNet strikes back" A2 (mmpretrain configs/resnet/
# resnet50_8xb256-rsb-a2-300e_in1k.py): 300 epochs, batch 2048, LAMB lr 5e-3,
# wd 0.02, BCE loss, mixup 0.1 / cutmix 1.0, RandAugment(7, 0.5), drop path
# 0.05, repeated augmentation, 5 warm-up epochs, cosine. (CIM fine-tunes its
# ResNet-50 with an RSB-style recipe; the exact variant is in the paper's
# appendix, which could not be read here: A2 is our choice, unverified.)
#
# The enhancer is a plain mmpretrain `ResNet` (depth 50, pytorch style), so the
# converted file (or the raw CIM checkpoint: same `backbone.*` names) loads
# with prefix='backbone.'; the CIM neck/head/generator/tokenizer are dropped:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_resnet50_mmpretrain.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::resnet/resnet50_8xb256-rsb-a2-300e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_resnet50_mmpretrain.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
