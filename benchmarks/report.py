"""Write the benchmark's results: ``results.md``, ``results.json``,
``results.csv`` and PNG plots (matplotlib, Agg backend).

Seeds: ``results.json`` keeps one row per run (method x seed, ``methods``)
and one per method (``summary``: median, min and max over its seeds of every
figure); ``results.csv`` has the summary rows (median in the figure's column,
``<figure>_min`` / ``<figure>_max`` beside it), ``results_seeds.csv`` the runs.
In the tables a method shows ``median (min–max)``; **bold** marks the best
median of a column and every method whose min–max range overlaps the best's:
differences inside the seed spread are ties.

Plots: ``quality.png`` (k-NN / linear / fine-tune top-1 per method),
``cost.png`` (pre-training throughput and peak memory per method),
``cim_breakdown.png`` (where a CIM step's time goes).
"""
from __future__ import annotations

import csv
import os
import os.path as osp
import statistics
from typing import Optional

from .io import write_json

CSV_COLUMNS = (
    'method', 'label', 'status', 'scale', 'device', 'pretrain_iters', 'pretrain_images',
    'pretrain_wall_s', 'img_per_s', 'wall_img_per_s', 'step_s', 'peak_mem_mb',
    'mem_delta_mb', 'knn_top1', 'linear_top1', 'finetune_top1', 'params_backbone_m',
    'params_trainable_m', 'cim_corruption_share', 'cim_enhancer_share', 'cim_other_share',
    'eval_s', 'total_s', 'cpu_share', 'other_cpu', 'error')
METRICS = ('knn_top1', 'linear_top1', 'finetune_top1')
SPREAD_COLUMNS = METRICS + ('pretrain_iters', 'pretrain_images', 'img_per_s', 'peak_mem_mb')
SUMMARY_COLUMNS = ('method', 'label', 'status', 'n_seeds', 'n_ok') + CSV_COLUMNS[3:] + tuple(
    f'{k}_{e}' for k in SPREAD_COLUMNS for e in ('min', 'max'))
SEGMENT_LABELS = (
    ('tok_encode', 'tokenizer encode'), ('gen_fwd', 'generator fwd'),
    ('gen_bwd', 'generator bwd'), ('sample', 'sampling'), ('tok_decode', 'tokenizer decode'),
    ('corrupt_other', 'resize/compare'), ('enh_fwd', 'enhancer fwd'),
    ('enh_bwd', 'enhancer bwd'), ('preprocess', 'data preprocessor'),
    ('optim_step', 'optimizer'), ('other', 'other'))


def flat_row(r: dict) -> dict:
    """One result (ok or failed) -> a flat dict with :data:`CSV_COLUMNS`."""
    pre = r.get('pretrain') or {}
    ev = r.get('eval') or {}
    br = pre.get('cim_breakdown') or {}
    row = dict(
        method=r.get('method'), label=r.get('label', r.get('method')),
        status=r.get('status'), scale=r.get('scale'), device=r.get('device'),
        pretrain_iters=pre.get('iters'), pretrain_images=pre.get('images'),
        pretrain_wall_s=pre.get('wall_s'), img_per_s=pre.get('img_per_s'),
        wall_img_per_s=pre.get('wall_img_per_s'), step_s=pre.get('step_s_mean'),
        peak_mem_mb=pre.get('peak_mem_mb'), mem_delta_mb=pre.get('mem_delta_mb'),
        knn_top1=ev.get('knn_top1'), linear_top1=ev.get('linear_top1'),
        finetune_top1=ev.get('finetune_top1'),
        params_backbone_m=r.get('params_backbone_m'),
        params_trainable_m=r.get('params_trainable_m'),
        cim_corruption_share=br.get('corruption_share'),
        cim_enhancer_share=br.get('enhancer_share'), cim_other_share=br.get('other_share'),
        eval_s=r.get('eval_s'), total_s=r.get('total_s'), cpu_share=pre.get('cpu_share'),
        other_cpu=pre.get('other_cpu'), error=r.get('error'))
    return {k: row.get(k) for k in CSV_COLUMNS}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(results: list) -> list:
    """Per method (in first-seen order): median / min / max of every numeric
    figure over its finished seeds; ``status`` is ``ok`` when every seed
    finished, ``partial`` when some did, else the first run's status."""
    groups: dict = {}
    for r in results:
        groups.setdefault(r.get('method'), []).append(r)
    out = []
    for method, runs in groups.items():
        ok = [flat_row(r) for r in runs if r.get('status') == 'ok']
        first = flat_row(runs[0])
        # a failed seed's error explains more than a missing one's ("no result.json")
        errors = [r['error'] for r in runs if r.get('status') not in ('ok', 'missing')
                  and r.get('error')] + [r['error'] for r in runs
                                         if r.get('status') == 'missing' and r.get('error')]
        row = dict(method=method, label=(ok[0] if ok else first)['label'],
                   n_seeds=len(runs), n_ok=len(ok),
                   n_missing=sum(r.get('status') == 'missing' for r in runs),
                   seeds=[r.get('seed') for r in runs],
                   status='ok' if len(ok) == len(runs) else 'partial' if ok
                   else first['status'],
                   error=errors[0] if errors else None)
        for k in CSV_COLUMNS[3:]:
            if k in ('error', ):
                continue
            vals = [o[k] for o in ok if _num(o.get(k))]
            if vals:
                row[k] = statistics.median(vals)
                row[f'{k}_min'], row[f'{k}_max'] = min(vals), max(vals)
            else:
                row[k] = next((o[k] for o in ok if o.get(k) is not None), None)
        out.append(row)
    return out


