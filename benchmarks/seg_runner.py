"""The seg track: every (pre-training track, method, seed, mode) run, resumably.

For each run (seed-major, then track, method, mode), in
``WORK_DIR/<track>/<mode>/<method>[_seed<k>]``:

1. the pre-trained backbone is the pre-training run's ``backbone.pth`` in the
   track's work dir (``<method>[_seed<k>]/``, random init: none); all of them
   are looked up before anything runs: missing ones are made by the track's own
   command when asked (``--pretrain-missing``), else the command stops with one
   line naming the command that makes them;
2. a run whose ``result.json`` holds the same settings (scenes, iterations,
   seed, mode, the seg config's digest, the backbone file's digest) is skipped;
3. otherwise :mod:`benchmarks.seg_worker` runs it (own process by default; a
   failure is recorded and the next run goes on).

Then the report (:mod:`benchmarks.seg_report`). Seg runs are a fixed number of
iterations, so their scores do not depend on the machine's speed: no CPU-share
guard here (the pre-training runs have theirs).
"""
from __future__ import annotations

import functools
import hashlib
import os.path as osp
import shlex
import sys
import time
from typing import Callable, Optional

from cim_mm.utils.errors import UserError

from .io import read_json
from .runner import _fmt_s, run_name, run_one, say, seed_list
from .scales import build_scale
from .seg_config import config_digest
from .seg_data import ensure_scenes, scenes_id
from .seg_report import write_seg_report
from .seg_specs import has_mode, parse_seg_methods, row_label, seg_config
from .specs import build_spec

#: rough seconds of one run at the configs' 400 iterations (2 idle cores, 64 px,
#: 500 validation scenes): a fine-tune run ~290 s, a frozen probe ~100 s
RUN_GUESS_S = 200.
CONFIG_ITERS = 400


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _digest(config: str) -> str:
    return config_digest(config)


@functools.lru_cache(maxsize=None)
def _backbone_cfgs(track: str, method: str) -> list[dict]:
    """The backbone configs that may describe the track's ``backbone.pth`` of
    ``method``: its evaluation backbone, then its pre-training backbone
    (``seg_weights.describing_cfg`` picks the one whose keys it holds)."""
    spec = build_spec(method, build_scale('cpu-small', track=track))
    return [spec.eval_backbone] + ([spec.model['backbone']] if spec.model else [])


def units(opts: dict) -> list[tuple[str, str, int, str]]:
    """(track, method, seed, mode) of every run, seed-major (a table cut short
    has complete rows); a track runs only the modes it has a config for."""
    rows = parse_seg_methods(opts.get('methods'), opts['tracks'])
    out = []
    for sd in seed_list(opts):
        for track in opts['tracks']:
            for m in rows[track]:
                out += [(track, m, sd, mode) for mode in opts['modes']
                        if has_mode(track, mode)]
    return out


def pretrained_run(opts: dict, track: str, method: str, seed: int) -> Optional[dict]:
    """The finished pre-training run (``backbone``, ``result``) of a row, or None."""
    folder = osp.join(opts['pretrained_dirs'][track], run_name(method, seed))
    r = read_json(osp.join(folder, 'result.json'))
    bb = osp.join(folder, 'backbone.pth')
    if r is None or r.get('status') != 'ok' or not osp.isfile(bb):
        return None
    return dict(backbone=bb, result=r)


def track_argv(opts: dict, track: str, methods: list[str]) -> list[str]:
    """The track command that pre-trains ``methods`` (all seeds) into its work dir."""
    return (['--track', track, '--methods', ','.join(methods), '--work-dir',
             opts['pretrained_dirs'][track]] + list(opts.get('pretrain_args') or []))


def missing_pretraining(opts: dict, todo: list) -> dict[str, list[str]]:
    """Per track, the methods with a seed whose pre-training is not there."""
    missing: dict[str, list[str]] = {}
    for track, m, sd, _ in todo:
        if m != 'random' and pretrained_run(opts, track, m, sd) is None \
                and m not in missing.get(track, []):
            missing.setdefault(track, []).append(m)
    return missing


