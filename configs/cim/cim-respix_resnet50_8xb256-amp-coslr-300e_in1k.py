# CIM-ResPix with a ResNet-50 enhancer, ImageNet-1k, 300 epochs, 8 GPUs x 256 images.
#
# Same CIM algorithm, generator, tokenizer and corruption path as the ViT recipes; only
# the enhancer changes: a plain (torchvision-style, "V1.5") mmpretrain `ResNet` depth 50
# + `CNNPatchNeck`, which puts C4 (stride 16, 14x14) + upsampled C5 (stride 32, 7x7) on
# the 14x14 token grid of the DALL-E dVAE (112 px tokenizer view, x8).
#
# Downstream: `model.backbone.*` of a checkpoint loads with no missing / unexpected key
#   * into mmpretrain `ImageClassifier(backbone=dict(type='ResNet', depth=50))` and
#   * into mmseg `ResNet` (depth 50, the default deep_stem=False).
# mmpretrain's and mmseg's `ResNetV1c` are NOT used: their deep stems name their keys
# differently (`stem.0.conv.weight` vs `stem.0.weight`), so a V1c enhancer would need a
# key converter for mmseg. (tests/models/test_cnn_enhancer.py checks the key sets.)
#
# Sources of the values. The paper's appendix tables (ResNet-50 pre-training settings,
# generator depth/width, sliding-window size) could not be read here: every value marked
# "unverified" is our choice, written so that it can be checked and changed.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/cim_runtime.py',  # NaN stop, RNG states for --resume, pictures
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'

# ------------------------------------------------------------------------ data
# Any folder of images, searched recursively (ImageNet: its train/ folder); your own:
# --cfg-options train_dataloader.dataset.data_root=DIR. Unreadable files are named and
# skipped, counted each epoch, and stop the run above max_bad_share (as the ViT
# recipes: configs/_base_/datasets/imagenet_bs256_cim.py).
dataset_type = 'UnlabeledImageFolder'
data_root = 'data/imagenet/train/'
img_size = 224
patch_size = 16  # enhancer pixels per token-grid cell
grid = img_size // patch_size  # 14x14 token grid (= DALL-E tokens of the 112 px view)
train_pipeline = [
    dict(type='SafeLoadImageFromFile', on_error='skip'),
    dict(type='GrayToRGB'),  # a few ImageNet files are gray / CMYK-decoded
    # BEiT v1 augmentation (mmpretrain configs/beit: ColorJitter, RandomFlip,
    # RandomResizedCrop), the jitter and the flip run on the 224 px crop, the contrast
    # blending towards the whole image's grey mean: the same distribution at 2x the
    # images/s per worker (cim_mm/datasets/cropped_color_jitter.py,
    # tools/benchmark_loader.py). The plain order: ColorJitter, RandomFlip, RandomResizedCrop.
    dict(type='RecordGreyMean'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.08, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='CroppedColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # BEiT blockwise masking, 75 of 196 patches (BEiT v1 default; CIM paper: unverified)
    dict(type='BEiTMaskGenerator', input_size=(grid, grid), num_masking_patches=75,
         max_num_patches=None, min_num_patches=16),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,  # per GPU; 8 GPUs -> 2048 (auto_scale_lr base)
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root,
                 max_bad_share=0.01,  # stop when more than 1 % are unreadable
                 pipeline=train_pipeline))

