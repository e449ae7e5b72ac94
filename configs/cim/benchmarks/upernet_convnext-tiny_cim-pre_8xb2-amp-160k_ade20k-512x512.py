# ADE20K semantic segmentation: UperNet on a CIM-pre-trained ConvNeXt-T (mmseg).
#
# Recipe: mmseg's UperNet ConvNeXt-T (configs/convnext/convnext-tiny_upernet_8xb2-amp-
# 160k_ade20k-512x512.py) as it is: 512x512 crops, 160k iterations, batch 16 (8 GPUs x
# 2), AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9, drop path 0.4, 1500 warm-up
# iterations, poly decay, AMP, auxiliary FCN head on stage 2, sliding-window test.
#
# Backbone: `mmpretrain.ConvNeXt` (mmseg's own ConvNeXt configs use it), so the converted
# file keeps mmpretrain's names with the `backbone.` prefix that this init_cfg strips.
# UperNet outputs all four stages: `norm2` / `norm3` are the enhancer's, `norm0` /
# `norm1` start fresh (the converter lists them):
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_convnext-tiny_mmseg.pth --target-config THIS_CONFIG
_base_ = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.seg', 'cim_mm.compat.enable'],
                      allow_failed_imports=False)

pretrained = 'work_dirs/cim_convnext-tiny_mmseg.pth'  # converted CIM enhancer
data_root = 'data/ade/ADEChallengeData2016'

model = dict(
    pretrained=None,
    backbone=dict(
        layer_scale_init_value=1e-6,  # the enhancer's (overwritten by its weights anyway)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

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
