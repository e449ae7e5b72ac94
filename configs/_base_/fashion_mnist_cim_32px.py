# Fashion-MNIST (real, 60k train images) for CIM pre-training on CPU.
# 28x28 gray -> 3-channel 32x32; 8x8 token grid (ViT patch 4, tokenizer x4 at 32 px).
dataset_type = 'FashionMNIST'
data_root = 'data/fashion_mnist'  # tools/prepare_fashion_mnist.sh puts the extracted idx files here
img_size = 32
grid = 8
train_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # BEiT blockwise masking on the 8x8 grid, ~40 % of the patches (BEiT: 75/196)
    dict(type='BEiTMaskGenerator', input_size=(grid, grid), num_masking_patches=26,
         min_num_patches=4, max_num_patches=None),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', download=False,
                 pipeline=train_pipeline))
# Fashion-MNIST pixel statistics (0..255 scale), the same on the 3 channels
fmnist_mean = [72.94] * 3
fmnist_std = [90.02] * 3