def ties(summary: list, key: str) -> set:
    """Methods tied with the best median of ``key``: the best, and every
    method whose [min, max] overlaps the best's."""
    rows = [r for r in summary if r.get('n_ok') and _num(r.get(key))]
    if not rows:
        return set()
    best = max(rows, key=lambda r: r[key])
    lo, hi = best.get(f'{key}_min', best[key]), best.get(f'{key}_max', best[key])
    return {r['method'] for r in rows
            if r.get(f'{key}_max', r[key]) >= lo and r.get(f'{key}_min', r[key]) <= hi}


def spread(row: dict, key: str, nd: int = 2) -> str:
    """``median (min–max)`` over seeds, or the one value."""
    v = row.get(key)
    if not _num(v):
        return '–'
    lo, hi = row.get(f'{key}_min', v), row.get(f'{key}_max', v)
    if row.get('n_ok', 1) > 1:
        return f'{v:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})'
    return f'{v:,.{nd}f}'


def _partial_status(r: dict) -> str:
    """``2 of 3 seeds; 1 not run yet`` / ``...; **1 failed**: <error>``."""
    missing = r.get('n_missing', 0)
    n_failed = r['n_seeds'] - r['n_ok'] - missing
    parts = [f'{r["n_ok"]} of {r["n_seeds"]} seeds']
    if missing:
        parts.append(f'{missing} not run yet')
    if n_failed:
        parts.append(f'**{n_failed} failed**: {r.get("error") or ""}')
    return '; '.join(parts)


def _fmt(v, nd: int = 1, pct: bool = False) -> str:
    if v is None:
        return '–'
    if isinstance(v, (int, float)):
        return f'{100 * v:.{nd}f} %' if pct else f'{v:,.{nd}f}' if isinstance(v, float) \
            else f'{v:,}'
    return str(v)


def _best(rows: list, key: str) -> Optional[float]:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return max(vals) if vals else None


