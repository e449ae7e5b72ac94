# CIM-RevDet, ViT-B/16 enhancer, 300 epochs: replaced-token detection per patch.
_base_ = './cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'
model = dict(head=dict(_delete_=True, type='RevDetHead', in_channels=768))
