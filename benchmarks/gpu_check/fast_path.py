"""The recipes' speed settings, applied as the Runner applies them, and read back.

A recipe's speed lives in three places besides the model dict:
``env_cfg.cudnn_benchmark`` (the Runner sets ``torch.backends.cudnn.benchmark``),
``custom_hooks`` (``CompileBlocksHook``: ``torch.compile`` of the repeated
blocks in place; ``ChannelsLastHook``: NHWC convolutions of the ResNet
enhancer; both in ``before_train``) and ``optim_wrapper.paramwise_cfg``
(``merge_groups``: merged param groups, fused AdamW). :func:`recipe_speed`
reads them from the recipe file; :func:`compile_like_runner` and
:func:`channels_last_like_runner` do what the hooks do on the built model. :func:`switches` reads every fast-path
switch back from the built model, optimizer and torch, so the results say what
was on, not what was asked for.
"""
from __future__ import annotations

import os.path as osp
from types import SimpleNamespace
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from cim_mm.engine.hooks import to_channels_last
from cim_mm.engine.optim_wrappers import fused_adam_devices

from .context import REPO_ROOT

# a peer built by the benchmark has its own names for what a CIM recipe
# compiles: BEiT v1's frozen tokenizer sits in its target generator
PEER_COMPILE = {
    'beit': dict(modules=('backbone.layers', ), tokenizer='target_generator.tokenizer'),
}
#: the recipes' switches whose worth only a GPU shows: the check times the step
#: with each set against the recipe (``flip``), besides the step as shipped; the
#: ones shipped off first, should the stage's time limit stop it (each flipped
#: step compiles anew)
GPU_SWITCHES = ('compile_tokenizer', 'flex_attention', 'compile_blocks', 'cudnn_benchmark')
#: the feature-map recipes' GPU switch (their hook's ``compile_enhancer``): the
#: check's ``enhancer_compile`` stage times it on and off
ENHANCER_SWITCH = 'compile_enhancer'
# switches whose flipped step runs off CUDA only on a stand-in: the dry run
# shows that it builds, trains and compiles (recompiles, graph breaks), and its
# time means nothing
CPU_STAND_INS = {
    'flex_attention': "FlexAttention's reference kernel on the CPU (torch 2.14 has no fused "
                      'CPU backward): built, trained and traced, not timed for speed',
}
#: switches that change what a compiled step traces: the dry run traces each
#: flipped step that turns one of them on
TRACED_FLIPS = ('compile_tokenizer', ENHANCER_SWITCH, 'flex_attention')
# the model-dict keys a GPU switch sets (on, off), where it lives in the model
MODEL_SWITCHES = {
    'flex_attention': ({'backbone.attn_impl': 'flex', 'generator.backbone.attn_impl': 'flex'},
                       {'backbone.attn_impl': 'sdpa', 'generator.backbone.attn_impl': 'sdpa'}),
}
# MAE is a reference figure, not a recipe of ours: kept eager, which keeps its
# compile time out of the full run's 8 minutes
NO_COMPILE = ('mae', )


def _load(path: str):
    from mmengine.config import Config
    return Config.fromfile(path if osp.isabs(path) else osp.join(REPO_ROOT, path))


def _hook(cfg: Any, name: str) -> Optional[dict]:
    hooks = [dict(h) for h in cfg.get('custom_hooks', [])
             if str(h.get('type', '')).split('.')[-1] == name]
    return hooks[0] if hooks else None


def recipe_speed(config: str) -> dict:
    """``dict(cudnn_benchmark, compile_hook, channels_last_hook)`` of the recipe
    file ``config`` (the ``CompileBlocksHook`` / ``ChannelsLastHook`` entries
    of ``custom_hooks``, or None)."""
    cfg = _load(config)
    return dict(cudnn_benchmark=bool(cfg.get('env_cfg', {}).get('cudnn_benchmark', False)),
                compile_hook=_hook(cfg, 'CompileBlocksHook'),
                channels_last_hook=_hook(cfg, 'ChannelsLastHook'), config=config)


def gpu_switches(speed: dict, model: Optional[dict] = None) -> dict[str, bool]:
    """The recipe's GPU switches as shipped (:data:`GPU_SWITCHES`); those set in
    the model dict are read from ``model`` (off when it does not say)."""
    hook = speed['compile_hook']
    out = dict(compile_blocks=hook is not None,
               compile_tokenizer=bool(hook and hook.get('compile_tokenizer', False)),
               compile_enhancer=bool(hook and hook.get('compile_enhancer', False)),
               cudnn_benchmark=speed['cudnn_benchmark'])
    for name, (on, _) in MODEL_SWITCHES.items():
        out[name] = model is not None and all(get_dotted(model, k) == v for k, v in on.items())
    return out


