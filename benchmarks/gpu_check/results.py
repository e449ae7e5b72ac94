"""results.json / results.md of the GPU check, and its targets.

:data:`REQUIRED` lists every figure a complete run has (dotted paths into
results.json); ``tests/test_gpu_check.py`` asserts each is there and finite.
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Any, Optional

from ..io import write_json
from .settings import METHODS

LABELS = {'cim-respix': 'CIM-ResPix', 'cim-revdet': 'CIM-RevDet', 'beit': 'BEiT v1',
          'mae': 'MAE'}
STEP_FIELDS = ('batch_size', 'step_s', 'img_per_s', 'flops_per_step', 'gflops_per_img',
               'tflops_per_s', 'mfu', 'peak_mem_mb')
REQUIRED = (
    ['matmul.tflops', 'loader.img_per_s', 'decode.max_abs_diff_bf16_fp32',
     'decode.fp32_under_autocast_max_diff', 'decode.ids_agree', 'amp_resume.equal',
     'amp_resume.max_rel_diff', 'summary.cim_respix_over_beit',
     'summary.cim_revdet_over_beit', 'summary.flops_cim_respix_over_beit',
     'summary.mfu_cim_respix', 'summary.loader_over_cim_step', 'summary.loader_feeds_cim']
    + [f'steps.{m}.{f}' for m in METHODS for f in STEP_FIELDS])


def get(d: dict, dotted: str) -> Any:
    for k in dotted.split('.'):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def missing_fields(results: dict) -> list[str]:
    """Required fields that are absent or not finite numbers / booleans."""
    bad = []
    for f in REQUIRED:
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
    ref = s.get('cpu_counted_gflops') or {}
    dev = {k: st[k]['gflops_per_img'] / v - 1 for k, v in ref.items()
           if st.get(k, {}).get('gflops_per_img')}
    out['flops_vs_cpu_count'] = max(dev.values(), key=abs) if dev else None
    r, m = out['cim_respix_over_beit'], out['mfu_cim_respix']
    out['targets'] = {
        f"CIM-ResPix step / BEiT v1 step <= {s['target_ratio']}":
            None if r is None else r <= s['target_ratio'],
        f"MFU of the CIM-ResPix step >= {100 * s['target_mfu']:.0f} %":
            None if m is None else m >= s['target_mfu'],
        'loader images/s >= CIM-ResPix step images/s': out['loader_feeds_cim'],
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
    lines += ['## Targets', '', '| target | value | met |', '|---|---|---|']
    sm = r.get('summary') or {}
    vals = [_f(sm.get('cim_respix_over_beit'), '.2f'), _f(sm.get('mfu_cim_respix'), pct=True),
            _f(sm.get('loader_over_cim_step'), '.2f') + ' x',
            _f((r.get('amp_resume') or {}).get('max_rel_diff'), '.2g') + ' max rel. diff']
    for (name, met), v in zip((sm.get('targets') or {}).items(), vals):
        lines.append(f'| {name} | {v} | {_f(met)} |')
    lines += ['', f"Counted FLOPs per image, CIM-ResPix / BEiT v1: "
              f"{_f(sm.get('flops_cim_respix_over_beit'), '.2f')} (expected: "
              f"{s['flop_ratio_expected']}). CIM-RevDet / BEiT v1 step: "
              f"{_f(sm.get('cim_revdet_over_beit'), '.2f')}."
              + (f" Largest deviation of a counted figure from the CPU count of the same "
                 f"step: {_f(sm['flops_vs_cpu_count'], pct=True)}."
                 if sm.get('flops_vs_cpu_count') is not None else ''), '']
    lines += ['## Training step (same batch of decoded JPEGs for every method)', '',
              '| method | batch | step (s) | images/s | GFLOPs/image | TFLOP/s | MFU '
              '| peak memory (MB) |', '|---|---|---|---|---|---|---|---|']
    for m in METHODS:
        x = (r.get('steps') or {}).get(m)
        if not x:
            lines.append(f'| {LABELS[m]} | failed: see stages | | | | | | |')
            continue
        lines.append(
            f"| {LABELS[m]} | {x['batch_size']} | {_f(x['step_s'], '.4f')} | "
            f"{_f(x['img_per_s'], '.1f')} | {_f(x.get('gflops_per_img'), '.4g')} | "
            f"{_f(x.get('tflops_per_s'), '.3g')} | {_f(x.get('mfu'), pct=True)} | "
            f"{_f(x['peak_mem_mb'], '.0f')} |")
    br = ((r.get('steps') or {}).get('cim-respix') or {}).get('breakdown')
    if br:
        seg = ', '.join(f'{k} {1000 * v:.1f}' for k, v in br['segments_s'].items())
        lines += ['', f"CIM-ResPix step breakdown (ms, synchronised): {seg}; corruption "
                  f"path {_f(br['corruption_share'], pct=True)} of the step."]
    cl = r.get('tokenizer_channels_last')
    if cl:
        lines += ['', f"CIM-ResPix with the tokenizer in channels_last: "
                  f"{_f(cl.get('step_s'), '.4f')} s/step "
                  f"(speed-up {_f(cl.get('speedup'), '.2f')} x over the default; > 1 is "
                  "faster)."]
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
