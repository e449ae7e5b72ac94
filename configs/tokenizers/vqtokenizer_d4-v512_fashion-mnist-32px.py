# A small VQ tokenizer (VQ-VAE, EMA codebook) for the offline CIM demo:
# Fashion-MNIST 28x28 gray -> 3-channel 32x32, x4 downsampling -> 8x8 ids, 512 codes.
# Train + evaluate + export:  python tools/train_tokenizer.py THIS_CONFIG
#   -> work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px/tokenizer.pth (+ tokenizer.json)
# which configs/cim/*fashion-mnist-32px.py load as model.tokenizer.checkpoint.
# Sized for 2 CPU cores (~3 min); the architecture below equals VQTokenizer's
# defaults, so `dict(type='VQTokenizer', vocab_size=512, downsample=4, checkpoint=...)`
# in the CIM configs builds the same network.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='VQTokenizer',
    vocab_size=512,
    downsample=4,
    embed_dims=32,
    hidden_channels=32,  # 64: ~+0.5 dB at equal iters but 2.2x slower per iter on CPU
    num_res_blocks=1,
    beta=0.25,  # VQ-VAE commitment weight
    decay=0.99,  # EMA codebook decay (VQ-VAE appendix)
    l2_norm=True,  # cosine look-up (ViT-VQGAN); measured a bit better than plain here
    dead_code_threshold=1.0,
    rec_loss='mse',
    # the model is trained on [0, 1] pixels; it applies map_pixels itself
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.],
        to_rgb=False))

dataset_type = 'FashionMNIST'
data_root = 'data/fashion_mnist'  # extracted idx files: tools/prepare_fashion_mnist.sh
img_size = 32
train_pipeline = [
    dict(type='GrayToRGB'),  # [28, 28] uint8 -> [28, 28, 3]
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='GrayToRGB'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 download=False, pipeline=train_pipeline))
# Used by tools/train_tokenizer.py after training: reconstruction PSNR and
# codebook usage on the 10000 test images (not a Runner test loop). mmpretrain
# 1.2.0's MNIST datasets pick the files by test_mode, not split: both are needed.
eval_dataloader = dict(
    batch_size=250,
    num_workers=1,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', test_mode=True,
                 download=False, pipeline=test_pipeline))

max_iters = 1500
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500,
                    max_keep_ckpts=1, save_last=True),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
