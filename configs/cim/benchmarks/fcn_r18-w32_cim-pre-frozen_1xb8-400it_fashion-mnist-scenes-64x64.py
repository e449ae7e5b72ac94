# Fashion-MNIST scenes segmentation (mmseg): a frozen CIM demo ResNet-18 (w32) with a linear head.
#
# The probe of the small seg track, CNN enhancer: what the pre-trained C5 features hold per
# location, without fine-tuning. The enhancer of ../cim-respix_resnet18-w32_1xb64-500it_
# fashion-mnist-32px.py as in ./upernet_r18-w32_cim-pre_1xb8-400it_fashion-mnist-scenes-
# 64x64.py, frozen (mmseg's frozen_stages=4: stem and stages 1-4 get no gradient and keep
# their BN statistics with norm_eval), its C5 map ([B, 256, 8, 8] on 64 px: the feature the
# classification tracks evaluate) -> a 1x1 convolution (FCNHead without convs: a
# per-location linear classifier) -> bilinear upsampling in the loss. Data, schedule length
# and runtime as ./upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py.
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/backbone_frozen-64px.pth \
#       --target-config THIS_CONFIG
_base_ = './upernet_r18-w32_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = ('work_dirs/cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px/'
              'backbone_frozen-64px.pth')
c5_channels = 256  # the demo enhancer's C5: base_channels 32 x 2**3
model = dict(
    backbone=dict(
        out_indices=(3, ),  # C5 only
        frozen_stages=4,  # the stem and all 4 stages: no gradient, eval mode
        norm_eval=True,  # frozen BN keeps the pre-trained statistics
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=c5_channels,
        in_index=0,  # the one backbone output
        channels=c5_channels,  # no convs: must equal in_channels
        num_convs=0,  # no convolution before the classifier: a linear head
        concat_input=False,
        dropout_ratio=0.1,  # mmseg's default before the classifier
        num_classes={{_base_.num_classes}},
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)

# AdamW on the head only (the backbone is frozen): the ViT probe's lr and wd, constant
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05))
