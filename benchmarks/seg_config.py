"""The config of one seg run: the shipped mmseg config plus the run's few overrides.

:func:`write_run_config` writes ``<run>/seg_config.py``, a config file that
inherits the shipped one (``_base_``) and overrides only what the run sets: the
backbone's weights (or none: random init), the scenes folder and size, the
number of iterations (the schedule's boundaries scaled with it), the seed, no
checkpoints. The converter reads the same file as its ``--target-config``, so
the weights are made for exactly the backbone that trains. The overrides are
Python literals (``repr``), so the file is written without mmengine's slow
pretty-printer and a user can rerun it with ``tools/train.py``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config

from .paths import REPO_ROOT

#: validation runs once, after training (:mod:`.seg_worker` calls the val loop)
_NO_IN_TRAIN_VAL = 1


def load(path: str) -> Config:
    return Config.fromfile(path if osp.isabs(path) else osp.join(REPO_ROOT, path))


def config_digest(path: str) -> str:
    """12 hex digits of SHA-256 over the resolved config (every ``_base_``
    merged): a changed default in a shipped config reruns the runs made with it."""
    text = json.dumps(load(path).to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def scaled_schedule(schedulers: list, orig_iters: int, iters: int) -> list:
    """The schedulers with their ``begin`` / ``end`` iterations scaled from
    ``orig_iters`` to ``iters`` (a boundary inside the run stays >= 1 iteration
    from the start); a scheduler left with no iteration is dropped."""
    def at(x: Optional[int]) -> Optional[int]:
        if x is None or x <= 0:
            return x
        if x >= orig_iters:
            return iters
        return min(max(1, round(x * iters / orig_iters)), iters)

    out = []
    for s in schedulers:
        s = dict(s)
        if 'begin' in s:
            s['begin'] = at(s['begin'])
        if 'end' in s:
            s['end'] = at(s['end'])
        if s.get('end') is not None and s['end'] <= (s.get('begin') or 0):
            continue
        out.append(s)
    return out


def _resized(value: Any, size: int) -> Any:
    """An image size field at ``size``: ``(s, s)`` for a pair, ``s`` for an int."""
    return (size, size) if isinstance(value, (tuple, list)) else size


def _pipeline_at(pipeline: list, size: int) -> list:
    """The scenes pipeline with every size field at ``size`` px."""
    out = copy.deepcopy(pipeline)
    for t in out:
        for key in ('scale', 'crop_size'):
            if key in t and t['type'] in ('RandomResize', 'RandomCrop', 'Resize'):
                t[key] = _resized(t[key], size)
    return out


def run_overrides(base: Config, weights: Optional[str], scenes_root: str, iters: int,
                  scene_size: int, seed: int, work_dir: str) -> dict:
    """What a run changes in the shipped config ``base`` (a dict of literals)."""
    bb = base.model.backbone
    init = bb.get('init_cfg')
    init_cfg = None if weights is None else dict(init.to_dict(), checkpoint=weights)
    backbone: dict = dict(init_cfg=init_cfg)
    if 'img_size' in bb:
        backbone['img_size'] = _resized(bb.img_size, scene_size)
    orig_iters = int(base.train_cfg.max_iters)
    loaders = {}
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = base[name].dataset
        loaders[name] = dict(dataset=dict(
            data_root=scenes_root, pipeline=_pipeline_at(ds.pipeline.to_list()
                                                         if hasattr(ds.pipeline, 'to_list')
                                                         else list(ds.pipeline), scene_size)))
    hooks = dict(checkpoint=dict(type='CheckpointHook', interval=-1, save_last=False),
                 logger=dict(type='LoggerHook', interval=max(1, min(50, iters // 4)),
                             log_metric_by_epoch=False))
    return dict(
        work_dir=work_dir,
        model=dict(backbone=backbone,
                   data_preprocessor=dict(size=(scene_size, scene_size))),
        **loaders,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters,
                       val_begin=iters + _NO_IN_TRAIN_VAL),
        param_scheduler=scaled_schedule([dict(s) for s in base.param_scheduler],
                                        orig_iters, iters),
        default_hooks=hooks,
        randomness=dict(seed=seed))


def _plain(obj: Any) -> Any:
    """mmengine ConfigDicts / lists -> plain dicts / lists (for ``repr``)."""
    if hasattr(obj, 'to_dict'):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def write_run_config(base_path: str, dst: str, **kw: Any) -> str:
    """Write ``dst``: the shipped config ``base_path`` with :func:`run_overrides`
    (``kw``); returns ``dst``."""
    full = base_path if osp.isabs(base_path) else osp.join(REPO_ROOT, base_path)
    over = _plain(run_overrides(load(full), **kw))
    lines = [f'# one seg benchmark run: {osp.relpath(full, REPO_ROOT)} with the run\'s '
             'overrides (benchmarks/seg_config.py)', f'_base_ = {full!r}']
    lines += [f'{k} = {v!r}' for k, v in over.items()]
    with open(dst, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return dst
