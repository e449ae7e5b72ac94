# The recipes' loader (imagenet_bs256_cim.py) with the JPEG decode, the crop's resize,
# the colour jitter and the flip moved to the device: a worker reads the file and its
# header and draws every random parameter with the same samplers in the same order
# (same seed, same crop / jitter / flip / mask); CIMDataPreprocessor decodes the batch
# with nvJPEG and applies them (cim_mm/datasets/device_decode.py,
# cim_mm/models/device_augment.py).
# Files the device cannot decode alike (PNG, CMYK, EXIF-rotated) are decoded and
# resized in the worker as before; a JPEG the device decoder refuses is decoded by
# OpenCV, as the CPU loader decodes it, and one no decoder reads takes another image
# of its batch (docs/reliability.md). Off in the recipes until a GPU run shows that it
# pays: use it by replacing '../_base_/datasets/imagenet_bs256_cim.py' in a recipe's
# _base_ with this file (tools/gpu_check.sh times both loaders).
_base_ = ['./imagenet_bs256_cim.py']
train_pipeline = [
    dict(type='LoadJPEGBytes', on_error='skip'),
    dict(type='DeferredRandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='DeferredColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='DeferredRandomFlip', prob=0.5, direction='horizontal'),
    dict(type='BEiTMaskGenerator', input_size=(14, 14), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackJPEGInputs'),
]
train_dataloader = dict(
    collate_fn=dict(type='pseudo_collate'),  # encoded files differ in length
    dataset=dict(pipeline=train_pipeline))
