# ADE20K UperNet on a CIM-pre-trained ViT-B/16 with a BEiT layout (mmseg).
#
# For an enhancer built as mmpretrain `BEiTViT` (the paper recipes' enhancer:
# shared or per-layer relative position bias, q/v biases, layer scale, no
# absolute position embedding): mmseg's own `BEiT` backbone holds it exactly (a
# shared table is copied into every layer); its relative position tables are resized
# 14x14 -> 32x32 by the converter with BEiT's geometric interpolation (SciPy's
# removed interp2d replaced by cim_mm's torch implementation):
#   python tools/model_converters/cim_to_downstream.py CIM_CKPT.pth \
#       work_dirs/cim_beit-base-p16_mmseg.pth --target-config THIS_CONFIG
# Everything else is ./upernet_vit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py
# (mmseg's LayerDecayOptimizerConstructor accepts `BEiT`).
_base_ = './upernet_vit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py'

pretrained = 'work_dirs/cim_beit-base-p16_mmseg.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='BEiT',
        img_size=(512, 512),
        patch_size=16,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4,
        qv_bias=True,
        init_values=0.1,  # overwritten by the pre-trained layer scale
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        final_norm=False,
        out_indices=[3, 5, 7, 11],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
