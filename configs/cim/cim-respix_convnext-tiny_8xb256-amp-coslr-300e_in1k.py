# CIM-ResPix with a ConvNeXt-T enhancer, ImageNet-1k, 300 epochs, 8 GPUs x 256 images.
#
# Same CIM algorithm, generator, tokenizer, data and corruption path as the ViT recipes
# (the _base_ files); only the enhancer changes: mmpretrain's `ConvNeXt` ('tiny': depths
# 3/3/9/3, channels 96/192/384/768) + `CNNPatchNeck`, which puts stage 2 (stride 16,
# 14x14) + upsampled stage 3 (stride 32, 7x7) on the 14x14 token grid of the DALL-E dVAE
# (112 px tokenizer view, x8), as the ResNet-50 recipe does with C4 + C5.
#
# Downstream: `model.backbone.*` loads into mmpretrain `ConvNeXt` (ImageClassifier) and,
# as `mmpretrain.ConvNeXt`, into mmseg UperNet; the converter checks it key by key
# (configs/cim/benchmarks/*convnext-tiny*; the output norms `norm2` / `norm3` follow
# out_indices: the target's own start fresh, the enhancer's others are dropped, listed).
#
# Sources of the values. The paper trains ViTs and ResNet-50 only: where it is silent,
# the values are SparK's (mmpretrain configs/spark/spark_sparse-convnext-small_16xb256-
# amp-coslr-800e_in1k.py: ConvNeXt's own masked-image-modeling recipe there), scaled to
# 300 epochs and batch 2048; every such value is unverified for CIM.
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
        type='ConvNeXt',
        arch='tiny',
        out_indices=(2, 3),  # [B, 384, 14, 14], [B, 768, 7, 7] for 224 px
        gap_before_final_norm=False,  # feature maps, not pooled vectors
        drop_path_rate=0.1,  # ConvNeXt-T's own (mmpretrain convnext-tiny); SparK's -S: 0.2
        layer_scale_init_value=1e-6),  # ConvNeXt's default, as SparK
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
# SparK's ConvNeXt optimizer: LAMB, betas (0.9, 0.95), lr 2e-4 per 512 images
# (-> 8e-4 for 2048), wd 0.04 annealed to 0.2 (cosine), grad clip 5, no decay on
# biases / 1-D parameters / mask tokens. It trains the small BEiT generator too (as the
# ResNet-50 recipe's LAMB does). AMP: bf16 autocast (Ampere/Hopper); on V100 set
# optim_wrapper.dtype=None (fp16 with dynamic loss scaling).
optim_wrapper = dict(
    # mmengine's DefaultOptimWrapperConstructor, logging the frozen tokenizer once
    constructor='FrozenSummaryOptimWrapperConstructor',
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale='dynamic',
    optimizer=dict(type='Lamb', lr=2e-4 * 2048 / 512, betas=(0.9, 0.95), weight_decay=0.04),
    clip_grad=dict(max_norm=5.0),  # SparK's
    paramwise_cfg=dict(
        merge_groups=True,  # one param group per distinct lr / wd, not per tensor (off: False)
        bias_decay_mult=0.0,  # SparK's
        flat_decay_mult=0.0,  # SparK's: norms, layer scales (gamma), the generator's q/v biases
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),  # the generator's (as the ViT recipes)
            '.pos_embed': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),  # SparK's and the generator's
        }))
max_epochs = 300
warmup_epochs = 15  # SparK: 40 of 800 epochs (5 %), the same share of 300 (unverified)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),  # SparK: cosine to 0
    dict(type='CosineAnnealingWeightDecay', eta_min=0.2, T_max=max_epochs, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True),  # SparK: wd 0.04 -> 0.2
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    # keep the latest 3; resume with tools/train.py CONFIG --resume
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_last=True))
randomness = dict(seed=0, diff_rank_seed=True)
find_unused_parameters = False
# lr above is for 8 x 256 = 2048 images per step; `--auto-scale-lr` rescales it linearly.
auto_scale_lr = dict(base_batch_size=2048)

# Speed (CUDA only, no effect on CPU): cuDNN picks its fastest convolutions, the ConvNeXt
# enhancer (backbone + neck) runs in channels_last (NHWC: its 7x7 depthwise convolutions;
# same keys and values), and the generator's layers are torch.compile'd in place (same
# checkpoint keys; compile time, graphs and graph breaks logged). The compile of the
# enhancer's four stages (compile_enhancer=True; on the CPU each traces whole, with no
# recompile after the first step: tests/engine/test_compile_recipes.py) and the
# tokenizer's (compile_tokenizer=True) are off until a GPU run shows that they pay
# (tools/gpu_check.sh times both on and off). Off: drop the hooks.
env_cfg = dict(cudnn_benchmark=True)
custom_hooks = _base_.custom_hooks + [
    dict(type='ChannelsLastHook', modules=('backbone', 'neck')),
    dict(type='CompileBlocksHook', modules=('generator.backbone.layers', ),
         enhancer_modules=('backbone.stages', ), compile_enhancer=False,
         compile_tokenizer=False)]
