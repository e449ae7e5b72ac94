"""results.json / results.md of the GPU check, and its targets.

:data:`REQUIRED` lists every figure a complete run has (dotted paths into
results.json); ``tests/benchmark/test_gpu_check.py`` asserts each is there and finite.
The "before" row is the first H200 run, eager, before the fast path
(:data:`BEFORE`, a copy of that run's results.json), read, never rerun.
"""
from __future__ import annotations

import json
import math
import os.path as osp
from typing import Any, Optional

from ..io import write_json
from ..paths import REPO_ROOT
from .fast_path import GPU_SWITCHES
from .fast_path import get_dotted as get
from .regressions import reference_row
from .settings import LARGE_BATCH_METHODS, METHODS, SWITCH_METHODS

LABELS = {'cim-respix': 'CIM-ResPix', 'cim-revdet': 'CIM-RevDet', 'beit': 'BEiT v1',
          'mae': 'MAE', 'cim-resnet50': 'CIM-ResPix R50',
          'cim-convnext-t': 'CIM-ResPix ConvNeXt-T', 'cim-swin-t': 'CIM-ResPix Swin-T'}
STEP_FIELDS = ('batch_size', 'step_s', 'img_per_s', 'flops_per_step', 'gflops_per_img',
               'tflops_per_s', 'mfu', 'plain_gflops_per_img', 'host_syncs_per_step',
               'peak_mem_mb')
REQUIRED = (
    ['matmul.tflops', 'loader.img_per_s', 'decode.max_abs_diff_bf16_fp32',
     'decode.fp32_under_autocast_max_diff', 'decode.ids_agree', 'amp_resume.equal',
     'amp_resume.max_rel_diff', 'summary.cim_respix_over_beit',
     'summary.cim_revdet_over_beit', 'summary.flops_cim_respix_over_beit',
     'summary.mfu_cim_respix', 'summary.loader_over_cim_step', 'summary.loader_feeds_cim',
     'summary.large_batch_cim_respix_over_beit', 'summary.mfu_cim_respix_large_batch']
    + [f'steps.{m}.{f}' for m in METHODS for f in STEP_FIELDS]
    + [f'steps.{m}.dynamo.{f}' for m in METHODS for f in ('recompiles', 'graph_breaks')]
    + [f'switches.{m}.{sw}.{f}' for m in SWITCH_METHODS for sw in GPU_SWITCHES
       for f in ('step_on_s', 'step_off_s')]
    + [f'large_batch.{m}.{f}' for m in LARGE_BATCH_METHODS for f in STEP_FIELDS])
#: the first H200 run (eager, before the fast path): the "before" row
BEFORE = osp.join(REPO_ROOT, 'benchmarks', 'results', 'gpu', '2026-11-26-h200', 'check',
                  'results.json')


def before_row(path: str = BEFORE) -> Optional[dict]:
    """The before figures from ``path`` (None when the file is not there)."""
    if not osp.isfile(path):
        return None
    with open(path) as f:
        r = json.load(f)
    st, ld = r.get('steps', {}), r.get('loader', {})
    cim, beit = st.get('cim-respix', {}), st.get('beit', {})
    return dict(device=r.get('device', {}).get('name'),
                commit=r.get('device', {}).get('commit'), date=r.get('date'),
                batch_size=cim.get('batch_size'), cim_step_s=cim.get('step_s'),
                cim_img_per_s=cim.get('img_per_s'), cim_mfu=cim.get('mfu'),
                beit_step_s=beit.get('step_s'),
                cim_over_beit=_ratio(cim, beit, 'step_s'),
                loader_img_per_s=ld.get('img_per_s'), loader_workers=ld.get('num_workers'),
                source=osp.relpath(path, REPO_ROOT))


def required_fields(results: dict) -> list[str]:
    """:data:`REQUIRED` less the switches this run could not time (a switch
    only a GPU can time: its record says why it was skipped)."""
    return [f for f in REQUIRED if not (
        f.startswith('switches.') and get(results, f.rsplit('.', 1)[0] + '.skipped'))]


