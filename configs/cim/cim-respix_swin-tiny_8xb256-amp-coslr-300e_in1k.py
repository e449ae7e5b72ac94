# CIM-ResPix with a Swin-T enhancer, ImageNet-1k, 300 epochs, 8 GPUs x 256 images.
#
# Same CIM algorithm, generator, tokenizer, data and corruption path as the ViT recipes
# (the _base_ files); only the enhancer changes: mmpretrain's `SwinTransformer` ('tiny':
# 96 dims, depths 2/2/6/2, heads 3/6/12/24, 4x4 patches, 7x7 windows) + `CNNPatchNeck`,
# which puts stage 2 (stride 16, 14x14) + upsampled stage 3 (stride 32, 7x7) on the 14x14
# token grid of the DALL-E dVAE (112 px tokenizer view, x8), as the ResNet-50 recipe does
# with C4 + C5. Swin has no [MASK] token here: it sees the corrupted image, as any CIM
# enhancer.
#
# Downstream: `model.backbone.*` loads into mmpretrain `SwinTransformer` (ImageClassifier)
# and mmseg's `SwinTransformer` (UperNet; the same names); the converter checks it key by
# key (configs/cim/benchmarks/*swin-tiny*; the output norms `norm2` / `norm3` follow
# out_indices: the target's own start fresh, the enhancer's others are dropped, listed).
#
# Sources of the values. The paper trains ViTs and ResNet-50 only: where it is silent,
# the values are SimMIM's (mmpretrain configs/simmim/simmim_swin-base-w6_8xb256-amp-
# coslr-100e_in1k-192px.py: Swin's own masked-image-modeling recipe there) at batch 2048
# and 300 epochs; every such value is unverified for CIM.
_base_ = [
    '../_base_/models/cim_vit-base-p16.py',  # tokenizer, generator, data preprocessor
    '../_base_/datasets/imagenet_bs256_cim.py',  # BEiT v1 augmentation, 75/196 masked
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/cim_runtime.py',  # NaN stop, RNG states for --resume, pictures
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'

img_size = 224
patch_size = 16  # enhancer pixels per token-grid cell
grid = img_size // patch_size  # 14x14 token grid (= DALL-E tokens of the 112 px view)
neck_channels = 512  # the ResNet-50 recipe's neck width (unverified)
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch='tiny',
        img_size=img_size,
        window_size=7,  # Swin-T's own at 224 px (SimMIM: 6 at 192 px)
        out_indices=(2, 3),  # [B, 384, 14, 14], [B, 768, 7, 7] for 224 px
        pad_small_map=True,  # a map smaller than a window is padded (as mmseg's Swin)
        drop_path_rate=0.1),  # SimMIM's (SwinTransformer's default)
    neck=dict(
        _delete_=True,
        type='CNNPatchNeck',
        in_channels=(384, 768),
        out_channels=neck_channels,
        out_size=(grid, grid),  # stage 2 stays, stage 3 x2 (bilinear) -> [B, 512, 14, 14]
        img_size=img_size,  # probed at build time: both levels reach the grid
        num_convs=1),
    # ResPix: sliding-window-normalised pixels of all 16x16 patches; window 17 = p + 1
    # (as the ViT and ResNet-50 recipes; unverified: paper appendix)
    head=dict(_delete_=True, type='ResPixHead', in_channels=neck_channels,
              patch_size=patch_size, window_size=17),
)

# ------------------------------------------------------------------- schedule
# SimMIM's Swin optimizer: AdamW, lr 2e-4 per 512 images (-> 8e-4 for 2048), betas
# (0.9, 0.999), wd 0.05, grad clip 5, no decay on norms / biases / position tables; it
# trains the small BEiT generator too. AMP: bf16 autocast (Ampere/Hopper); on V100 set
# optim_wrapper.dtype=None (fp16 with dynamic loss scaling).
optim_wrapper = dict(
    # mmengine's DefaultOptimWrapperConstructor, logging the frozen tokenizer once
    constructor='FrozenSummaryOptimWrapperConstructor',
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-4 * 2048 / 512, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),  # SimMIM's
    paramwise_cfg=dict(
        merge_groups=True,  # one param group per distinct lr / wd, AdamW fused on CUDA (off: False)
        custom_keys={
            'norm': dict(decay_mult=0.0),  # SimMIM's four
            'bias': dict(decay_mult=0.0),
            'absolute_pos_embed': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
            '.ln': dict(decay_mult=0.0),  # the generator's (as the ViT recipes)
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
        }))
max_epochs = 300
warmup_epochs = 10  # SimMIM's (and BEiT v1's)
param_scheduler = [
    # SimMIM: from lr x 5e-3 (1e-6 / 2e-4)
    dict(type='LinearLR', start_factor=1e-6 / 2e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    # SimMIM: cosine to 1e-5 per 512 images (-> 4e-5 for 2048)
    dict(type='CosineAnnealingLR', eta_min=1e-5 * 2048 / 512, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    # keep the latest 3; resume with tools/train.py CONFIG --resume
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_last=True))
randomness = dict(seed=0, diff_rank_seed=True)
find_unused_parameters = False
# lr above is for 8 x 256 = 2048 images per step; `--auto-scale-lr` rescales it linearly.
auto_scale_lr = dict(base_batch_size=2048)

# Speed (CUDA only, no effect on CPU): cuDNN picks its fastest convolutions (the frozen
# DALL-E tokenizer's), and the generator's layers are torch.compile'd in place (same
# checkpoint keys; compile time, graphs and graph breaks logged). The Swin stages stay
# eager (compile_enhancer=True compiles them, each stage with static shapes: on the CPU
# they trace whole, with no recompile after the first step:
# tests/engine/test_compile_recipes.py) until a GPU run shows that it pays; so does the
# tokenizer (compile_tokenizer=True). Off: drop the hook.
env_cfg = dict(cudnn_benchmark=True)
custom_hooks = _base_.custom_hooks + [
    dict(type='CompileBlocksHook', modules=('generator.backbone.layers', ),
         enhancer_modules=('backbone.stages', ), compile_enhancer=False,
         compile_tokenizer=False)]