def get_dotted(d: dict, dotted: str) -> Any:
    """``d['a']['b']`` for ``'a.b'`` (None where a key is missing)."""
    for k in dotted.split('.'):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def model_overrides(flip: dict[str, bool]) -> dict[str, Any]:
    """The model-dict keys (dotted) that the switches of ``flip`` set."""
    out: dict[str, Any] = {}
    for name, value in flip.items():
        if name in MODEL_SWITCHES:
            out.update(MODEL_SWITCHES[name][0 if value else 1])
    return out


def set_dotted(model: dict, overrides: dict[str, Any]) -> dict:
    """``model`` (changed in place) with each dotted key of ``overrides`` set."""
    for dotted, value in overrides.items():
        *path, last = dotted.split('.')
        d = model
        for k in path:
            d = d[k]
        d[last] = value
    return model


def flip_switches(speed: dict, flip: dict[str, bool]) -> dict:
    """``speed`` (:func:`recipe_speed`) with the GPU switches of ``flip`` set:
    ``compile_blocks=False`` drops the compile hook (the tokenizer's compile
    with it), ``compile_blocks=True`` adds the default one; ``compile_tokenizer``
    sets the hook's switch (adding a hook that compiles only the tokenizer when
    the recipe has none); ``compile_enhancer`` sets the hook's (a recipe whose
    hook names no ``enhancer_modules`` has no such switch); ``cudnn_benchmark``
    sets ``env_cfg``'s. Switches of the model dict (:data:`MODEL_SWITCHES`) are
    set by :func:`model_overrides`."""
    known = (*GPU_SWITCHES, ENHANCER_SWITCH)
    unknown = set(flip) - set(known)
    if unknown:
        raise ValueError(f'unknown GPU switch(es) {sorted(unknown)}; known: {known}')
    speed = dict(speed)
    hook = dict(speed['compile_hook']) if speed['compile_hook'] else None
    if 'compile_blocks' in flip:
        hook = (hook or dict(type='CompileBlocksHook')) if flip['compile_blocks'] else None
    if 'compile_tokenizer' in flip:
        if hook is None and flip['compile_tokenizer']:
            hook = dict(type='CompileBlocksHook', modules=())
        if hook is not None:
            hook['compile_tokenizer'] = flip['compile_tokenizer']
    if ENHANCER_SWITCH in flip:
        if hook is None or not hook.get('enhancer_modules'):
            raise ValueError(f'{speed.get("config")}: its CompileBlocksHook names no '
                             'enhancer_modules, so it has no compile_enhancer switch')
        hook['compile_enhancer'] = flip[ENHANCER_SWITCH]
    if 'cudnn_benchmark' in flip:
        speed['cudnn_benchmark'] = flip['cudnn_benchmark']
    speed['compile_hook'] = hook
    return speed


def channels_last_like_runner(model: nn.Module, hook_cfg: Optional[dict]) -> list[str]:
    """What the recipe's ``ChannelsLastHook`` does in ``before_train``, on any
    device (the dry run exercises it on the CPU); the names converted."""
    if hook_cfg is None:
        return []
    return to_channels_last(model, hook_cfg.get('modules', ('backbone', 'neck')))


def apply_env(speed: dict) -> None:
    """``torch.backends.cudnn.benchmark`` as the Runner's ``setup_env`` sets it."""
    torch.backends.cudnn.benchmark = bool(speed['cudnn_benchmark'])


def compile_like_runner(model: nn.Module, hook_cfg: Optional[dict], method: str,
                        on_cuda: bool, trace: bool = True) -> dict:
    """Build the recipe's ``CompileBlocksHook`` and run its ``before_train``.

    On CUDA the hook compiles as configured (inductor unless it says otherwise).
    Off CUDA the hook would do nothing; with ``trace`` the same code path runs
    with ``backend='eager'`` (dynamo traces every block, nothing is generated),
    so the dry run exercises what a GPU run compiles; without ``trace`` (dynamo
    tracing costs ~20-50 s of CPU per method) only the names the hook would
    compile are resolved. ``torch.compile`` is lazy: the compile time is in the
    first step after this.

    Returns:
        ``dict(status, compiled, backend)``; ``status`` starts with ``on`` when
        blocks were set to compile.
    """
    if hook_cfg is None:
        return dict(status='off: no CompileBlocksHook', compiled=[], backend=None)
    if method in NO_COMPILE:
        return dict(status='off: a reference peer, kept eager', compiled=[], backend=None)
    from mmpretrain.registry import HOOKS
    cfg = dict(hook_cfg, **PEER_COMPILE.get(method, {}))
    if not on_cuda and not trace:
        hook = HOOKS.build(cfg)
        names = [n for n in (*hook.modules, *hook.methods) if _find(model, n) is not None]
        return dict(status=f'skipped: no CUDA (would compile {", ".join(names) or "nothing"})',
                    compiled=[], backend=None)
    if not on_cuda:
        cfg.update(cuda_only=False, backend='eager')
    # each method compiles as in a run of its own: static shapes of its first
    # batch, not a dynamic recompile because an earlier method had another batch
    torch._dynamo.reset()
    hook = HOOKS.build(cfg)
    hook.before_train(SimpleNamespace(model=model))
    backend = hook.compile_kwargs.get('backend', 'inductor')
    if not hook.compiled:
        return dict(status='off: nothing to compile', compiled=[], backend=backend)
    where = '' if on_cuda else ' (no CUDA: the compile path with backend eager)'
    return dict(status=f'on: {len(hook.compiled)} blocks, {backend}{where}',
                compiled=list(hook.compiled), backend=backend)


