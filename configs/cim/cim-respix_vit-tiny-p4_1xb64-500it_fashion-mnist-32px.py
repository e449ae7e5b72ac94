# CIM-ResPix demo on real Fashion-MNIST, sized for 2 CPU cores (README main command).
# Enhancer: a tiny ViT (patch 4 on 32 px = 8x8 grid). Tokenizer: our small VQ
# tokenizer (x4, 512 codes), trained first by tools/run_demo.sh
# (tools/train_tokenizer.py). Generator: a 2-layer BEiT on the tokenizer view.
_base_ = [
    '../_base_/fashion_mnist_cim_32px.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'], allow_failed_imports=False)
default_scope = 'mmpretrain'

tokenizer_checkpoint = 'work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px/tokenizer.pth'
embed_dims = 128
model = dict(
    type='CIM',
    data_preprocessor=dict(
        type='CIMDataPreprocessor',
        mean={{_base_.fmnist_mean}},
        std={{_base_.fmnist_std}},
        tokenizer_img_size=32),  # the tokenizer sees the full 32 px view (x4 -> 8x8)
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=embed_dims, num_layers=6, num_heads=4,
                  feedforward_channels=embed_dims * 4),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.0,
        out_type='featmap',
        final_norm=True,
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    # ResPix: sliding-window-normalised pixels of all patches; window 9 px (ours: best of
    # 3 / 5 / 9 in docs/ablations.md, k-NN above the 3-seed spread), not patch + 1
    head=dict(type='ResPixHead', in_channels=embed_dims, patch_size=4, window_size=9),
    tokenizer=dict(
        type='VQTokenizer', vocab_size=512, downsample=4,
        checkpoint=tokenizer_checkpoint, frozen=True),
    generator=dict(
        type='BEiTGenerator',
        vocab_size=512,
        temperature=1.0,
        backbone=dict(
            arch=dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=256),
            img_size=32, patch_size=4, layer_scale_init_value=0.1)),
    loss_weights=dict(gen=1.0, enh=1.0),
)

max_iters = 500  # ~6 min at ~0.7 s/iter on 2 CPU cores (batch 64)
# On a 2-core CPU, loading in the main process and giving torch both cores is ~30 %
# faster than one worker + one torch thread (0.69 vs 0.95 s/iter measured).
train_dataloader = dict(num_workers=0, persistent_workers=False)
# BEiT v1 recipe scaled down: AdamW, wd 0.05, grad clip 3.0; lr for batch 64
optim_wrapper = dict(
    # mmengine's DefaultOptimWrapperConstructor, logging the frozen tokenizer once
    constructor='FrozenSummaryOptimWrapperConstructor',
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    paramwise_cfg=dict(custom_keys={
        '.ln': dict(decay_mult=0.0), '.bias': dict(decay_mult=0.0),
        '.cls_token': dict(decay_mult=0.0), '.pos_embed': dict(decay_mult=0.0),
        '.gamma': dict(decay_mult=0.0), 'mask_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=250, max_keep_ckpts=2,
                    save_last=True),
)
# Trusting a run (docs/reliability.md, docs/visualization.md): stop at the first NaN/inf
# loss naming it; keep the RNG states in checkpoints so --resume continues the same random
# streams; draw original/mask/corrupted/replaced/recovered for 8 fixed images every 100
# iterations and after the last (work_dir/vis/cim_iter_*.png and the visualizer).
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='CIMVisualizationHook', interval=100, num_images=8),
]
log_processor = dict(by_epoch=False)
# Several processes (tools/dist_train.sh CONFIG N, also on CPU): each rank its own seed
# (masks, flips, generator samples); every parameter gets a gradient each step, so DDP
# needs no unused-parameter search (tests/compat/test_distributed.py).
randomness = dict(seed=0, diff_rank_seed=True)
find_unused_parameters = False
auto_scale_lr = dict(base_batch_size=64, enable=False)
