"""CIM pre-training checkpoint -> downstream backbone checkpoints, checked.

A CIM checkpoint holds the enhancer (``backbone.*``, an mmpretrain
``VisionTransformer``/``BEiTViT`` or ``ResNet``/``ResNetV1c``/``ResNetV1d``) next
to the generator, the tokenizer, the head (and a neck for CNN enhancers). Only
the enhancer is kept; it is renamed for the target backbone and checked, key by
key and shape by shape, against a freshly built target:

* ``mmpretrain``: the same names, ``backbone.``-prefixed (load with
  ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` or
  ``load_from``);
* ``mmseg``: backbone-relative names (mmseg's ``BEiT``/``MAE``/
  ``VisionTransformer`` load their ``Pretrained`` file themselves and ignore
  ``prefix``), for ``MAE``/``BEiT``/``VisionTransformer``/``ResNet``/``ResNetV1c``/
  ``ResNetV1d``; an ``mmpretrain.*`` backbone inside an mmseg config gets the
  mmpretrain layout;
* ``timm``: a plain state dict in timm's ``vit_*``/``beit_*``/``resnet*`` naming.

The conversion is made of exact renames plus a few transforms that keep the
network's function *exactly* (checked by forward equivalence in
``tests/test_downstream.py``); anything else is a mismatch:

* a value the source does not have and the target needs is synthesised only
  where one value leaves the function unchanged: layer scale = 1, a missing
  (key/query/value/patch) bias = 0, relative position bias = 0 (mmseg ``MAE``
  initialises it to 0 itself), absolute position embedding = 0; a shared
  relative position bias is copied to every layer;
* a source value the target cannot hold is dropped only where that is exact:
  the key bias (it adds the same logit to every key of a query, so it cancels in
  the softmax), all-zero tensors; layer scale is folded into the preceding
  projection (``proj``/``fc2``) when the target has none;
* position embeddings / relative position bias tables are resized to the
  target's grid the way mmpretrain/mmseg would (bicubic / BEiT geometric
  interpolation), so the file matches the target exactly;
* by design, and listed in the report: the enhancer's final norm is dropped when
  the target has none (BEiT/MAE-style fine-tuning pools and uses a new pooling
  norm), and the target's pooling norm / classifier head start fresh.

After writing, the file is loaded back through the target's *own* loading path
(its ``init_weights`` with the ``Pretrained`` init_cfg, i.e. what a training run
will do) and compared tensor by tensor.
"""
from __future__ import annotations

import ast
import copy
import math
import os.path as osp
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .safe_checkpoint import atomic_torch_save, safe_load

__all__ = [
    'ConversionError', 'ConversionReport', 'ARCH_PRESETS', 'split_cim_state_dict',
    'convert_state_dict', 'build_target', 'convert_checkpoint', 'vit_to_canonical',
    'canonical_key'
]

COMPONENTS = ('generator', 'tokenizer', 'head', 'neck', 'data_preprocessor')


class ConversionError(ValueError):
    """The checkpoint does not convert cleanly into the requested target."""


# --------------------------------------------------------------------------
# key tables: family name <-> canonical name (``{i}`` = block index)
# --------------------------------------------------------------------------
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


_FAMILIES = {
    'mmpretrain': _compile(_MMPRETRAIN),
    'mmseg_vit': _compile(_MMSEG_VIT),
    'timm': _compile(_TIMM),
}
_FAMILY_NAMES = {
    'mmpretrain': 'mmpretrain VisionTransformer/BEiTViT (= mmseg BEiT/MAE) names',
    'mmseg_vit': 'mmseg VisionTransformer names',
    'timm': 'timm vit_*/beit_* names',
}
#: target keys that start fresh on purpose (pooling norm, classifier head)
_POOL = 'pooling norm (avg_featmap / global_pool=avg), new in BEiT/MAE-style fine-tuning'
_NEW_BY_DESIGN = {
    'pool_norm.weight': _POOL, 'pool_norm.bias': _POOL,
    'head.weight': 'classifier head', 'head.bias': 'classifier head',
    'fc.weight': 'classifier head', 'fc.bias': 'classifier head',
}
_DERIVED = ('rel_index', 'shared_rel_index')


