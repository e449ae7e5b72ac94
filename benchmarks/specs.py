"""The methods of every track, by name: ``build_spec('mae', scale)``.

The ViT track's methods live in :mod:`.specs_vit`, the ResNet track's in
:mod:`.specs_resnet`, the ConvNeXt and Swin tracks' in :mod:`.specs_featmap`,
the CIM ablations (``<method>@<knob>``) in :mod:`.ablations`; this module only
dispatches between them.
"""
from __future__ import annotations

from typing import Optional

from .ablations import ablation_label, build_ablation_spec
from .scales import Scale
from .spec_parts import MethodSpec
from .specs_featmap import FEATMAP_BUILDERS, FEATMAP_LABELS, FEATMAP_METHODS
from .specs_resnet import RESNET_BUILDERS, RESNET_LABELS, RESNET_METHODS
from .specs_vit import LABELS, METHODS, VIT_BUILDERS

__all__ = ['METHODS', 'LABELS', 'MethodSpec', 'track_methods', 'label_of',
           'parse_methods', 'build_spec']


def track_methods(track: str = 'vit') -> tuple:
    """The methods of a track, in table order."""
    if track in FEATMAP_METHODS:
        return FEATMAP_METHODS[track]
    return RESNET_METHODS if track == 'resnet' else METHODS


def label_of(name: str) -> str:
    """Table label of a method or an ablation (``cim-revdet@temp0``)."""
    if '@' in name:
        return ablation_label(name)
    return RESNET_LABELS.get(name, FEATMAP_LABELS.get(name, name))


def parse_methods(text: Optional[str], track: str = 'vit') -> list[str]:
    """'cim-respix,mae' -> ['cim-respix', 'mae'] in table order; None/'all': all
    methods of ``track``."""
    methods = track_methods(track)
    if not text or text == 'all':
        return list(methods)
    wanted = [m.strip().lower() for m in text.split(',') if m.strip()]
    unknown = [m for m in wanted if m not in methods]
    if unknown:
        raise ValueError(f'unknown method(s) {", ".join(unknown)} for --track {track}; '
                         f'choose from {", ".join(methods)}')
    return [m for m in methods if m in wanted]


def build_spec(name: str, scale: Scale) -> MethodSpec:
    """The spec of method ``name`` on ``scale`` (its track), or of an ablation
    ``<cim method>@<knob>`` (:mod:`.ablations`)."""
    if '@' in name:
        return build_ablation_spec(name, scale)
    methods = track_methods(scale.track)
    builders = (RESNET_BUILDERS if scale.track == 'resnet' else FEATMAP_BUILDERS
                if scale.track in FEATMAP_METHODS else VIT_BUILDERS)
    if name not in builders:
        raise ValueError(f'unknown method {name!r} for --track {scale.track}; choose from '
                         f'{", ".join(methods)}')
    return builders[name](scale)
