"""One method, end to end: pre-train, evaluate, write ``<method>/result.json``.

Run by :mod:`benchmarks.runner`, normally in its own process
(``python -m benchmarks.worker SETTINGS_JSON``) so that its peak memory
is its own and a crash cannot take the other methods down.
"""
from __future__ import annotations

import copy
import json
import os
import os.path as osp
import sys
import time
import traceback
from typing import Callable, Optional

import numpy as np
import torch

from .io import write_json
from .spec_parts import merge_options

SUBSET_SEED = 0
# the evaluated feature of each track (the ViT's: the mean of final-normed patch tokens)
FEATURES = {
    'resnet': 'global average of C5',
    'convnext': 'global average of the last stage after a fresh output norm (LN2d)',
    'swin': 'global average of the last stage after a fresh output norm (LN)',
}


def _log_fn(method: str) -> Callable[[str], None]:
    def log(msg: str) -> None:
        print(f'[benchmark] {method} | {msg}', flush=True)
    return log


def _count(module: torch.nn.Module, trainable: bool = False) -> float:
    return sum(p.numel() for p in module.parameters()
               if p.requires_grad or not trainable) / 1e6


def _channels_last(model: torch.nn.Module) -> None:
    """channels_last for the conv-heavy frozen tokenizers (DALL-E dVAE)."""
    for name in ('tokenizer', 'target_generator'):
        mod = getattr(model, name, None)
        if mod is not None:
            mod.to(memory_format=torch.channels_last)


