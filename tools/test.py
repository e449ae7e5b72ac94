"""Evaluate a checkpoint with a config, as mmpretrain's / mmseg's ``tools/test.py``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--cfg-options k=v ...] [--launcher pytorch|slurm|mpi] [--allow-mismatch]

Unlike mmengine's default (a non-strict load that only warns), a checkpoint whose
keys do not match the config's model stops here with one line naming what is
missing / unexpected, so a wrong checkpoint is never evaluated as if it were
right. Checkpoints load with ``weights_only=True`` and cim_mm's allow-list.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers the CIM modules)
from cim_mm.compat import apply_all  # noqa: E402
from cim_mm.utils.warning_filters import filter_third_party_warnings  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402
from cim_mm.utils.safe_checkpoint import safe_load  # noqa: E402

apply_all()  # the fixes for the pinned stack: safe checkpoints, CPU DDP, interp2d
filter_third_party_warnings()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump the predictions to this pickle file '
                        '(mmengine DumpResults)')
    parser.add_argument('--allow-mismatch', action='store_true',
                        help='evaluate even if the checkpoint keys do not match')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def key_mismatch(model_keys: set[str], ckpt_keys: set[str]) -> str | None:
    """One line describing a key mismatch, or None when the keys agree."""
    missing = sorted(model_keys - ckpt_keys)
    unexpected = sorted(ckpt_keys - model_keys)
    if not missing and not unexpected:
        return None
    parts = []
    if missing:
        parts.append(f'{len(missing)} model keys missing from it (e.g. {missing[0]})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected keys (e.g. {unexpected[0]})')
    return '; '.join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_as_one_line('test.py'):
        for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} file {path} does not exist')
        cfg = Config.fromfile(args.config)
        if args.cfg_options is not None:
            cfg.merge_from_dict(args.cfg_options)
        cfg.launcher = args.launcher
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
            './work_dirs', osp.splitext(osp.basename(args.config))[0])
        cfg.load_from = None  # loaded below, strictly
        cfg.resume = False
        if args.out:
            cfg.test_evaluator = [*(cfg.test_evaluator if isinstance(
                cfg.test_evaluator, list) else [cfg.test_evaluator]),
                dict(type='DumpResults', out_file_path=args.out)]
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)

        ckpt = safe_load(args.checkpoint)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise UserError(f'{args.checkpoint} holds no state dict')
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        problem = key_mismatch(set(model.state_dict()),
                               {k[len('module.'):] if k.startswith('module.') else k
                                for k in state})
        if problem and not args.allow_mismatch:
            raise UserError(
                f'checkpoint {args.checkpoint} does not match the model of '
                f'{args.config}: {problem}; pass the checkpoint this config was trained '
                'to (convert a CIM pre-training checkpoint with '
                'tools/model_converters/cim_to_downstream.py), or --allow-mismatch')
        runner.load_checkpoint(args.checkpoint, strict=not args.allow_mismatch)
        runner.test()


if __name__ == '__main__':
    main()
