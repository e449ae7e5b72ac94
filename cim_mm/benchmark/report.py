"""Write the benchmark's results: ``results.md``, ``results.json``,
``results.csv`` and PNG plots (matplotlib, Agg backend).

Plots: ``quality.png`` (k-NN / linear / fine-tune top-1 per method),
``cost.png`` (pre-training throughput and peak memory per method),
``cim_breakdown.png`` (where a CIM step's time goes).
"""
from __future__ import annotations

import csv
import os
import os.path as osp
from typing import Optional

from .io import write_json

CSV_COLUMNS = (
    'method', 'label', 'status', 'scale', 'device', 'pretrain_iters', 'pretrain_images',
    'pretrain_wall_s', 'img_per_s', 'wall_img_per_s', 'step_s', 'peak_mem_mb',
    'mem_delta_mb', 'knn_top1', 'linear_top1', 'finetune_top1', 'params_backbone_m',
    'params_trainable_m', 'cim_corruption_share', 'cim_enhancer_share', 'cim_other_share',
    'eval_s', 'total_s', 'error')
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
        eval_s=r.get('eval_s'), total_s=r.get('total_s'), error=r.get('error'))
    return {k: row.get(k) for k in CSV_COLUMNS}


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
    rows = [flat_row(r) for r in results]
    ok = [r for r in rows if r['status'] == 'ok']
    L = [f'# CIM benchmark — scale `{meta.get("scale")}`', '']
    L.append(
        f'Device: {meta.get("device_name", meta.get("device"))}. Pre-training budget per '
        f'method: {meta.get("budget_desc")}; batch {meta.get("batch_size")}; evaluation: '
        f'{meta.get("eval_desc")}. Command: `{meta.get("command", "")}`.')
    if meta.get('tokenizer'):
        L.append(f'Tokenizer (CIM and BEiT): {meta["tokenizer"]}.')
    L += ['', '## Quality and cost', '']
    best = {k: _best(ok, k) for k in ('knn_top1', 'linear_top1', 'finetune_top1')}

    def q(r, k):
        v = r.get(k)
        s = _fmt(v, 2)
        return f'**{s}**' if v is not None and v == best[k] else s

    L.append('| Method | k-NN top-1 (%) | Linear top-1 (%) | Fine-tune top-1 (%) | '
             'Pre-train steps | Images seen | Throughput (img/s) | Peak mem (MB) | '
             'Mem Δ (MB) | Status |')
    L.append('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|')
    for r in rows:
        status = 'ok' if r['status'] == 'ok' else f'**failed**: {r.get("error") or ""}'
        L.append(f'| {r["label"]} | {q(r, "knn_top1")} | {q(r, "linear_top1")} | '
                 f'{q(r, "finetune_top1")} | {_fmt(r["pretrain_iters"])} | '
                 f'{_fmt(r["pretrain_images"])} | {_fmt(r["img_per_s"])} | '
                 f'{_fmt(r["peak_mem_mb"], 0)} | {_fmt(r["mem_delta_mb"], 0)} | {status} |')
    L += ['', 'Bold: best of the column. Throughput: images per second inside the '
          'training step (data loading excluded; first 2 steps excluded). Peak mem: '
          f'{meta.get("mem_method", "peak memory of the pre-training loop")}; Mem Δ: '
          'the same minus the memory in use before pre-training.']

    cims = [r for r in results if r.get('status') == 'ok'
            and (r.get('pretrain') or {}).get('cim_breakdown')]
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


def write_csv(results: list, path: str) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for r in results:
            w.writerow(flat_row(r))


def plot_all(results: list, out_dir: str, meta: dict) -> list:
    """Write the PNGs; returns their paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [flat_row(r) for r in results if r.get('status') == 'ok']
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
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * w, vals, w, label=lbl)
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
    cims = [r for r in results if r.get('status') == 'ok'
            and (r.get('pretrain') or {}).get('cim_breakdown')]
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
    write_json(dict(meta=meta, methods=results, flops=flops), paths['json'])
    write_csv(results, paths['csv'])
    with open(paths['md'], 'w') as f:
        f.write(markdown(results, meta, flops))
    paths['png'] = plot_all(results, out_dir, meta)
    return paths