def run_method(settings: dict, log: Optional[Callable[[str], None]] = None) -> dict:
    """Pre-train + evaluate one method; returns (and writes) its result."""
    from mmengine.logging import MMLogger
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import cim_mm  # noqa: F401  (registers CIM modules)
    from cim_mm.compat import apply_all
    from cim_mm.utils.warning_filters import filter_third_party_warnings
    apply_all()
    filter_third_party_warnings()
    from cim_mm.utils import atomic_torch_save
    from . import models  # noqa: F401  (registers the adapters, MEC, the CIM ablation variant)
    from .data import EvalImages, build_pretrain_loader, load_split, subset_indices
    from .evaluate import (build_eval_backbone, extract_features, finetune,
                           knn_top1, linear_probe)
    from .cpu_share import MIN_CPU_SHARE, check_cpu_share
    from .pretrain import build_optim_wrapper, pretrain
    from .scales import EVAL_SUBSETS, build_scale
    from .specs import build_spec

    register_all_modules(init_default_scope=True)
    if not MMLogger.check_instance_created('cim_benchmark'):  # quiet init / optim logs
        MMLogger.get_instance('cim_benchmark', log_level='ERROR')
    else:
        MMLogger.get_instance('cim_benchmark')
    if settings.get('threads'):
        torch.set_num_threads(int(settings['threads']))
    name = settings['method']
    run = settings.get('run_name', name)  # <method> or <method>_seed<k>
    log = log or _log_fn(run)
    out_dir = osp.join(settings['work_dir'], run)
    os.makedirs(out_dir, exist_ok=True)
    t_total = time.perf_counter()
    device = torch.device(settings['device'])
    set_random_seed(settings['seed'])

    scale = build_scale(settings['scale'], tokenizer_ckpt=settings.get('tokenizer_ckpt'),
                        arch=settings.get('arch', 'vit-b'),
                        dalle_dir=settings.get('dalle_dir'),
                        batch_size=settings.get('batch_size'),
                        data_root=settings.get('data_root'),
                        track=settings.get('track') or 'vit')
    spec = build_spec(name, scale)
    result = dict(method=name, label=spec.label, scale=scale.name, status='running',
                  seed=settings['seed'], track=scale.track,
                  settings=settings['fingerprint'], notes=list(scale.notes) + list(spec.notes),
                  device=settings['device'])
    from .cost import device_name
    result['device_name'] = device_name(device)

    # ---------------------------------------------------------- pre-training
    state = None
    if spec.model is not None:
        log(f'pretrain | building {spec.model["type"]} on {device}')
        model = MODELS.build(spec.model)
        model.init_weights()
        model.to(device)
        if scale.channels_last and device.type == 'cuda':
            _channels_last(model)
        result['params_backbone_m'] = round(_count(model.backbone), 3)
        result['params_trainable_m'] = round(_count(model, trainable=True), 3)
        loader = build_pretrain_loader(scale.data_root, spec.pipeline, scale.batch_size,
                                       num_workers=settings.get('num_workers',
                                                                scale.num_workers),
                                       seed=settings['seed'])
        optim_cfg = merge_options(scale.optim_wrapper, spec.optim_options)  # ablations
        optim = build_optim_wrapper(model, optim_cfg, device)
        budget = settings['budget_s']
        iters = settings.get('iters')
        what = f'{iters} steps' if iters else f'{budget:.0f} s budget'
        log(f'pretrain | start: {what}, batch {scale.batch_size}')
        pre = pretrain(model, loader, optim, device=device, budget_s=budget, iters=iters,
                       warmup_frac=scale.warmup_frac, min_lr_ratio=scale.min_lr_ratio,
                       log=log, is_cim=spec.is_cim, clock=settings.get('clock') or 'wall')
        result['pretrain'] = pre
        if device.type == 'cpu':
            check_cpu_share(pre, settings.get('min_cpu_share', MIN_CPU_SHARE))
        log(f'pretrain | done: {pre["iters"]} steps ({pre["images"]} images) in '
            f'{pre["wall_s"]:.0f} s, {pre["img_per_s"]:.1f} img/s, peak mem '
            f'{pre["peak_mem_mb"]:.0f} MB, loss {pre["loss_first"].get("loss", 0):.4f} '
            f'-> {pre["loss_last"].get("loss", 0):.4f}')
        state = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
        atomic_torch_save(state, osp.join(out_dir, 'backbone.pth'))
        del model, loader, optim
    else:
        result['pretrain'] = None

    # ------------------------------------------------------------ evaluation
    mode = settings['eval']
    t_eval = time.perf_counter()
    ev: dict = {}
    if mode != 'none':
        sub = EVAL_SUBSETS[settings['eval_subset']]
        tr_x, tr_y = load_split(scale.data_root, 'train')
        te_x, te_y = load_split(scale.data_root, 'test')
        i_tr = subset_indices(len(tr_x), sub['feat_train'], SUBSET_SEED)
        i_te = subset_indices(len(te_x), sub['test'], SUBSET_SEED + 1)
        train_imgs = EvalImages(tr_x[i_tr], tr_y[i_tr], scale.img_size, scale.mean, scale.std)
        test_imgs = EvalImages(te_x[i_te], te_y[i_te], scale.img_size, scale.mean, scale.std)
        backbone = build_eval_backbone(spec.eval_backbone, state, fresh=spec.eval_fresh).to(device)
        log(f'eval | features of {len(train_imgs)} train + {len(test_imgs)} test images')
        f_tr, y_tr = extract_features(backbone, train_imgs, 256, device, log, 'train features')
        f_te, y_te = extract_features(backbone, test_imgs, 256, device, log, 'test features')
        ev['knn_top1'] = round(knn_top1(f_tr, y_tr, f_te, y_te, k=20, temperature=0.07), 2)
        log(f'eval | k-NN (k=20) top-1 {ev["knn_top1"]:.2f} %')
        if mode == 'all':
            ev['linear_top1'] = round(linear_probe(f_tr, y_tr, f_te, y_te), 2)
            log(f'eval | linear probe top-1 {ev["linear_top1"]:.2f} %')
            i_ft = subset_indices(len(tr_x), sub['finetune_train'], SUBSET_SEED + 2)
            ft_imgs = EvalImages(tr_x[i_ft], tr_y[i_ft], scale.img_size, scale.mean,
                                 scale.std)
            backbone = build_eval_backbone(spec.eval_backbone, state, fresh=spec.eval_fresh)
            epochs = settings.get('finetune_epochs', 1)
            log(f'eval | fine-tune: {epochs} epoch(s) on {len(ft_imgs)} images')
            ev['finetune_top1'] = round(finetune(
                backbone, scale.embed_dims, ft_imgs, test_imgs, device, epochs=epochs,
                batch_size=64, seed=settings['seed'],
                amp_dtype=torch.bfloat16 if (scale.amp and device.type == 'cuda') else None,
                log=log), 2)
            log(f'eval | fine-tune top-1 {ev["finetune_top1"]:.2f} %')
        ev.update(feat_train=len(train_imgs), test=len(test_imgs),
                  finetune_train=sub['finetune_train'] if mode == 'all' else 0,
                  feature=FEATURES.get(scale.track, 'mean of final-normed patch tokens'),
                  knn_k=20, knn_t=0.07)
    result['eval'] = ev
    result['eval_s'] = round(time.perf_counter() - t_eval, 1)
    result['total_s'] = round(time.perf_counter() - t_total, 1)
    result['status'] = 'ok'
    write_json(result, osp.join(out_dir, 'result.json'))
    return result


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        settings = json.load(f)
    name = settings['method']
    out_dir = osp.join(settings['work_dir'], settings.get('run_name', name))
    try:
        run_method(settings)
    except BaseException as err:  # noqa: BLE001  (report any failure, then exit 1)
        os.makedirs(out_dir, exist_ok=True)
        first = (str(err).strip().splitlines() or [''])[0]
        line = f'{type(err).__name__}: {first}'
        write_json(dict(method=name, seed=settings.get('seed'), status='failed',
                        error=line[:500],
                        traceback=traceback.format_exc()[-4000:]),
                   osp.join(out_dir, 'failed.json'))
        print(f'[benchmark] {name} | FAILED | {line}', flush=True)
        traceback.print_exc()
        return 1
    return 0


if __name__ == '__main__':
    np.seterr(all='ignore')
    sys.exit(main())