def canonical_key(key: str, family: str) -> Optional[str]:
    """The canonical name of ``key`` in a ViT key family, or None."""
    for pat, canon in _FAMILIES[family]:
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


def _block(c: str) -> tuple[Optional[int], str]:
    head, _, rest = c.partition('.')
    if head.isdigit():
        return int(head), rest
    return None, c


def _is_derived(c: str) -> bool:
    return _block(c)[1] in _DERIVED


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _short(items: list, n: int = 12) -> str:
    items = [str(i) for i in items]
    if len(items) <= n:
        return ', '.join(items)
    return ', '.join(items[:n]) + f', ... (+{len(items) - n} more)'


@dataclass
class ConversionReport:
    source: str = ''
    source_layout: str = ''
    target: str = ''
    target_layout: str = ''
    prefix: str = ''
    dropped_components: dict = field(default_factory=dict)
    loaded: list = field(default_factory=list)
    renamed: int = 0
    resized: list = field(default_factory=list)  # (key, from, to, how)
    synthesized: list = field(default_factory=list)  # (key, why)
    folded: list = field(default_factory=list)  # (key, into)
    dropped_exact: list = field(default_factory=list)  # (key, why)
    derived: list = field(default_factory=list)
    new_by_design: list = field(default_factory=list)  # (key, why)
    dropped_by_design: list = field(default_factory=list)  # (key, why)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    shape_mismatch: list = field(default_factory=list)  # (key, src, dst)
    notes: list = field(default_factory=list)
    verified: Optional[str] = None
    verify_failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch
                    or self.verify_failures)

    def format(self) -> str:
        dropped = ', '.join(f'{k} {v}' for k, v in self.dropped_components.items())
        lines = [
            'CIM -> downstream checkpoint conversion',
            f'  source            : {self.source} (enhancer: {self.source_layout})',
            f'  target            : {self.target} [{self.target_layout}]'
            + (f", keys prefixed '{self.prefix}'" if self.prefix else ''),
            f'  dropped on purpose: {dropped} keys (only the enhancer is kept)',
            f'  loaded            : {len(self.loaded)} tensors from the enhancer '
            f'({self.renamed} renamed)',
        ]

        def block(title, items, fmt):
            lines.append(f'  {title:<18}: {len(items)}' +
                         (f'  {_short([fmt(i) for i in items])}' if items else ''))

        def grouped(title, items):
            lines.append(f'  {title:<18}: {len(items)}')
            groups = OrderedDict()
            for key, why in items:
                groups.setdefault(why, []).append(key)
            for why, keys in groups.items():
                lines.append(f'      {len(keys):>4} x {why}: {_short(keys, 4)}')

        block('resized', self.resized, lambda r: f'{r[0]} {tuple(r[1])}->{tuple(r[2])} ({r[3]})')
        grouped('synthesized exact', self.synthesized)
        grouped('folded exact', [(k, f'layer scale folded into {v.split(".", 1)[-1]}')
                                 for k, v in self.folded])
        grouped('dropped exact', self.dropped_exact)
        grouped('derived buffers', [(k, 'copied from the target (not learned)')
                                    for k in self.derived])
        grouped('new by design', self.new_by_design)
        grouped('dropped by design', self.dropped_by_design)
        block('MISSING', self.missing, str)
        block('UNEXPECTED', self.unexpected, str)
        block('SHAPE MISMATCH', self.shape_mismatch,
              lambda r: f'{r[0]} source {tuple(r[1])} target {tuple(r[2])}')
        for note in self.notes:
            lines.append(f'  note: {note}')
        if self.verified:
            lines.append(f'  verified          : {self.verified}')
        for f in self.verify_failures:
            lines.append(f'  VERIFY FAILED     : {f}')
        lines.append('RESULT: ' + ('OK' if self.ok else 'MISMATCH'))
        return '\n'.join(lines)

    def summary(self) -> dict:
        """Plain-type summary (stored in the converted file's ``meta``)."""
        return dict(
            source=osp.basename(self.source), source_layout=self.source_layout,
            target=self.target, target_layout=self.target_layout, prefix=self.prefix,
            dropped_components=dict(self.dropped_components), loaded=len(self.loaded),
            resized=[r[0] for r in self.resized],
            synthesized=[r[0] for r in self.synthesized],
            folded=[r[0] for r in self.folded],
            new_by_design=[r[0] for r in self.new_by_design],
            dropped_by_design=[r[0] for r in self.dropped_by_design],
            missing=list(self.missing), unexpected=list(self.unexpected),
            shape_mismatch=[r[0] for r in self.shape_mismatch], ok=self.ok)


