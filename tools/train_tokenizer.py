"""Train the small VQ tokenizer, evaluate it, export its weights.

    python tools/train_tokenizer.py CONFIG [--work-dir DIR] [--out PATH]
        [--cfg-options k=v ...]

1. trains ``CONFIG`` (e.g. ``configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py``)
   with mmengine's ``Runner.from_cfg`` (checkpoints/logs in the work dir);
2. evaluates reconstruction PSNR (dB, on [0, 1] pixels) of
   ``decode(encode(map_pixels(x)))`` and codebook usage on the config's
   ``eval_dataloader`` (the Fashion-MNIST test split, 10000 images);
3. writes the tokenizer weights only, as a plain state dict, to ``--out``
   (default ``WORK_DIR/tokenizer.pth``; atomically) and the metrics to the
   same name with ``.json``.

CIM configs load the exported file as ``model.tokenizer.checkpoint``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import warnings
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers the CIM modules)
from cim_mm.compat import apply_all  # noqa: E402
from cim_mm.utils.warning_filters import (filter_third_party_logs,  # noqa: E402
                                          filter_third_party_warnings)
from cim_mm.models.tokenizers.vq_tokenizer import evaluate_psnr  # noqa: E402
from cim_mm.utils import atomic_torch_save  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402

apply_all()  # the fixes for the pinned stack: safe checkpoints, CPU DDP, interp2d
filter_third_party_warnings()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train, evaluate and export a VQ tokenizer')
    parser.add_argument('config', help='tokenizer config file')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--out', help='exported state dict (default: '
                        'WORK_DIR/tokenizer.pth); metrics go to the same name '
                        'with .json')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument(
        '--cpu-threads', type=int, default=None,
        help='torch CPU threads. Default, when training on CPU and '
        'OMP_NUM_THREADS is unset: CPU cores minus dataloader workers (at '
        'least 1); oversubscribed cores slowed training >10x on a 2-core box')
    return parser.parse_args(argv)


def _set_cpu_threads(cfg: Config, threads: int | None) -> None:
    from cim_mm.utils.cpu_threads import set_cpu_threads
    workers = cfg.get('train_dataloader', {}).get('num_workers', 0)
    set_cpu_threads(workers, threads)


def _write_json(obj: dict, path: str) -> None:
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp', dir=folder)
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
    os.chmod(tmp, 0o644)  # mkstemp makes 0600
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with user_errors_as_one_line('train_tokenizer.py'):
        if not osp.isfile(args.config):
            raise FileNotFoundError(f'config file {args.config} does not exist')
        cfg = Config.fromfile(args.config)
        if args.cfg_options is not None:
            cfg.merge_from_dict(args.cfg_options)
        if args.work_dir is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir', None) is None:
            cfg.work_dir = osp.join(
                './work_dirs', osp.splitext(osp.basename(args.config))[0])
        if cfg.get('eval_dataloader', None) is None:
            raise UserError(f'{args.config} has no eval_dataloader (the split '
                           'to measure reconstruction PSNR on)')
        out = args.out or osp.join(cfg.work_dir, 'tokenizer.pth')
        _set_cpu_threads(cfg, args.cpu_threads)

        runner = Runner.from_cfg(cfg)
        filter_third_party_logs(runner.logger)
        t0 = time.time()
        runner.train()
        train_time = time.time() - t0

        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        t0 = time.time()
        loader = runner.build_dataloader(cfg.eval_dataloader)
        metrics = evaluate_psnr(model, loader)
        eval_time = time.time() - t0

        atomic_torch_save(model.tokenizer_state_dict(), out)
        model_cfg = {
            k: v
            for k, v in cfg.model.to_dict().items() if k != 'data_preprocessor'
        }
        report = dict(
            metrics,
            split=cfg.eval_dataloader.dataset.get('split', None),
            train_iters=runner.iter,
            train_time_s=round(train_time, 1),
            eval_time_s=round(eval_time, 1),
            config=osp.abspath(args.config),
            checkpoint=osp.abspath(out),
            model=model_cfg)
        json_path = osp.splitext(out)[0] + '.json'
        _write_json(report, json_path)
        runner.logger.info(
            f"tokenizer: PSNR {metrics['psnr']:.2f} dB, codebook usage "
            f"{metrics['codes_used']}/{model.vocab_size} "
            f"({100 * metrics['codebook_usage']:.1f} %), perplexity "
            f"{metrics['perplexity']:.1f} on {metrics['num_images']} "
            f'{report["split"]} images; weights -> {out}, metrics -> {json_path}')
        return report


if __name__ == '__main__':
    main()
