"""Compile the model's repeated blocks in place, before training."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

DEFAULT_MODULES = ('backbone.layers', 'generator.backbone.layers')
DEFAULT_METHODS = ('tokenizer.encode', 'tokenizer.decode')


def resolve_dotted(root: nn.Module, dotted: str) -> Optional[Any]:
    obj: Any = root
    for part in dotted.split('.'):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def compile_blocks(model: nn.Module, modules: Sequence[str] = DEFAULT_MODULES,
                   methods: Sequence[str] = DEFAULT_METHODS,
                   **compile_kwargs: Any) -> list[str]:
    """Compile ``model``'s blocks in place; the state-dict keys do not change.

    A name in ``modules`` that is a ``ModuleList`` / ``Sequential`` has each of
    its children compiled (``nn.Module.compile``: the same blocks share one
    compiled graph); any other module is compiled whole. A name in
    ``methods`` (``'tokenizer.decode'``) is a bound method replaced, on its
    instance, by its ``torch.compile``d version (for modules used through
    methods other than ``forward``, like the frozen tokenizer). Names the
    model lacks are skipped.

    Returns:
        the names compiled (``'backbone.layers.0'``, ..., ``'tokenizer.decode'``).
    """
    done: list[str] = []
    for name in modules:
        module = resolve_dotted(model, name)
        if not isinstance(module, nn.Module):
            continue
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
            setattr(owner, attr, torch.compile(method, **compile_kwargs))
            done.append(name)
    return done


@HOOKS.register_module()
class CompileBlocksHook(Hook):
    """``torch.compile`` the repeated blocks before training (see :func:`compile_blocks`).

    Compilation happens on the first call: the first iteration's time, which
    includes it, less the second's is logged as the compile time.

    Args:
        modules, methods: what to compile (:func:`compile_blocks`).
        cuda_only: do nothing when the model is not on a CUDA device (inductor
            on CPU costs more compile time than it saves in short CPU runs).
        compile_kwargs: for ``torch.compile`` (``backend``, ``mode``, ...).
    """

    priority = 'VERY_HIGH'

    def __init__(self, modules: Sequence[str] = DEFAULT_MODULES,
                 methods: Sequence[str] = DEFAULT_METHODS, cuda_only: bool = True,
                 **compile_kwargs: Any) -> None:
        self.modules = tuple(modules)
        self.methods = tuple(methods)
        self.cuda_only = cuda_only
        self.compile_kwargs = compile_kwargs
        self.compiled: list[str] = []
        self._t0: Optional[float] = None
        self._iter_s: list[float] = []  # the first two iterations' wall times

    def before_train(self, runner: Any) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        param = next(model.parameters(), None)
        on_cuda = param is not None and param.is_cuda
        if self.cuda_only and not on_cuda:
            print_log('CompileBlocksHook: the model is not on CUDA, nothing compiled',
                      logger='current')
            return
        self.compiled = compile_blocks(model, self.modules, self.methods,
                                       **self.compile_kwargs)
        print_log(f'CompileBlocksHook: {len(self.compiled)} blocks set to compile '
                  f'({", ".join(self.compiled)})', logger='current')

    def before_train_iter(self, runner: Any, batch_idx: int,
                          data_batch: Any = None) -> None:
        if self.compiled and len(self._iter_s) < 2:
            self._t0 = time.perf_counter()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        if not self.compiled or self._t0 is None or len(self._iter_s) >= 2:
            return
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self._iter_s.append(time.perf_counter() - self._t0)
        if len(self._iter_s) == 2:
            first, second = self._iter_s
            print_log(f'CompileBlocksHook: compile time ~{first - second:.1f} s (first '
                      f'iteration {first:.1f} s, which compiles; second {second:.2f} s)',
                      logger='current')
