# ADE20K semantic segmentation: UperNet on a CIM-pre-trained Swin-T (mmseg).
#
# Recipe: mmseg's UperNet Swin-T (configs/swin/swin-tiny-patch4-window7-in1k-pre_upernet_
# 8xb2-160k_ade20k-512x512.py) as it is: 512x512 crops, 160k iterations, batch 16 (8 GPUs
# x 2), AdamW lr 6e-5, wd 0.01 (none on norms / position tables), drop path 0.3, 1500
# warm-up iterations, poly decay, auxiliary FCN head on stage 2.
#
# Backbone: mmseg's own `SwinTransformer`, whose names are mmpretrain's (and whose windows
# compute what the enhancer's do: checked by forward equivalence in
# tests/converters/test_any_backbone_downstream.py); it loads its `Pretrained` file itself
# (backbone-relative keys). UperNet outputs all four stages: `norm2` / `norm3` are the
# enhancer's, `norm0` / `norm1` start fresh (the converter lists them):
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_swin-tiny_mmseg.pth --target-config THIS_CONFIG
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.seg', 'cim_mm.compat.enable'],
                      allow_failed_imports=False)

pretrained = 'work_dirs/cim_swin-tiny_mmseg.pth'  # converted CIM enhancer
data_root = 'data/ade/ADEChallengeData2016'

model = dict(
    pretrained=None,
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

# mmseg batches lists of differently sized images (pseudo_collate, mmengine's
# default); say so, as our tools/train.py fills in default_collate otherwise
train_dataloader = dict(
    batch_size=2,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=1,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