# --------------------------------------------------------------------------
# reading a CIM checkpoint
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# source inspection
# --------------------------------------------------------------------------
def _is_vit(sd: dict) -> bool:
    return any(k.startswith('patch_embed.') for k in sd)


def _is_resnet(sd: dict) -> bool:
    return any(re.match(r'^layer\d+\.\d+\.conv1\.weight$', k) for k in sd)


def _rel_grid(num_pos: int) -> int:
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
    blocks = sorted({_block(k)[0] for k in c if _block(k)[0] is not None})
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
        grid = grid or _rel_grid(table.shape[0])
        heads_from, spec['num_heads'] = 'relative position table', table.shape[1]
    if heads_from is None:
        if num_heads:
            spec['num_heads'], heads_from = num_heads, '--num-heads'
        else:
            heads = _heads_from_cfg(enhancer_cfg)
            if heads:
                spec['num_heads'], heads_from = heads, 'the checkpoint config (meta.cfg)'
            else:
                spec['num_heads'] = None  # not in the weights: never guessed
    spec['heads_from'] = heads_from
    spec['grid'] = grid or 14
    spec['img_size'] = spec['grid'] * ph
    return spec


def _heads_from_cfg(cfg: Optional[dict]) -> Optional[int]:
    if not cfg:
        return None
    arch = cfg.get('arch')
    if isinstance(arch, dict):
        return arch.get('num_heads')
    if isinstance(arch, str):
        try:
            from mmpretrain.models.backbones import BEiTViT, VisionTransformer
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


# --------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------
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


@dataclass
class Target:
    kind: str  # mmpretrain | mmseg | timm
    family: str  # key family (see _FAMILIES) or resnet_<kind>
    prefix: str  # written before every key
    cfg: Optional[dict]  # registry config (None for timm)
    description: str
    build: Callable[[Optional[str]], torch.nn.Module]  # (checkpoint|None) -> module
    init_cfg: Optional[dict] = None  # how the target loads a file (checkpoint filled in)
    _module: Optional[torch.nn.Module] = None

    @property
    def module(self) -> torch.nn.Module:
        if self._module is None:
            self._module = self.build(None)
        return self._module


def _scope(scope: str):
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope(scope)


def _registry(kind: str):
    if kind == 'mmseg':
        import mmseg.models  # noqa: F401  (registers mmseg's models)
        from mmseg.registry import MODELS
    else:
        import mmpretrain.models  # noqa: F401
        from mmpretrain.registry import MODELS
    return MODELS


def _registry_target(kind: str, cfg: dict, description: str,
                     init_cfg: Optional[dict] = None) -> Target:
    cfg = copy.deepcopy(dict(cfg))
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    registry = _registry(kind)
    with _scope(kind):
        probe = registry.build(copy.deepcopy(cfg))
    from_mmpretrain = type(probe).__module__.startswith('mmpretrain')
    is_vit = any(k.startswith('patch_embed.') for k in probe.state_dict())
    if is_vit:
        family = 'mmseg_vit' if (kind == 'mmseg' and type(probe).__name__ == 'VisionTransformer'
                                 and not from_mmpretrain) else 'mmpretrain'
    else:
        family = 'resnet_mmpretrain' if (from_mmpretrain or kind == 'mmpretrain') \
            else 'resnet_mmseg'
    prefix = 'backbone.' if from_mmpretrain else ''
    if init_cfg is None:
        init_cfg = dict(type='Pretrained', checkpoint=None)
        if prefix:
            init_cfg['prefix'] = prefix

    def build(checkpoint: Optional[str]) -> torch.nn.Module:
        c = copy.deepcopy(cfg)
        if checkpoint is not None:
            c['init_cfg'] = dict(init_cfg, checkpoint=checkpoint)
        with _scope(kind):
            m = registry.build(c)
            if checkpoint is not None:
                m.init_weights()
        return m

    t = Target(kind=kind, family=family, prefix=prefix, cfg=cfg,
               description=f'{kind} {type(probe).__name__} ({description})',
               build=build, init_cfg=init_cfg)
    t._module = probe
    return t


