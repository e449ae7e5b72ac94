"""One seg run end to end: convert, fine-tune with mmseg's Runner, score, write
``<run>/result.json``.

A run is one pre-trained backbone (a track's ``backbone.pth``, or none: random
init) in one mode (:data:`~benchmarks.seg_specs.MODES`). Its config is the
shipped seg config with the run's overrides (:mod:`.seg_config`, written to
``<run>/seg_config.py``); the backbone is converted for exactly that config
(:mod:`.seg_weights`), trained by mmseg's own Runner (the config's optimizer:
layer decay for the fine-tuned ViT; head only for a frozen backbone) and scored
once, after training, by the config's ``IoUMetric`` on the validation scenes.
Run by :mod:`benchmarks.seg_runner`, in its own process by default
(``python -m benchmarks.seg_worker SETTINGS_JSON``).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import sys
import time
import traceback
from typing import Callable, Optional

import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import cim_mm.seg  # noqa: F401  (registers FashionMNISTScenesDataset in mmseg)
from cim_mm.compat import apply_all
from cim_mm.utils.warning_filters import filter_third_party_warnings

from .io import write_json
from .seg_config import load, write_run_config
from .seg_weights import convert_backbone


def _log_fn(run: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f'[benchmark] {run} | {msg}', flush=True)
    return log


def _runner(cfg, experiment_name: str):
    """mmengine's Runner from ``cfg``'s parts (``Runner.from_cfg`` would also
    pretty-print the whole config, seconds of CPU on 2 cores)."""
    return Runner(
        model=cfg.model, work_dir=cfg.work_dir, experiment_name=experiment_name,
        default_scope=cfg.get('default_scope', 'mmseg'),
        train_dataloader=cfg.train_dataloader, val_dataloader=cfg.val_dataloader,
        train_cfg=cfg.train_cfg, val_cfg=cfg.val_cfg, val_evaluator=cfg.val_evaluator,
        optim_wrapper=cfg.optim_wrapper, param_scheduler=cfg.param_scheduler,
        default_hooks=cfg.default_hooks, env_cfg=cfg.env_cfg,
        log_processor=cfg.get('log_processor'), visualizer=cfg.get('visualizer'),
        randomness=cfg.randomness, log_level=cfg.get('log_level', 'INFO'))


def _count(params) -> int:
    return sum(p.numel() for p in params)


def run_method(settings: dict, log: Optional[Callable[[str], None]] = None) -> dict:
    """Convert, fine-tune and score one run (``settings`` from
    :mod:`benchmarks.seg_runner`); returns (and writes) its result."""
    apply_all()  # the fixes for the pinned stack, as the project's tools apply them
    filter_third_party_warnings()
    if settings.get('threads'):
        torch.set_num_threads(int(settings['threads']))
    run = settings['run_name']
    log = log or _log_fn(settings.get('label', run))
    out_dir = osp.join(settings['work_dir'], run)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    weights = None if settings.get('backbone_pth') is None else \
        osp.join(out_dir, 'backbone_seg.pth')
    cfg_path = write_run_config(
        settings['config'], osp.join(out_dir, 'seg_config.py'), weights=weights,
        scenes_root=settings['scenes_root'], iters=settings['seg_iters'],
        scene_size=settings['scene_size'], seed=settings['seed'], work_dir=out_dir)
    result = dict(track=settings['track'], method=settings['method'],
                  mode=settings['mode'], seed=settings['seed'], status='running',
                  label=settings.get('label'), config=settings['config'],
                  settings=settings['fingerprint'],
                  pretrained=settings.get('backbone_pth'),
                  pretrain_settings=settings.get('pretrain_settings'))
    conversion = None
    if weights is not None:
        log(f'convert | {settings["backbone_pth"]} -> {osp.basename(settings["config"])}')
        rep = convert_backbone(settings['backbone_pth'], settings['backbone_cfg'],
                               cfg_path, weights)
        conversion = dict(target=rep.target, resized=[list(r[:3]) for r in rep.resized],
                          arch_checked=rep.arch_checked, notes=list(rep.notes))
    result['conversion'] = conversion
    cfg = load(cfg_path)
    scopes_before = set(DefaultScope._instance_dict)
    try:
        runner = _runner(cfg, f'seg_{settings["track"]}_{settings["mode"]}_{run}_'
                              f'{time.time_ns()}')
        bb = runner.model.backbone
        result['params_backbone'] = _count(bb.parameters())
        result['params_backbone_trainable'] = _count(p for p in bb.parameters()
                                                     if p.requires_grad)
        result['params_trainable'] = _count(p for p in runner.model.parameters()
                                            if p.requires_grad)
        log(f'train | {settings["seg_iters"]} iterations, batch '
            f'{cfg.train_dataloader.batch_size}, {result["params_trainable"]:,} trainable '
            f'parameters ({result["params_backbone_trainable"]:,} in the backbone)')
        t_train = time.perf_counter()
        runner.train()
        result['train_s'] = round(time.perf_counter() - t_train, 1)
        t_val = time.perf_counter()
        metrics = runner.val_loop.run()
        result['val_s'] = round(time.perf_counter() - t_val, 1)
    finally:  # the Runner leaves its scope current: later builds must not see it
        for name in set(DefaultScope._instance_dict) - scopes_before:
            DefaultScope._instance_dict.pop(name)
    if weights is not None and osp.exists(weights):
        os.remove(weights)  # remade from backbone.pth on a rerun; 84 runs add up
    result['eval'] = {k: round(float(metrics[k]), 2) for k in ('mIoU', 'mAcc', 'aAcc')
                      if k in metrics}  # IoUMetric's %, to its 2 decimals
    result['val_scenes'] = len(runner.val_dataloader.dataset)
    log(f'eval | mIoU {result["eval"]["mIoU"]:.2f}, mAcc {result["eval"]["mAcc"]:.2f} on '
        f'{result["val_scenes"]} validation scenes')
    result['total_s'] = round(time.perf_counter() - t0, 1)
    result['status'] = 'ok'
    write_json(result, osp.join(out_dir, 'result.json'))
    return result


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        settings = json.load(f)
    out_dir = osp.join(settings['work_dir'], settings['run_name'])
    try:
        run_method(settings)
    except BaseException as err:  # noqa: BLE001  (report any failure, then exit 1)
        first = (str(err).strip().splitlines() or [''])[0]
        line = f'{type(err).__name__}: {first}'
        write_json(dict(method=settings['method'], seed=settings.get('seed'),
                        status='failed', error=line[:500],
                        traceback=traceback.format_exc()[-4000:]),
                   osp.join(out_dir, 'failed.json'))
        print(f'[benchmark] {settings["run_name"]} | FAILED | {line}', flush=True)
        traceback.print_exc()
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