def kept_without_weights(opts: dict, todo: list) -> list[str]:
    """The pre-training folders of ``todo`` that hold a finished ``result.json`` but
    no ``backbone.pth``: results kept without their weights (those of
    ``benchmarks/results/``), which the track command counts as done."""
    out = []
    for track, m, sd, _ in todo:
        folder = osp.join(opts['pretrained_dirs'][track], run_name(m, sd))
        r = read_json(osp.join(folder, 'result.json'))
        if m != 'random' and r is not None and r.get('status') == 'ok' \
                and not osp.isfile(osp.join(folder, 'backbone.pth')) and folder not in out:
            out.append(folder)
    return out


def ensure_pretraining(opts: dict, all_units: list,
                       run_track: Optional[Callable[[list[str]], int]]) -> None:
    """Every row's pre-training there, made by the track's command if
    ``opts['pretrain_missing']``; else one line naming the command."""
    missing = missing_pretraining(opts, all_units)
    if not missing:
        return
    kept = kept_without_weights(opts, all_units)
    if kept:
        more = f' (and {len(kept) - 1} more)' if len(kept) > 1 else ''
        flags = ' '.join(f'--pretrained-dir {t}=work_dirs/pretrain_{t}' for t in missing)
        raise UserError(
            f'{kept[0]}{more} holds a finished result.json but no backbone.pth (a result '
            'kept without its weights; the track command would skip it): pre-train into '
            f'a work folder instead: {flags} --pretrain-missing')
    cmds = [track_argv(opts, t, ms) for t, ms in missing.items()]
    if not opts.get('pretrain_missing') or run_track is None:
        first = next(iter(missing.items()))
        text = ' && '.join('python tools/benchmark.py ' + shlex.join(c) for c in cmds)
        raise UserError(
            f'no pre-trained backbone for {sum(len(v) for v in missing.values())} seg '
            f'row(s) ({first[0]}: {", ".join(first[1])}{" ..." if len(missing) > 1 else ""})'
            f' in {opts["pretrained_dirs"][first[0]]}: make them with `{text}`, or add '
            '--pretrain-missing')
    for c in cmds:
        say('pre-training first: python tools/benchmark.py ' + shlex.join(c))
        run_track(c)  # its own failures are reported there; checked again below
    still = missing_pretraining(opts, all_units)
    if still:
        logs = ', '.join(opts['pretrained_dirs'][t] for t in still)
        raise UserError('pre-training did not make every backbone: '
                        + '; '.join(f'{t}: {", ".join(ms)}' for t, ms in still.items())
                        + f' (see the logs in {logs})')


def run_settings(opts: dict, unit: tuple, scenes: str, sid: str) -> dict:
    """The worker settings of one run, its fingerprint included."""
    track, m, sd, mode = unit
    config = seg_config(track, mode, m)
    pre = None if m == 'random' else pretrained_run(opts, track, m, sd)
    backbone_cfg = None if pre is None else _backbone_cfgs(track, m)
    fp = dict(track=track, method=m, mode=mode, seed=sd, seg_iters=opts['seg_iters'],
              scene_size=opts['scene_size'], scenes_id=sid, config=config,
              config_digest=_digest(config),
              backbone=None if pre is None else file_digest(pre['backbone']))
    return dict(track=track, method=m, mode=mode, seed=sd, run_name=run_name(m, sd),
                work_dir=osp.join(opts['work_dir'], track, mode), config=config,
                label=f'{row_label(track, m)} ({mode}, seed {sd})',
                backbone_pth=None if pre is None else pre['backbone'],
                backbone_cfg=backbone_cfg,
                pretrain_settings=None if pre is None else pre['result'].get('settings'),
                scenes_root=scenes, scene_size=opts['scene_size'],
                seg_iters=opts['seg_iters'], threads=opts.get('threads'), fingerprint=fp)


def finished(settings: dict) -> tuple[bool, str]:
    """(finished with these settings, why not)."""
    r = read_json(osp.join(settings['work_dir'], settings['run_name'], 'result.json'))
    if r is None:
        return False, 'no result.json'
    if r.get('status') != 'ok':
        return False, 'result.json is not a finished result'
    old, fp = r.get('settings') or {}, settings['fingerprint']
    diff = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
    return (False, f'settings changed ({", ".join(diff)})') if diff else (True, '')