def _timm_target(cfg: dict, description: str) -> Target:
    import timm.models.beit as tbeit
    import timm.models.resnet as tresnet
    import timm.models.vision_transformer as tvit
    cfg = dict(cfg)
    typ = cfg.pop('type')
    cls = dict(VisionTransformer=tvit.VisionTransformer, Beit=tbeit.Beit)
    if typ in cls:
        family = 'timm'

        def build(checkpoint):
            m = cls[typ](**cfg)
            if checkpoint is not None:
                m.load_state_dict(safe_load(checkpoint), strict=False)
            return m
    elif typ == 'ResNet':
        family = 'resnet_timm'
        block = tresnet.Bottleneck if cfg.pop('bottleneck') else tresnet.BasicBlock

        def build(checkpoint):
            m = tresnet.ResNet(block=block, **cfg)
            if checkpoint is not None:
                m.load_state_dict(safe_load(checkpoint), strict=False)
            return m
    else:
        raise ConversionError(f'unknown timm target type {typ}')
    return Target(kind='timm', family=family, prefix='', cfg=None,
                  description=f'timm {typ} ({description})', build=build)


def _preset_cfg(kind: str, spec: dict, img_size: Optional[int]) -> dict:
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


def build_target(kind: Optional[str], enhancer: dict, target_config: Optional[str] = None,
                 arch: str = 'auto', img_size: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 enhancer_cfg: Optional[dict] = None) -> tuple[Target, list[str]]:
    """A freshly built target backbone (+ notes for the report).

    Args:
        kind: 'mmpretrain' | 'mmseg' | 'timm'; with ``target_config`` it may be
            None (then the config's ``default_scope`` decides).
        enhancer: the enhancer state dict (mmpretrain names).
        target_config: an mmpretrain or mmseg config whose ``model.backbone``
            is the target (the config you will train with: recommended).
        arch: without a config: 'auto' (the enhancer's own architecture, read
            from its weights) or a name of :data:`ARCH_PRESETS`.
        img_size: without a config: the target's input size (e.g. 512 for
            ADE20K; default: the enhancer's).
    """
    notes = []
    if target_config is not None:
        from mmengine.config import Config
        if not osp.isfile(target_config):
            raise FileNotFoundError(f'target config {target_config} does not exist')
        cfg = Config.fromfile(target_config)
        scope = cfg.get('default_scope', 'mmpretrain')
        kind = kind or ('mmseg' if scope == 'mmseg' else 'mmpretrain')
        if kind == 'timm':
            raise ConversionError('--target timm takes --arch, not --target-config')
        if kind == 'mmseg' and scope != 'mmseg':
            raise ConversionError(f'{target_config} is not an mmseg config '
                                  f"(default_scope={scope!r})")
        model = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
        if 'backbone' not in model:
            raise ConversionError(f'{target_config}: model has no backbone')
        bb = copy.deepcopy(model['backbone'])
        init_cfg = bb.get('init_cfg')
        if isinstance(init_cfg, list):
            init_cfg = next((c for c in init_cfg if c.get('type') == 'Pretrained'), None)
        if init_cfg is not None and init_cfg.get('type') != 'Pretrained':
            init_cfg = None
        if init_cfg is None and model.get('pretrained'):
            init_cfg = dict(type='Pretrained', checkpoint=None)  # mmseg: segmentor-level
        if init_cfg is None:
            notes.append(f'{osp.basename(target_config)} has no Pretrained init_cfg '
                         'for its backbone: set one (or load_from) to use this file')
        target = _registry_target(kind, bb, osp.basename(target_config), init_cfg)
        if init_cfg is not None and init_cfg.get('prefix', '') != target.prefix:
            notes.append(f"the config's init_cfg prefix={init_cfg.get('prefix')!r} but "
                         f'this target needs {target.prefix!r}')
        return target, notes
    if kind not in ('mmpretrain', 'mmseg', 'timm'):
        raise ConversionError(f'unknown target {kind!r}: mmpretrain | mmseg | timm')
    if _is_vit(enhancer):
        spec = vit_spec(enhancer, enhancer_cfg, num_heads)
        if arch != 'auto':
            if arch not in ARCH_PRESETS or 'depth' in ARCH_PRESETS[arch]:
                raise ConversionError(f'--arch {arch} is not a ViT preset '
                                      f'({", ".join(ARCH_PRESETS)}, auto)')
            preset = dict(ARCH_PRESETS[arch])
            if spec['heads_from'] in ('relative position table', '--num-heads'):
                preset.pop('num_heads')  # what the weights say wins (mismatch shows)
            spec.update(preset)
        if not spec.get('num_heads'):
            raise ConversionError(
                'the number of attention heads is not in the weights (no relative '
                "position table) nor in the checkpoint's meta.cfg: pass --num-heads, "
                '--target-config or a ViT --arch preset (a wrong head count would '
                'load without error and compute another function)')
    elif _is_resnet(enhancer):
        spec = resnet_spec(enhancer)
        if arch != 'auto':
            if arch not in ARCH_PRESETS or 'depth' not in ARCH_PRESETS[arch]:
                raise ConversionError(f'--arch {arch} is not a ResNet preset')
            spec.update(ARCH_PRESETS[arch])
    else:
        raise ConversionError('the enhancer is neither an mmpretrain ViT nor a ResNet '
                              f'(first keys: {list(enhancer)[:5]})')
    cfg = _preset_cfg(kind, spec, img_size)
    desc = f'--arch {arch}' + (f', img_size {img_size}' if img_size else '')
    if kind == 'timm':
        return _timm_target(cfg, desc), notes
    return _registry_target(kind, cfg, desc), notes


