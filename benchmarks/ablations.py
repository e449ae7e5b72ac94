"""The CIM ablation study (``tools/benchmark.py --ablate``).

One knob at a time from the CPU demo recipe (tiny ViT, cpu-small,
``configs/cim/cim-{respix,revdet}_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py``),
for CIM-RevDet and CIM-ResPix. An ablation is named ``<method>@<knob>`` and
runs, resumes and is reported like a method; the two demo recipes
(``cim-respix``, ``cim-revdet``) are the baselines of the table.

Demo recipe (the baseline of every knob): temperature 1.0, 26 of 64 patches
masked (40.6 %), generator 2 layers x 64 dims, generator on the tokenizer
view, enhancer on the whole decoded token map, loss weights gen 1 / enh 1,
ResPix window 9, one ``clip_grad`` (max norm 3) over both networks.

=====================  =====================================================
knob                   values (name suffix)
=====================  =====================================================
sampling temperature   0 = argmax (``temp0``), 0.5 (``temp0.5``), 1.5 (``temp1.5``)
mask ratio             16 / 64 = 25 % (``mask25``), 35 / 64 = 55 % (``mask55``)
generator size         4 layers (``gen-depth4``), 6 layers (``gen-depth6``),
                       2 layers x 128 dims (``gen-width128``)
generator input        normalised enhancer view (``gen-in-enhancer``)
enhancer input         original + replaced patches pasted in (``enh-in-paste``)
enhancer loss weight   0.5 (``enh-w0.5``), 2 (``enh-w2``)
ResPix window          3 (``window3``), 5 (``window5``); ResPix only
gradient clipping      per network (``clip-per-net``): ``PerModuleClipOptimWrapper``
generator warm-up      the generator alone for the first 10 % of the budget
                       (``gen-warm10``; ``model.generator_warmup=0.1``; ours)
=====================  =====================================================

The generator-input, enhancer-input and warm-up knobs build
:class:`benchmarks.models.CIMAblation` (CIM with those three options).
``clip-per-net`` clips the generator and the enhancer (backbone + neck + head)
each to max norm 3 (``cim_mm/engine/optim_wrappers/per_module_clip.py``)
instead of one norm over both.
"""
from __future__ import annotations

import copy
from typing import Any

from cim_mm.utils.errors import UserError

from .scales import Scale
from .spec_parts import MethodSpec, merge_options
from .specs_vit import LABELS, build_vit_spec

ABLATION_BASES = ('cim-revdet', 'cim-respix')
# Per-network gradient clipping: the config options (dotted keys of the CIM
# model / 'optim_wrapper.*') that switch it on; clip_grad (max norm 3) is kept.
PER_NET_CLIP_OPTIONS: dict = {'optim_wrapper.type': 'PerModuleClipOptimWrapper'}

_GEN = 'generator.backbone.arch.'
# knob -> (label, {dotted model key: value}); 'mask.num_masking_patches' sets
# the BEiTMaskGenerator of the pipeline, 'optim_wrapper.*' the optimizer
KNOBS: dict[str, tuple[str, dict]] = {
    'temp0': ('temperature 0 (argmax)', {'generator.temperature': 0.0}),
    'temp0.5': ('temperature 0.5', {'generator.temperature': 0.5}),
    'temp1.5': ('temperature 1.5', {'generator.temperature': 1.5}),
    'mask25': ('mask 16/64 (25 %)', {'mask.num_masking_patches': 16}),
    'mask55': ('mask 35/64 (55 %)', {'mask.num_masking_patches': 35}),
    'gen-depth4': ('generator 4 layers', {_GEN + 'num_layers': 4}),
    'gen-depth6': ('generator 6 layers', {_GEN + 'num_layers': 6}),
    'gen-width128': ('generator 128 dims', {_GEN + 'embed_dims': 128, _GEN + 'num_heads': 4,
                                            _GEN + 'feedforward_channels': 512}),
    'gen-in-enhancer': ('generator on the enhancer view', {'generator_input': 'enhancer'}),
    'enh-in-paste': ('enhancer: replaced patches pasted', {'enhancer_input': 'paste'}),
    'enh-w0.5': ('enhancer loss weight 0.5', {'loss_weights.enh': 0.5}),
    'enh-w2': ('enhancer loss weight 2', {'loss_weights.enh': 2.0}),
    'window3': ('ResPix window 3', {'head.window_size': 3}),
    'window5': ('ResPix window 5', {'head.window_size': 5}),
    'clip-per-net': ('grad clip per network', PER_NET_CLIP_OPTIONS),
    'gen-warm10': ('generator alone for the first 10 %', {'generator_warmup': 0.1}),
}
RESPIX_ONLY = ('window3', 'window5')
# model options only the ablation subclass of CIM has
ABLATION_MODEL_KEYS = ('generator_input', 'enhancer_input', 'generator_warmup')


def ablation_names() -> list[str]:
    """Every ablation, grouped by method: the baseline first, then the knobs."""
    names = []
    for base in ABLATION_BASES:
        names.append(base)
        for knob in KNOBS:
            if knob in RESPIX_ONLY and base != 'cim-respix':
                continue
            names.append(f'{base}@{knob}')
    return names


def parse_ablations(text: str) -> list[str]:
    """'all' or a comma-separated list of ``<method>@<knob>`` / baselines."""
    every = ablation_names()
    if not text or text == 'all':
        return ablation_names()
    wanted = [a.strip().lower() for a in text.split(',') if a.strip()]
    unknown = [a for a in wanted if a not in every]
    if unknown:
        raise UserError(f'unknown ablation(s) {", ".join(unknown)}; choose from '
                         f'{", ".join(ablation_names())} (docs/benchmark.md#ablations)')
    return [a for a in every if a in wanted]


def ablation_label(name: str) -> str:
    base, knob = name.split('@', 1)
    return f'{LABELS[base]} · {KNOBS[knob][0]}'


def build_ablation_spec(name: str, scale: Scale) -> MethodSpec:
    """The spec of ``<method>@<knob>``: the method's demo spec, one knob changed."""
    base, _, knob = name.partition('@')
    if base not in ABLATION_BASES or knob not in KNOBS:
        raise UserError(f'unknown ablation {name!r}; choose from '
                         f'{", ".join(ablation_names())}')
    if scale.track != 'vit':
        raise UserError('the ablations run on the tiny ViT (--track vit)')
    spec = copy.deepcopy(build_vit_spec(base, scale))
    label, options = KNOBS[knob]
    spec.name, spec.label = name, ablation_label(name)
    model_options = {k: v for k, v in options.items()
                     if not k.startswith(('mask.', 'optim_wrapper.'))}
    for key, value in options.items():
        if key.startswith('mask.'):
            for t in spec.pipeline:
                if t['type'] == 'BEiTMaskGenerator':
                    t[key.split('.', 1)[1]] = value
    spec.optim_options = {k.split('.', 1)[1]: v for k, v in options.items()
                          if k.startswith('optim_wrapper.')}
    if any(k in ABLATION_MODEL_KEYS for k in model_options):
        model_options['type'] = 'CIMAblation'
    spec.model = merge_options(spec.model, model_options)
    spec.notes = [f'{spec.label}: the demo recipe with '
                  + ', '.join(f'{k} = {v}' for k, v in options.items()) + '.']
    return spec
