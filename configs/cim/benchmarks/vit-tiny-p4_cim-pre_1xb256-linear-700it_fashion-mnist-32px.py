# Fashion-MNIST linear probing of the CIM demo enhancer (CPU: about 8-9 minutes on 2 cores).
#
# Frozen enhancer (all 6 layers and its final norm), mean patch token, BatchNorm
# without affine (MAE's linear probe), linear classifier; SGD lr 0.1, momentum
# 0.9, no weight decay, batch 256, 700 iterations (3 epochs), cosine. The
# frozen backbone is run forward only: about a third of a fine-tuning step.
#
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/backbone_linear.pth \
#       --target-config THIS_CONFIG
#   python tools/train.py THIS_CONFIG
_base_ = './vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py'

pretrained = ('work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/'
              'backbone_linear.pth')
model = dict(
    backbone=dict(
        frozen_stages=6,
        drop_path_rate=0.0,
        final_norm=True,  # the features CIM's heads were trained on
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(_delete_=True, type='ClsBatchNormNeck', input_features={{_base_.embed_dims}}),
    head=dict(
        _delete_=True,
        type='LinearClsHead',
        num_classes=10,
        in_channels={{_base_.embed_dims}},
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))

train_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

max_iters = 700
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=350)
auto_scale_lr = dict(base_batch_size=256)
