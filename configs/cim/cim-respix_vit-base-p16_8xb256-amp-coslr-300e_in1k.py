# CIM-ResPix, ViT-B/16 enhancer, 300 epochs on ImageNet-1K (paper recipe, BEiT v1
# schedule; see the _base_ files for the source of each value).
_base_ = [
    '../_base_/models/cim_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs256_cim.py',
    '../_base_/schedules/cim_adamw_coslr_300e.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/cim_runtime.py',  # NaN stop, RNG states for --resume, pictures
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'
# ResPix: sliding-window-normalised pixels of all 16x16 patches (window 17 = p + 1)
model = dict(head=dict(type='ResPixHead', in_channels=768, patch_size=16, window_size=17))

default_hooks = dict(
    # keep the latest 3; resume with tools/train.py CONFIG --resume
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_last=True))
randomness = dict(seed=0, diff_rank_seed=True)

# Speed (CUDA only, no effect on CPU): cuDNN picks its fastest convolutions (the frozen
# DALL-E tokenizer's), and the enhancer's and generator's layers are torch.compile'd in
# place (same checkpoint keys; compile time, graphs and graph breaks logged). Measured on
# an H200 (docs/gpu/README.md): compiled layers 0.140 s/step vs 0.164 eager. The tokenizer's
# compile (compile_tokenizer=True) is off until a GPU run shows that it pays, and so is the
# device-decode loader (JPEG decode and augmentation on the GPU: put
# '../_base_/datasets/imagenet_bs256_cim_device-decode.py' in place of the dataset _base_).
env_cfg = dict(cudnn_benchmark=True)
custom_hooks = _base_.custom_hooks + [dict(type='CompileBlocksHook', compile_tokenizer=False)]
