# CIM-ResPix demo with a ConvNeXt enhancer on real Fashion-MNIST (2 CPU cores).
# The ViT demo with the enhancer swapped, as the ResNet-18 demo swaps it: same data (32 px,
# 8x8 token grid), same VQ tokenizer (x4, 512 codes; trained first, see the ViT demo), same
# 2-layer BEiT generator, same AdamW schedule. Enhancer: mmpretrain's `ConvNeXt` (the
# class as it is: no code of ours) in three stages of 64 / 128 / 256 channels behind a x2
# stem, so on 32 px images stage 1 = [B, 128, 8, 8] is on the token grid and stage 2 =
# [B, 256, 4, 4] half of it: the layout of ConvNeXt-T's last two stages at 224 px (14x14,
# 7x7), as the ResNet-18 demo mirrors ResNet-50's C4 / C5. Depths (2, 4, 2): the heaviest
# stage on the grid, as ConvNeXt-T's (3, 3, 9, 3); ~150 MFLOPs an image, the ResNet-18
# demo's. CNNPatchNeck fuses the two levels on the 8x8 grid (and checks at build time that
# they reach it). The enhancer loads into mmpretrain `ConvNeXt` (ImageClassifier) and, as
# `mmpretrain.ConvNeXt`, into mmseg UperNet (configs/cim/benchmarks/*convnext-w64*).
_base_ = './cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'

neck_channels = 128
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch=dict(depths=[2, 4, 2], channels=[64, 128, 256]),
        stem_patch_size=2,  # 32 px -> 16x16 stage 0
        out_indices=(1, 2),  # [B, 128, 8, 8], [B, 256, 4, 4] for 32 px
        gap_before_final_norm=False,  # feature maps, not pooled vectors
        drop_path_rate=0.0,  # the ViT demo's
        layer_scale_init_value=1e-6),  # ConvNeXt's default
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
# ConvNeXt's layer scale (`gamma`), as mmpretrain's ConvNeXt recipes.
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