# ----------------------------------------------------------------------- model
neck_channels = 512  # unverified (the paper's CNN neck could not be read here)
model = dict(
    type='CIM',
    data_preprocessor=dict(
        type='CIMDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet, RGB, 0..255
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        tokenizer_img_size=img_size // 2),  # 112 px view for the DALL-E dVAE, as BEiT
    # The enhancer: keys load unchanged into mmpretrain ImageClassifier(ResNet-50) and
    # mmseg ResNet-50. SyncBN across the 8 GPUs (mmengine reverts it to BN when not
    # distributed); zero_init_residual as mmpretrain's ResNet-50 recipes.
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(2, 3),  # C4 [B, 1024, 14, 14], C5 [B, 2048, 7, 7]
        style='pytorch',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        zero_init_residual=True),
    neck=dict(
        type='CNNPatchNeck',
        in_channels=(1024, 2048),
        out_channels=neck_channels,
        out_size=(grid, grid),  # C4 stays, C5 x2 (bilinear) -> [B, 512, 14, 14]
        num_convs=1),
    # ResPix: regress the sliding-window-normalised pixels of all 16x16 patches;
    # window_size None = patch_size + 1 = 17 (unverified: paper appendix).
    head=dict(type='ResPixHead', in_channels=neck_channels, patch_size=patch_size),
    tokenizer=dict(
        type='DALLETokenizer',
        encoder_path='data/dalle/encoder.pkl',  # https://cdn.openai.com/dall-e/encoder.pkl
        decoder_path='data/dalle/decoder.pkl',  # https://cdn.openai.com/dall-e/decoder.pkl
        decode_dtype='bfloat16'),  # frozen dVAE in bf16 on CUDA (float32 elsewhere)
    # "A small trainable BEiT" (paper), the same as the ViT recipes'
    # (configs/_base_/models/cim_vit-base-p16.py). Depth/width are in the paper's
    # appendix, which could not be read here: 4 layers x 384 dims is our unverified
    # choice.
    generator=dict(
        type='BEiTGenerator',
        vocab_size=8192,
        temperature=1.0,  # sample from the softmax (unverified)
        # head, loss and sampling on the masked tokens only (no host sync); = the
        # BEiTMaskGenerator's num_masking_patches, which it masks exactly. None: all tokens
        num_masked=75,
        backbone=dict(
            type='SDPABEiTPretrainViT',  # + fused attention, same keys; 'BEiTPretrainViT': off
            arch=dict(embed_dims=384, num_layers=4, num_heads=6,
                      feedforward_channels=1536),
            img_size=img_size // 2,  # 112 px tokenizer view
            patch_size=8,  # = DALL-E downsample -> 14x14 patches = the token grid
            drop_path_rate=0.0,
            layer_scale_init_value=0.1,
            init_cfg=[
                dict(type='TruncNormal', std=0.02, layer='Linear'),
                dict(type='TruncNormal', std=0.02, layer='Conv2d'),
                dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
            ])),
    loss_weights=dict(gen=1.0, enh=1.0),  # unverified (paper appendix)
)

# ------------------------------------------------------------------- schedule
# Optimizer: the paper's ResNet-50 pre-training optimizer could not be checked here.
# We follow the large-batch ResNet-50 recipe of "ResNet strikes back" (RSB, timm A1/A2:
# LAMB, lr 5e-3 for batch 2048, wd 0.02 (A2) / 0.01 (A1), 5 warm-up epochs, cosine),
# which the paper's ResNet-50 fine-tuning follows too. LAMB also suits the small ViT
# generator (layer-wise trust ratio). Unverified for CIM pre-training.
# AMP: bf16 autocast (Ampere/Hopper); on V100 set optim_wrapper.dtype=None (fp16 with
# dynamic loss scaling). Tools: `--amp` gives the same wrapper.
optim_wrapper = dict(
    # mmengine's DefaultOptimWrapperConstructor, logging the frozen tokenizer once
    constructor='FrozenSummaryOptimWrapperConstructor',
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale='dynamic',
    optimizer=dict(type='Lamb', lr=5e-3, weight_decay=0.02),
    clip_grad=dict(max_norm=3.0),  # BEiT v1's clip, for the generator
    paramwise_cfg=dict(
        merge_groups=True,  # one param group per distinct lr / wd, not per tensor (off: False)
        norm_decay_mult=0.0,  # BN / LN weights
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0)
        }))
max_epochs = 300
warmup_epochs = 5  # RSB; BEiT v1 uses 10 (unverified for CIM)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
find_unused_parameters = False
# lr above is for 8 x 256 = 2048 images per step; `--auto-scale-lr` rescales it linearly.
auto_scale_lr = dict(base_batch_size=2048)

# Speed (CUDA only, no effect on CPU): cuDNN picks its fastest convolutions, the ResNet
# enhancer (backbone + neck) runs in channels_last (NHWC, same keys and values), and the
# generator's layers are torch.compile'd in place (same checkpoint keys; compile time,
# graphs and graph breaks logged). The compile of the ResNet enhancer's four stages
# (compile_enhancer=True; on the CPU they trace whole, with no recompile after the first
# step: tests/engine/test_compile_recipes.py) and the tokenizer's (compile_tokenizer=True)
# are off until a GPU run shows that they pay (tools/gpu_check.sh times both on and off).
# Off: drop the hook from custom_hooks.
env_cfg = dict(cudnn_benchmark=True)
custom_hooks = _base_.custom_hooks + [
    dict(type='ChannelsLastHook', modules=('backbone', 'neck')),
    dict(type='CompileBlocksHook', modules=('generator.backbone.layers', ),
         enhancer_modules=tuple(f'backbone.layer{i}' for i in range(1, 5)),
         compile_enhancer=False, compile_tokenizer=False)]
