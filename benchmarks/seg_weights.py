"""A pre-trained benchmark backbone -> the weights file of a seg config, checked.

The tracks save ``<run>/backbone.pth``: the bare state dict of the pre-trained
backbone (mmpretrain names, no prefix). :func:`convert_backbone` hands it to
:func:`cim_mm.converters.convert_checkpoint` as the CIM checkpoint layout the
converter reads (``backbone.``-prefixed keys, and the evaluation backbone's
config in ``meta['cfg']`` so the architecture facts no tensor shows, the head
count first, are checked against the seg config's backbone). The converter
renames, resizes the position tables to the scenes' grid, writes the file and
loads it back through the seg config's own loading path; any mismatch raises.
"""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from collections import OrderedDict
from typing import Sequence, Union

import torch

from cim_mm.converters import ConversionReport, convert_checkpoint
from cim_mm.converters.architecture import describes
from cim_mm.utils import atomic_torch_save, safe_load

#: keys of pre-training backbones that no evaluation backbone has (the masked
#: ViTs' mask token: benchmarks.evaluate.build_eval_backbone ignores it too)
PRETRAIN_ONLY = ('mask_token', )


def as_cim_checkpoint(state_dict: dict, backbone_cfg: dict) -> dict:
    """``state_dict`` (backbone-relative) in the layout of a CIM checkpoint:
    ``backbone.*`` keys, ``meta['cfg']`` = ``model = {'backbone': backbone_cfg}``
    (a literal, the form the converter parses without executing it)."""
    sd = OrderedDict(('backbone.' + k, v) for k, v in state_dict.items()
                     if k.split('.')[0] not in PRETRAIN_ONLY)
    cfg_text = f'model = {dict(backbone=backbone_cfg)!r}\n'
    return {'state_dict': sd, 'meta': dict(cfg=cfg_text)}


def describing_cfg(state_dict: dict, cfgs: Sequence[dict]) -> dict:
    """The first of ``cfgs`` (backbone configs) that builds exactly the keys and
    shapes ``state_dict`` keeps in a CIM checkpoint (less :data:`PRETRAIN_ONLY`),
    else the first. A track saves its pre-training backbone: a hierarchical one
    keeps the output norms of every stage it trained (``norm1.``, ``norm2.``),
    which its evaluation backbone does not build; a ViT saves the evaluation
    backbone's keys and a mask token."""
    kept = {k: v for k, v in state_dict.items() if k.split('.')[0] not in PRETRAIN_ONLY}
    return next((c for c in cfgs if describes(c, kept)), cfgs[0])


def convert_backbone(backbone_pth: str, backbone_cfg: Union[dict, Sequence[dict]],
                     target_config: str, dst: str) -> ConversionReport:
    """Convert ``backbone_pth`` (a track's ``backbone.pth``, built as
    ``backbone_cfg``, or as the first of several configs that describes it:
    :func:`describing_cfg`) for the seg config ``target_config``; write ``dst``.

    Raises:
        cim_mm.converters.ConversionError: anything that does not convert
            exactly (missing / unexpected / mis-shaped keys, another head count,
            a failed load-back); nothing is written then.
    """
    state = safe_load(backbone_pth)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f'{backbone_pth} is not a backbone state dict')
    if not isinstance(backbone_cfg, dict):
        backbone_cfg = describing_cfg(state, list(backbone_cfg))
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, src = tempfile.mkstemp(prefix='.cim_layout.', suffix='.pth', dir=folder)
    os.close(fd)
    try:
        atomic_torch_save(as_cim_checkpoint(state, backbone_cfg), src)
        return convert_checkpoint(src, dst, target=None, target_config=target_config,
                                  log=None)
    finally:
        os.remove(src)
