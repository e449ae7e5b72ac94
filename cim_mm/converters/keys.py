"""ViT key families: each family's names <-> one canonical name per tensor.

A canonical name is family-free: ``patch.weight``, ``pos_embed``, ``{i}.qkv.weight``
(``{i}`` = block index), ``{i}.ls1`` (layer scale), ``shared_rel`` (a relative
position table shared by all blocks), ... Three families are known:

* ``mmpretrain``: mmpretrain ``VisionTransformer``/``BEiTViT``; mmseg ``BEiT`` and
  ``MAE`` use the same names;
* ``mmseg_vit``: mmseg ``VisionTransformer`` (``nn.MultiheadAttention`` inside
  mmcv's wrapper: fused ``in_proj``);
* ``timm``: timm ``vit_*`` / ``beit_*``.

Converting a ViT is then: source names -> canonical -> target names.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Optional

__all__ = ['FAMILIES', 'FAMILY_NAMES', 'NEW_BY_DESIGN', 'canonical_key',
           'vit_to_canonical', 'block', 'is_derived']


def _wb(canon: str, fam: str) -> list[tuple[str, str]]:
    return [(f'{canon}.weight', f'{fam}.weight'), (f'{canon}.bias', f'{fam}.bias')]


# mmpretrain VisionTransformer + BEiTViT; mmseg BEiT and MAE use the same names
_MMPRETRAIN = [
    ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
    *_wb('patch', 'patch_embed.projection'), *_wb('pre_norm', 'pre_norm'),
    ('shared_rel', 'rel_pos_bias.relative_position_bias_table'),
    ('shared_rel_index', 'rel_pos_bias.relative_position_index'),
    *_wb('final_norm', 'ln1'), *_wb('pool_norm', 'ln2'),
    *_wb('{i}.norm1', 'layers.{i}.ln1'), *_wb('{i}.norm2', 'layers.{i}.ln2'),
    ('{i}.qkv.weight', 'layers.{i}.attn.qkv.weight'),
    ('{i}.qkv.bias', 'layers.{i}.attn.qkv.bias'),
    ('{i}.q_bias', 'layers.{i}.attn.q_bias'), ('{i}.v_bias', 'layers.{i}.attn.v_bias'),
    ('{i}.rel', 'layers.{i}.attn.relative_position_bias_table'),
    ('{i}.rel_index', 'layers.{i}.attn.relative_position_index'),
    *_wb('{i}.proj', 'layers.{i}.attn.proj'),
    ('{i}.ls1', 'layers.{i}.attn.gamma1.weight'), ('{i}.ls1', 'layers.{i}.gamma_1'),
    ('{i}.ls2', 'layers.{i}.ffn.gamma2.weight'), ('{i}.ls2', 'layers.{i}.gamma_2'),
    *_wb('{i}.fc1', 'layers.{i}.ffn.layers.0.0'), *_wb('{i}.fc2', 'layers.{i}.ffn.layers.1'),
]
# mmseg VisionTransformer (nn.MultiheadAttention inside mmcv's wrapper)
_MMSEG_VIT = [
    ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
    *_wb('patch', 'patch_embed.projection'), *_wb('pre_norm', 'ln_pre'),
    *_wb('final_norm', 'ln1'),
    *_wb('{i}.norm1', 'layers.{i}.ln1'), *_wb('{i}.norm2', 'layers.{i}.ln2'),
    ('{i}.qkv.weight', 'layers.{i}.attn.attn.in_proj_weight'),
    ('{i}.qkv.bias', 'layers.{i}.attn.attn.in_proj_bias'),
    *_wb('{i}.proj', 'layers.{i}.attn.attn.out_proj'),
    *_wb('{i}.fc1', 'layers.{i}.ffn.layers.0.0'), *_wb('{i}.fc2', 'layers.{i}.ffn.layers.1'),
]
# timm VisionTransformer (vit_*) + Beit (beit_*)
_TIMM = [
    ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
    *_wb('patch', 'patch_embed.proj'), *_wb('pre_norm', 'norm_pre'),
    ('shared_rel', 'rel_pos_bias.relative_position_bias_table'),
    ('shared_rel_index', 'rel_pos_bias.relative_position_index'),
    *_wb('final_norm', 'norm'), *_wb('pool_norm', 'fc_norm'),
    *_wb('{i}.norm1', 'blocks.{i}.norm1'), *_wb('{i}.norm2', 'blocks.{i}.norm2'),
    ('{i}.qkv.weight', 'blocks.{i}.attn.qkv.weight'),
    ('{i}.qkv.bias', 'blocks.{i}.attn.qkv.bias'),
    ('{i}.q_bias', 'blocks.{i}.attn.q_bias'), ('{i}.v_bias', 'blocks.{i}.attn.v_bias'),
    ('{i}.rel', 'blocks.{i}.attn.relative_position_bias_table'),
    ('{i}.rel_index', 'blocks.{i}.attn.relative_position_index'),
    *_wb('{i}.proj', 'blocks.{i}.attn.proj'),
    ('{i}.ls1', 'blocks.{i}.ls1.gamma'), ('{i}.ls1', 'blocks.{i}.gamma_1'),
    ('{i}.ls2', 'blocks.{i}.ls2.gamma'), ('{i}.ls2', 'blocks.{i}.gamma_2'),
    *_wb('{i}.fc1', 'blocks.{i}.mlp.fc1'), *_wb('{i}.fc2', 'blocks.{i}.mlp.fc2'),
]


def _compile(table: list[tuple[str, str]]) -> list[tuple[re.Pattern, str]]:
    out = []
    for canon, fam in table:
        pat = re.escape(fam).replace(re.escape('{i}'), r'(?P<i>\d+)')
        out.append((re.compile(f'^{pat}$'), canon))
    return out


FAMILIES = {
    'mmpretrain': _compile(_MMPRETRAIN),
    'mmseg_vit': _compile(_MMSEG_VIT),
    'timm': _compile(_TIMM),
}
FAMILY_NAMES = {
    'mmpretrain': 'mmpretrain VisionTransformer/BEiTViT (= mmseg BEiT/MAE) names',
    'mmseg_vit': 'mmseg VisionTransformer names',
    'timm': 'timm vit_*/beit_* names',
    'featmap': "the enhancer's own names (mmpretrain ConvNeXt / SwinTransformer; mmseg Swin)",
}
#: target keys that start fresh on purpose (pooling norm, classifier head)
_POOL = 'pooling norm (avg_featmap / global_pool=avg), new in BEiT/MAE-style fine-tuning'
NEW_BY_DESIGN = {
    'pool_norm.weight': _POOL, 'pool_norm.bias': _POOL,
    'head.weight': 'classifier head', 'head.bias': 'classifier head',
    'fc.weight': 'classifier head', 'fc.bias': 'classifier head',
}
_DERIVED = ('rel_index', 'shared_rel_index')


def canonical_key(key: str, family: str) -> Optional[str]:
    """The canonical name of ``key`` in a ViT key family, or None."""
    for pat, canon in FAMILIES[family]:
        m = pat.match(key)
        if m:
            return canon.format(i=m.group('i')) if '{i}' in canon else canon
    if family == 'timm' and key.startswith('head.'):
        return key
    return None


def vit_to_canonical(sd: dict, family: str) -> tuple[dict, list[str]]:
    """``{canonical: tensor}`` and the keys that have no canonical name."""
    out, unknown = OrderedDict(), []
    for k, v in sd.items():
        c = canonical_key(k, family)
        if c is None:
            unknown.append(k)
        else:
            out[c] = v
    return out, unknown


def block(c: str) -> tuple[Optional[int], str]:
    """``'3.qkv.weight'`` -> ``(3, 'qkv.weight')``; ``'pos_embed'`` -> ``(None, 'pos_embed')``."""
    head, _, rest = c.partition('.')
    if head.isdigit():
        return int(head), rest
    return None, c


def is_derived(c: str) -> bool:
    """A buffer computed from the architecture (relative position index), not learned."""
    return block(c)[1] in _DERIVED

