"""ViT enhancer -> a ViT target of any key family, exactly.

Renames go through canonical names (:mod:`.keys`). Besides renames, only
transforms that keep the network's function exactly (checked by forward
equivalence in ``tests/converters/test_downstream.py``):

* synthesised where one value leaves the function unchanged: layer scale = 1, a
  missing (key/query/value/patch) bias = 0, relative position bias = 0, absolute
  position embedding = 0; a shared relative position table copied to every block;
* dropped where that is exact: the key bias (the same logit for every key of a
  query cancels in the softmax), all-zero tensors, layer scales of ones; layer
  scale folded into the projection before it (``proj`` / ``fc2``) when the
  target has none;
* position embeddings / relative position tables resized to the target's grid
  as mmpretrain / mmseg would (bicubic / BEiT geometric interpolation);
* by design: the enhancer's final norm is dropped when the target has none, the
  target's pooling norm and classifier head start fresh.

Anything else is reported as missing, unexpected or shape-mismatched.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import resize_relative_position_bias_table

from ..compat.interp2d import shim_installed as interp2d_shim_installed
from .keys import NEW_BY_DESIGN, block, canonical_key, is_derived, vit_to_canonical
from .report import ConversionError, ConversionReport
from .source import rel_grid

__all__ = ['convert_vit']


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
    kept (SciPy's removed interp2d replaced by cim_mm's torch shim for the call)."""
    src = 2 * rel_grid(table.shape[0]) - 1
    dst = 2 * rel_grid(dst_rows) - 1
    with interp2d_shim_installed():
        new = resize_relative_position_bias_table(src, dst, table[:-3].float(),
                                                  table.shape[1])
    return torch.cat([new.to(table.dtype), table[-3:]], dim=0)


def _zero(t: torch.Tensor) -> bool:
    return not bool(t.abs().sum())


def convert_vit(src: dict, template: dict, family: str,
                report: ConversionReport) -> OrderedDict:
    """``src`` (mmpretrain names) as ``template``'s keys (key family ``family``),
    with the exact transforms above; every decision and problem goes to ``report``."""
    C, unknown_src = vit_to_canonical(src, 'mmpretrain')
    report.unexpected.extend(unknown_src)
    names = {canonical_key(k, 'mmpretrain'): k for k in src}

    def _source_name(c, _src=None):
        i, what = block(c)
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
        i = block(c)[0]
        C[f'{i}.q_bias'], C[f'{i}.k_bias'], C[f'{i}.v_bias'] = C.pop(c).chunk(3)
    # fold layer scale into the projection before it where the target has none
    for c in [c for c in C if block(c)[1] in ('ls1', 'ls2')]:
        i, what = block(c)
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
        i, what = block(c)
        val, how = None, None
        if is_derived(c):
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
            elif not any(block(k)[1] == 'rel' for k in C):
                val, how = torch.zeros_like(tv), 'relative position bias = 0'
        elif c == 'shared_rel':
            rels = [C[k] for k in C if block(k)[1] == 'rel']
            if not rels:
                val, how = torch.zeros_like(tv), 'relative position bias = 0'
            elif all(torch.equal(r, rels[0]) for r in rels):
                val, how = rels[0], 'the (identical) per-layer tables'
                used.update(k for k in C if block(k)[1] == 'rel')
        elif c == 'pos_embed':
            val, how = torch.zeros_like(tv), 'absolute position embedding = 0'
        elif c == 'patch.bias':
            val, how = torch.zeros_like(tv), 'patch embedding bias = 0'
        elif c in NEW_BY_DESIGN or c.startswith('head.'):
            why = NEW_BY_DESIGN.get(c, 'classifier head')
            if c.startswith('pool_norm.'):
                # written at LayerNorm's initial values (weight 1, bias 0): the norm
                # starts fresh as designed, and the target's loader sees every
                # backbone key (no "missing keys" warning after a clean report)
                out[tk] = (torch.ones_like(tv) if c.endswith('weight')
                           else torch.zeros_like(tv))
                why += ", written at LayerNorm's initial 1 / 0"
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

    target_blocks = {block(c)[0] for c in T if block(c)[0] is not None}
    for c in C:
        if c in used:
            continue
        i, what = block(c)
        v = C[c]
        if is_derived(c):
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