# --------------------------------------------------------------------------
# conversion proper
# --------------------------------------------------------------------------
def _resize_pos_embed(pe: torch.Tensor, extra: int, dst_tokens: int) -> torch.Tensor:
    """Bicubic, align_corners=False: mmpretrain's ``resize_pos_embed`` and
    mmseg's ``resize_abs_pos_embed``/``resize_pos_embed``."""
    src_n, dst_n = pe.shape[1] - extra, dst_tokens - extra
    gs, gd = math.isqrt(src_n), math.isqrt(dst_n)
    if gs * gs != src_n or gd * gd != dst_n:
        raise ConversionError('position embeddings of non-square grids are not resized')
    tok = pe[:, extra:].reshape(1, gs, gs, -1).permute(0, 3, 1, 2).float()
    tok = F.interpolate(tok, size=(gd, gd), mode='bicubic', align_corners=False)
    tok = tok.permute(0, 2, 3, 1).flatten(1, 2).to(pe.dtype)
    return torch.cat([pe[:, :extra], tok], dim=1)


def _resize_rel_table(table: torch.Tensor, dst_rows: int) -> torch.Tensor:
    """mmpretrain's/mmseg's geometric-sequence resize (BEiT), 3 extra tokens
    kept (scipy's removed interp2d is replaced by cim_mm's torch shim)."""
    from mmpretrain.models.utils import resize_relative_position_bias_table

    from .compat import install_scipy_interp2d_shim
    install_scipy_interp2d_shim()
    src = 2 * _rel_grid(table.shape[0]) - 1
    dst = 2 * _rel_grid(dst_rows) - 1
    new = resize_relative_position_bias_table(src, dst, table[:-3].float(), table.shape[1])
    return torch.cat([new.to(table.dtype), table[-3:]], dim=0)


def _zero(t: torch.Tensor) -> bool:
    return not bool(t.abs().sum())


