# CIM-RevDet with a Swin-T enhancer: the ResPix recipe with the replaced-token detection
# head (one logit per 16x16 patch of the 14x14 grid). Everything else (data, Swin-T +
# CNNPatchNeck, DALL-E tokenizer, BEiT generator, SimMIM's AdamW schedule) is shared.
_base_ = './cim-respix_swin-tiny_8xb256-amp-coslr-300e_in1k.py'
model = dict(
    # pos_weight 1.0 = plain BCE (unverified: the paper's loss weighting)
    head=dict(_delete_=True, type='RevDetHead', in_channels={{_base_.neck_channels}}))
