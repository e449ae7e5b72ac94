# Fashion-MNIST scenes segmentation (mmseg): a frozen BEiT v1 tiny ViT with a linear head.
#
# The seg track's frozen probe for the BEiT v1 peer, whose backbone (mmpretrain BEiTViT:
# layer scale, a relative position bias shared by all blocks, no absolute position
# embedding) mmseg's VisionTransformer of
# ../cim/benchmarks/fcn_vit-tiny-p4_cim-pre-frozen_1xb8-400it_fashion-mnist-scenes-64x64.py
# cannot hold. mmpretrain's own BEiTViT inside this mmseg config holds it exactly: the
# converter copies the shared table into every block's own table (use_rel_pos_bias, the
# same bias in each block: the same function) and resizes it from the 8x8 grid of 32 px
# to the 16x16 grid of 64 px (BEiT's geometric interpolation); with per-block tables,
# frozen_stages=6 freezes all of it (mmpretrain does not freeze a shared table). Head,
# data, schedule and optimizer are the ViT probe's.
#   python tools/model_converters/cim_to_downstream.py BEIT_CHECKPOINT OUT \
#       --target-config THIS_CONFIG
_base_ = '../cim/benchmarks/fcn_vit-tiny-p4_cim-pre-frozen_1xb8-400it_fashion-mnist-scenes-64x64.py'

pretrained = 'work_dirs/beit_vit-tiny-p4_fashion-mnist-32px/backbone_frozen-64px.pth'
embed_dims = 128  # the benchmark's tiny ViT width
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.BEiTViT',
        arch=dict(embed_dims=embed_dims, num_layers=6, num_heads=4,
                  feedforward_channels=embed_dims * 4),  # the benchmark's tiny ViT
        img_size=64,  # 64 px scenes: a 16x16 grid of 4 px patches
        patch_size=4,  # the tiny ViT's patch
        out_indices=-1,  # the last block only
        out_type='featmap',  # [B, 128, 16, 16] patch features, no class token
        final_norm=True,  # the pre-trained final norm, kept: normalised features to probe
        drop_rate=0.0,  # frozen: no dropout
        drop_path_rate=0.0,  # frozen: no stochastic depth
        use_abs_pos_emb=False,  # BEiT v1: no absolute position embedding
        use_rel_pos_bias=True,  # per-block tables (each a copy of the shared one)
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,  # BEiT v1's (the pre-trained values replace it)
        frozen_stages=6,  # patch embedding, class token, every block and the final norm
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
