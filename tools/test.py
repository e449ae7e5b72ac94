"""Evaluate a checkpoint with a config, as mmpretrain's / mmseg's ``tools/test.py``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--cfg-options k=v ...] [--launcher pytorch|slurm|mpi] [--allow-mismatch]

CHECKPOINT is the one the config was trained to: for a CIM backbone, the
checkpoint its fine-tune run wrote (work_dirs/<fine-tune config>/iter_*.pth).

Unlike mmengine's default (a non-strict load that only warns), a checkpoint whose
keys do not match the config's model stops here with one line naming what is
missing / unexpected, so a wrong checkpoint is never evaluated as if it were
right. Checkpoints load with ``weights_only=True`` and cim_mm's allow-list.
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import MODELS, RUNNERS, init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import cim_mm  # noqa: E402,F401  (registers the CIM modules)
from cim_mm.compat import apply_all  # noqa: E402
from cim_mm.utils.cli import user_errors_as_one_line  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402
from cim_mm.utils.seg_extra import load_config  # noqa: E402
from cim_mm.utils.safe_checkpoint import safe_load  # noqa: E402
from cim_mm.utils.warning_filters import filter_third_party_warnings  # noqa: E402

apply_all()  # the fixes for the pinned stack: safe checkpoints, CPU DDP, interp2d
filter_third_party_warnings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate a checkpoint with a config (mmpretrain / mmseg).',
        epilog='example: python tools/test.py configs/cim/benchmarks/'
               'vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py '
               'work_dirs/vit-tiny-p4_cim-pre_1xb64-ft-1000it_fashion-mnist-32px/iter_1000.pth')
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help='set by torch.distributed.launch (use --launcher pytorch)')
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
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


def mismatch_hint(ckpt: dict) -> str:
    """What to do with a checkpoint that does not fit the test config's model."""
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    state = ckpt.get('state_dict', ckpt)
    if 'cim_mm_conversion' in meta:
        return ('it is a converted backbone (cim_to_downstream.py), the starting point of '
                'a fine-tune: train the fine-tune config with it (tools/train.py), then test '
                'the checkpoint that run writes in its work dir (work_dirs/<fine-tune config '
                'name>/iter_*.pth)')
    if any(k.startswith(('generator.', 'module.generator.')) for k in state):
        return ('it is a CIM pre-training checkpoint: convert it with '
                'tools/model_converters/cim_to_downstream.py, fine-tune with the converted '
                'file (tools/train.py), then test the checkpoint the fine-tune writes in its '
                'work dir (work_dirs/<fine-tune config name>/iter_*.pth)')
    return 'pass the checkpoint this config was trained to, or --allow-mismatch'


def check_keys(cfg: Config, checkpoint: str, config_path: str) -> None:
    """Refuse, in one line and before the Runner starts, a checkpoint whose keys do
    not fit the config's model (built alone, on the CPU, without logging)."""
    ckpt = safe_load(checkpoint)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f'{checkpoint} holds no state dict')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = copy.deepcopy(cfg.model)
    model = MODELS.build(model_cfg)
    problem = key_mismatch(set(model.state_dict()),
                           {k[len('module.'):] if k.startswith('module.') else k
                            for k in state})
    if problem:
        raise UserError(f'checkpoint {checkpoint} does not match the model of '
                        f'{config_path}: {problem}; {mismatch_hint(ckpt)}')


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_as_one_line('test.py'):
        for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} file {path} does not exist')
        cfg = load_config(args.config)
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
        if not args.allow_mismatch:
            check_keys(cfg, args.checkpoint, args.config)
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.load_checkpoint(args.checkpoint, strict=not args.allow_mismatch)
        runner.test()


if __name__ == '__main__':
    main()