def markdown(results: list, meta: dict, flops: Optional[dict] = None) -> str:
    summary = summarize(results)
    n_seeds = max((r['n_seeds'] for r in summary), default=1)
    title = 'CIM ablation' if meta.get('ablation') else 'CIM benchmark'
    track = meta.get('track') or 'vit'
    L = [f'# {title} — scale `{meta.get("scale")}`'
         + (f', track `{track}`' if track != 'vit' else ''), '']
    seeds = meta.get('seeds') or [0]
    L.append(
        f'Device: {meta.get("device_name", meta.get("device"))}. Pre-training budget per '
        f'method: {meta.get("budget_desc")}; batch {meta.get("batch_size")}; evaluation: '
        f'{meta.get("eval_desc")}; seeds: {", ".join(str(s) for s in seeds)}. Command: '
        f'`{meta.get("command", "")}`.')
    if meta.get('seconds') is not None:
        L.append(f'Wall time of the command: {_fmt_seconds(meta["seconds"])}'
                 + (f'; of the finished runs (pre-training + evaluation, summed over '
                    f'every invocation that made them): {_fmt_seconds(meta["runs_seconds"])}'
                    if meta.get('runs_seconds') else '') + '.')
    if meta.get('tokenizer'):
        L.append(f'Tokenizer (CIM and BEiT): {meta["tokenizer"]}.')
    L += ['', '## Quality and cost', '']
    tied = {k: ties(summary, k) for k in METRICS}

    def q(r, k):
        s = spread(r, k)
        return f'**{s}**' if r['method'] in tied[k] else s

    L.append('| Method | k-NN top-1 (%) | Linear top-1 (%) | Fine-tune top-1 (%) | '
             'Pre-train steps | Images seen | Throughput (img/s) | Peak mem (MB) | '
             'Mem Δ (MB) | Status |')
    L.append('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|')
    for r in summary:
        if r['status'] == 'ok':
            status = 'ok' if r['n_seeds'] == 1 else f'ok ({r["n_ok"]} seeds)'
        elif r['status'] == 'partial':
            status = _partial_status(r)
        else:
            status = f'**{r["status"]}**: {r.get("error") or ""}'
        L.append(f'| {r["label"]} | {q(r, "knn_top1")} | {q(r, "linear_top1")} | '
                 f'{q(r, "finetune_top1")} | {_fmt(r.get("pretrain_iters"), 0)} | '
                 f'{_fmt(r.get("pretrain_images"), 0)} | {_fmt(r.get("img_per_s"))} | '
                 f'{_fmt(r.get("peak_mem_mb"), 0)} | {_fmt(r.get("mem_delta_mb"), 0)} | '
                 f'{status} |')
    if n_seeds > 1:
        L += ['', f'Top-1: median over {n_seeds} seeds (min–max); other columns: medians. '
              '**Bold**: the best median of the column and every method whose min–max '
              'range overlaps the best\'s (a tie: the difference is inside the seed spread).']
    else:
        L += ['', 'Bold: best of the column (one seed: no spread is known; differences of '
              '~1 point are within run-to-run noise, see docs/benchmark.md).']
    if meta.get('ablation'):
        L += _ablation_deltas(summary)
    L += ['Throughput: images per second inside the '
          'training step (data loading excluded; first 2 steps excluded). Peak mem: '
          f'{meta.get("mem_method", "peak memory of the pre-training loop")}; Mem Δ: '
          'the same minus the memory in use before pre-training.']

    cims = _first_seed([r for r in results if r.get('status') == 'ok'
                        and (r.get('pretrain') or {}).get('cim_breakdown')])
    if cims:
        every = cims[0]['pretrain']['cim_breakdown'].get('profile_every', 1)
        L += ['', '## Where a CIM step goes', '',
              'Measured in the same run, on '
              + ('every step' if every == 1 else f'every {every}th step')
              + ' (same maths, each part timed'
              + (' with `torch.cuda.synchronize`' if meta.get('device') == 'cuda' else '')
              + '). Corruption path = tokenizer encode + generator forward/backward + '
              'sampling + decode (+ resize/compare); enhancer = backbone + neck + head '
              'forward and backward.', '']
        L.append('| Method | Step (s) | Corruption | Enhancer | Other | '
                 + ' | '.join(lbl for _, lbl in SEGMENT_LABELS) + ' |')
        L.append('|---|---:|---:|---:|---:|' + '---:|' * len(SEGMENT_LABELS))
        for r in cims:
            b = r['pretrain']['cim_breakdown']
            seg = b['segments_s']
            L.append(f'| {r["label"]} | {b["step_s"]:.3f} | '
                     f'{_fmt(b["corruption_share"], 1, True)} | '
                     f'{_fmt(b["enhancer_share"], 1, True)} | {_fmt(b["other_share"], 1, True)} | '
                     + ' | '.join(f'{1000 * seg.get(k, 0.):.1f} ms' for k, _ in SEGMENT_LABELS)
                     + ' |')

    if flops:
        t = flops.get('targets', {})
        L += ['', '## FLOPs per image (FlopCounterMode, multiply-add = 2)', '',
              '| Quantity | Measured (GFLOPs) | Issue figure |', '|---|---:|---:|']
        items = (('DALL-E encoder, 112 px', 'dalle_encoder_112'),
                 ('DALL-E decoder, 14x14 -> 112 px', 'dalle_decoder_14_to_112'),
                 ('ViT-B/16 forward, 224 px', 'vit_b16_fwd_224'),
                 ('ViT-B/16 forward+backward, 224 px', 'vit_b16_fwd_bwd_224'),
                 ('CIM-ResPix training step (fwd+bwd)', 'cim_respix_step'),
                 ('BEiT v1 training step (fwd+bwd)', 'beit_step'))
        for lbl, k in items:
            L.append(f'| {lbl} | {_fmt(flops.get(k), 1)} | {_fmt(t.get(k), 0)} |')
        L.append(f'| **CIM / BEiT step ratio** | **{flops.get("cim_over_beit", 0):.2f}x** | |')
        L += ['', f'Training steps counted at {flops.get("arch")} with '
              f'{flops.get("mask_patches")} of 196 patches masked; batch 1, CPU, random '
              'weights (FLOPs do not depend on them).']

    notes = list(meta.get('notes', []))
    for r in results:
        notes += r.get('notes', []) or []
    if notes:
        L += ['', '## Notes', ''] + [f'- {n}' for n in dict.fromkeys(notes)]
    L += ['', 'How to read this table: `docs/benchmark.md`. Raw figures: `results.json`, '
          '`results.csv`; plots: `quality.png`, `cost.png`, `cim_breakdown.png`.', '']
    return '\n'.join(L)


