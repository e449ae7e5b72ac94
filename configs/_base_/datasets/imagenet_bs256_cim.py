# ImageNet-1K for CIM pre-training (folder layout: data/imagenet/train/<class>/<img>,
# meta/train.txt as mmpretrain's ImageNet). One 224 px crop per image; the 112 px
# tokenizer view is made on the device by CIMDataPreprocessor (BEiT v1: one crop,
# two resolutions).
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='GrayToRGB'),  # a few ImageNet files are gray / CMYK-decoded
    # BEiT v1 augmentation (mmpretrain configs/beit v1)
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    # BEiT v1 blockwise masking on the 14x14 grid: 75 of 196 patches (~40 %)
    dict(type='BEiTMaskGenerator', input_size=(14, 14), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))
