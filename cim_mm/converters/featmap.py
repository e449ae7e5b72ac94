"""Any other feature-map enhancer (ConvNeXt, Swin, ...) -> the same class downstream.

A ConvNeXt or Swin enhancer keeps mmpretrain's names, and its downstream backbone
is the same class (mmpretrain ``ConvNeXt`` / ``SwinTransformer``; ``mmpretrain.ConvNeXt``
in mmseg; mmseg's own ``SwinTransformer``, whose names are mmpretrain's): every
tensor is copied as is, under the same name, with the same shape. The one
difference is by design: the output norms ``norm{i}`` exist for the stages in a
model's ``out_indices`` (CIM's enhancer outputs the two levels its neck takes, a
classifier the last stage, UperNet all four), so

* a target output norm the enhancer has is loaded;
* a target output norm the enhancer lacks starts fresh (new by design);
* an enhancer output norm the target lacks is dropped (dropped by design).

Anything else missing, unexpected or of another shape is a mismatch.
"""
from __future__ import annotations

import re
from collections import OrderedDict

from .report import ConversionReport

__all__ = ['OUT_NORM', 'convert_featmap']

#: a stage output norm of mmpretrain's / mmseg's hierarchical backbones
OUT_NORM = re.compile(r'^norm\d+\.')
_NEW = "the target's output norm of a stage the enhancer did not output (out_indices)"
_DROPPED = "the enhancer's output norm of a stage the target does not output (out_indices)"


def convert_featmap(src: dict, template: dict, report: ConversionReport) -> OrderedDict:
    """``src`` copied onto ``template``'s keys (same names, same shapes); every
    decision and problem goes to ``report``."""
    out = OrderedDict()
    for key, tv in template.items():
        if key not in src:
            if OUT_NORM.match(key):
                report.new_by_design.append((key, _NEW))
            else:
                report.missing.append(key)
            continue
        v = src[key]
        if tuple(v.shape) != tuple(tv.shape):
            report.shape_mismatch.append((key, tuple(v.shape), tuple(tv.shape)))
            continue
        out[key] = v.detach().clone().contiguous()
        report.loaded.append(key)
    for key in src:
        if key in template:
            continue
        if OUT_NORM.match(key):
            report.dropped_by_design.append((key, _DROPPED))
        else:
            report.unexpected.append(key)
    return out
