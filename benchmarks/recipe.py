"""A method's recipe digest: what makes a finished benchmark result stale when
the code (a config, a spec, an ablation knob) changes under the same settings.

The run settings (:func:`benchmarks.runner.fingerprint`: scale, budget,
seed, tokenizer, ...) say *how* a method was run; the recipe says *what* ran:
the model config, the training pipeline, the evaluation backbone and the
optimizer options of its :class:`~benchmarks.specs.MethodSpec`, and the
scale's optimizer and schedule (the demo config's, shared by every method). Its
digest goes into each run's fingerprint as ``recipe``, so changing a demo
config's default (say the ResPix window) re-runs the methods built from it on
``--resume`` and only those.

The tokenizer's file (its ``checkpoint`` path, and ``allow_random_init``, which
follows from whether there is one) is left out: the tokenizer's identity is the
fingerprint's ``tokenizer_id``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

# keys that follow the tokenizer file, not the recipe (see the module docstring)
_FILE_KEYS = ('checkpoint', 'allow_random_init')


def _strip_file_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _strip_file_keys(v) for k, v in obj.items() if k not in _FILE_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_strip_file_keys(v) for v in obj]
    return obj


#: classes that compute what another computes (the digest follows the maths, not the
#: class): the ablation variant is CIM plus options that are in the config; the
#: SDPA backbones are mmpretrain's BEiT backbones with fused attention
SAME_MATHS = {'CIMAblation': 'CIM', 'SDPABEiTViT': 'BEiTViT',
              'SDPABEiTPretrainViT': 'BEiTPretrainViT'}


def _same_maths(obj: Any) -> Any:
    """``obj`` with every ``type`` of :data:`SAME_MATHS` replaced by its plain class."""
    if isinstance(obj, dict):
        return {k: (SAME_MATHS.get(v, v) if k == 'type' and isinstance(v, str)
                    else _same_maths(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_same_maths(v) for v in obj]
    return obj


def recipe_digest(spec: Any, scale: Any) -> str:
    """12 hex digits of SHA-256 over the spec's model, pipeline, evaluation
    backbone and optimizer options and the scale's optimizer and schedule
    (canonical JSON: sorted keys, tuples as lists, other objects by ``repr``);
    equal recipes give equal digests."""
    recipe = dict(model=_same_maths(spec.model), pipeline=spec.pipeline,
                  eval_backbone=spec.eval_backbone, optim_options=spec.optim_options,
                  optim_wrapper=scale.optim_wrapper, warmup_frac=scale.warmup_frac,
                  min_lr_ratio=scale.min_lr_ratio)
    if getattr(spec, 'eval_fresh', ()):  # only where set: the other digests stay as they were
        recipe['eval_fresh'] = list(spec.eval_fresh)
    text = json.dumps(_strip_file_keys(recipe), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def method_recipes(opts: dict, methods: list[str]) -> dict[str, str]:
    """``{method: recipe digest}`` for the methods (or ablations) of a benchmark
    with the options ``opts`` of :func:`benchmarks.runner.run_benchmark`."""
    from .scales import build_scale
    from .specs import build_spec
    scale = build_scale(opts['scale'], tokenizer_ckpt=opts.get('tokenizer_ckpt'),
                        arch=opts.get('arch', 'vit-b'), dalle_dir=opts.get('dalle_dir'),
                        batch_size=opts.get('batch_size'), data_root=opts.get('data_root'),
                        track=opts.get('track') or 'vit')
    return {m: recipe_digest(build_spec(m, scale), scale) for m in methods}
