_base_ = './cim-respix_vit-base-p16_8xb256-amp-coslr-800e_in1k.py'
model = dict(head=dict(_delete_=True, type='RevDetHead', in_channels=768))
