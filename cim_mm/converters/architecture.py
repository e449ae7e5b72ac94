"""Architecture facts that no tensor shape shows, checked source vs target.

A ViT's head count is in no tensor shape (``qkv`` is ``[3C, C]`` for any head
count), nor is a ResNet bottleneck's stride placement (``pytorch`` vs ``caffe``
style) or the activation: a target that differs loads every tensor without an
error and computes another function. The checkpoint's ``meta['cfg']`` holds the
enhancer's config; the enhancer is rebuilt from it (literal values only, on the
meta device: no memory, no initialisation), checked to describe the weights,
and its facts are compared with the target's:

* mismatch (``RESULT: MISMATCH``): ``num_heads``, ``depth``, ``embed_dims``,
  ``patch_size``, ``activation``, ``stride_in`` (the bottleneck conv that
  strides: ``conv2`` = pytorch style, ``conv1`` = caffe style);
* note only: ``norm_eps`` (1e-5 vs 1e-6 changes a LayerNorm's output by a few
  parts per million).

Without a usable ``meta['cfg']`` the ViT facts the weights and ``--num-heads``
give (see :func:`.source.vit_spec`) are compared instead.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Optional

import torch
import mmpretrain.models  # noqa: F401  (registers mmpretrain's backbones)
import torch.nn as nn
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from .report import ConversionReport
from .source import is_vit, vit_spec

__all__ = ['module_facts', 'source_facts', 'check_architecture', 'describes']

#: facts whose difference is a mismatch, in report order
CHECKED = ('num_heads', 'depth', 'embed_dims', 'patch_size', 'activation', 'stride_in')
#: facts whose difference is only noted
NOTED = ('norm_eps',)
_IN_BLOCK = re.compile(r'(^|\.)(layers|blocks)\.\d+\.')
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


def _one(values: list) -> Any:
    """A single value when all are equal, else the tuple of all."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def module_facts(module: nn.Module) -> dict:
    """The non-shape architecture facts of a ViT or ResNet backbone module.

    Works on mmpretrain, mmseg and timm backbones alike: it reads the modules
    (attention modules' ``num_heads``, activation and norm modules, the
    bottlenecks' ``conv1``/``conv2`` strides), not the class or key names.
    """
    named = list(module.named_modules())
    facts: dict = {}
    # attention: the innermost module with a num_heads inside a block
    attn = [(n, m) for n, m in named
            if isinstance(getattr(m, 'num_heads', None), int) and _IN_BLOCK.search(n + '.')]
    attn = [(n, m) for n, m in attn if not any(o.startswith(n + '.') for o, _ in attn)]
    if attn:
        facts['num_heads'] = _one([m.num_heads for _, m in attn])
        facts['depth'] = len(attn)
        patch = next(m for _, m in named if isinstance(m, nn.Conv2d))  # the patch embedding
        facts['embed_dims'] = patch.out_channels
        facts['patch_size'] = _one(list(patch.kernel_size))
    acts = sorted({type(m).__name__ for _, m in named
                   if type(m).__module__ == 'torch.nn.modules.activation'
                   and not isinstance(m, (nn.MultiheadAttention, nn.Softmax))})
    if acts:
        facts['activation'] = '/'.join(acts)
    strided = sorted({c for _, m in named
                      if all(isinstance(getattr(m, c, None), nn.Conv2d)
                             for c in ('conv1', 'conv2', 'conv3'))  # a bottleneck
                      for c in ('conv1', 'conv2') if max(getattr(m, c).stride) > 1})
    if strided:
        facts['stride_in'] = '/'.join(strided)
    eps = sorted({float(m.eps) for _, m in named if isinstance(m, _NORMS)})
    if eps:
        facts['norm_eps'] = _one(eps)
    return facts


def _build_from_cfg(cfg: dict) -> nn.Module:
    """The enhancer of ``cfg`` (mmpretrain registry), on the meta device when it
    can be built there (no memory, no init), else on the CPU."""
    cfg = copy.deepcopy(dict(cfg))
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        try:
            with torch.device('meta'):
                return MODELS.build(copy.deepcopy(cfg))
        except Exception:  # noqa: BLE001  (some constructors compute on tensors)
            return MODELS.build(cfg)


def _shapes(state: dict) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def describes(cfg: dict, weights: dict[str, torch.Tensor]) -> bool:
    """Whether the backbone ``cfg`` builds (mmpretrain registry, literal values)
    has exactly the keys and shapes of ``weights`` (backbone-relative): the
    condition under which :func:`source_facts` takes its facts from ``cfg``."""
    try:
        built = _build_from_cfg(cfg)
    except Exception:  # noqa: BLE001  (a config that does not build describes nothing)
        return False
    return _shapes(built.state_dict()) == _shapes(weights)


def source_facts(enhancer: dict, enhancer_cfg: Optional[dict],
                 num_heads: Optional[int] = None) -> tuple[dict, str, list[str]]:
    """The enhancer's facts, where they come from, and notes for the report.

    From ``enhancer_cfg`` (the checkpoint's ``meta['cfg']``) when the module it
    builds has exactly the checkpoint's keys and shapes; else, for a ViT, from
    the weights (+ ``num_heads``: ``--num-heads``).
    """
    notes = []
    if enhancer_cfg and enhancer_cfg.get('type'):
        try:
            built = _build_from_cfg(enhancer_cfg)
        except Exception as err:  # noqa: BLE001  (reported, then the weights decide)
            notes.append(f"the checkpoint's meta.cfg model.backbone does not build "
                         f'({type(err).__name__}: {str(err)[:120]}): architecture facts '
                         'not in the weights (head count) are not checked against it')
        else:
            if _shapes(built.state_dict()) == _shapes(enhancer):
                return module_facts(built), 'checkpoint meta.cfg', notes
            notes.append("the checkpoint's meta.cfg model.backbone does not describe its "
                         'weights (other keys or shapes): its architecture facts are '
                         'not used')
    if not is_vit(enhancer):
        return {}, 'the weights', notes
    spec = vit_spec(enhancer, None, num_heads)
    facts = dict(depth=spec['num_layers'], embed_dims=spec['embed_dims'],
                 patch_size=spec['patch_size'])
    if spec.get('num_heads'):
        facts['num_heads'] = spec['num_heads']
    return facts, spec['heads_from'] or 'the weights', notes


def check_architecture(src_facts: dict, origin: str, target: nn.Module,
                       report: ConversionReport) -> None:
    """Add each fact that differs between the source and ``target`` to
    ``report.arch_mismatch`` (or, for :data:`NOTED` facts, to its notes)."""
    tgt = module_facts(target)
    both = [f for f in (*CHECKED, *NOTED) if f in src_facts and f in tgt]
    if both:
        report.arch_checked = (', '.join(f'{f} {src_facts[f]}' for f in both)
                               + f' in the source ({origin}), compared with the target')
    for fact in both:
        if src_facts[fact] == tgt[fact]:
            continue
        if fact in CHECKED:
            report.arch_mismatch.append((fact, src_facts[fact], tgt[fact], origin))
        else:
            report.notes.append(f'{fact}: source {src_facts[fact]} ({origin}), target '
                                f'{tgt[fact]}')
