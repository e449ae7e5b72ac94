# ADE20K semantic segmentation: UperNet on a CIM-pre-trained ResNet-50 (mmseg).
#
# Recipe: mmseg's UperNet R-50 (configs/upernet/upernet_r50_4xb4-160k_ade20k-
# 512x512.py): 512x512 crops, 160k iterations, batch 16 (4 GPUs x 4), SGD lr
# 0.01, momentum 0.9, wd 5e-4, poly decay, SyncBN, auxiliary FCN head.
#
# Backbone: mmseg's `ResNet` (the plain, "v1b" stem), because the CIM ResNet-50
# enhancer is mmpretrain's plain `ResNet`; mmseg's default `ResNetV1c` has a
# deep stem that a plain-stem enhancer can not fill (the converter reports it).
# mmseg's ResNet and mmpretrain's ResNet share every key name; the converter
# drops the CIM neck/head/generator/tokenizer and checks the rest:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_resnet50_mmseg.pth --target-config THIS_CONFIG
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable', 'cim_mm.seg'],
                      allow_failed_imports=False)

pretrained = 'work_dirs/cim_resnet50_mmseg.pth'  # converted CIM enhancer
data_root = 'data/ade/ADEChallengeData2016'

model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=50,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

train_dataloader = dict(
    batch_size=4,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=1,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
