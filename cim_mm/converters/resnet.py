"""ResNet enhancer -> an mmpretrain / mmseg / timm ResNet, by name.

mmpretrain and timm ResNets share their names (``conv1``, ``bn1``,
``layerN.M.convK``, ``downsample.0/1``; timm's classifier is ``fc``). mmseg's
deep stem (``ResNetV1c``/``V1d``) is one ``nn.Sequential`` of conv, BN, ReLU
triples where mmpretrain has ``stem.J.conv`` / ``stem.J.bn``; nothing else
differs. Every tensor is copied as is: a ResNet conversion is renames only.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Optional

from .keys import NEW_BY_DESIGN
from .report import ConversionReport

__all__ = ['convert_resnet']


def _resnet_canonical(key: str, family: str) -> Optional[str]:
    """The mmpretrain name of a target key (None: a ReLU slot of mmseg's stem)."""
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


def convert_resnet(src: dict, template: dict, family: str,
                   report: ConversionReport) -> OrderedDict:
    """``src`` (mmpretrain names) renamed to ``template``'s keys; every problem
    goes to ``report``. Shapes must be equal: nothing is resized."""
    out, used = OrderedDict(), set()
    for tk, tv in template.items():
        c = _resnet_canonical(tk, family)
        if c is None:
            report.missing.append(tk)
            continue
        if c in NEW_BY_DESIGN:
            report.new_by_design.append((tk, NEW_BY_DESIGN[c]))
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
