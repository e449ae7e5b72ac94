# ImageNet-1K linear probing of a CIM-pre-trained ResNet-50 enhancer (mmpretrain).
#
# MoCo v2's linear protocol (mmpretrain configs/mocov2/benchmarks/
# resnet50_8xb32-linear-steplr-100e_in1k.py): frozen backbone (all 4 stages,
# BN in eval mode), global average pooling, linear classifier, SGD lr 30,
# momentum 0.9, no weight decay, batch 256, 100 epochs, lr x0.1 at 60 and 80.
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_resnet50_mmpretrain.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_resnet50_mmpretrain.pth'
model = dict(
    backbone=dict(
        frozen_stages=4,
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
