"""The source: what a CIM pre-training checkpoint holds.

* :func:`split_cim_state_dict`: the enhancer (``backbone.*``) and, per other
  component (generator, tokenizer, head, neck), how many keys are dropped;
* :func:`enhancer_cfg_from_meta`: ``model.backbone`` of the config text mmengine
  stores in ``meta['cfg']``, read as literals (never executed);
* :func:`vit_spec` / :func:`resnet_spec`: the enhancer's architecture as its
  weights tell it (plus the head count, which weights only tell through a
  relative position table); :func:`is_vit` / :func:`is_resnet` tell those two
  layouts apart from any other feature-map enhancer (ConvNeXt, Swin, ...).
"""
from __future__ import annotations

import ast
import math
import re
from collections import Counter, OrderedDict
from typing import Any, Optional

from mmpretrain.models.backbones import BEiTViT, VisionTransformer

from .keys import block, vit_to_canonical
from .report import ConversionError

__all__ = ['COMPONENTS', 'split_cim_state_dict', 'enhancer_cfg_from_meta', 'is_vit',
           'is_resnet', 'rel_grid', 'vit_spec', 'resnet_spec', 'heads_from_cfg']

COMPONENTS = ('generator', 'tokenizer', 'head', 'neck', 'data_preprocessor')


def split_cim_state_dict(state_dict: dict) -> tuple[OrderedDict, dict]:
    """The enhancer (``backbone.*``, prefix stripped) and, per other component,
    how many keys are dropped."""
    keys = list(state_dict)
    if keys and all(k.startswith('module.') for k in keys):
        state_dict = OrderedDict((k[7:], v) for k, v in state_dict.items())
    enhancer = OrderedDict()
    dropped = Counter({c: 0 for c in COMPONENTS})
    for k, v in state_dict.items():
        top, _, rest = k.partition('.')
        if top == 'backbone' and rest:
            enhancer[rest] = v
        else:
            dropped[top if top in COMPONENTS else 'other'] += 1
    if not enhancer:
        raise ConversionError(
            'no enhancer weights (keys "backbone.*") in the checkpoint: is this a '
            'CIM pre-training checkpoint? (top-level keys: '
            f'{sorted({k.split(".")[0] for k in state_dict})[:8]})')
    if not dropped['other']:
        del dropped['other']
    return enhancer, dict(dropped)


