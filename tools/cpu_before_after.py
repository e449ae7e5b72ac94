"""CPU step time of a base commit against this checkout, alternating runs.

    python tools/cpu_before_after.py BASE [--rounds 3] [--batch-size 8] [--iters 5]
        [--demo-iters 100] [--out work_dirs/cpu_before_after]
        [--results benchmarks/results/speed/cpu_before_after.json] [--dry-run]

``BASE`` is checked out in a git worktree (``OUT/base``; the data and the demo
tokenizer are linked from this checkout). Each round runs, for the base and then
for this checkout, with the same Python:

* the ViT-B/16-shape CIM-ResPix step, ``tools/benchmark.py --scale gpu --device
  cpu --methods cim-respix --iters N --eval none --no-flops``: the median step
  time of the run (its first two steps excluded) and its synchronised breakdown;
* the demo (``configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py``
  through ``tools/train.py``, ``--demo-iters`` iterations): mmengine's logged
  ``time`` per iteration from the 50th on.

Alternating puts any drift of the machine's speed on both sides alike. Run it
alone on the machine. ``OUT`` holds the runs and their logs; the figures go to
``--results`` (JSON), and a summary table is printed.
``--dry-run`` checks the plan (the commit, the paths) and prints the commands.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'
TOKENIZER = 'work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px'
RESULTS = 'benchmarks/results/speed/cpu_before_after.json'
ITER_TIME = re.compile(r'Iter\(train\) \[\s*(\d+)/\d+\].*? time: ([0-9.]+)')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('base', help='the commit to compare with (e.g. a tag or a hash)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--demo-iters', type=int, default=100)
    p.add_argument('--out', default=osp.join(ROOT, 'work_dirs', 'cpu_before_after'),
                   help='scratch: the base worktree, the runs and their logs')
    p.add_argument('--results', default=osp.join(ROOT, RESULTS),
                   help=f'the JSON of the figures (default: {RESULTS})')
    p.add_argument('--dry-run', action='store_true')
    return p.parse_args(argv)


def _git(*args: str) -> str:
    return subprocess.run(['git', '-C', ROOT, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def base_checkout(commit: str, out: str) -> str:
    """A worktree of ``commit`` under ``out`` with this checkout's data linked."""
    path = osp.join(out, 'base')
    if not osp.isdir(path):
        _git('worktree', 'add', '--detach', path, commit)
    for rel in ('data/fashion_mnist', TOKENIZER):
        src, dst = osp.join(ROOT, rel), osp.join(path, rel)
        if osp.exists(src) and not osp.exists(dst):
            os.makedirs(osp.dirname(dst), exist_ok=True)
            os.symlink(src, dst)
    return path


def commands(args: argparse.Namespace, side: str, rnd: int) -> dict[str, list[str]]:
    run = osp.join(args.out, f'{side}_{rnd}')
    return dict(
        step=[sys.executable, 'tools/benchmark.py', '--scale', 'gpu', '--device', 'cpu',
              '--methods', 'cim-respix', '--iters', str(args.iters), '--eval', 'none',
              '--no-flops', '--batch-size', str(args.batch_size), '--work-dir', run + '_step'],
        demo=[sys.executable, 'tools/train.py', DEMO, '--work-dir', run + '_demo',
              '--cfg-options', f'train_cfg.max_iters={args.demo_iters}',
              'default_hooks.checkpoint.interval=1000000'])


def _run(cmd: list[str], cwd: str, log: str) -> None:
    env = dict(os.environ, PYTHONPATH=cwd)
    with open(log, 'w') as f:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f'cpu_before_after: {" ".join(cmd[1:3])} failed in {cwd} (rc {rc}); '
                         f'see {log}')


def step_figures(work_dir: str) -> dict:
    r = json.load(open(osp.join(work_dir, 'cim-respix', 'result.json')))['pretrain']
    seg = (r.get('cim_breakdown') or {}).get('segments_s') or {}
    return dict(step_s=r['step_s_median'], segments_s=seg)


def demo_s_per_iter(log: str) -> float:
    times = [float(t) for i, t in ITER_TIME.findall(open(log).read()) if int(i) >= 50]
    if not times:
        raise SystemExit(f'cpu_before_after: no logged iteration time from the 50th on in {log}')
    return statistics.median(times)


def summary(runs: dict) -> dict:
    out = {}
    for side, rs in runs.items():
        for k in ('step_s', 'demo_s_per_iter'):
            v = [r[k] for r in rs]
            out.setdefault(side, {})[k] = dict(median=statistics.median(v), min=min(v),
                                               max=max(v), runs=v)
    for k in ('step_s', 'demo_s_per_iter'):
        out.setdefault('speedup', {})[k] = out['base'][k]['median'] / out['after'][k]['median']
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = osp.abspath(args.out)
    commit = _git('rev-parse', '--verify', args.base + '^{commit}')
    head = _git('rev-parse', 'HEAD')
    if args.dry_run:
        for side in ('base', 'after'):
            for name, cmd in commands(args, side, 1).items():
                print(f'{side} {name}: {" ".join(cmd[1:])}')
        print(f'base {commit[:9]} (worktree {osp.join(args.out, "base")}), after {head[:9]}; '
              f'figures to {args.results}')
        return 0
    os.makedirs(args.out, exist_ok=True)
    dirs = dict(base=base_checkout(commit, args.out), after=ROOT)
    runs: dict[str, list] = dict(base=[], after=[])
    for rnd in range(1, args.rounds + 1):
        for side, cwd in dirs.items():
            cmds = commands(args, side, rnd)
            t0 = time.perf_counter()
            _run(cmds['step'], cwd, osp.join(args.out, f'{side}_{rnd}_step.log'))
            demo_log = osp.join(args.out, f'{side}_{rnd}_demo.log')
            _run(cmds['demo'], cwd, demo_log)
            fig = step_figures(osp.join(args.out, f'{side}_{rnd}_step'))
            fig['demo_s_per_iter'] = demo_s_per_iter(demo_log)
            runs[side].append(fig)
            print(f'round {rnd} {side}: step {fig["step_s"]:.2f} s, demo '
                  f'{fig["demo_s_per_iter"]:.3f} s/it ({time.perf_counter() - t0:.0f} s)')
    res = dict(base=commit, after=head, batch_size=args.batch_size, iters=args.iters,
               demo_iters=args.demo_iters, runs=runs, summary=summary(runs))
    os.makedirs(osp.dirname(osp.abspath(args.results)), exist_ok=True)
    with open(args.results, 'w') as f:
        json.dump(res, f, indent=1)
    s = res['summary']
    for k in ('step_s', 'demo_s_per_iter'):
        b, a = s['base'][k], s['after'][k]
        print(f'{k}: base {b["median"]:.3f} ({b["min"]:.3f}-{b["max"]:.3f}), after '
              f'{a["median"]:.3f} ({a["min"]:.3f}-{a["max"]:.3f}): {s["speedup"][k]:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
