"""Run the whole benchmark: every method, resumably, with progress and ETA.

For each selected method (or ablation, ``--ablate``) and seed (``--seeds N``:
seeds ``seed .. seed + N - 1``), in table order; a run's folder is
``WORK_DIR/<method>`` for seed 0 and ``WORK_DIR/<method>_seed<k>`` otherwise:

1. ``WORK_DIR/<run>/result.json`` exists with the same settings -> skipped
   (resumable; ``--force`` re-runs; other settings -> re-run, said so);
2. otherwise :mod:`benchmarks.worker` runs it -- in its own process by
   default (own peak memory, a crash stays contained; its full output goes to
   ``WORK_DIR/<method>/worker.log``, its ``[benchmark]`` lines to the console);
3. a failure is recorded (``failed.json``) and the next method runs.

Then the report (:mod:`benchmarks.report`) is written from every
method's result, and the exit status is 1 with one line naming the failed
methods if any failed.
"""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Optional

from .cpu_share import MIN_CPU_SHARE, ContendedRun, check_cpu_share
from .io import read_json, write_json
from .recipe import method_recipes
from .paths import REPO_ROOT
from .scales import EVAL_SUBSETS, TOKENIZER_CONFIG, TOKENIZER_DIR

# Rough evaluation seconds per method before any was measured (2 CPU cores).
EVAL_GUESS_S = {('cpu-small', 'small'): 20, ('cpu-small', 'medium'): 130,
                ('cpu-small', 'full'): 1500}
BUILD_GUESS_S = 15.
# the backbone every method of a cpu-small track pre-trains (the ViT's note is its own)
TRACK_BACKBONES = {'resnet': 'ResNet-18', 'convnext': 'ConvNeXt', 'swin': 'Swin'}


def say(msg: str) -> None:
    print(f'[benchmark] {msg}', flush=True)


def _fmt_s(s: float) -> str:
    s = max(int(s), 0)
    return f'{s // 3600}h{s % 3600 // 60:02d}m' if s >= 3600 else \
        f'{s // 60}m{s % 60:02d}s' if s >= 60 else f'{s}s'


# ------------------------------------------------------------------ settings
# settings added later: in the fingerprint only when not at their default, so
# results written before them still resume
OPTIONAL_DEFAULTS = dict(track='vit', clock='wall')


def _min_share(opts: dict) -> float:
    v = opts.get('min_cpu_share')
    return MIN_CPU_SHARE if v is None else float(v)


def fingerprint(opts: dict) -> dict:
    """What a finished result depends on: a result with other settings is stale."""
    keys = ('scale', 'arch', 'budget_s', 'iters', 'eval', 'eval_subset', 'batch_size',
            'seed', 'device', 'tokenizer_id', 'finetune_epochs', 'data_root')
    fp = {k: opts.get(k) for k in keys}
    for k, default in OPTIONAL_DEFAULTS.items():
        if opts.get(k, default) != default:
            fp[k] = opts[k]
    return fp


def run_name(method: str, seed: int) -> str:
    """The folder of one run: ``<method>`` for seed 0, ``<method>_seed<k>``."""
    return method if seed == 0 else f'{method}_seed{seed}'


def seed_list(opts: dict) -> list[int]:
    n = int(opts.get('seeds') or 1)
    return [int(opts.get('seed', 0)) + i for i in range(n)]


TOKENIZER_METHODS = ('cim-respix', 'cim-revdet', 'beit')


def uses_tokenizer(method: str) -> bool:
    return method.split('_seed')[0].split('@')[0] in TOKENIZER_METHODS


def contended(r: dict, min_share: float = MIN_CPU_SHARE) -> Optional[str]:
    """Why a finished CPU result does not count (it shared the machine: see
    :func:`~benchmarks.cpu_share.check_cpu_share`), or None. Results
    written before ``cpu_share`` was recorded are judged from their clocks."""
    pre = r.get('pretrain') or {}
    if r.get('device', 'cpu') != 'cpu' or 'wall_s' not in pre or 'process_s' not in pre:
        return None
    try:
        check_cpu_share(dict(pre), min_share)
    except ContendedRun as e:
        return f'contended ({e.reason})'
    return None


