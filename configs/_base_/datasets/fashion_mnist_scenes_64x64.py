# Fashion-MNIST scenes (mmseg): 64x64 canvases of 1-4 pasted items, 11 classes incl. background.
# Written by tools/dataset_converters/fashion_mnist_scenes.py in ADE20K's layout; the
# pipelines are mmseg's ADE20K ones (configs/_base_/datasets/ade20k.py) at 64 px.
dataset_type = 'FashionMNISTScenesDataset'  # registered in mmseg by cim_mm.seg (custom_imports)
data_root = 'data/fashion_mnist_scenes'  # the converter's default OUT in its docstring
crop_size = (64, 64)  # the canvas side the converter writes by default
num_classes = 11  # background + the 10 Fashion-MNIST classes
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # labels as stored: 0 = background is a class (not ignored)
    dict(type='LoadAnnotations', reduce_zero_label=False),
    # ADE20K's 0.5-2x rescale of the short side, at 64 px
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    # ADE20K's crop, retried while one class fills more than 75 % of it
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),  # ADE20K's horizontal flip
    # no PhotoMetricDistortion: the scenes are gray items on black, like pre-training
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),  # a no-op on 64 px scenes
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,  # 1 process x 8 scenes: short runs on 2 CPU cores
    # 2 CPU cores: load in the main process and give torch both (the demos' finding)
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    # mmseg batches lists of images (mmengine's pseudo_collate), said explicitly since
    # our tools/train.py fills in default_collate otherwise
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,  # whole-image inference on equal-sized scenes batches cleanly
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# mmseg's IoUMetric: aAcc, mIoU and mAcc over the 11 classes (background included)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
