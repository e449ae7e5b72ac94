"""Put convolutional parts of the model in NHWC (``channels_last``) before training."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from .compile_blocks_hook import resolve_dotted

DEFAULT_MODULES = ('backbone', 'neck')


def to_channels_last(model: nn.Module, modules: Sequence[str] = DEFAULT_MODULES) -> list[str]:
    """Convert the 4-D parameters and buffers of ``model``'s ``modules`` to
    ``torch.channels_last``, in place: the ``Parameter`` objects stay the same
    (an optimizer built before keeps updating them) and the state-dict keys and
    values do not change, only the strides. A convolution with NHWC weights
    runs NHWC (cuDNN's fast layout for bf16 / fp16 tensor cores) and returns
    NHWC, so activations stay NHWC through the ResNet. Names the model lacks
    are skipped.

    Returns:
        the names converted.
    """
    done: list[str] = []
    for name in modules:
        module = resolve_dotted(model, name)
        if isinstance(module, nn.Module):
            module.to(memory_format=torch.channels_last)
            done.append(name)
    return done


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """``channels_last`` for the model's convolutional parts before training
    (see :func:`to_channels_last`).

    Args:
        modules: dotted names of the modules to convert (the enhancer's
            ``backbone`` and ``neck`` by default).
        cuda_only: do nothing when the model is not on a CUDA device (on the
            CPU, NHWC convolutions are not the fast ones everywhere).
    """

    priority = 'VERY_HIGH'

    def __init__(self, modules: Sequence[str] = DEFAULT_MODULES, cuda_only: bool = True) -> None:
        self.modules = tuple(modules)
        self.cuda_only = cuda_only
        self.converted: list[str] = []

    def before_train(self, runner: Any) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        param = next(model.parameters(), None)
        if self.cuda_only and not (param is not None and param.is_cuda):
            print_log('ChannelsLastHook: the model is not on CUDA, layouts kept',
                      logger='current')
            return
        self.converted = to_channels_last(model, self.modules)
        print_log(f'ChannelsLastHook: {", ".join(self.converted) or "nothing"} in '
                  'channels_last', logger='current')