def finished(work_dir: str, method: str, fp: dict,
             min_cpu_share: float = MIN_CPU_SHARE) -> tuple[bool, str]:
    """(is finished with these settings, why not); ``method`` is the run's
    folder name (:func:`run_name`). The tokenizer only matters to the methods
    that use it (CIM, BEiT); a CPU run that shared the machine is not finished.
    The recipe (:mod:`.recipe`) is compared when ``fp`` has one (a result
    without one is stale)."""
    r = read_json(osp.join(work_dir, method, 'result.json'))
    if r is None:
        return False, 'no result.json'
    if r.get('status') != 'ok':
        return False, 'result.json is not a finished result'
    why = contended(r, min_cpu_share)
    if why:
        return False, why
    old = r.get('settings') or {}
    diff = sorted(k for k in set(fp) | set(old) if old.get(k) != fp.get(k)
                  and not (k == 'tokenizer_id' and not uses_tokenizer(method))
                  and not (k == 'recipe' and k not in fp))
    if diff:
        return False, f'settings changed ({", ".join(diff)})'
    return True, ''


def tokenizer_id(path: Optional[str]) -> str:
    if path is None:
        return 'random'
    st = os.stat(path)
    return f'{osp.abspath(path)}:{st.st_size}:{int(st.st_mtime)}'


def _results_tokenizer(results: list[dict]) -> Optional[str]:
    """The tokenizer file the results were made with (``--report-only`` builds no
    tokenizer): the path part of their ``settings.tokenizer_id``, None if random."""
    ids = {(r.get('settings') or {}).get('tokenizer_id') for r in results
           if str(r.get('method')).split('@')[0] in ('cim-respix', 'cim-revdet', 'beit')}
    paths = sorted(i.rsplit(':', 2)[0] for i in ids if i and i.count(':') >= 2)
    return paths[0] if paths else None


