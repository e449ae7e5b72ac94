# CIM-RevDet demo with a ConvNeXt enhancer: the ConvNeXt ResPix demo with the
# replaced-token-detection head (one logit per 4x4 patch of the 8x8 grid).
_base_ = './cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py'
model = dict(
    head=dict(_delete_=True, type='RevDetHead', in_channels={{_base_.neck_channels}}))