def _ablation_deltas(summary: list) -> list:
    """Rows ``<method>@<knob>``: median top-1 minus the demo recipe's (``<method>``)."""
    by = {r['method']: r for r in summary if r.get('n_ok')}
    rows = [r for r in summary if '@' in str(r['method']) and r.get('n_ok')
            and str(r['method']).split('@')[0] in by]
    if not rows:
        return []
    L = ['', '### Change against the demo recipe (median top-1, points)', '',
         '| Ablation | Δ k-NN | Δ Linear | Δ Fine-tune | Δ steps |', '|---|---:|---:|---:|---:|']
    for r in rows:
        b = by[str(r['method']).split('@')[0]]
        cells = []
        for k in METRICS + ('pretrain_iters', ):
            v, w = r.get(k), b.get(k)
            cells.append(f'{v - w:+.2f}' if _num(v) and _num(w) and k in METRICS else
                         f'{v - w:+.0f}' if _num(v) and _num(w) else '–')
        L.append(f'| {r["label"]} | ' + ' | '.join(cells) + ' |')
    L.append('')
    return L


def _first_seed(results: list) -> list:
    """One result per method (its first), for the per-step figures."""
    seen: set = set()
    out = []
    for r in results:
        if r.get('method') not in seen:
            seen.add(r.get('method'))
            out.append(r)
    return out


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f'{s // 3600} h {s % 3600 // 60:02d} min' if s >= 3600 else \
        f'{s // 60} min {s % 60:02d} s'


def write_csv(results: list, path: str) -> None:
    """The summary rows (one per method) into ``path``."""
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(SUMMARY_COLUMNS), extrasaction='ignore')
        w.writeheader()
        for r in summarize(results):
            w.writerow(r)


def write_seed_csv(results: list, path: str) -> None:
    """One row per run (method x seed)."""
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=['seed'] + list(CSV_COLUMNS))
        w.writeheader()
        for r in results:
            w.writerow(dict(flat_row(r), seed=r.get('seed')))


