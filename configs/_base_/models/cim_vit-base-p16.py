# CIM with a BEiT-style ViT-B/16 enhancer, a small BEiT generator and the frozen
# DALL-E dVAE. Sources: BEiT v1 (mmpretrain configs/beit) for the enhancer
# (layer scale 0.1, shared relative position bias, drop path 0.1) and the 112 px
# tokenizer view; the CIM paper (arXiv 2202.03382) for the design (small BEiT
# generator, ResPix/RevDet). Generator depth/width: the paper's appendix
# (Tables 13-15) could not be read here; 4 layers x 384 dims is our choice,
# configurable below.
model = dict(
    type='CIM',
    data_preprocessor=dict(
        type='CIMDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        tokenizer_img_size=112),
    backbone=dict(
        type='SDPABEiTViT',  # BEiTViT + fused attention, same keys; 'BEiTViT' to switch off
        # attn_impl='flex' (enhancer + generator; docs/speed.md): off until a GPU run shows it pays
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        # drop path once per branch: mmpretrain's BEiT layer also drops the FFN
        # branch inside its FFN (0.19 instead of 0.1); BEiT, timm and mmseg drop it
        # once (cim_mm/models/backbones/beit_drop_path.py)
        layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
        final_norm=True,
        out_type='featmap',
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    neck=None,
    head=dict(type='ResPixHead', in_channels=768, patch_size=16),
    tokenizer=dict(
        type='DALLETokenizer',
        # download https://cdn.openai.com/dall-e/encoder.pkl and decoder.pkl
        encoder_path='data/dalle/encoder.pkl',
        decoder_path='data/dalle/decoder.pkl',
        decode_dtype='bfloat16'),  # frozen tokenizer in bf16 on GPU
    generator=dict(
        type='BEiTGenerator',
        vocab_size=8192,
        temperature=1.0,  # sample from the generator's softmax
        # head, loss and sampling on the masked tokens only (no host sync); = the
        # BEiTMaskGenerator's num_masking_patches, which it masks exactly. None: all tokens
        num_masked=75,
        backbone=dict(
            type='SDPABEiTPretrainViT',  # + fused attention, same keys; 'BEiTPretrainViT': off
            arch=dict(embed_dims=384, num_layers=4, num_heads=6,
                      feedforward_channels=1536),
            img_size=112,
            patch_size=8,  # = DALL-E downsampling: 14x14 grid, as the enhancer
            drop_path_rate=0.0,
            layer_scale_init_value=0.1,
            init_cfg=[
                dict(type='TruncNormal', std=0.02, layer='Linear'),
                dict(type='TruncNormal', std=0.02, layer='Conv2d'),
                dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
            ])),
    loss_weights=dict(gen=1.0, enh=1.0),
)
