# ADE20K semantic segmentation: UperNet on a CIM-pre-trained ViT-B/16 (mmseg).
#
# Recipe: mmseg's MAE ViT-B UperNet (configs/mae/mae-base_upernet_8xb2-amp-160k_
# ade20k-512x512.py), the BEiT/MAE protocol CIM follows: 512x512 crops, 160k
# iterations, batch 16 (8 GPUs x 2), AdamW lr 1e-4, wd 0.05, layer-wise lr
# decay 0.65, 1500 warm-up iterations, poly decay, drop path 0.1, features of
# blocks 4/6/8/12 through Feature2Pyramid, auxiliary FCN head, sliding-window
# test. Train with --amp for mixed precision (the base config's `fp16=` key is
# an mmseg 0.x leftover that mmengine ignores).
#
# Backbone: mmseg's own `MAE` (a ViT with layer scale and a zero-initialised
# relative position bias) holding the converted CIM ViT enhancer:
#   * mmseg's `LayerDecayOptimizerConstructor` only accepts backbones whose
#     class name contains BEiT / MAE / ConvNeXt, so `mmpretrain.VisionTransformer`
#     would need another constructor; `MAE` keeps mmseg's reference recipe as is;
#   * `MAE` loads its `Pretrained` file itself, non-strictly and ignoring
#     `prefix`: the converter writes backbone-relative keys and checks them
#     against this config. The paper recipes' enhancer (BEiT layout: shared
#     relative position table, no absolute position embedding) -> MAE: the
#     shared table goes to every layer (resized 14x14 -> 32x32 with BEiT's
#     geometric rule), absolute position embedding = 0 (exact); a plain ViT
#     enhancer -> MAE: layer scale 1, relative position bias 0 (exact), position
#     embedding resized 14x14 -> 32x32 with mmseg's own bicubic rule:
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_vit-base-p16_mmseg.pth --target-config THIS_CONFIG
# The same enhancer also goes into mmseg's `BEiT` (relative tables kept per
# layer, no absolute position embedding at all):
# ./upernet_beit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py.
#
# Runs with mmseg's tools/train.py and with ours (tools/train.py); custom_imports
# brings cim_mm's checkpoint safety (torch >= 2.6) and the SciPy interp2d fix.
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable', 'cim_mm.seg'],
                      allow_failed_imports=False)

pretrained = 'work_dirs/cim_vit-base-p16_mmseg.pth'  # converted CIM enhancer
data_root = 'data/ade/ADEChallengeData2016'

model = dict(
    pretrained=None,
    backbone=dict(
        type='MAE',
        img_size=(512, 512),
        patch_size=16,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4,
        init_values=1.0,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),  # = mmpretrain's ViT
        final_norm=False,
        out_indices=[3, 5, 7, 11],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65))
fp16 = None  # see --amp above

# mmseg batches lists of differently sized images (pseudo_collate, mmengine's
# default); say so, as our tools/train.py fills in default_collate otherwise
train_dataloader = dict(
    batch_size=2,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=1,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
