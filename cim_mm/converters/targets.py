"""The target: a freshly built backbone that a converted file must fit.

A :class:`Target` knows its toolbox (``kind``), its key family, the prefix its
loading path expects, and how to build it with a converted file loaded the way a
training run will load it (its ``Pretrained`` ``init_cfg``, or timm's
``load_state_dict``). :func:`build_target` makes one from the config a user will
train with (``--target-config``: recommended) or from the enhancer's own
architecture / a named preset.
"""
from __future__ import annotations

import copy
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Optional

import mmpretrain.models  # noqa: F401  (registers mmpretrain's models)
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from ..utils.safe_checkpoint import safe_load
from ..utils.seg_extra import load_config, require_seg_stack
from .presets import ARCH_PRESETS, preset_cfg
from .report import ConversionError
from .source import is_resnet, is_vit, resnet_spec, vit_spec

__all__ = ['Target', 'registry_target', 'timm_target', 'build_target']


@dataclass
class Target:
    """A target backbone: its toolbox, key family, prefix and how it is built
    (with a checkpoint: loaded through its own loading path)."""
    kind: str  # mmpretrain | mmseg | timm
    family: str  # key family (see keys.FAMILIES) or resnet_<kind>
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
    return DefaultScope.overwrite_default_scope(scope)


def _registry(kind: str):
    if kind == 'mmseg':
        # mmseg only for mmseg targets: it needs mmcv's compiled ops (the seg extra)
        require_seg_stack('an mmseg target')
        import mmseg.models  # noqa: F401  (registers mmseg's models)
        from mmseg.registry import MODELS
    else:
        MODELS = PRETRAIN_MODELS
    return MODELS


def registry_target(kind: str, cfg: dict, description: str,
                    init_cfg: Optional[dict] = None) -> Target:
    """An mmpretrain / mmseg backbone config as a :class:`Target`; its key family
    and prefix follow from the class it builds (an ``mmpretrain.*`` backbone in an
    mmseg config keeps the mmpretrain layout and ``backbone.`` prefix)."""
    cfg = copy.deepcopy(dict(cfg))
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    registry = _registry(kind)
    with _scope(kind):
        probe = registry.build(copy.deepcopy(cfg))
    # mmpretrain's classes and ours built on them (e.g. SDPABEiTViT): mmpretrain keys
    from_mmpretrain = any(c.__module__.startswith('mmpretrain') for c in type(probe).__mro__)
    keys = probe.state_dict()
    if is_vit(keys):
        family = 'mmseg_vit' if (kind == 'mmseg' and type(probe).__name__ == 'VisionTransformer'
                                 and not from_mmpretrain) else 'mmpretrain'
    elif is_resnet(keys):
        family = 'resnet_mmpretrain' if (from_mmpretrain or kind == 'mmpretrain') \
            else 'resnet_mmseg'
    else:  # ConvNeXt, Swin, ...: the enhancer's own names (mmseg's Swin has them too)
        family = 'featmap'
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


def timm_target(cfg: dict, description: str) -> Target:
    """A timm ``VisionTransformer`` / ``Beit`` / ``ResNet`` (``cfg['type']``) as a
    :class:`Target` (plain state dict, loaded with ``load_state_dict``)."""
    # timm only for timm targets (an optional dependency of conversion)
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
            from its weights) or a name of :data:`ARCH_PRESETS` (ViT and ResNet
            enhancers; any other needs ``target_config``).
        img_size: without a config: the target's input size (e.g. 512 for
            ADE20K; default: the enhancer's).
    """
    notes = []
    if target_config is not None:
        if not osp.isfile(target_config):
            raise FileNotFoundError(f'target config {target_config} does not exist')
        cfg = load_config(target_config)
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
        target = registry_target(kind, bb, osp.basename(target_config), init_cfg)
        if init_cfg is not None and init_cfg.get('prefix', '') != target.prefix:
            notes.append(f"the config's init_cfg prefix={init_cfg.get('prefix')!r} but "
                         f'this target needs {target.prefix!r}')
        return target, notes
    if kind not in ('mmpretrain', 'mmseg', 'timm'):
        raise ConversionError(f'unknown target {kind!r}: mmpretrain | mmseg | timm')
    if is_vit(enhancer):
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
    elif is_resnet(enhancer):
        spec = resnet_spec(enhancer)
        if arch != 'auto':
            if arch not in ARCH_PRESETS or 'depth' not in ARCH_PRESETS[arch]:
                raise ConversionError(f'--arch {arch} is not a ResNet preset')
            spec.update(ARCH_PRESETS[arch])
    else:
        raise ConversionError(
            'the enhancer is neither a ViT nor a ResNet (a ConvNeXt, a Swin, ...; first keys: '
            f'{list(enhancer)[:3]}): pass --target-config, the mmpretrain / mmseg config you '
            'will train with (configs/cim/benchmarks/ has them for ConvNeXt and Swin)')
    cfg = preset_cfg(kind, spec, img_size)
    desc = f'--arch {arch}' + (f', img_size {img_size}' if img_size else '')
    if kind == 'timm':
        return timm_target(cfg, desc), notes
    return registry_target(kind, cfg, desc), notes
