"""Compile the model's repeated blocks in place, before training."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from ..dynamo_counts import DynamoCounts, dynamo_counts

DEFAULT_MODULES = ('backbone.layers', 'generator.backbone.layers')
DEFAULT_METHODS: tuple[str, ...] = ()
# The frozen tokenizer's compute, without its precision context: the methods
# that set the context (``encode_logits`` / ``decode``) stay eager around them.
TOKENIZER_METHODS = ('encoder.forward', 'decoder.forward_features')


def resolve_dotted(root: nn.Module, dotted: str) -> Optional[Any]:
    obj: Any = root
    for part in dotted.split('.'):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def python_drop_probs(module: nn.Module) -> int:
    """Turn numpy-scalar ``drop_prob`` attributes (mmpretrain's layers get them
    from ``np.linspace``) into Python floats, in place; returns how many.

    mmcv's ``drop_path`` branches on ``drop_prob == 0.``: dynamo traces a numpy
    scalar as a tensor, so that branch is data-dependent and cuts the compiled
    block in two; a Python float is a constant. Values are unchanged.
    """
    n = 0
    for m in module.modules():
        p = getattr(m, 'drop_prob', None)
        if isinstance(p, np.generic):
            m.drop_prob = float(p)
            n += 1
    return n


def compile_blocks(model: nn.Module, modules: Sequence[str] = DEFAULT_MODULES,
                   methods: Sequence[str] = DEFAULT_METHODS,
                   **compile_kwargs: Any) -> list[str]:
    """Compile ``model``'s blocks in place; the state-dict keys do not change.

    A name in ``modules`` that is a ``ModuleList`` / ``Sequential`` has each of
    its children compiled (``nn.Module.compile``: the same blocks share one
    compiled graph); any other module is compiled whole. A name in
    ``methods`` (``'tokenizer.decoder.forward_features'``) is a bound method
    replaced, on its instance, by its ``torch.compile``d version (for modules
    used through methods other than ``forward``). Names the model lacks are
    skipped.

    Returns:
        the names compiled (``'backbone.layers.0'``, ...).
    """
    done: list[str] = []
    for name in modules:
        module = resolve_dotted(model, name)
        if not isinstance(module, nn.Module):
            continue
        python_drop_probs(module)
        if isinstance(module, (nn.ModuleList, nn.Sequential)):
            for child_name, child in module.named_children():
                child.compile(**compile_kwargs)
                done.append(f'{name}.{child_name}')
        else:
            module.compile(**compile_kwargs)
            done.append(name)
    for name in methods:
        owner_name, _, attr = name.rpartition('.')
        owner = resolve_dotted(model, owner_name) if owner_name else model
        method = getattr(owner, attr, None) if owner is not None else None
        if callable(method):
            if isinstance(owner, nn.Module):
                python_drop_probs(owner)
            setattr(owner, attr, torch.compile(method, **compile_kwargs))
            done.append(name)
    return done


@HOOKS.register_module()
class CompileBlocksHook(Hook):
    """``torch.compile`` the repeated blocks before training (see :func:`compile_blocks`).

    Compilation happens on the first call: the first iteration's time, which
    includes it, less the second's is logged as the compile time, with the
    graphs compiled and the graph breaks. At iteration ``check_iter`` the hook
    warns when anything compiled again after the first iteration (a recompile:
    a guard that fails every step costs a compile per step).

    Args:
        modules, methods: what to compile (:func:`compile_blocks`).
        compile_tokenizer: also compile the frozen tokenizer's encoder and
            decoder (``TOKENIZER_METHODS`` under ``tokenizer``); their
            precision context stays outside the compiled code.
        compile_enhancer: also compile ``enhancer_modules``, the stages of a
            feature-map enhancer (a ViT enhancer's layers are in ``modules``).
        enhancer_modules: the enhancer's blocks, as ``modules`` names them
            (ResNet: ``backbone.layer1`` ... ``backbone.layer4``; ConvNeXt /
            Swin: ``backbone.stages``).
        enhancer_compile_kwargs: over ``compile_kwargs`` for the enhancer's
            blocks. Default ``dynamic=False``: a feature-map enhancer's stages
            share their ``forward`` at other widths and sizes, which dynamo's
            automatic dynamic shapes would retrace symbolically after the
            first stage; static, each stage gets its own graph (one cache
            entry per stage shape, under dynamo's recompile limit of 8 per
            ``forward``), as many graphs as dynamic and traced far faster
            (Swin-T's first step at the GPU check's toy size, traced on the
            CPU: 96 s dynamic, 3 s static).
        tokenizer: where the tokenizer sits in the model.
        cuda_only: do nothing when the model is not on a CUDA device (inductor
            on CPU costs more compile time than it saves in short CPU runs).
        check_iter: the iteration (1-based) at which recompiles are counted.
        compile_kwargs: for ``torch.compile`` (``backend``, ``mode``, ...).
    """

    priority = 'VERY_HIGH'

    def __init__(self, modules: Sequence[str] = DEFAULT_MODULES,
                 methods: Sequence[str] = DEFAULT_METHODS,
                 compile_tokenizer: bool = False, tokenizer: str = 'tokenizer',
                 compile_enhancer: bool = False, enhancer_modules: Sequence[str] = (),
                 enhancer_compile_kwargs: Optional[dict] = None,
                 cuda_only: bool = True, check_iter: int = 10,
                 **compile_kwargs: Any) -> None:
        if compile_enhancer and not enhancer_modules:
            raise ValueError('CompileBlocksHook: compile_enhancer=True needs enhancer_modules '
                             "(e.g. ('backbone.stages', ))")
        self.modules = tuple(modules) + (tuple(enhancer_modules) if compile_enhancer else ())
        self.compile_enhancer = compile_enhancer
        self.enhancer_modules = tuple(enhancer_modules)
        self.methods = tuple(methods)
        if compile_tokenizer:
            self.methods += tuple(f'{tokenizer}.{m}' for m in TOKENIZER_METHODS)
        self.compile_tokenizer = compile_tokenizer
        self.cuda_only = cuda_only
        self.check_iter = check_iter
        self.compile_kwargs = compile_kwargs
        self.enhancer_compile_kwargs = dict(
            dict(dynamic=False) if enhancer_compile_kwargs is None else enhancer_compile_kwargs)
        self.compiled: list[str] = []
        self.counts: dict[str, DynamoCounts] = {}  # 'start', 'first_iter', 'check_iter'
        self._t0: Optional[float] = None
        self._iter_s: list[float] = []  # the first two iterations' wall times
        self._iters = 0

    def before_train(self, runner: Any) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        param = next(model.parameters(), None)
        on_cuda = param is not None and param.is_cuda
        if self.cuda_only and not on_cuda:
            print_log('CompileBlocksHook: the model is not on CUDA, nothing compiled',
                      logger='current')
            return
        self.counts['start'] = dynamo_counts()
        enhancer = self.enhancer_modules if self.compile_enhancer else ()
        self.compiled = compile_blocks(
            model, [m for m in self.modules if m not in enhancer], self.methods,
            **self.compile_kwargs)
        self.compiled += compile_blocks(model, enhancer, (), **{
            **self.compile_kwargs, **self.enhancer_compile_kwargs})
        print_log(f'CompileBlocksHook: {len(self.compiled)} blocks set to compile '
                  f'({", ".join(self.compiled)})', logger='current')

    def before_train_iter(self, runner: Any, batch_idx: int,
                          data_batch: Any = None) -> None:
        if self.compiled and len(self._iter_s) < 2:
            self._t0 = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        if not self.compiled:
            return
        self._iters += 1
        if self._iters == 1:
            self.counts['first_iter'] = dynamo_counts()
        if self._iters == self.check_iter:
            self._check_recompiles()
        if self._t0 is None or len(self._iter_s) >= 2:
            return
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self._iter_s.append(time.perf_counter() - self._t0)
        if len(self._iter_s) == 2:
            first, second = self._iter_s
            c = self.counts['first_iter'] - self.counts['start']
            print_log(f'CompileBlocksHook: compile time ~{first - second:.1f} s (first '
                      f'iteration {first:.1f} s, which compiles; second {second:.2f} s); '
                      f'{c.frames} frames compiled, {c.graph_breaks} graph breaks'
                      + ''.join(f'; {r} (x{n})' for r, n in c.reasons.items()),
                      logger='current')

    def _check_recompiles(self) -> None:
        self.counts['check_iter'] = dynamo_counts()
        late = self.counts['check_iter'] - self.counts['first_iter']
        if late.frames:
            print_log(f'CompileBlocksHook: {late.frames} frames compiled again between '
                      f'iteration 1 and {self.check_iter} (recompiles cost a compile each; '
                      'TORCH_LOGS=recompiles names the failing guard)',
                      logger='current', level=30)