def readme_table(data: dict) -> str:
    """The README's table (markdown) from a ``results.json``: per method the
    median top-1 over seeds with min–max, ties in bold, steps, images, img/s,
    peak memory; then the command and its wall time."""
    results = data.get('methods') or []
    meta = data.get('meta') or {}
    summary = summarize(results)
    tied = {k: ties(summary, k) for k in METRICS}
    L = ['| Method | k-NN | Linear | Fine-tune | Seeds | Steps | Images seen | img/s | '
         'Peak mem (MB) |',
         '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in summary:
        cells = [f'**{spread(r, k)}**' if r['method'] in tied[k] else spread(r, k)
                 for k in METRICS]
        L.append(f'| {r["label"]} | ' + ' | '.join(cells) + f' | {r["n_ok"]}/{r["n_seeds"]} | '
                 f'{_fmt(r.get("pretrain_iters"), 0)} | {_fmt(r.get("pretrain_images"), 0)} | '
                 f'{_fmt(r.get("img_per_s"))} | {_fmt(r.get("peak_mem_mb"), 0)} |')
    n = max((r['n_seeds'] for r in summary), default=1)
    partial = any(r['n_ok'] < r['n_seeds'] for r in summary)
    L += ['', f'Fashion-MNIST test top-1 (%), {meta.get("budget_desc", "")} of pre-training '
          'per method' + (f', median over the finished seeds of {n} (min–max; "Seeds": '
                          'finished / planned); bold: the best and its ties (ranges '
                          'overlapping the best\'s)' if n > 1 else '')
          + ('; **unfinished**: a row with one finished seed has no spread yet, and its '
             'bold marks only the best value' if partial else '')
          + f'. Command: `{meta.get("command", "")}`'
          + (f'; wall time of the finished runs {_fmt_seconds(meta["runs_seconds"])}'
             if meta.get('runs_seconds') else
             f', wall time {_fmt_seconds(meta["seconds"])}' if meta.get('seconds') else '')
          + '.']
    return '\n'.join(L) + '\n'


def plot_all(results: list, out_dir: str, meta: dict) -> list:
    """Write the PNGs; returns their paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [r for r in summarize(results) if r.get('n_ok')]
    paths = []
    title = f'scale {meta.get("scale")}, {meta.get("budget_desc")}'

    # quality
    keys = [('knn_top1', 'k-NN (k=20)'), ('linear_top1', 'linear probe'),
            ('finetune_top1', 'fine-tune')]
    keys = [(k, lbl) for k, lbl in keys if any(r.get(k) is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 4))
    x = np.arange(len(rows))
    w = 0.8 / max(len(keys), 1)
    for i, (k, lbl) in enumerate(keys):
        vals = [r.get(k) or 0. for r in rows]
        err = np.array([[v - r.get(f'{k}_min', v), r.get(f'{k}_max', v) - v]
                        for v, r in zip(vals, rows)]).T.reshape(2, -1)
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * w, vals, w, label=lbl,
                      yerr=err if err.any() else None, capsize=2)
        ax.bar_label(bars, fmt='%.1f', fontsize=6, padding=1)
    ax.set_xticks(x, [r['label'] for r in rows], rotation=30, ha='right')
    ax.set_ylabel('top-1 (%)')
    ax.set_title(f'Fashion-MNIST test top-1 — {title}', fontsize=9)
    if keys:
        ax.legend(fontsize=8)
        lo = min((r.get(k) or 100.) for r in rows for k, _ in keys)
        ax.set_ylim(max(0., lo - 10.), 100.)
    fig.tight_layout()
    p = osp.join(out_dir, 'quality.png')
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    # cost
    cost = [r for r in rows if r.get('img_per_s')]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.4 * len(cost) + 3), 4))
    names = [r['label'] for r in cost]
    for ax, key, lbl in ((axes[0], 'img_per_s', 'pre-training throughput (img/s)'),
                         (axes[1], 'peak_mem_mb', 'peak memory (MB)')):
        bars = ax.bar(names, [r.get(key) or 0. for r in cost], color='tab:blue')
        for b, r in zip(bars, cost):
            if r['method'].startswith('cim'):
                b.set_color('tab:red')
        ax.bar_label(bars, fmt='%.0f', fontsize=7, padding=1)
        ax.set_title(lbl, fontsize=9)
        ax.tick_params(axis='x', rotation=30)
        for t in ax.get_xticklabels():
            t.set_ha('right')
    fig.suptitle(f'Cost — {title} (red: CIM)', fontsize=9)
    fig.tight_layout()
    p = osp.join(out_dir, 'cost.png')
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    # CIM breakdown
    cims = _first_seed([r for r in results if r.get('status') == 'ok'
                        and (r.get('pretrain') or {}).get('cim_breakdown')])
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.6 * max(len(cims), 1)))
    cmap = plt.get_cmap('tab20')
    for j, r in enumerate(cims):
        seg = r['pretrain']['cim_breakdown']['segments_s']
        left = 0.
        for i, (k, lbl) in enumerate(SEGMENT_LABELS):
            v = 1000 * seg.get(k, 0.)
            ax.barh(j, v, left=left, color=cmap(i), label=lbl if j == 0 else None)
            left += v
    ax.set_yticks(range(len(cims)), [r['label'] for r in cims])
    ax.set_xlabel('ms per training step')
    shares = ', '.join(
        f'{r["label"]}: corruption {100 * r["pretrain"]["cim_breakdown"]["corruption_share"]:.0f} %'
        f' / enhancer {100 * r["pretrain"]["cim_breakdown"]["enhancer_share"]:.0f} %'
        for r in cims) or 'no CIM method in this run'
    ax.set_title(f'CIM step breakdown — {shares}', fontsize=8)
    if cims:
        ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    p = osp.join(out_dir, 'cim_breakdown.png')
    fig.savefig(p, dpi=120, bbox_inches='tight')
    plt.close(fig)
    paths.append(p)
    return paths


def write_report(results: list, out_dir: str, meta: dict,
                 flops: Optional[dict] = None) -> dict:
    """All outputs into ``out_dir``; returns their paths by kind."""
    os.makedirs(out_dir, exist_ok=True)
    paths = dict(json=osp.join(out_dir, 'results.json'),
                 csv=osp.join(out_dir, 'results.csv'),
                 md=osp.join(out_dir, 'results.md'))
    write_json(dict(meta=meta, methods=results, summary=summarize(results), flops=flops),
               paths['json'])
    write_csv(results, paths['csv'])
    write_seed_csv(results, osp.join(out_dir, 'results_seeds.csv'))
    with open(paths['md'], 'w') as f:
        f.write(markdown(results, meta, flops))
    paths['png'] = plot_all(results, out_dir, meta)
    return paths