def run_seg_benchmark(opts: dict,
                      run_track: Optional[Callable[[list[str]], int]] = None) -> int:
    """Run every seg run of ``opts`` (see :func:`tools.benchmark.seg_options`),
    write the report; returns the exit status. ``run_track(argv)`` runs the
    track command ``tools/benchmark.py argv`` (for ``--pretrain-missing``)."""
    t0 = time.perf_counter()
    work_dir = opts['work_dir']
    all_units = units(opts)
    failed: dict[str, str] = {}
    results: list[dict] = []
    if not opts.get('report_only'):
        ensure_pretraining(opts, all_units, run_track)
        scenes = ensure_scenes(opts['scenes_root'], opts['data_root'], opts['scene_size'],
                               opts['scenes_train'], opts['scenes_val'], log=say)
        sid = scenes_id(scenes)
        todo = []
        for u in all_units:
            s = run_settings(opts, u, scenes, sid)
            done, why = (False, 'forced') if opts.get('force') else finished(s)
            rel = osp.relpath(osp.join(s['work_dir'], s['run_name']), work_dir)
            if done:
                say(f'{rel}: finished earlier, skipping')
            else:
                if why not in ('no result.json', 'forced'):
                    say(f'{rel}: {why}: re-running')
                todo.append(s)
        guess = RUN_GUESS_S * opts['seg_iters'] / CONFIG_ITERS
        took: list[float] = []

        def eta(n: int) -> str:
            return _fmt_s(n * (sum(took) / len(took) if took else guess))

        say(f'seg: {len(all_units)} run(s) ({", ".join(opts["tracks"])} rows x '
            f'{len(seed_list(opts))} seed(s) x {", ".join(opts["modes"])}), {len(todo)} to '
            f'do, {opts["seg_iters"]} iterations each on {opts["scene_size"]} px scenes; '
            f'ETA ~{eta(len(todo))}')
        for i, s in enumerate(todo):
            rel = osp.relpath(osp.join(s['work_dir'], s['run_name']), work_dir)
            say(f'[{i + 1}/{len(todo)}] {rel}: start; ETA for the rest ~{eta(len(todo) - i)}')
            ts = time.perf_counter()
            ok, err = run_one(s, opts.get('in_process', False), worker='benchmarks.seg_worker')
            took.append(time.perf_counter() - ts)
            if ok:
                say(f'[{i + 1}/{len(todo)}] {rel}: done in {_fmt_s(took[-1])}')
            else:
                failed[rel] = err
                say(f'[{i + 1}/{len(todo)}] {rel}: FAILED: {err}')
    for track, m, sd, mode in all_units:
        folder = osp.join(work_dir, track, mode, run_name(m, sd))
        r = read_json(osp.join(folder, 'result.json'))
        if r is None or r.get('status') != 'ok':
            f = read_json(osp.join(folder, 'failed.json')) or {}
            r = dict(status='failed' if f else 'missing', error=f.get('error'))
        r.update(track=track, method=m, seed=sd, mode=mode)
        results.append(r)
    meta = dict(command=opts.get('command', ''), seeds=seed_list(opts),
                tracks=opts['tracks'], modes=opts['modes'], seg_iters=opts['seg_iters'],
                scene_size=opts['scene_size'], scenes_root=opts['scenes_root'],
                pretrained_dirs=opts['pretrained_dirs'],
                seconds=round(time.perf_counter() - t0, 1),
                runs_seconds=round(sum(r.get('total_s') or 0. for r in results), 1),
                time=time.strftime('%Y-%m-%d %H:%M:%S'))
    paths = write_seg_report(results, work_dir, meta)
    say(f'report: {paths["md"]} (+ results.json, results.csv, seg.png) in '
        f'{_fmt_s(time.perf_counter() - t0)}')
    if failed:
        print(f'benchmark: error: {len(failed)} of {len(all_units)} seg runs failed: '
              + ', '.join(f'{k} ({v})' for k, v in failed.items())
              + f'; logs in {work_dir}/<track>/<mode>/<run>/', file=sys.stderr, flush=True)
        return 1
    return 0
