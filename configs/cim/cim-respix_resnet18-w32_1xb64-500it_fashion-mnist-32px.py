# CIM-ResPix demo with a CNN enhancer on real Fashion-MNIST (2 CPU cores).
# The ViT demo with the enhancer swapped: same data (32 px, 8x8 token grid), same VQ
# tokenizer (x4, 512 codes; trained first, see the ViT demo), same 2-layer BEiT generator,
# same AdamW schedule. Enhancer: a half-width ResNet-18 (stem/base channels 32) whose
# stages run at strides (1, 1, 1, 2) after the x4 stem, so on 32 px images
# C4 = [B, 128, 8, 8] is on the token grid and C5 = [B, 256, 4, 4] is half of it, the
# same layout as ResNet-50 at 224 px (C4 14x14, C5 7x7); CNNPatchNeck fuses them on the
# 8x8 grid, as in the ResNet-50 recipe. Strides and widths do not change the state-dict
# keys: the enhancer loads into mmpretrain ImageClassifier / mmseg ResNet (depth 18) with
# the same backbone arguments.
_base_ = './cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'

neck_channels = 128
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        stem_channels=32,
        base_channels=32,
        strides=(1, 1, 1, 2),
        out_indices=(2, 3),  # C4 [B, 128, 8, 8], C5 [B, 256, 4, 4] for 32 px
        style='pytorch',
        norm_cfg=dict(type='BN', requires_grad=True),
        zero_init_residual=True),
    neck=dict(
        type='CNNPatchNeck',
        in_channels=(128, 256),
        out_channels=neck_channels,
        out_size=({{_base_.grid}}, {{_base_.grid}}),  # 8x8 token grid
        num_convs=1),
    # ResPix on 4x4 patches, window 5 = patch + 1 (the ViT demo's window 9 is not
    # measured on the ResNet track)
    head=dict(_delete_=True, type='ResPixHead', in_channels=neck_channels, patch_size=4,
              window_size=5),
)
# The ViT demo's AdamW + its no-decay keys; plus no decay on BN/LN weights and biases.
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
