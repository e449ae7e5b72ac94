"""CIM against the other MIM methods, side by side, in one command.

    python tools/benchmark.py --scale cpu-small [--work-dir benchmarks/results/vit] \\
        [--methods cim-respix,cim-revdet,mae,simmim,beit,maskfeat,simclr,densecl,random] \\
        [--budget-s 120] [--eval-subset medium] [--flops] [--seeds 3]
    python tools/benchmark.py --track resnet --seeds 3      # the ResNet-18 track
    python tools/benchmark.py --track convnext --seeds 3    # the ConvNeXt track (or swin)
    python tools/benchmark.py --ablate all --budget-s 480   # the CIM ablations
    python tools/benchmark.py --track seg --seeds 3 --pretrain-missing  # segmentation
    python tools/benchmark.py --readme-table WORK_DIR       # README table of a run
    python tools/benchmark.py --across-table                # README: CIM across architectures

Each track writes into its own folder of ``benchmarks/results/`` unless
``--work-dir`` says otherwise (``vit``, ``resnet``, ``ablation``, ``seg``;
``vit_gpu`` at ``--scale gpu``): the run sets kept in git are those folders,
each the work dir of the command its ``results.md`` names, so a rerun or a
``--report-only`` there updates them in place (git shows what changed; the
checkpoints and logs a run leaves are ignored there).

For each method: pre-train the scale's ViT for the same wall-clock budget on
the same data, evaluate (k-NN, linear probe, short fine-tune on Fashion-MNIST)
and measure cost (throughput, peak memory, CIM's step breakdown); then write
``results.md``, ``results.json``, ``results.csv`` and ``quality.png``,
``cost.png``, ``cim_breakdown.png`` into the work dir. A method whose
``WORK_DIR/<method>/result.json`` exists (same settings) is not re-run. Exit 1
naming the failed methods if any failed (after running the others).

``--seeds N`` runs every method with seeds ``--seed .. --seed + N - 1`` (each
run resumable on its own); the tables give the median and min–max over seeds
and write differences inside the spread as ties. ``--track resnet`` (cpu-small)
compares on the CIM demo ResNet-18 against the CNN peers (SimCLR, MoCo v2,
BYOL, SimSiam, Barlow Twins, DenseCL, SparK, MEC); ``--track convnext`` /
``--track swin`` on the CIM demo ConvNeXt / Swin against the family's MIM peer
(SparK / SimMIM) and SimCLR. ``--ablate`` runs the CIM
ablations (benchmarks/ablations.py). ``--track seg`` fine-tunes the backbones
those tracks pre-trained on the Fashion-MNIST scenes with mmseg (UperNet, and a
frozen backbone with a linear head) and reports mIoU / mAcc
(benchmarks/seg_runner.py). ``--clock process`` counts the
budget in CPU time / threads instead of wall clock. Neither clock is fair on a
shared machine: a CPU run that got under ``--min-cpu-share`` (0.85) of its
threads' time, or that ran beside other processes using over 10 % of the
cores, is recorded as failed and rerun when resumed.

Scales: ``cpu-small`` (the CPU demo: real Fashion-MNIST 32 px, tiny ViT,
2 CPU cores) and ``gpu`` (ViT-B/16 or ViT-S/16 at 224 px, bf16, DALL-E dVAE;
throughput and memory, k-NN with ``--eval knn``). ``--flops`` adds per-image
FLOP counts (runs on CPU; always on at ``--scale gpu``).
See docs/benchmark.md.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shlex
import sys
import warnings
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)  # mmengine's import

from benchmarks.scales import EVAL_SUBSETS, SCALES, TRACKS  # noqa: E402
from benchmarks.specs import METHODS  # noqa: E402
from cim_mm.utils.errors import UserError  # noqa: E402

from benchmarks.paths import DEFAULT_WORK_DIRS, RESULTS_DIR, default_work_dir  # noqa: E402
# the seg track's flags that are its own; the others go to the pre-training command
# (--pretrain-missing) when given
PRETRAIN_FLAGS = ('seeds', 'seed', 'clock', 'min_cpu_share', 'budget_s', 'iters', 'eval',
                  'eval_subset', 'finetune_epochs', 'batch_size', 'tokenizer', 'data_root',
                  'num_workers', 'threads', 'in_process')

SCALE_DEFAULTS = {
    'cpu-small': dict(budget_s=120., eval='all', eval_subset='medium', device='cpu'),
    'gpu': dict(budget_s=60., eval='none', eval_subset='small', device='cuda'),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Pre-train CIM and its peers for the same budget, evaluate, report.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--scale', choices=SCALES, default='cpu-small')
    p.add_argument('--work-dir', default=None,
                   help=f'default (in the repository): {DEFAULT_WORK_DIRS["vit"]}, '
                   f'{RESULTS_DIR}/<track> (--track resnet / convnext / swin), '
                   f'{DEFAULT_WORK_DIRS["ablation"]} (--ablate), {DEFAULT_WORK_DIRS["seg"]} '
                   f'(--track seg), {DEFAULT_WORK_DIRS["vit_gpu"]} (--scale gpu)')
    p.add_argument('--track', choices=TRACKS + ('seg', ), default='vit',
                   help='cpu-small backbone: the tiny ViT, the demo ResNet-18 (w32), ConvNeXt or '
                   'Swin; seg: '
                   'segmentation of the Fashion-MNIST scenes with the backbones those tracks '
                   'pre-trained (--from-track)')
    p.add_argument('--methods', default='all',
                   help=f'comma-separated subset of: {",".join(METHODS)} (vit); '
                   'cim-respix,cim-revdet,simclr,mocov2,byol,simsiam,barlowtwins,densecl,'
                   'spark,mec,random (resnet); cim-respix,cim-revdet,spark,simclr,random '
                   '(convnext); cim-respix,cim-revdet,simmim,simclr,random (swin)')
    p.add_argument('--ablate', default=None, metavar='all|NAMES',
                   help='run the CIM ablations instead of the methods: all, or a comma-'
                   'separated list of <cim-respix|cim-revdet>[@knob] (docs/benchmark.md)')
    p.add_argument('--seeds', type=int, default=1,
                   help='seeds per method (--seed, --seed+1, ...); tables show the median '
                   'and min-max')
    p.add_argument('--clock', choices=('wall', 'process'), default='wall',
                   help='budget clock: wall, or process (CPU time of this process / '
                   'torch threads); neither is fair when other jobs share the cores: '
                   'see --min-cpu-share')
    p.add_argument('--min-cpu-share', type=float, default=0.85,
                   help='on CPU, a run whose CPU time / threads is below this share of '
                   'its wall time, or beside other processes that used over 10 %% of '
                   'the cores, shared the machine and is recorded as failed, to be '
                   'rerun (0: keep such runs)')
    p.add_argument('--budget-s', type=float, default=None,
                   help='pre-training wall-clock seconds per method '
                   '(default: 120 at cpu-small, 60 at gpu)')
    p.add_argument('--iters', type=int, default=None,
                   help='pre-train a fixed number of steps instead of a time budget '
                   '(reproducible; throughput still measured)')
    p.add_argument('--eval', choices=('all', 'knn', 'none'), default=None,
                   help='all: k-NN + linear probe + fine-tune; knn; none: cost only '
                   '(default: all at cpu-small, none at gpu)')
    p.add_argument('--eval-subset', choices=tuple(EVAL_SUBSETS), default=None,
                   help='evaluation size: ' + '; '.join(
                       f'{k}: {v["feat_train"]} train / {v["test"]} test features, '
                       f'fine-tune on {v["finetune_train"]}' for k, v in EVAL_SUBSETS.items()))
    p.add_argument('--finetune-epochs', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=None,
                   help='pre-training batch (default: the config\'s, 64)')
    p.add_argument('--device', default=None, help='cpu / cuda (default: per scale)')
    p.add_argument('--arch', choices=('vit-b', 'vit-s'), default='vit-b',
                   help='--scale gpu: ViT-B/16 or ViT-S/16')
    p.add_argument('--dalle-dir', default=None,
                   help='--scale gpu: folder with DALL-E encoder.pkl / decoder.pkl '
                   '(default: random weights, fine for cost figures)')
    p.add_argument('--tokenizer', default='auto',
                   help='cpu-small VQ tokenizer: auto (reuse work_dirs/vqtokenizer_d4-v512_'
                   'fashion-mnist-32px/tokenizer.pth, train it if absent), a path, or '
                   'random (untrained; smoke tests only)')
    p.add_argument('--flops', action='store_true',
                   help='also count per-image FLOPs (DALL-E enc/dec, ViT-B/16, CIM/BEiT '
                   'step ratio); on by default at --scale gpu')
    p.add_argument('--no-flops', action='store_true', help='skip the FLOP counts at --scale gpu')
    p.add_argument('--num-workers', type=int, default=None,
                   help='dataloader workers (default: 0 at cpu-small, 8 at gpu)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--data-root', default=None,
                   help='the extracted Fashion-MNIST idx files (default: the CIM demo '
                   "config's data/fashion_mnist)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true',
                   help='re-run methods even if their result.json exists')
    p.add_argument('--suite', action='store_true',
                   help='cpu-small: the whole suite in one command: the ViT table, the '
                   'ResNet track (both with --seeds, --budget-s) and the ablations '
                   '(--ablate-budget-s), into WORK_DIR/{vit,resnet,ablation} (default '
                   f'{RESULTS_DIR}, the tracks\' own folders)')
    p.add_argument('--ablate-budget-s', type=float, default=480.,
                   help='--suite: pre-training budget of each ablation')
    p.add_argument('--report-only', action='store_true',
                   help='run nothing: rewrite the report from the finished runs')
    p.add_argument('--across-table', nargs='*', metavar='TRACK=DIR', default=None,
                   help='print the README table "CIM across architectures" (per family: '
                   'CIM\'s better variant, the family\'s MIM peer, random init) from the '
                   'tracks\' results.json and exit; default folders: each track\'s own, '
                   'or TRACK=DIR')
    p.add_argument('--readme-table', metavar='WORK_DIR', default=None,
                   help='print the README table (markdown) of WORK_DIR/results.json and exit')
    seg = p.add_argument_group('--track seg')
    seg.add_argument('--from-track', default='vit,resnet', metavar='TRACKS',
                     help='whose pre-trained backbones to fine-tune on the scenes: '
                     'vit, resnet, convnext, swin (comma-separated) or all; the convnext '
                     'and swin rows (CIM and random init) run fine-tuned only')
    seg.add_argument('--pretrained-dir', action='append', default=None, metavar='[TRACK=]DIR',
                     help='work dir of the pre-training track (DIR alone with one '
                     '--from-track; repeatable as vit=DIR / convnext=DIR); default: each '
                     f'track\'s own ({DEFAULT_WORK_DIRS["vit"]}, ...)')
    seg.add_argument('--pretrain-missing', action='store_true',
                     help='pre-train the missing backbones first with the track\'s own '
                     'command (with this command\'s --seeds, --budget-s, --clock, ...); '
                     'without it a missing one stops the command, naming that command')
    seg.add_argument('--seg-modes', default='finetune,frozen',
                     help='finetune (UperNet, whole backbone) and/or frozen (frozen '
                     'backbone, linear head)')
    seg.add_argument('--seg-iters', type=int, default=400,
                     help="iterations of batch 8 per seg run (the configs' 400)")
    seg.add_argument('--scene-size', type=int, default=64,
                     help="scene side in px (the configs' 64; smaller for smoke tests)")
    seg.add_argument('--scenes-root', default=None,
                     help='the scenes (ADE20K layout), written there from --data-root if '
                     'absent (default: data/fashion_mnist_scenes, or ..._<size>px)')
    seg.add_argument('--scenes-train', type=int, default=2000,
                     help='training scenes to write when the scenes are absent')
    seg.add_argument('--scenes-val', type=int, default=500,
                     help='validation scenes to write when the scenes are absent')
    p.add_argument('--in-process', action='store_true',
                   help='run the methods in this process (faster start, for tests; '
                   'peak memory is then the process\'s)')
    return p.parse_args(argv)


def options(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    d = SCALE_DEFAULTS[args.scale]
    default = 'ablation' if args.ablate else 'vit_gpu' if args.scale == 'gpu' else args.track
    work_dir = args.work_dir or default_work_dir(default)
    opts = dict(
        scale=args.scale, work_dir=work_dir, methods=args.methods, track=args.track,
        seeds=args.seeds, clock=args.clock, ablate=args.ablate,
        min_cpu_share=args.min_cpu_share,
        report_only=args.report_only,
        budget_s=float(args.budget_s if args.budget_s is not None else d['budget_s']),
        iters=args.iters, eval=args.eval or d['eval'],
        eval_subset=args.eval_subset or d['eval_subset'],
        finetune_epochs=args.finetune_epochs, batch_size=args.batch_size,
        device=args.device or d['device'], arch=args.arch, dalle_dir=args.dalle_dir,
        tokenizer=args.tokenizer, flops=(args.flops or args.scale == 'gpu') and not args.no_flops,
        data_root=osp.abspath(args.data_root) if args.data_root else None,
        seed=args.seed, force=args.force, threads=args.threads, in_process=args.in_process,
        command='python tools/benchmark.py ' + ' '.join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    if args.num_workers is not None:
        opts['num_workers'] = args.num_workers
    if args.budget_s is not None and args.budget_s <= 0:
        raise UserError(f'--budget-s must be > 0, got {args.budget_s}')
    if args.batch_size is not None and args.batch_size <= 0:
        raise UserError(f'--batch-size must be > 0, got {args.batch_size}')
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f'--num-workers must be >= 0, got {args.num_workers}')
    if args.seeds < 1:
        raise UserError(f'--seeds must be >= 1, got {args.seeds}')
    if args.ablate and args.track != 'vit':
        raise UserError(f'--ablate runs on the tiny ViT: drop --track {args.track}')
    if args.iters is not None and args.iters <= 0:
        raise UserError(f'--iters must be > 0, got {args.iters}')
    return opts


def _check_data_root(opts: dict) -> None:
    """One line, before any method runs, when the scale's Fashion-MNIST files are absent."""
    from benchmarks.scales import build_scale
    root = build_scale(opts['scale'], arch=opts['arch'],
                       data_root=opts['data_root'], track=opts.get('track', 'vit')).data_root
    name = osp.join(root, 'train-images-idx3-ubyte')
    if not (osp.isfile(name) or osp.isfile(name + '.gz')):
        raise FileNotFoundError(
            f'no Fashion-MNIST in {root} (train-images-idx3-ubyte missing): run '
            'bash tools/prepare_fashion_mnist.sh, or pass --data-root DIR with the idx files')


