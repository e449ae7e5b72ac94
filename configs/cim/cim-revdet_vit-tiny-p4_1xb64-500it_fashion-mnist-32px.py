# CIM-RevDet demo: the ResPix demo with the replaced-token-detection head.
_base_ = './cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'
model = dict(head=dict(_delete_=True, type='RevDetHead', in_channels=128))
