# ImageNet-1K fine-tuning of a CIM-pre-trained ViT-B/16 enhancer (mmpretrain).
#
# Recipe: BEiT's ViT-B/16 fine-tuning (CIM fine-tunes ViT-B the BEiT way):
# 100 epochs, batch 1024 (8 GPUs x 128), AdamW lr 4e-3 (= 4e-3 * 1024 / 1024;
# use --auto-scale-lr for another total batch), wd 0.05, layer-wise lr decay
# 0.65, drop path 0.1, 20 warm-up epochs, cosine, RandAugment(9, 0.5), random
# erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing 0.1, average pooling +
# a new pooling norm (BEiT `use_mean_pooling`). Base config:
# mmpretrain's configs/beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py.
#
# The backbone is mmpretrain's `BEiTViT`, the layout of the CIM ViT enhancer of
# configs/_base_/models/cim_vit-base-p16.py (no absolute position embedding,
# q/v biases, layer scale), with BEiT's fine-tuning change: one relative position
# table per layer, each started from the enhancer's shared table (the converter
# copies it; mmpretrain would do the same). Its weights come from the converter,
# checked against this very config:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_vit-base-p16_mmpretrain.pth --target-config THIS_CONFIG
# The enhancer's final norm is not used (avg pooling + new `ln2`), as in BEiT/MAE.
# For a plain-ViT enhancer (`VisionTransformer`, e.g. the Fashion-MNIST demo's),
# set the backbone to `VisionTransformer` (see
# ./vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py) and convert again.
_base_ = 'mmpretrain::beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_vit-base-p16_mmpretrain.pth'  # converted CIM enhancer

# the pre-training normalisation of the CIM ImageNet recipes (ImageNet mean/std)
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

model = dict(
    backbone=dict(
        type='SDPABEiTViT',  # BEiTViT + fused attention, same keys; 'BEiTViT' to switch off
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        # drop path once per branch: mmpretrain's BEiT layer also drops the FFN
        # branch inside its FFN (0.19 instead of 0.1); BEiT, timm and mmseg drop it
        # once (cim_mm/models/backbones/beit_drop_path.py)
        layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
        out_type='avg_featmap',  # mean of the patch tokens -> ln2 (new)
        final_norm=False,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,  # per layer, from the enhancer's shared table
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,  # overwritten by the pre-trained layer scale
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(in_channels=768))

# layer-wise lr decay: mmpretrain's constructor asks the backbone for each
# parameter's depth (BEiTViT.get_layer_depth)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05, betas=(0.9, 0.999)),
    # mmpretrain's LearningRateDecayOptimWrapperConstructor + paramwise_cfg.merge_groups
    constructor='MergedLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.65,
        merge_groups=True,  # one param group per layer and wd, AdamW fused on CUDA (off: False)
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
        }))
auto_scale_lr = dict(base_batch_size=1024)
