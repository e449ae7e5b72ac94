"""Target configs made without a ``--target-config``: named presets and the
enhancer's own architecture, mirrored for mmpretrain, mmseg or timm.

``preset_cfg(kind, spec, img_size)`` turns a spec of :mod:`.source`
(``vit_spec`` / ``resnet_spec``, possibly overridden by an :data:`ARCH_PRESETS`
entry) into a backbone config in the BEiT/MAE fine-tuning style of
``configs/cim/benchmarks`` (no final norm, average pooling).
"""
from __future__ import annotations

from typing import Optional

from .report import ConversionError

__all__ = ['ARCH_PRESETS', 'preset_cfg']

#: named presets: fixed dims (checked against the checkpoint), the layout
#: features (abs/rel position, biases, layer scale) come from the checkpoint
ARCH_PRESETS = {
    'vit-small-p16': dict(embed_dims=384, num_layers=12, num_heads=6,
                          feedforward_channels=1536, patch_size=16),
    'vit-base-p16': dict(embed_dims=768, num_layers=12, num_heads=12,
                         feedforward_channels=3072, patch_size=16),
    'vit-large-p16': dict(embed_dims=1024, num_layers=24, num_heads=16,
                          feedforward_channels=4096, patch_size=16),
    'resnet50': dict(type='ResNet', depth=50),
    'resnet18': dict(type='ResNet', depth=18),
}



def preset_cfg(kind: str, spec: dict, img_size: Optional[int]) -> dict:
    """A target backbone config for ``kind`` that mirrors the enhancer's
    layout, in the BEiT/MAE fine-tuning style of configs/cim/benchmarks."""
    if 'depth' in spec:  # ResNet
        if kind == 'timm':
            if spec['type'] != 'ResNet' or spec['base_channels'] != 64 \
                    or spec['stem_channels'] != 64:
                raise ConversionError('the timm target supports standard ResNets '
                                      '(plain stem, 64 channels) only')
            layers = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3],
                      101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[spec['depth']]
            return dict(type='ResNet', bottleneck=spec['depth'] >= 50,
                        layers=layers, num_classes=0, in_chans=spec['in_channels'])
        cfg = dict(type=spec['type'], depth=spec['depth'], in_channels=spec['in_channels'],
                   stem_channels=spec['stem_channels'],
                   base_channels=spec['base_channels'], num_stages=spec['num_stages'],
                   out_indices=tuple(range(spec['num_stages'])))
        if kind == 'mmseg':
            cfg.update(strides=(1, 2, 2, 2)[:spec['num_stages']],
                       dilations=(1, 1, 1, 1)[:spec['num_stages']])
        return cfg
    img = img_size or spec['img_size']
    e, d, heads = spec['embed_dims'], spec['num_layers'], spec['num_heads']
    ffn, patch = spec['feedforward_channels'], spec['patch_size']
    beit_like = spec['rel_pos'] != 'none' or spec['qkv_bias'] == 'qv'
    if kind == 'mmpretrain':
        arch = dict(embed_dims=e, num_layers=d, num_heads=heads, feedforward_channels=ffn)
        common = dict(arch=arch, img_size=img, patch_size=patch,
                      in_channels=spec['in_channels'], out_type='avg_featmap',
                      final_norm=False)
        if beit_like:
            return dict(type='BEiTViT', **common, use_abs_pos_emb=spec['abs_pos'],
                        use_rel_pos_bias=spec['rel_pos'] == 'layer',
                        use_shared_rel_pos_bias=spec['rel_pos'] == 'shared',
                        layer_scale_init_value=0.1 if spec['layer_scale'] else 0.,
                        bias='qv_bias' if spec['qkv_bias'] != 'none' else False)
        return dict(type='VisionTransformer', **common, pre_norm=spec['pre_norm'],
                    layer_scale_init_value=0.1 if spec['layer_scale'] else 0.,
                    patch_cfg={} if spec['patch_bias'] else dict(bias=False),
                    qkv_bias=spec['qkv_bias'] != 'none')
    if ffn % e:
        raise ConversionError(f'feedforward_channels {ffn} is not a multiple of '
                              f'embed_dims {e}: mmseg/timm need an integer mlp_ratio')
    if kind == 'mmseg':
        q = [max(0, d * k // 4 - 1) for k in (1, 2, 3, 4)]
        common = dict(img_size=(img, img), patch_size=patch, in_channels=spec['in_channels'],
                      embed_dims=e, num_layers=d, num_heads=heads, mlp_ratio=ffn // e,
                      out_indices=q, norm_cfg=dict(type='LN', eps=1e-6), final_norm=False)
        if spec['abs_pos'] or spec['rel_pos'] == 'none':
            return dict(type='MAE', **common, init_values=1.0)
        return dict(type='BEiT', **common, qv_bias=spec['qkv_bias'] != 'none',
                    init_values=1.0)
    # timm
    common = dict(img_size=img, patch_size=patch, in_chans=spec['in_channels'],
                  embed_dim=e, depth=d, num_heads=heads, mlp_ratio=ffn // e,
                  num_classes=0, global_pool='avg',
                  qkv_bias=spec['qkv_bias'] != 'none',
                  init_values=0.1 if spec['layer_scale'] else None)
    if beit_like:
        return dict(type='Beit', **common, use_abs_pos_emb=spec['abs_pos'],
                    use_rel_pos_bias=spec['rel_pos'] == 'layer',
                    use_shared_rel_pos_bias=spec['rel_pos'] == 'shared')
    return dict(type='VisionTransformer', **common, pre_norm=spec['pre_norm'])