def run_suite(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The ViT table, the ResNet track and the ablations, one after the other."""
    import copy

    from benchmarks.runner import _fmt_s, rough_plan, run_benchmark, say
    from cim_mm.utils.errors import UserError
    if args.scale != 'cpu-small' or args.ablate or args.methods != 'all':
        raise UserError('--suite runs every method of the cpu-small suite: drop --scale / '
                        '--ablate / --methods')
    root = args.work_dir or osp.dirname(default_work_dir('vit'))
    parts = []
    for name, kw in (('vit', dict(track='vit')), ('resnet', dict(track='resnet')),
                     ('ablation', dict(track='vit', ablate='all', seeds=1,
                                       budget_s=args.ablate_budget_s))):
        a = copy.copy(args)
        a.work_dir = osp.join(root, name)
        for k, v in kw.items():
            setattr(a, k, v)
        parts.append((name, options(a, argv)))
    _check_data_root(parts[0][1])
    plans = [rough_plan(o) for _, o in parts]
    say('suite: ' + '; '.join(f'{n}: {k} run(s) ~{_fmt_s(t)}' for (n, _), (k, t)
                              in zip(parts, plans))
        + f'; ETA ~{_fmt_s(sum(t for _, t in plans))} (quiet machine)')
    rc = 0
    t0 = time.perf_counter()
    for i, (name, opts) in enumerate(parts):
        left = sum(t for _, t in plans[i:])
        say(f'suite [{i + 1}/{len(parts)}] {name} -> {opts["work_dir"]}; ETA for the rest '
            f'~{_fmt_s(left)}, {_fmt_s(time.perf_counter() - t0)} so far')
        rc = max(rc, run_benchmark(opts))
    say(f'suite: done in {_fmt_s(time.perf_counter() - t0)}')
    return rc


def _pretrain_args(args: argparse.Namespace) -> list[str]:
    """The flags of this command the pre-training track takes too (those given)."""
    defaults = parse_args([])
    out: list[str] = []
    for dest in PRETRAIN_FLAGS:
        v = getattr(args, dest)
        if v == getattr(defaults, dest):
            continue
        flag = '--' + dest.replace('_', '-')
        out += [flag] if v is True else [flag, str(v)]
    return out


def seg_options(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """The options of benchmarks.seg_runner from the command line."""
    from benchmarks.seg_data import default_root
    from benchmarks.seg_specs import (MODES, SEG_TRACKS, has_mode, parse_seg_methods,
                                      parse_seg_tracks)
    if args.ablate or args.suite or args.scale != 'cpu-small':
        raise UserError('--track seg runs on the cpu-small tracks\' backbones: drop '
                        '--ablate / --suite / --scale')
    try:
        tracks = parse_seg_tracks(args.from_track)
    except ValueError as err:
        raise UserError(str(err)) from None
    dirs = {t: default_work_dir(t) for t in SEG_TRACKS}
    for item in args.pretrained_dir or []:
        track, sep, folder = item.partition('=')
        if not sep:
            if len(tracks) != 1:
                raise UserError(f'--pretrained-dir {item}: with {len(tracks)} tracks, say '
                                'whose: ' + ' / '.join(f'{t}=DIR' for t in tracks))
            track, folder = tracks[0], item
        if track not in SEG_TRACKS:
            raise UserError(f'--pretrained-dir {item}: unknown track {track!r}')
        dirs[track] = folder
    modes = [m.strip() for m in args.seg_modes.split(',') if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise UserError(f'--seg-modes {args.seg_modes}: choose from {", ".join(MODES)}')
    idle = [t for t in tracks if not any(has_mode(t, m) for m in modes)]
    if idle:
        raise UserError(f'--seg-modes {args.seg_modes}: the {", ".join(idle)} rows run '
                        'fine-tuned only: add finetune')
    for flag, v in (('--seg-iters', args.seg_iters), ('--scene-size', args.scene_size),
                    ('--seeds', args.seeds)):
        if v < 1:
            raise UserError(f'{flag} must be >= 1, got {v}')
    try:
        parse_seg_methods(args.methods, tracks)
    except ValueError as err:
        raise UserError(str(err)) from None
    from benchmarks.paths import REPO_ROOT
    data_root = args.data_root or osp.join(REPO_ROOT, 'data', 'fashion_mnist')
    return dict(
        work_dir=osp.abspath(args.work_dir or default_work_dir('seg')), tracks=tracks,
        methods=args.methods, seeds=args.seeds, seed=args.seed, modes=[
            m for m in MODES if m in modes],
        pretrained_dirs={t: osp.abspath(d) for t, d in dirs.items()},
        pretrain_missing=args.pretrain_missing, pretrain_args=_pretrain_args(args),
        seg_iters=args.seg_iters, scene_size=args.scene_size,
        scenes_root=osp.abspath(args.scenes_root or default_root(args.scene_size)),
        scenes_train=args.scenes_train, scenes_val=args.scenes_val,
        data_root=osp.abspath(data_root), threads=args.threads, force=args.force,
        in_process=args.in_process, report_only=args.report_only,
        command='python tools/benchmark.py ' + ' '.join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cim_mm.utils.cli import user_errors_as_one_line
    with user_errors_as_one_line('benchmark.py'):
        if args.across_table is not None:
            from benchmarks.across import FAMILIES, across_table
            dirs = {t: default_work_dir(t) for t, _ in FAMILIES.values()}
            for item in args.across_table:
                track, sep, folder = item.partition('=')
                if not sep or track not in dirs:
                    raise UserError(f'--across-table {item}: give TRACK=DIR with TRACK one of '
                                    + ', '.join(dirs))
                dirs[track] = folder
            print(across_table(dirs), end='')
            return 0
        if args.readme_table:
            from benchmarks.io import read_json
            from benchmarks.report import readme_table
            from benchmarks.seg_report import readme_table as seg_readme_table
            data = read_json(osp.join(args.readme_table, 'results.json'))
            if data is None:
                raise UserError(f'no results.json in {args.readme_table}: run the '
                                        'benchmark there first')
            seg = 'modes' in (data.get('meta') or {})  # the seg track's report
            print((seg_readme_table if seg else readme_table)(data), end='')
            return 0
        if args.suite:
            return run_suite(args, argv)
        if args.track == 'seg':
            from benchmarks.seg_runner import run_seg_benchmark
            if args.threads:
                import torch
                torch.set_num_threads(args.threads)
                os.environ['OMP_NUM_THREADS'] = str(args.threads)  # for worker processes
            return run_seg_benchmark(seg_options(args, argv), run_track=main)
        opts = options(args, argv)
        from benchmarks.specs import parse_methods
        try:  # an unknown name fails first, in one line: the names are the user's
            if opts['ablate']:
                from benchmarks.ablations import parse_ablations
                parse_ablations(opts['ablate'])
            else:
                parse_methods(opts['methods'], opts['track'])
        except ValueError as err:  # (--methods / --ablate)
            raise UserError(str(err)) from None
        _check_data_root(opts)
        if opts['device'].startswith('cuda'):
            import torch
            if not torch.cuda.is_available():
                raise UserError(f'--scale {args.scale} runs on CUDA but no GPU is visible; '
                                 'pass --device cpu to try its shapes on the CPU (slow)')
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
            os.environ['OMP_NUM_THREADS'] = str(args.threads)  # for worker processes
        from benchmarks.runner import run_benchmark
        return run_benchmark(opts)


if __name__ == '__main__':
    sys.exit(main())