def missing_fields(results: dict) -> list[str]:
    """Required fields that are absent or not finite numbers / booleans."""
    bad = []
    for f in required_fields(results):
        v = get(results, f)
        if isinstance(v, bool):
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            bad.append(f)
    return bad


def _ratio(a: Optional[dict], b: Optional[dict], key: str) -> Optional[float]:
    """Per-image ratio a / b of ``key`` (time per image when key = step_s)."""
    if not a or not b or a.get(key) is None or b.get(key) is None:
        return None
    return (a[key] / a['batch_size']) / (b[key] / b['batch_size'])


def summarise(results: dict) -> dict:
    """The targets from the stage figures (None where a stage failed)."""
    st = results.get('steps', {})
    s = results['settings']
    cim, beit = st.get('cim-respix'), st.get('beit')
    loader = results.get('loader') or {}
    out: dict = dict(
        cim_respix_over_beit=_ratio(cim, beit, 'step_s'),
        cim_revdet_over_beit=_ratio(st.get('cim-revdet'), beit, 'step_s'),
        flops_cim_respix_over_beit=_ratio(cim, beit, 'flops_per_step'),
        mfu_cim_respix=(cim or {}).get('mfu'),
        mfu_vs_matmul_cim_respix=None,
        loader_over_cim_step=None, loader_feeds_cim=None)
    mm = (results.get('matmul') or {}).get('tflops')
    if cim and mm and cim.get('tflops_per_s') is not None:
        out['mfu_vs_matmul_cim_respix'] = cim['tflops_per_s'] / mm
    if cim and loader.get('img_per_s'):
        out['loader_over_cim_step'] = loader['img_per_s'] / cim['img_per_s']
        out['loader_feeds_cim'] = loader['img_per_s'] >= cim['img_per_s']
    # the fast path's counted work against the plain step's (< 0: work saved)
    out['flops_vs_plain'] = {k: x['gflops_per_img'] / x['plain_gflops_per_img'] - 1
                             for k, x in st.items() if x.get('plain_gflops_per_img')}
    out['loader_over_step'] = {k: loader['img_per_s'] / x['img_per_s']
                               for k, x in st.items() if loader.get('img_per_s')}
    big = results.get('large_batch') or {}
    out['large_batch_cim_respix_over_beit'] = _ratio(big.get('cim-respix'), big.get('beit'),
                                                     'step_s')
    out['mfu_cim_respix_large_batch'] = (big.get('cim-respix') or {}).get('mfu')
    if loader.get('img_per_s') and big.get('cim-respix'):
        out['loader_over_step']['cim-respix@large_batch'] = (
            loader['img_per_s'] / big['cim-respix']['img_per_s'])
    # per method, the fast-path switches found on in what was built and run
    out['switches_on'] = {k: sorted(n for n, v in (x.get('switches') or {}).items()
                                    if str(v).startswith('on'))
                          for k, x in {**st, **{f'{m}@large_batch': v
                                                for m, v in big.items()}}.items()}
    r, m = out['cim_respix_over_beit'], out['mfu_cim_respix']
    out['targets'] = {
        f"CIM-ResPix step / BEiT v1 step <= {s['target_ratio']}":
            None if r is None else r <= s['target_ratio'],
        f"MFU of the CIM-ResPix step >= {100 * s['target_mfu']:.0f} %":
            None if m is None else m >= s['target_mfu'],
        'loader images/s >= CIM-ResPix step images/s': out['loader_feeds_cim'],
        f"CIM-ResPix step / BEiT v1 step <= {s['target_ratio']} at the large batch":
            None if out['large_batch_cim_respix_over_beit'] is None
            else out['large_batch_cim_respix_over_beit'] <= s['target_ratio'],
        'AMP kill-and-resume gives the uninterrupted losses':
            (results.get('amp_resume') or {}).get('equal'),
    }
    return out


def write(results: dict, out_dir: str) -> None:
    write_json(results, osp.join(out_dir, 'results.json'))
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(markdown(results))


