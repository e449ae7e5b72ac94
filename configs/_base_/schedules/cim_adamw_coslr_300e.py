# BEiT v1 pre-training schedule (mmpretrain configs/beit v1): AdamW lr 1.5e-3 for
# batch 2048, wd 0.05, betas (0.9, 0.999), grad clip 3.0, 10 warm-up epochs,
# cosine to 1e-5; bf16 AMP.
optim_wrapper = dict(
    # mmengine's DefaultOptimWrapperConstructor, logging the frozen tokenizer once
    constructor='FrozenSummaryOptimWrapperConstructor',
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(
        merge_groups=True,  # one param group per distinct lr / wd, AdamW fused on CUDA (off: False)
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            'q_bias': dict(decay_mult=0.0),
            'v_bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.gamma': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
        }))
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
find_unused_parameters = False
# lr above is for 8 GPUs x 256; --auto-scale-lr rescales for other batch sizes
auto_scale_lr = dict(base_batch_size=2048)
