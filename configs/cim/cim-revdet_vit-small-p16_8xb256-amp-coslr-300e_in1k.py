# CIM-RevDet, ViT-S/16 enhancer (384 dims, 12 layers, 6 heads), 300 epochs.
_base_ = './cim-revdet_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'
model = dict(
    backbone=dict(arch='deit-small'),  # 384 dims, 12 layers, 6 heads (mmpretrain 'small' is 768x8)
    head=dict(in_channels=384))