def _find(model: nn.Module, *names: str) -> Optional[Any]:
    for name in names:
        obj: Any = model
        for part in name.split('.'):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _on(flag: Any, detail: str = '') -> str:
    return ('on' if flag else 'off') + (f': {detail}' if detail else '')


def switches(model: nn.Module, optim_wrapper: Any, compiled: dict,
             channels_last: Optional[list[str]] = None) -> dict[str, str]:
    """Each fast-path switch this method has, read from what was built:
    ``'on'`` / ``'on: detail'`` or ``'off...'``. Switches a method does not
    have (BEiT's generator) are left out."""
    out: dict[str, str] = {}
    opt = optim_wrapper.optimizer
    n_tensors = sum(len(g['params']) for g in opt.param_groups)
    n_groups = len(opt.param_groups)
    out['merge_groups'] = _on(n_groups < n_tensors,
                              f'{n_groups} param groups for {n_tensors} tensors')
    name = type(opt).__name__
    if name in ('Adam', 'AdamW'):
        impl = 'fused' if opt.defaults.get('fused') else (
            'foreach' if opt.defaults.get('foreach') else 'per tensor')
        devices = fused_adam_devices()
        fusable = all(p.device.type in devices for g in opt.param_groups for p in g['params'])
        want = 'fused' if fusable else 'foreach'
        out['fused_adamw'] = _on(impl == want, f'{name} {impl}'
                                 + ('' if fusable else ' (no fused kernels on this device)'))
    sdpa: list[str] = []  # the outermost SDPA modules (backbones, not their layers)
    for n, m in model.named_modules():
        if type(m).__name__.startswith('SDPA') and not any(
                n.startswith(f'{o}.') for o in sdpa):
            sdpa.append(n)
    if sdpa or _find(model, 'backbone.layers') is not None:
        out['sdpa'] = _on(sdpa, ', '.join(sdpa))
    kernels = sorted({m.attn_impl for m in model.modules() if hasattr(m, 'attn_impl')})
    if kernels:
        out['attn_impl'] = ', '.join(kernels)  # the attention kernel(s) the layers run
    tok = _find(model, 'tokenizer', 'target_generator.tokenizer')
    if tok is not None and hasattr(tok, 'memory_format'):
        out['channels_last_tokenizer'] = _on(tok.memory_format == torch.channels_last)
        out['lowres_1x1'] = _on(getattr(tok, 'lowres_1x1', False))
        dtype = getattr(tok, 'amp_dtype', None)
        out['bf16_decode'] = _on(dtype == torch.bfloat16, 'decode_dtype=bfloat16'
                                 + ('' if next(tok.parameters()).is_cuda
                                    else ' (float32 on CPU without autocast)'))
    gen = _find(model, 'generator')
    if gen is not None and hasattr(gen, 'num_masked'):
        out['num_masked'] = _on(gen.num_masked is not None, f'{gen.num_masked}')
    pre = _find(model, 'data_preprocessor')
    if hasattr(pre, 'batched_masks'):
        out['batched_masks'] = _on(pre.batched_masks)
    head = _find(model, 'head')
    if hasattr(head, 'separable_window'):
        out['separable_window'] = _on(head.separable_window)
    if channels_last is not None:  # the recipe has a ChannelsLastHook
        convs = [p for n in channels_last for p in _find(model, n).parameters() if p.dim() == 4]
        nhwc = bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last)
                                   for p in convs) and not all(p.is_contiguous() for p in convs)
        out['channels_last_enhancer'] = _on(nhwc, ', '.join(channels_last))
    out['compile'] = compiled['status']
    out['cudnn_benchmark'] = _on(torch.backends.cudnn.benchmark, 'from env_cfg'
                                 + ('' if torch.cuda.is_available() else
                                    ' (no effect without CUDA)'))
    return out


@contextmanager
def cpu_stand_in(name: str, on_cuda: bool) -> Iterator[Optional[str]]:
    """Run GPU switch ``name``'s flipped step off CUDA on its stand-in
    (:data:`CPU_STAND_INS`); yields the note to keep with the row, or None
    where nothing stands in. FlexAttention's: torch refuses a CPU backward
    only through its device check, which is lifted inside this context
    (its reference kernel then computes every gradient, as the CPU tests
    check against SDPA)."""
    if on_cuda or name not in CPU_STAND_INS:
        yield None
        return
    import torch.nn.attention.flex_attention as flex
    saved = flex._validate_device
    flex._validate_device = lambda *tensors: None
    try:
        yield CPU_STAND_INS[name]
    finally:
        flex._validate_device = saved
