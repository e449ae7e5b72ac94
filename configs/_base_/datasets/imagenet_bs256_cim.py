# Pre-training images: ImageNet-1K's train/ folder or any folder of images. One 224 px
# crop per image; the 112 px tokenizer view is made on the device by CIMDataPreprocessor
# (BEiT v1: one crop, two resolutions).
# UnlabeledImageFolder reads every .jpg .jpeg .png .webp .bmp .tif .tiff .pgm .ppm file
# (any case) under data_root, recursively: ImageNet's train/<class>/*.JPEG works as is,
# no meta files or class folders needed (labels are not used). Your own images:
#   --cfg-options train_dataloader.dataset.data_root=DIR
# Unreadable files are named once and skipped (SafeLoadImageFromFile(on_error='skip'));
# the count is logged each epoch (SkippedImagesHook) and the run stops when more than
# max_bad_share of the images are unreadable.
dataset_type = 'UnlabeledImageFolder'
data_root = 'data/imagenet/train/'
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='skip'),
    dict(type='GrayToRGB'),  # a few ImageNet files are gray / CMYK-decoded
    # BEiT v1 augmentation (mmpretrain configs/beit: ColorJitter, RandomFlip,
    # RandomResizedCrop), the jitter and the flip run on the 224 px crop, the contrast
    # blending towards the whole image's grey mean: the same distribution at 2x the
    # images/s per worker (cim_mm/datasets/cropped_color_jitter.py,
    # tools/benchmark_loader.py). The plain order: ColorJitter, RandomFlip, RandomResizedCrop.
    dict(type='RecordGreyMean'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='CroppedColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
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
    dataset=dict(type=dataset_type, data_root=data_root,
                 max_bad_share=0.01,  # stop when more than 1 % are unreadable
                 pipeline=train_pipeline))
