# ImageNet-1K linear probing of a CIM-pre-trained ViT-B/16 enhancer (mmpretrain).
#
# MAE's linear-probing recipe (mmpretrain configs/mae/benchmarks/
# vit-base-p16_8xb2048-linear-coslr-90e_in1k.py): frozen backbone, BatchNorm
# (no affine) before a linear classifier, LARS lr 6.4 for batch 16384
# (0.1 * 16384 / 256), 90 epochs, 10 warm-up, cosine, no weight decay.
# One change: the features are the mean of the patch tokens after the
# enhancer's final norm (CIM's heads read patch tokens, its [CLS] token is never
# trained directly; BEiT also probes mean-pooled patch tokens). The converter
# keeps the final norm `ln1` for this config:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_vit-base-p16_mmpretrain-linear.pth --target-config THIS_CONFIG
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)

pretrained = 'work_dirs/cim_vit-base-p16_mmpretrain-linear.pth'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    backbone=dict(
        # the CIM ViT enhancer's layout (configs/_base_/models/cim_vit-base-p16.py),
        # with its shared relative position table copied into every (frozen)
        # layer by the converter, so nothing but the classifier trains
        _delete_=True,
        type='SDPABEiTViT',  # BEiTViT + fused attention, same keys; 'BEiTViT' to switch off
        arch='base',
        img_size=224,
        patch_size=16,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        # drop path once per branch if ever enabled (see the fine-tune config)
        layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
        frozen_stages=12,  # everything up to and including ln1 is frozen
        # mean patch token -> ln2: new, frozen at weight 1 / bias 0, which is not the
        # identity: it standardises each pooled feature vector (zero mean, unit
        # variance over its 768 channels) before the BatchNorm neck
        out_type='avg_featmap',
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=768))