def _convert_vit(src: dict, template: dict, family: str,
                 report: ConversionReport) -> OrderedDict:
    C, unknown_src = vit_to_canonical(src, 'mmpretrain')
    report.unexpected.extend(unknown_src)
    names = {canonical_key(k, 'mmpretrain'): k for k in src}

    def _source_name(c, _src=None):
        i, what = _block(c)
        if what in ('q_bias', 'k_bias', 'v_bias') and f'{i}.qkv.bias' in names:
            return names[f'{i}.qkv.bias'] + f'[{what[0]}]'
        return names.get(c, c)

    T, unknown_tgt = vit_to_canonical(template, family)
    fam_of = {}  # canonical -> target key
    for k in template:
        c = canonical_key(k, family)
        if c is not None:
            fam_of[c] = k
    for k in unknown_tgt:
        report.missing.append(k)

    # split a fused qkv bias into q/k/v (canonical)
    for c in [c for c in C if c.endswith('.qkv.bias')]:
        i = _block(c)[0]
        C[f'{i}.q_bias'], C[f'{i}.k_bias'], C[f'{i}.v_bias'] = C.pop(c).chunk(3)
    # fold layer scale into the projection before it where the target has none
    for c in [c for c in C if _block(c)[1] in ('ls1', 'ls2')]:
        i, what = _block(c)
        if c in T:
            continue
        lin = f'{i}.proj' if what == 'ls1' else f'{i}.fc2'
        if f'{lin}.weight' not in C or f'{lin}.weight' not in T:
            continue
        ls = C.pop(c)
        C[f'{lin}.weight'] = C[f'{lin}.weight'] * ls[:, None]
        if f'{lin}.bias' in C:
            C[f'{lin}.bias'] = C[f'{lin}.bias'] * ls
        report.folded.append((c, lin))

    out = OrderedDict()
    used = set()

    def take(c):
        used.add(c)
        return C[c]

    for c, tk in fam_of.items():
        tv = template[tk]
        i, what = _block(c)
        val, how = None, None
        if _is_derived(c):
            out[tk] = tv.clone()
            report.derived.append(tk)
            continue
        if what == 'qkv.bias':
            parts, synth = [], []
            for n in ('q_bias', 'k_bias', 'v_bias'):
                if f'{i}.{n}' in C:
                    parts.append(take(f'{i}.{n}'))
                else:
                    parts.append(torch.zeros(tv.shape[0] // 3, dtype=tv.dtype))
                    synth.append(n[0])
            val = torch.cat(parts)
            if synth:
                how = f'{"/".join(synth)} bias = 0'
        elif c in C:
            val = take(c)
        elif what in ('q_bias', 'v_bias'):
            val, how = torch.zeros_like(tv), 'bias = 0'
        elif what in ('ls1', 'ls2'):
            val, how = torch.ones_like(tv), 'layer scale = 1'
        elif what == 'rel':
            if 'shared_rel' in C:
                val, how = C['shared_rel'], 'the shared relative position bias'
                used.add('shared_rel')
            elif not any(_block(k)[1] == 'rel' for k in C):
                val, how = torch.zeros_like(tv), 'relative position bias = 0'
        elif c == 'shared_rel':
            rels = [C[k] for k in C if _block(k)[1] == 'rel']
            if not rels:
                val, how = torch.zeros_like(tv), 'relative position bias = 0'
            elif all(torch.equal(r, rels[0]) for r in rels):
                val, how = rels[0], 'the (identical) per-layer tables'
                used.update(k for k in C if _block(k)[1] == 'rel')
        elif c == 'pos_embed':
            val, how = torch.zeros_like(tv), 'absolute position embedding = 0'
        elif c == 'patch.bias':
            val, how = torch.zeros_like(tv), 'patch embedding bias = 0'
        elif c in _NEW_BY_DESIGN or c.startswith('head.'):
            why = _NEW_BY_DESIGN.get(c, 'classifier head')
            report.new_by_design.append((tk, why))
            continue
        if val is None:
            report.missing.append(tk)
            continue
        if tuple(val.shape) != tuple(tv.shape):
            src_shape = tuple(val.shape)
            try:
                if c == 'pos_embed' and val.shape[-1] == tv.shape[-1]:
                    extra = 1 if 'cls_token' in C else 0
                    val = _resize_pos_embed(val, extra, tv.shape[1])
                    report.resized.append((tk, src_shape, tuple(tv.shape), 'bicubic'))
                elif (what == 'rel' or c == 'shared_rel') and val.shape[1] == tv.shape[1]:
                    val = _resize_rel_table(val, tv.shape[0])
                    report.resized.append((tk, src_shape, tuple(tv.shape),
                                           'BEiT geometric interpolation'))
            except ConversionError as err:
                report.notes.append(f'{tk}: {err}')
            if tuple(val.shape) != tuple(tv.shape):
                report.shape_mismatch.append((tk, src_shape, tuple(tv.shape)))
                continue
        out[tk] = val.detach().clone().contiguous()
        if how:
            report.synthesized.append((tk, how))
        else:
            report.loaded.append(tk)
            report.renamed += tk != _source_name(c, src)

    target_blocks = {_block(c)[0] for c in T if _block(c)[0] is not None}
    for c in C:
        if c in used:
            continue
        i, what = _block(c)
        v = C[c]
        if _is_derived(c):
            continue
        if i is not None and i not in target_blocks:  # a block the target lacks
            report.unexpected.append(_source_name(c, src))
        elif what == 'k_bias':
            report.dropped_exact.append(
                (c, 'key bias: the same logit for every key of a query, cancels in '
                    'the softmax'))
        elif what in ('rel', 'q_bias', 'v_bias', 'ls1', 'ls2') or c in (
                'shared_rel', 'pos_embed', 'patch.bias'):
            if what in ('ls1', 'ls2') and bool((v == 1).all()):
                report.dropped_exact.append((c, 'layer scale of ones'))
            elif _zero(v):
                report.dropped_exact.append((c, 'all zero'))
            else:
                report.unexpected.append(_source_name(c, src))
        elif c.startswith('final_norm'):
            report.dropped_by_design.append(
                (_source_name(c, src), 'enhancer final norm: the target has none '
                 '(BEiT/MAE-style fine-tuning pools, then a new pooling norm)'))
        else:
            report.unexpected.append(_source_name(c, src))
    return out


def _resnet_canonical(key: str, family: str) -> Optional[str]:
    if family == 'resnet_mmseg':
        m = re.match(r'^stem\.(\d+)\.(.+)$', key)
        if m:
            j, r = divmod(int(m.group(1)), 3)
            if r == 2:
                return None
            return f'stem.{j}.{"conv" if r == 0 else "bn"}.{m.group(2)}'
    if family == 'resnet_timm' and key.startswith('fc.'):
        return key
    return key


def _convert_resnet(src: dict, template: dict, family: str,
                    report: ConversionReport) -> OrderedDict:
    out, used = OrderedDict(), set()
    for tk, tv in template.items():
        c = _resnet_canonical(tk, family)
        if c is None:
            report.missing.append(tk)
            continue
        if c in _NEW_BY_DESIGN:
            report.new_by_design.append((tk, _NEW_BY_DESIGN[c]))
            continue
        if c not in src:
            report.missing.append(tk)
            continue
        used.add(c)
        v = src[c]
        if tuple(v.shape) != tuple(tv.shape):
            report.shape_mismatch.append((tk, tuple(v.shape), tuple(tv.shape)))
            continue
        if tk != c:
            report.renamed += 1
        out[tk] = v.detach().clone().contiguous()
        report.loaded.append(tk)
    report.unexpected.extend(k for k in src if k not in used)
    return out


def convert_state_dict(enhancer: dict, target: Target,
                       report: Optional[ConversionReport] = None
                       ) -> tuple[OrderedDict, ConversionReport]:
    """Enhancer state dict (mmpretrain names) -> the target's backbone-relative
    state dict (no prefix), checked against ``target.module``."""
    report = report or ConversionReport()
    template = target.module.state_dict()
    if _is_vit(enhancer):
        report.source_layout = report.source_layout or 'mmpretrain ViT'
        if not target.family.startswith('resnet') and target.family in _FAMILIES:
            out = _convert_vit(enhancer, template, target.family, report)
        else:
            raise ConversionError(f'a ViT enhancer can not become {target.description}')
    elif _is_resnet(enhancer):
        report.source_layout = report.source_layout or 'mmpretrain ResNet'
        if not target.family.startswith('resnet'):
            raise ConversionError(f'a ResNet enhancer can not become {target.description}')
        out = _convert_resnet(enhancer, template, target.family, report)
    else:
        raise ConversionError('the enhancer is neither an mmpretrain ViT nor a ResNet')
    report.target = target.description
    report.target_layout = _FAMILY_NAMES.get(target.family, target.family)
    report.prefix = target.prefix
    return out, report


def _verify(path: str, written: dict, target: Target, report: ConversionReport) -> None:
    """Load ``path`` through the target's own loading path and compare."""
    import logging

    from mmengine.logging import MMLogger

    # mmengine's init dump and its "missing keys: ln2..." warning (the keys the
    # report lists as new by design) would only confuse the report
    loggers = {id(lg): lg for lg in (MMLogger.get_current_instance(),
                                     MMLogger.get_instance('mmengine'))}
    levels = {k: lg.level for k, lg in loggers.items()}
    for lg in loggers.values():
        lg.setLevel(logging.ERROR)
    try:
        module = target.build(path)
    except Exception as err:  # noqa: BLE001  (reported, not raised)
        report.verify_failures.append(f'building/loading the target failed: {err!r}')
        return
    finally:
        for k, lg in loggers.items():
            lg.setLevel(levels[k])
    got = module.state_dict()
    bad = []
    for k, v in written.items():
        k0 = k[len(target.prefix):] if target.prefix and k.startswith(target.prefix) else k
        if k0 not in got:
            bad.append(f'{k} (no such key after loading)')
        elif got[k0].shape != v.shape or not torch.equal(got[k0].to(v.dtype), v):
            bad.append(f'{k} (not loaded: differs from the file)')
    if bad:
        report.verify_failures.append(
            f'{len(bad)}/{len(written)} tensors did not load: {_short(bad, 6)}')
    else:
        how = ('init_weights() with ' + repr(dict(target.init_cfg, checkpoint='<out>'))
               if target.init_cfg else 'load_state_dict(strict=False)')
        report.verified = (f'{len(written)}/{len(written)} tensors equal after loading '
                           f'the file through {type(module).__name__}.{how}')


def convert_checkpoint(src: str, dst: str, target: Optional[str] = 'mmpretrain',
                       target_config: Optional[str] = None, arch: str = 'auto',
                       img_size: Optional[int] = None, num_heads: Optional[int] = None,
                       allow_mismatch: bool = False, verify: bool = True,
                       log: Optional[Callable[[str], None]] = print) -> ConversionReport:
    """Convert a CIM checkpoint file; write ``dst`` atomically.

    Raises:
        ConversionError: on any missing / unexpected / shape-mismatched key or a
            failed load-back check, unless ``allow_mismatch`` (then the file is
            written with what matched and the report says what did not). On a
            mismatch without ``allow_mismatch`` nothing is written.
    """
    ckpt = safe_load(src)
    if not isinstance(ckpt, dict):
        raise ConversionError(f'{src} does not hold a dict')
    sd = ckpt.get('state_dict', ckpt)
    enhancer, dropped = split_cim_state_dict(sd)
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else None
    enh_cfg = enhancer_cfg_from_meta(meta)
    tgt, notes = build_target(target, enhancer, target_config, arch, img_size,
                              num_heads, enh_cfg)
    report = ConversionReport(source=src, dropped_components=dropped)
    if enh_cfg and enh_cfg.get('type'):
        report.source_layout = f"mmpretrain {enh_cfg['type']}"
    report.notes.extend(notes)
    out, report = convert_state_dict(enhancer, tgt, report)
    if not report.ok and not allow_mismatch:
        if log:
            log(report.format())
        raise ConversionError(
            f'{src} does not convert cleanly into {tgt.description}: '
            f'{len(report.missing)} missing, {len(report.unexpected)} unexpected, '
            f'{len(report.shape_mismatch)} shape-mismatched keys (see the report; '
            'nothing was written; --allow-mismatch writes what matched)')
    written = OrderedDict((tgt.prefix + k, v) for k, v in out.items())
    file_meta = dict(cim_mm_conversion=report.summary())
    for key in ('epoch', 'iter', 'seed', 'experiment_name', 'time', 'mmengine_version'):
        if meta and isinstance(meta.get(key), (int, float, str)):
            file_meta[f'source_{key}'] = meta[key]
    obj = written if tgt.kind == 'timm' else {'state_dict': written, 'meta': file_meta}
    atomic_torch_save(obj, dst)
    if verify:
        _verify(dst, written, tgt, report)
        report.summary()
    if log:
        log(report.format())
    if report.verify_failures and not allow_mismatch:
        raise ConversionError(f'{dst} was written but does not load into '
                              f'{tgt.description} (see the report)')
    return report
