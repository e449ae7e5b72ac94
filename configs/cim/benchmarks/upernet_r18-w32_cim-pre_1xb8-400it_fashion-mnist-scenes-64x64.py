# Fashion-MNIST scenes segmentation (mmseg): UperNet on the CIM demo's ResNet-18 (w32).
#
# The small seg track, CNN enhancer: the enhancer of ../cim-respix_resnet18-w32_1xb64-500it_
# fashion-mnist-32px.py (a half-width ResNet-18, stem/base channels 32, stage strides
# 1, 1, 1, 2) in mmseg's UperNet-R50 recipe (upernet_r50: C2-C5 -> UPerHead + FCN auxiliary
# head on C4, SGD, poly) on 64x64 scenes. Data, schedule length and runtime as
# ./upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py.
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/backbone_upernet-64px.pth \
#       --target-config THIS_CONFIG
# A frozen-backbone probe: --cfg-options model.backbone.frozen_stages=4
# model.backbone.norm_eval=True (mmseg's ResNet freezes the stem and stages 1-4 and keeps
# their BN statistics).
_base_ = './upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = ('work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/'
              'backbone_upernet-64px.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',  # mmseg's plain-stem ResNet = the enhancer's mmpretrain ResNet
        depth=18,
        stem_channels=32,  # the demo enhancer's half width
        base_channels=32,  # the demo enhancer's half width
        # the pre-training strides: C2-C4 at 16x16, C5 at 8x8 on 64 px, the receptive
        # fields the enhancer learnt at the items' scale (~28 px, as in pre-training)
        strides=(1, 1, 1, 2),
        dilations=(1, 1, 1, 1),
        out_indices=(0, 1, 2, 3),  # C2-C5: [B, 32/64/128/256, 16/16/16/8, ...]
        style='pytorch',  # the enhancer's (stride in conv2)
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,  # mmseg's UperNet-R50: BN trains
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128, in_index=2))  # mmseg's UperNet-R50: on C4

# mmseg's UperNet-R50 optimiser: SGD lr 0.01, momentum 0.9, wd 5e-4, poly (power 0.9)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end={{_base_.max_iters}},
         by_epoch=False)
]