def _f(v: Any, fmt: str = '.3g', pct: bool = False) -> str:
    if v is None:
        return '–'
    if isinstance(v, bool):
        return 'yes' if v else 'NO'
    if pct:
        return f'{100 * v:.1f} %'
    return format(v, fmt) if isinstance(v, (int, float)) else str(v)


def markdown(r: dict) -> str:
    d, s = r.get('device', {}), r['settings']
    dry = s['dry_run']
    lines = ['# GPU check', '']
    if dry:
        lines += ['**dry run**: every stage at toy size (2-layer ViT at 64 px, tiny DALL-E, '
                  'a handful of images) on this machine; the figures prove the check runs, '
                  'they say nothing about a GPU.', '']
    lines += [
        f"- device: **{d.get('name')}** ({d.get('memory_gb', '–')} GB), "
        f"torch {d.get('torch')}, CUDA {d.get('cuda')}, cuDNN {d.get('cudnn')}, "
        f"driver {d.get('driver', '–')}, Python {d.get('python')}",
        f"- date: {r.get('date')}; status: **{r.get('status')}** "
        f"({r.get('wall_s', 0):.0f} s); commit {d.get('commit', '–')}",
        f"- model: {s['arch']} at {s['img_size']} px, "
        f"{s.get('precision', '–')}; "
        f"DALL-E: {(r.get('assets') or {}).get('dalle', {}).get('weights', '–')}",
        f"- peak for MFU: {s['peak_tflops']} TFLOP/s ({s['peak_note']}); measured "
        f"{_f((r.get('matmul') or {}).get('tflops'), '.1f')} TFLOP/s on a "
        f"{(r.get('matmul') or {}).get('n', '–')}^3 "
        f"{(r.get('matmul') or {}).get('dtype', '')} matrix product", '']
    regs = r.get('regressions') or []
    if regs:
        lines += ['## REGRESSION', '', 'The run is refused (exit status 3):', '']
        lines += [f'- {x}' for x in regs] + ['']
    lines += ['## Targets', '', '| target | value | met |', '|---|---|---|']
    sm = r.get('summary') or {}
    vals = [_f(sm.get('cim_respix_over_beit'), '.2f'), _f(sm.get('mfu_cim_respix'), pct=True),
            _f(sm.get('loader_over_cim_step'), '.2f') + ' x',
            _f(sm.get('large_batch_cim_respix_over_beit'), '.2f'),
            _f((r.get('amp_resume') or {}).get('max_rel_diff'), '.2g') + ' max rel. diff']
    for (name, met), v in zip((sm.get('targets') or {}).items(), vals):
        lines.append(f'| {name} | {v} | {_f(met)} |')
    big = r.get('large_batch') or {}
    lines += ['', f"CIM-ResPix / BEiT v1 step per image at batch {s.get('large_batch')}: "
              f"{_f(sm.get('large_batch_cim_respix_over_beit'), '.2f')}. Counted FLOPs per "
              f"image, CIM-ResPix / BEiT v1: {_f(sm.get('flops_cim_respix_over_beit'), '.2f')}"
              f" (plain steps: {s['flop_ratio_expected']}). CIM-RevDet / BEiT v1 step: "
              f"{_f(sm.get('cim_revdet_over_beit'), '.2f')}.", '']
    lines += ['## Training step as the recipes configure it', '',
              'Same batch of decoded JPEGs for every method (repeated for the large batch). '
              'MFU: the plain step\'s counted FLOPs (no fast path) / step time / peak; '
              '"counted": this step\'s own FLOPs. Compile time: the first step after '
              "the recipe's CompileBlocksHook less a timed step, not in the step time. "
              'Loader / step: the loader\'s images/s over the step\'s.', '',
              'Recompiles: frames dynamo compiled after the first step; graph breaks: in '
              'the compiled regions (both must be 0). Last measured: the reference row of '
              'this device (benchmarks/gpu_check/reference.json).', '',
              '| method | batch | step (s) | last measured (s) | images/s | loader / step | MFU '
              '| GFLOPs/image plain / counted | host syncs / step | compile (s) | recompiles / '
              'graph breaks | peak memory (MB) |',
              '|---|---|---|---|---|---|---|---|---|---|---|---|']
    bf = before_row()
    if bf:
        lines.append(
            f"| before: CIM-ResPix, eager ({bf['device']}, {bf['commit']}) | "
            f"{bf['batch_size']} | {_f(bf['cim_step_s'], '.4f')} | "
            f"– | {_f(bf['cim_img_per_s'], '.1f')} | "
            f"{_f(bf['loader_img_per_s'] / bf['cim_img_per_s'], '.2f')} "
            f"({_f(bf['loader_img_per_s'], '.0f')} img/s, {bf['loader_workers']} workers) | "
            f"{_f(bf['cim_mfu'], pct=True)} | 229.3 | 132 (profile.md) | – | – | – |")
        lines.append(f"| before: BEiT v1, eager | {bf['batch_size']} | "
                     f"{_f(bf['beit_step_s'], '.4f')} | | | | | | | | | |")
    rows = [(m, (r.get('steps') or {}).get(m)) for m in METHODS]
    rows += [(m, big.get(m)) for m in LARGE_BATCH_METHODS]
    ld_ips = (r.get('loader') or {}).get('img_per_s')
    ref = (reference_row(r) or {}).get('steps_s', {})
    for m, x in rows:
        if not x:
            lines.append(f'| {LABELS[m]} | failed: see stages |' + ' |' * 10)
            continue
        ratio = ld_ips / x['img_per_s'] if ld_ips else None
        dyn = x.get('dynamo') or {}
        lines.append(
            f"| {LABELS[m]} | {x['batch_size']} | {_f(x['step_s'], '.4f')} | "
            f"{_f(ref.get(f'{m}@' + str(x['batch_size'])), '.4f')} | "
            f"{_f(x['img_per_s'], '.1f')} | {_f(ratio, '.2f')} | "
            f"{_f(x.get('mfu'), pct=True)} | {_f(x.get('plain_gflops_per_img'), '.4g')} / "
            f"{_f(x.get('gflops_per_img'), '.4g')} | {_f(x.get('host_syncs_per_step'))} | "
            f"{_f(x.get('compile_s'), '.1f')} | {_f(dyn.get('recompiles'))} / "
            f"{_f(dyn.get('graph_breaks'))} | {_f(x['peak_mem_mb'], '.0f')} |")
    if bf:
        lines += ['', f"Before: the first H200 run ({bf['date']}, {bf['source']}), eager, "
                  'per-tensor AdamW groups, hand-written attention, NCHW tokenizer; '
                  'CIM-ResPix / BEiT v1 '
                  f"{_f(bf['cim_over_beit'], '.2f')}; host syncs from its profile."]
    lines += ['', '## Fast-path switches found on', '',
              'Read back from the built model, optimizer and torch (not from the config).', '']
    sw_rows = [(m, ((r.get('steps') or {}).get(m) or {}).get('switches')) for m in METHODS]
    names = sorted({n for _, sw in sw_rows if sw for n in sw})
    lines += ['| switch | ' + ' | '.join(LABELS[m] for m, _ in sw_rows) + ' |',
              '|---|' + '---|' * len(sw_rows)]
    for n in names:
        lines.append(f'| {n} | ' + ' | '.join(
            (sw.get(n, '–') if sw else '–').replace('|', '/') for _, sw in sw_rows) + ' |')
    sw_times = {**(r.get('switches') or {}), **(r.get('enhancer_compile') or {})}
    if sw_times:
        lines += ['', '## GPU switches on and off', '',
                  "Each GPU switch of the recipe set against it, one at a time; the other "
                  "value is the step as shipped. A switch ships on only where a GPU run "
                  "showed that it pays.", '',
                  '| method | switch | shipped | step on (s) | step off (s) | on / off | '
                  'flipped: recompiles / graph breaks |', '|---|---|---|---|---|---|---|']
        for m, sws in sw_times.items():
            for n, v in sws.items():
                dyn = (v.get('flipped') or {}).get('dynamo') or {}
                if v.get('skipped'):
                    lines.append(f"| {LABELS.get(m, m)} | {n} | {v['shipped']} | "
                                 f"skipped: {v['skipped']} | | | |")
                    continue
                stand_in = (v.get('flipped') or {}).get('stand_in')
                name = f'{n} (flipped step: {stand_in})' if stand_in else n
                lines.append(f"| {LABELS.get(m, m)} | {name} | {v['shipped']} | "
                             f"{_f(v.get('step_on_s'), '.4f')} | "
                             f"{_f(v.get('step_off_s'), '.4f')} | "
                             f"{_f(v.get('on_over_off'), '.3f')} | "
                             f"{_f(dyn.get('recompiles'))} / {_f(dyn.get('graph_breaks'))} |")
    br = ((r.get('steps') or {}).get('cim-respix') or {}).get('breakdown')
    if br:
        seg = ', '.join(f'{k} {1000 * v:.1f}' for k, v in br['segments_s'].items())
        lines += ['', f"CIM-ResPix step breakdown (ms, synchronised): {seg}; corruption "
                  f"path {_f(br['corruption_share'], pct=True)} of the step."]
    ld, dc, rs = r.get('loader') or {}, r.get('decode') or {}, r.get('amp_resume') or {}
    lines += ['', '## Loader, tokenizer precision, resume', '',
              f"- loader: {_f(ld.get('img_per_s'), '.1f')} images/s with "
              f"{ld.get('num_workers', '–')} workers ({ld.get('cpu_count', '–')} CPUs)"
              + (f", {_f(ld['img_per_s_all_cpus'], '.1f')} with {ld['num_workers_all_cpus']}"
                 if ld.get('img_per_s_all_cpus') else '')
              + f"; {ld.get('dataset', '–')} + {' → '.join(ld.get('pipeline', []))} "
              f"(InfiniteSampler; JPEGs in the page cache); "
              f"the CIM-ResPix step consumes "
              f"{_f(((r.get('steps') or {}).get('cim-respix') or {}).get('img_per_s'), '.1f')}"
              ' images/s',
              f"- DALL-E decode, bf16 vs fp32 (inside an outer bf16 autocast): max "
              f"|Δ| {_f(dc.get('max_abs_diff_bf16_fp32'), '.3g')}, mean "
              f"{_f(dc.get('mean_abs_diff_bf16_fp32'), '.3g')} (image in [0, 1]); "
              f"bf16 / fp32 encoder tokens agree {_f(dc.get('ids_agree'), pct=True)}; "
              f"fp32 tokenizer inside the outer autocast vs outside: max |Δ| "
              f"{_f(dc.get('fp32_under_autocast_max_diff'), '.3g')}",
              f"- kill-and-resume ({rs.get('optim_wrapper', '–')}) through tools/train.py: "
              f"killed after iteration {rs.get('killed_after', '–')}, resumed to "
              f"{rs.get('iters', '–')}: losses equal to the uninterrupted run: "
              f"{_f(rs.get('equal'))} (bitwise: {_f(rs.get('bitwise_equal'))}, max "
              f"|Δ| {_f(rs.get('max_abs_diff'), '.3g')})", '']
    lines += ['## Stages', '', '| stage | result | seconds | limit |', '|---|---|---|---|']
    for name, st in (r.get('stages') or {}).items():
        res = 'ok' if st['ok'] else f"**{st.get('error', 'failed')}**".replace('|', '/')
        lines.append(f"| {name} | {res} | {st.get('seconds', 0):.1f} | "
                     f"{st.get('limit_s', 0):.0f} |")
    if r.get('notes'):
        lines += ['', '## Notes', ''] + [f'- {n}' for n in r['notes']]
    return '\n'.join(lines) + '\n'