def ensure_tokenizer(choice: str, log: Callable[[str], None] = say) -> Optional[str]:
    """'random' -> None; a path -> it (must exist); 'auto' -> the default
    tokenizer, trained with ``tools/train_tokenizer.py`` if absent."""
    if choice == 'random':
        log('tokenizer: RANDOM (untrained) VQ tokenizer -- smoke tests only; CIM/BEiT '
            'quality is meaningless with it')
        return None
    if choice != 'auto':
        if not osp.isfile(choice):
            raise FileNotFoundError(f'tokenizer checkpoint {choice} does not exist')
        return osp.abspath(choice)
    path = osp.join(REPO_ROOT, TOKENIZER_DIR, 'tokenizer.pth')
    if osp.isfile(path) and os.path.getsize(path) > 0:
        log(f'tokenizer: reusing {osp.relpath(path, REPO_ROOT)}')
        return path
    log(f'tokenizer: {osp.relpath(path, REPO_ROOT)} absent: training it '
        f'({TOKENIZER_CONFIG}, ~1.5 min on 2 idle CPU cores)')
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools/train_tokenizer.py'),
           osp.join(REPO_ROOT, TOKENIZER_CONFIG), '--work-dir',
           osp.join(REPO_ROOT, TOKENIZER_DIR)]
    rc, _ = _stream(cmd, osp.join(REPO_ROOT, TOKENIZER_DIR, 'train_tokenizer.log'),
                    lambda line: 'Iter(train)' in line and '00/' in line,
                    prefix='tokenizer | ')
    if rc != 0 or not osp.isfile(path):
        raise RuntimeError(f'training the tokenizer failed (exit {rc}); see '
                           f'{osp.join(TOKENIZER_DIR, "train_tokenizer.log")}')
    return path


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def _stream(cmd: list, log_path: str, echo: Callable[[str], bool],
            prefix: str = '') -> tuple[int, list]:
    """Run ``cmd``; every output line to ``log_path``; lines ``echo`` accepts to
    the console. Returns (exit code, last lines)."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    tail: list = []
    with open(log_path, 'a') as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, env=_env(), cwd=REPO_ROOT)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                logf.write(line)
                logf.flush()
                tail = (tail + [line.rstrip()])[-30:]
                if echo(line):
                    text = line.rstrip()
                    print(text if text.startswith('[benchmark]') else
                          f'[benchmark] {prefix}{text.strip()}', flush=True)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return rc, tail


# ----------------------------------------------------------------- one method
def run_one(settings: dict, in_process: bool,
            worker: str = 'benchmarks.worker') -> tuple[bool, str]:
    """Run a worker (the module ``worker``: its ``run_method(settings)`` in this
    process, or ``python -m worker SETTINGS_JSON``); (ok, error line)."""
    method, work_dir = settings['method'], settings['work_dir']
    run = settings.get('run_name', method)
    out_dir = osp.join(work_dir, run)
    os.makedirs(out_dir, exist_ok=True)
    for stale in ('result.json', 'failed.json'):
        if osp.exists(osp.join(out_dir, stale)):
            os.remove(osp.join(out_dir, stale))
    if in_process:
        import importlib
        try:
            importlib.import_module(worker).run_method(settings)
            return True, ''
        except Exception as err:  # noqa: BLE001  (record, go on with the others)
            import traceback
            line = f'{type(err).__name__}: {(str(err).strip().splitlines() or [""])[0]}'
            write_json(dict(method=method, status='failed', error=line[:500],
                            traceback=traceback.format_exc()[-4000:]),
                       osp.join(out_dir, 'failed.json'))
            say(f'{run} | FAILED | {line}')
            return False, line
    settings_path = osp.join(out_dir, 'settings.json')
    write_json(settings, settings_path)
    cmd = [sys.executable, '-m', worker, settings_path]
    rc, tail = _stream(cmd, osp.join(out_dir, 'worker.log'),
                       lambda line: line.startswith('[benchmark]'))
    r = read_json(osp.join(out_dir, 'result.json'))
    if rc == 0 and r is not None and r.get('status') == 'ok':
        return True, ''
    f = read_json(osp.join(out_dir, 'failed.json')) or {}
    line = f.get('error') or next((t for t in reversed(tail) if t.strip()),
                                  f'worker exited with {rc}')
    if not f:
        write_json(dict(method=method, status='failed', error=line[:500],
                        traceback='\n'.join(tail)), osp.join(out_dir, 'failed.json'))
    return False, line


# ---------------------------------------------------------------------- all
def _units(opts: dict) -> list:
    if opts.get('ablate'):
        from .ablations import parse_ablations
        methods = parse_ablations(opts['ablate'])
    else:
        from .specs import parse_methods
        methods = parse_methods(opts.get('methods'), opts.get('track') or 'vit')
    # seed-major: every method's first seed before any second seed, so a table
    # cut short (the suite is resumable) has complete rows
    return [(m, s) for s in seed_list(opts) for m in methods]


def rough_plan(opts: dict) -> tuple[int, float]:
    """(runs left to do, rough seconds) of a benchmark, before it starts:
    for the whole-suite ETA (the tokenizer is assumed trained if present)."""
    work_dir = osp.abspath(opts['work_dir'])
    tok = osp.join(REPO_ROOT, TOKENIZER_DIR, 'tokenizer.pth')
    choice = opts.get('tokenizer', 'auto')
    tok = None if choice == 'random' else (tok if choice == 'auto' else osp.abspath(choice))
    tid = tokenizer_id(tok) if tok and osp.isfile(tok) else 'random'
    ev = EVAL_GUESS_S.get((opts['scale'], opts['eval_subset']), 60.) \
        if opts['eval'] != 'none' else 0.
    units = _units(opts)
    recipes = method_recipes(opts, list(dict.fromkeys(m for m, _ in units)))
    n, total = 0, 0.
    for m, sd in units:
        fp = dict(fingerprint(dict(opts, seed=sd, tokenizer_id=tid)), recipe=recipes[m])
        if not opts.get('force') and finished(work_dir, run_name(m, sd), fp,
                                              _min_share(opts))[0]:
            continue
        n += 1
        total += ev + (0. if m == 'random' else BUILD_GUESS_S + (
            opts['iters'] * 0.6 if opts.get('iters') else opts['budget_s']))
    return n, total


def run_benchmark(opts: dict) -> int:
    """Run every selected method x seed, write the report; returns the exit status."""
    from .specs import label_of
    t0 = time.perf_counter()
    work_dir = osp.abspath(opts['work_dir'])
    os.makedirs(work_dir, exist_ok=True)
    units = _units(opts)
    methods = list(dict.fromkeys(m for m, _ in units))
    seeds = seed_list(opts)
    scale = opts['scale']
    needs_tok = any(uses_tokenizer(m) for m in methods)
    tok_path = None
    if needs_tok and scale == 'cpu-small' and not opts.get('report_only'):
        tok_path = ensure_tokenizer(opts.get('tokenizer', 'auto'))
    opts['tokenizer_ckpt'] = tok_path
    opts['tokenizer_id'] = tokenizer_id(tok_path) if scale == 'cpu-small' else \
        f'dalle:{opts.get("dalle_dir") or "random"}'
    # settings per seed + recipe per method (.recipe): a changed recipe re-runs
    recipes = {} if opts.get('report_only') else method_recipes(opts, methods)
    fps = {(m, s): dict(fingerprint(dict(opts, seed=s)), recipe=recipes[m])
           for m, s in ([] if opts.get('report_only') else units)}
    budget = opts['budget_s']
    eval_guess = EVAL_GUESS_S.get((scale, opts['eval_subset']), 60.) \
        if opts['eval'] != 'none' else 0.
    if opts['eval'] == 'knn':
        eval_guess *= 0.4
    eval_measured: list = []
    failed: dict = {}
    todo = []
    for m, sd in ([] if opts.get('report_only') else units):
        run = run_name(m, sd)
        done, why = (False, 'forced') if opts.get('force') else \
            finished(work_dir, run, fps[m, sd], _min_share(opts))
        if done:
            say(f'{run}: finished earlier ({osp.join(osp.basename(work_dir), run, "result.json")}), '
                'skipping')
        else:
            if why not in ('no result.json', 'forced'):
                say(f'{run}: {why}: re-running')
            todo.append((m, sd))
    step_s: list = []  # measured s/step (for --iters runs)

    def estimate(m: str) -> float:
        ev = sum(eval_measured) / len(eval_measured) if eval_measured else eval_guess
        if m == 'random':
            return ev
        if opts.get('iters'):
            pre = opts['iters'] * (sum(step_s) / len(step_s) if step_s else 1.)
        else:
            pre = budget
        return BUILD_GUESS_S + pre + ev

    what = f'{opts["iters"]} steps' if opts.get('iters') else \
        f'{_fmt_s(budget)} ({opts.get("clock") or "wall"} clock)'
    say(f'scale {scale}{" / " + opts["track"] if opts.get("track") not in (None, "vit") else ""}: '
        f'{len(methods)} method(s) x {len(seeds)} seed(s), {len(todo)} run(s) to do, '
        f'pre-training {what} each; ETA ~{_fmt_s(sum(estimate(m) for m, _ in todo))}')
    for i, (m, sd) in enumerate(todo):
        run = run_name(m, sd)
        eta = sum(estimate(x) for x, _ in todo[i:])
        say(f'[{i + 1}/{len(todo)}] {run} ({label_of(m)}, seed {sd}): start; ETA for the '
            f'rest ~{_fmt_s(eta)}')
        settings = dict(opts, method=m, seed=sd, run_name=run, work_dir=work_dir,
                        fingerprint=fps[m, sd])
        ts = time.perf_counter()
        ok, err = run_one(settings, opts.get('in_process', False))
        dt = time.perf_counter() - ts
        if ok:
            r = read_json(osp.join(work_dir, run, 'result.json')) or {}
            if r.get('eval_s') is not None and opts['eval'] != 'none':
                eval_measured.append(float(r['eval_s']))
            pre = r.get('pretrain') or {}
            if pre.get('iters'):
                step_s.append(pre['wall_s'] / pre['iters'])
            say(f'[{i + 1}/{len(todo)}] {run}: done in {_fmt_s(dt)}; ETA for the rest '
                f'~{_fmt_s(sum(estimate(x) for x, _ in todo[i + 1:]))}')
        else:
            failed[run] = err
            say(f'[{i + 1}/{len(todo)}] {run}: FAILED in {_fmt_s(dt)}: {err} '
                f'(log: {osp.join(work_dir, run, "worker.log")})')

    # ---------------------------------------------------------------- flops
    flops = None
    if opts.get('flops'):
        fpath = osp.join(work_dir, 'flops.json')
        flops = None if opts.get('force') else read_json(fpath)
        if flops is None or flops.get('arch_key') != opts.get('arch'):
            say('flops: counting (CPU, batch 1; ~1 min)')
            try:
                from .flops import flops_report
                flops = flops_report(opts.get('arch', 'vit-b'), log=say)
                flops['arch_key'] = opts.get('arch')
                write_json(flops, fpath)
            except Exception as err:  # noqa: BLE001
                failed['flops'] = f'{type(err).__name__}: {err}'
                flops = None
        else:
            say('flops: reusing flops.json')

    # --------------------------------------------------------------- report
    results = []
    order = {m: i for i, (m, _) in reversed(list(enumerate(units)))}
    for m, sd in sorted(units, key=lambda u: (order[u[0]], u[1])):  # rows by method
        run = run_name(m, sd)
        r = read_json(osp.join(work_dir, run, 'result.json'))
        why = contended(r, _min_share(opts)) if r and r.get('status') == 'ok' else None
        if r is None or r.get('status') != 'ok' or why:
            f = read_json(osp.join(work_dir, run, 'failed.json')) or {}
            r = dict(method=m, label=label_of(m), status='failed' if run in failed or f
                     or why else 'missing', error=failed.get(run) or why or f.get('error'),
                     scale=scale)
        r.setdefault('seed', sd)
        r['label'] = label_of(m) if r.get('status') != 'ok' else r.get('label', label_of(m))
        results.append(r)
    meta = report_meta(opts, results, time.perf_counter() - t0)
    meta['seeds'] = seeds
    meta['ablation'] = bool(opts.get('ablate'))
    from .report import write_report
    paths = write_report(results, work_dir, meta, flops)
    pngs = ', '.join(osp.basename(p) for p in paths['png'])
    say(f'report: {paths["md"]} (+ results.json, results.csv, {pngs}) in '
        f'{_fmt_s(time.perf_counter() - t0)}')
    if failed:
        names = ', '.join(f'{k} ({v})' for k, v in failed.items())
        print(f'benchmark: error: {len(failed)} of {len(units)} failed: {names}; logs in '
              f'{work_dir}/<run>/worker.log', file=sys.stderr, flush=True)
        return 1
    return 0


def report_meta(opts: dict, results: list, seconds: float) -> dict:
    from .cost import device_name
    sub = EVAL_SUBSETS.get(opts['eval_subset'], {})
    if opts['eval'] == 'none':
        eval_desc = 'none (cost only)'
    else:
        eval_desc = (f'{opts["eval_subset"]} subset: k-NN (k=20, cosine, T=0.07)'
                     + (' and linear probe' if opts['eval'] == 'all' else '')
                     + f' on {sub.get("feat_train")} train / {sub.get("test")} test '
                     'features')
        if opts['eval'] == 'all':
            eval_desc += (f'; fine-tune {opts.get("finetune_epochs", 1)} epoch(s) on '
                          f'{sub.get("finetune_train")} train images')
    mem = next(((r.get('pretrain') or {}).get('mem_method') for r in results
                if (r.get('pretrain') or {}).get('mem_method')), None)
    dev = next((r.get('device_name') for r in results if r.get('device_name')), None)
    tok = opts.get('tokenizer_ckpt') or _results_tokenizer(results)
    notes = []
    if opts.get('in_process'):
        notes.append('--in-process run: the methods shared one process, so peak memory '
                     'figures after the first method include earlier allocations.')
    track = opts.get('track') or 'vit'
    if opts['scale'] == 'cpu-small' and track in TRACK_BACKBONES:
        notes.append(f'Same {TRACK_BACKBONES[track]}, data and optimizer recipe (AdamW of the '
                     'CPU demo, warm-up + cosine over the budget) for every method; the '
                     'tokenizer training is not part of the budget (a given, like the DALL-E '
                     'dVAE).')
    elif opts['scale'] == 'cpu-small':
        notes.append('Same ViT, data and optimizer recipe (AdamW of the CPU demo, warm-up '
                     '+ cosine over the budget) for every method; the tokenizer training '
                     'is not part of the budget (a given, like the DALL-E dVAE).')
    return dict(
        scale=opts['scale'], device=opts['device'], device_name=dev or device_name(opts['device']),
        budget_s=opts['budget_s'], iters=opts.get('iters'),
        budget_desc=(f'{opts["iters"]} steps' if opts.get('iters') else
                     f'{opts["budget_s"]:.0f} s ' + ('wall clock' if (opts.get('clock') or 'wall')
                                                   == 'wall' else 'process CPU time / threads')),
        track=opts.get('track') or 'vit', clock=opts.get('clock') or 'wall',
        batch_size=opts.get('batch_size') or next(
            ((r.get('pretrain') or {}).get('batch_size') for r in results
             if (r.get('pretrain') or {}).get('batch_size')), 'the config\'s'),
        eval=opts['eval'],
        eval_subset=opts['eval_subset'], eval_desc=eval_desc, mem_method=mem,
        tokenizer=None if not any(
            str(r.get('method')).split('@')[0] in ('cim-respix', 'cim-revdet', 'beit')
            for r in results) else
        (osp.relpath(tok, REPO_ROOT) if tok else
         ('random VQ tokenizer (smoke test)' if opts['scale'] == 'cpu-small'
          else f'DALL-E dVAE ({opts.get("dalle_dir") or "random weights"})')),
        command=opts.get('command', ''), seconds=round(seconds, 1), notes=notes,
        # the table's own cost, whatever number of invocations (resumes) made it
        runs_seconds=round(sum(r.get('total_s') or 0. for r in results
                               if r.get('status') == 'ok'), 1),
        time=time.strftime('%Y-%m-%d %H:%M:%S'))
