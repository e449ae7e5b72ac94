"""Stop training at the first non-finite loss, saying where and what to try."""
from __future__ import annotations

import math

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

_ADVICE = (
    'what to try: resume from the last good checkpoint (--resume) with a lower '
    'learning rate (optim_wrapper.optimizer.lr), gradient clipping '
    '(optim_wrapper.clip_grad=dict(max_norm=3.0)), a longer warm-up, fp32 instead '
    'of AMP (drop --amp / optim_wrapper.type=OptimWrapper), and check the data '
    'for corrupt or constant images')


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a loss in the train step's outputs is
    NaN or infinite, e.g. ``non-finite loss_enh=nan at iteration 12 (...)``.

    The check reads the ``outputs`` dict of ``after_train_iter`` (the logged
    losses of ``train_step``); mmengine's ``RuntimeInfoHook`` already copies
    every one of them to the host each iteration, so this adds one small sync.
    The iteration is 1-based, as in the training log.

    Args:
        interval: check every this many iterations.
        keys: loss names to check; ``None``: every key containing ``'loss'``.
    """

    priority = 'ABOVE_NORMAL'  # before the logger/checkpoint hooks of the same step

    def __init__(self, interval: int = 1, keys=None) -> None:
        self.interval = max(1, int(interval))
        self.keys = None if keys is None else list(keys)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        names = [k for k in outputs if (k in self.keys if self.keys is not None
                                        else 'loss' in k)]
        values = {}
        for k in names:
            v = outputs[k]
            values[k] = float(v.detach().float().mean()) if torch.is_tensor(v) else float(v)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if not bad:
            return
        # name the individual term rather than the total 'loss' when possible
        culprit = next((k for k in bad if k != 'loss'), bad[0])
        others = ', '.join(f'{k}={v:.4g}' for k, v in values.items() if k != culprit)
        raise FloatingPointError(
            f'non-finite {culprit}={values[culprit]} at iteration {runner.iter + 1}'
            f'{f" ({others})" if others else ""}; training stopped; {_ADVICE}.')
