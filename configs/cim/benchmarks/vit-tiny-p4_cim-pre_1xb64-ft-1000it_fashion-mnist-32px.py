# Fashion-MNIST fine-tuning of the CIM demo enhancer (CPU: about 8-9 minutes on 2 cores).
#
# The enhancer of configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py
# (ViT: 32 px, patch 4, 6 layers, 128 dims, 4 heads), fine-tuned BEiT-style on
# the real Fashion-MNIST (60k train / 10k test): average pooling + new pooling
# norm, layer-wise lr decay, AdamW, drop path, label smoothing, cosine; scaled
# down to 1000 iterations at batch 64 (~1 epoch; no mixup/cutmix/RandAugment at
# this length). Roughly 0.15-0.45 s an iteration on 2 CPU cores.
#
#   python tools/train.py configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py
#   python tools/model_converters/cim_to_downstream.py \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/iter_500.pth \
#       work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/backbone_ft.pth \
#       --target-config THIS_CONFIG
#   python tools/train.py THIS_CONFIG
# (from scratch, for comparison: --cfg-options model.backbone.init_cfg=None)
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'

pretrained = ('work_dirs/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px/'
              'backbone_ft.pth')
embed_dims = 128
data_root = 'data/fashion_mnist'  # extracted idx files (tools/prepare_fashion_mnist.sh)

model = dict(
    type='ImageClassifier',
    # the pre-training normalisation (configs/_base_/fashion_mnist_cim_32px.py)
    data_preprocessor=dict(num_classes=10, mean=[72.94] * 3, std=[90.02] * 3,
                           to_rgb=False),
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=embed_dims, num_layers=6, num_heads=4,
                  feedforward_channels=embed_dims * 4),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=embed_dims,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.02)]))

train_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='Resize', scale=(32, 32), interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='FashionMNIST', data_root=data_root, split='train',
                 download=False, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    # mmpretrain's MNIST loader picks its files by `test_mode`, not by `split`
    dataset=dict(type='FashionMNIST', data_root=data_root, split='test',
                 test_mode=True, download=False, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_iters = 1000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    # mmpretrain's LearningRateDecayOptimWrapperConstructor + paramwise_cfg.merge_groups
    constructor='MergedLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        merge_groups=True,  # one param group per layer and wd, AdamW foreach on CPU (off: False)
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
