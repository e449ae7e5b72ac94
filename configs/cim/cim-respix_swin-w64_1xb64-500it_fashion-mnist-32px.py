# CIM-ResPix demo with a Swin enhancer on real Fashion-MNIST (2 CPU cores).
# The ViT demo with the enhancer swapped, as the ResNet-18 demo swaps it: same data (32 px,
# 8x8 token grid), same VQ tokenizer (x4, 512 codes; trained first, see the ViT demo), same
# 2-layer BEiT generator, same AdamW schedule. Enhancer: mmpretrain's `SwinTransformer`
# (the class as it is: no code of ours) in three stages of 64 / 128 / 256 channels
# (2 / 4 / 8 heads) on 2x2 patches with 4x4 windows, so on 32 px images stage 1 =
# [B, 128, 8, 8] is on the token grid and stage 2 = [B, 256, 4, 4] (one window) half of it:
# the layout of Swin-T's last two stages at 224 px (14x14, 7x7), as the ResNet-18 demo
# mirrors ResNet-50's C4 / C5. ~160 MFLOPs an image, the ResNet-18 demo's. pad_small_map:
# a map smaller than a window is padded, not given a smaller window (Swin's own rule, and
# mmseg's). CNNPatchNeck fuses the two levels on the 8x8 grid (and checks at build time
# that they reach it). The enhancer loads into mmpretrain `SwinTransformer`
# (ImageClassifier) and mmseg's `SwinTransformer` (same names; configs/cim/benchmarks/
# *swin-w64*).
_base_ = './cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'

neck_channels = 128
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch=dict(embed_dims=64, depths=[2, 2, 2], num_heads=[2, 4, 8]),
        img_size={{_base_.img_size}},
        patch_size=2,  # 32 px -> 16x16 stage 0
        window_size=4,
        out_indices=(1, 2),  # [B, 128, 8, 8], [B, 256, 4, 4] for 32 px
        pad_small_map=True,
        drop_path_rate=0.0),  # the ViT demo's
    neck=dict(
        type='CNNPatchNeck',
        in_channels=(128, 256),
        out_channels=neck_channels,
        out_size=({{_base_.grid}}, {{_base_.grid}}),  # 8x8 token grid
        img_size={{_base_.img_size}},  # probed at build time: both levels reach the grid
        num_convs=1),
    # ResPix on 4x4 patches, window 5 = patch + 1 (as the ResNet-18 demo)
    head=dict(_delete_=True, type='ResPixHead', in_channels=neck_channels, patch_size=4,
              window_size=5),
)
# The ViT demo's AdamW + its no-decay keys; plus no decay on norm weights, biases and
# Swin's relative position tables, as mmpretrain's SimMIM Swin recipe.
optim_wrapper = dict(paramwise_cfg=dict(
    norm_decay_mult=0.0, bias_decay_mult=0.0,
    custom_keys={'relative_position_bias_table': dict(decay_mult=0.0)}))
