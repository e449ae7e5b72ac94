"""Hooks of the GPU check's kill-and-resume run (imported by its config's
``custom_imports``; registered in mmpretrain's ``HOOKS``)."""
from __future__ import annotations

import json
import os
import os.path as osp
import signal

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class GPUCheckLossLogHook(Hook):
    """Appends ``{"iter": i, "loss_gen": ..., "loss_enh": ...}`` (1-based
    iteration, full float precision) to ``work_dir/losses.jsonl`` after every
    training iteration; a resumed run appends to the same file."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        rec = {'iter': runner.iter + 1}
        for k, v in (outputs or {}).items():
            if 'loss' in k:
                rec[k] = float(v.detach()) if torch.is_tensor(v) else float(v)
        with open(osp.join(runner.work_dir, 'losses.jsonl'), 'a') as f:
            f.write(json.dumps(rec) + '\n')


@HOOKS.register_module()
class GPUCheckKillAtIterHook(Hook):
    """SIGKILLs its own process (no clean-up) before iteration ``at + 1``,
    i.e. right after the checkpoint of iteration ``at`` was written."""

    priority = 'VERY_HIGH'

    def __init__(self, at: int) -> None:
        self.at = int(at)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
