"""Train with a config, as mmpretrain's ``tools/train.py`` (same flags).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--resume [CKPT]]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher pytorch|slurm|mpi]
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers the CIM modules)
from cim_mm.compat import apply_all  # noqa: E402
from cim_mm.utils.warning_filters import (filter_third_party_logs,  # noqa: E402
                                          filter_third_party_warnings)
from cim_mm.engine.optim_wrappers.amp_fallback import (accelerator_available,  # noqa: E402
                                                       amp_to_plain)
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.config_check import check_config  # noqa: E402
from cim_mm.utils.cpu_threads import set_cpu_threads  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402
from cim_mm.utils.seg_extra import load_config  # noqa: E402
from cim_mm.utils.resume import corrupt_resume_error  # noqa: E402
from cim_mm.utils.safe_checkpoint import CheckpointCorruptError  # noqa: E402

apply_all()  # the fixes for the pinned stack: safe checkpoints, CPU DDP, interp2d
filter_third_party_warnings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train a model from a config (CIM pre-training, fine-tuning, mmseg).',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
               '  python tools/train.py configs/cim/'
               'cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py\n'
               '  python tools/train.py CONFIG --resume            # latest checkpoint\n'
               '  bash tools/dist_train.sh CONFIG 8                # 8 processes')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints '
                        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from CKPT, or (no value) from the latest checkpoint in '
        'the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual / base batch size')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='dataloaders without pinned host memory')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='dataloader workers restarted every epoch')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument(
        '--cpu-threads', type=int, default=None,
        help='torch CPU threads. Default, when no GPU is visible and '
        'OMP_NUM_THREADS is unset: CPU cores minus dataloader workers')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by torch.distributed.launch (use --launcher pytorch)')
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise UserError(
                f'--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in '
                f'{args.config}: add it (N = the total batch its lr is set for) or '
                'drop the flag')
        cfg.auto_scale_lr.enable = True

    if args.cfg_options is not None:  # first, so loader fix-ups below see them
        cfg.merge_from_dict(args.cfg_options)
    amp_to_fp32_without_accelerator(cfg)
    accelerator = accelerator_available()
    default_loader = ConfigDict(pin_memory=True, persistent_workers=True,
                                collate_fn=dict(type='default_collate'))
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(field, None) is None:
            continue
        loader = deepcopy(default_loader)
        loader.update(cfg[field])
        if loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
        if args.no_pin_memory or not accelerator:  # pinned memory only serves a device
            loader['pin_memory'] = False
        if args.no_persistent_workers:
            loader['persistent_workers'] = False
        cfg[field] = loader
    return cfg


def amp_to_fp32_without_accelerator(cfg: Config) -> None:
    """Without CUDA / NPU / MLU / MUSA, an AMP optimizer wrapper (recipes,
    ``--amp``) becomes its plain counterpart: float32, said in one line."""
    changed = amp_to_plain(cfg.get('optim_wrapper', None))
    if changed:
        print(f'train.py: warning: no CUDA device: {changed.replace(" -> ", " replaced by ")}, '
              'training in float32', file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_as_one_line('train.py'):
        if not osp.isfile(args.config):
            raise FileNotFoundError(f'config file {args.config} does not exist')
        cfg = merge_args(load_config(args.config), args)
        set_cpu_threads(cfg.get('train_dataloader', {}).get('num_workers', 0),
                        args.cpu_threads)
        check_config(cfg)  # mask / grid / image-size mismatches: one line, before building
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        filter_third_party_logs(runner.logger)
        try:
            runner.train()
        except CheckpointCorruptError as err:
            if cfg.get('resume', False) and err.path:  # the checkpoint to resume from
                raise corrupt_resume_error(err) from None
            raise


if __name__ == '__main__':
    main()