def _literal(node: ast.AST) -> Any:
    """Evaluate a config literal (``dict(...)``, lists, numbers, strings)
    without executing anything."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        vals = [_literal(e) for e in node.elts]
        return vals if isinstance(node, ast.List) else tuple(vals)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict' and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    raise ValueError('not a literal')


def enhancer_cfg_from_meta(meta: Any) -> Optional[dict]:
    """``model.backbone`` of the config text mmengine stores in ``meta['cfg']``,
    parsed as literals only (the text is never executed)."""
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == 'model':
            try:
                model = _literal(stmt.value)
            except (ValueError, TypeError):
                return None
            bb = model.get('backbone') if isinstance(model, dict) else None
            return bb if isinstance(bb, dict) else None
    return None

def is_vit(sd: dict) -> bool:
    """A plain ViT's names (``patch_embed.*`` + ``layers.N.*``): not a Swin, whose
    patch embedding has the same name but whose blocks are ``stages.N.blocks.M``."""
    return (any(k.startswith('patch_embed.') for k in sd)
            and any(re.match(r'^layers\.\d+\.', k) for k in sd))


def is_resnet(sd: dict) -> bool:
    return any(re.match(r'^layer\d+\.\d+\.conv1\.weight$', k) for k in sd)


def rel_grid(num_pos: int) -> int:
    g = math.isqrt(num_pos - 3)
    if g * g != num_pos - 3 or g % 2 == 0:
        raise ConversionError(f'relative position bias table of {num_pos} rows is '
                              'not (2h-1)^2 + 3 for a square grid')
    return (g + 1) // 2


def vit_spec(sd: dict, enhancer_cfg: Optional[dict] = None,
             num_heads: Optional[int] = None) -> dict:
    """Architecture of an mmpretrain ViT state dict (what the weights say, plus
    ``num_heads``, which they only say through a relative position table)."""
    c, _ = vit_to_canonical(sd, 'mmpretrain')
    blocks = sorted({block(k)[0] for k in c if block(k)[0] is not None})
    if not blocks or 'patch.weight' not in c:
        raise ConversionError('the enhancer is not a ViT in mmpretrain naming')
    embed, in_ch, ph, pw = c['patch.weight'].shape
    spec = dict(embed_dims=embed, num_layers=len(blocks), in_channels=in_ch,
                patch_size=ph, feedforward_channels=c['0.fc1.weight'].shape[0],
                abs_pos='pos_embed' in c, cls_token='cls_token' in c,
                rel_pos=('shared' if 'shared_rel' in c else
                         'layer' if '0.rel' in c else 'none'),
                qkv_bias=('qkv' if '0.qkv.bias' in c else
                          'qv' if '0.q_bias' in c else 'none'),
                layer_scale='0.ls1' in c, final_norm='final_norm.weight' in c,
                pre_norm='pre_norm.weight' in c, patch_bias='patch.bias' in c)
    grid = None
    if spec['abs_pos']:
        n = c['pos_embed'].shape[1] - (1 if spec['cls_token'] else 0)
        g = math.isqrt(n)
        grid = g if g * g == n else None
    heads_from = None
    table = c.get('shared_rel', c.get('0.rel'))
    if table is not None:
        grid = grid or rel_grid(table.shape[0])
        heads_from, spec['num_heads'] = 'relative position table', table.shape[1]
    if heads_from is None:
        if num_heads:
            spec['num_heads'], heads_from = num_heads, '--num-heads'
        else:
            heads = heads_from_cfg(enhancer_cfg)
            if heads:
                spec['num_heads'], heads_from = heads, 'the checkpoint config (meta.cfg)'
            else:
                spec['num_heads'] = None  # not in the weights: never guessed
    spec['heads_from'] = heads_from
    spec['grid'] = grid or 14
    spec['img_size'] = spec['grid'] * ph
    return spec


def heads_from_cfg(cfg: Optional[dict]) -> Optional[int]:
    if not cfg:
        return None
    arch = cfg.get('arch')
    if isinstance(arch, dict):
        return arch.get('num_heads')
    if isinstance(arch, str):
        try:
            zoo = (BEiTViT if 'BEiT' in str(cfg.get('type')) else VisionTransformer).arch_zoo
            return zoo[arch.lower()]['num_heads']
        except (KeyError, ImportError):
            return None
    return None


_DEPTHS = {('basic', (2, 2, 2, 2)): 18, ('basic', (3, 4, 6, 3)): 34,
           ('bottleneck', (3, 4, 6, 3)): 50, ('bottleneck', (3, 4, 23, 3)): 101,
           ('bottleneck', (3, 8, 36, 3)): 152}


def resnet_spec(sd: dict) -> dict:
    counts = Counter()
    for k in sd:
        m = re.match(r'^layer(\d+)\.(\d+)\.', k)
        if m:
            counts[int(m.group(1))] = max(counts[int(m.group(1))], int(m.group(2)) + 1)
    stages = tuple(counts[i] for i in sorted(counts))
    block = 'bottleneck' if 'layer1.0.conv3.weight' in sd else 'basic'
    depth = _DEPTHS.get((block, stages))
    if depth is None and len(stages) < 4:
        for (b, full), d in _DEPTHS.items():
            if b == block and full[:len(stages)] == stages:
                depth = d
                break
    if depth is None:
        raise ConversionError(f'unknown ResNet layout: {block} blocks {stages}')
    deep_stem = any(k.startswith('stem.') for k in sd)
    avg_down = any(re.match(r'^layer\d+\.0\.downsample\.2\.', k) for k in sd)
    stem_channels = (sd['stem.2.conv.weight'].shape[0] if deep_stem
                     else sd['conv1.weight'].shape[0])
    typ = 'ResNetV1d' if deep_stem and avg_down else 'ResNetV1c' if deep_stem \
        else 'ResNet'
    return dict(type=typ, depth=depth, num_stages=len(stages),
                stem_channels=stem_channels,
                base_channels=sd['layer1.0.conv1.weight'].shape[0],
                in_channels=(sd['stem.0.conv.weight'] if deep_stem
                             else sd['conv1.weight']).shape[1])
