"""The seg track's report: ``results.json``, ``results.md``, ``results.csv``,
``results_seeds.csv`` and ``seg.png``.

One row per (track, method); per mode (UperNet fine-tune, frozen backbone +
linear head) mIoU and mAcc on the validation scenes as ``median (min–max)``
over seeds, **bold** for the best median of a column within a track and every
row whose min–max range overlaps it (:func:`benchmarks.report.ties`: a
difference inside the seed spread is a tie).
"""
from __future__ import annotations

import csv
import os
import os.path as osp
import statistics

import matplotlib
import numpy as np

from .io import write_json
from .report import _fmt_seconds, spread, ties
from .seg_specs import MODE_LABELS, TRACK_TITLES, has_mode, row_label, row_name

METRICS = ('mIoU', 'mAcc')


def figures(modes: list[str]) -> list[str]:
    """The summary's figure keys: ``finetune_mIoU``, ``finetune_mAcc``, ..."""
    return [f'{mode}_{k}' for mode in modes for k in METRICS]


def summarize(results: list[dict], modes: list[str]) -> list[dict]:
    """Per row (first-seen order): median / min / max of each mode's metrics
    over its finished seeds, and per mode the finished / planned seeds."""
    groups: dict[tuple, list] = {}
    for r in results:
        groups.setdefault((r['track'], r['method']), []).append(r)
    out = []
    for (track, method), runs in groups.items():
        row = dict(row=row_name(track, method), track=track, method=method,
                   label=row_label(track, method))
        errors = [r.get('error') for r in runs if r.get('status') == 'failed']
        for mode in modes:
            mine = [r for r in runs if r['mode'] == mode]
            ok = [r for r in mine if r.get('status') == 'ok']
            row[f'{mode}_n_ok'], row[f'{mode}_n_seeds'] = len(ok), len(mine)
            for k in METRICS:
                vals = [float(r['eval'][k]) for r in ok if k in (r.get('eval') or {})]
                key = f'{mode}_{k}'
                if vals:
                    row[key] = statistics.median(vals)
                    row[f'{key}_min'], row[f'{key}_max'] = min(vals), max(vals)
                else:
                    row[key] = None
        # for report.spread / ties: over the modes the row runs in
        row['n_ok'] = min((row[f'{m}_n_ok'] for m in modes if row[f'{m}_n_seeds']), default=0)
        row['error'] = errors[0] if errors else None
        out.append(row)
    return out


def _status(row: dict, modes: list[str]) -> str:
    parts = []
    for mode in modes:
        ok, n = row[f'{mode}_n_ok'], row[f'{mode}_n_seeds']
        if ok < n:
            parts.append(f'{mode}: {ok} of {n} seeds')
    if row.get('error'):
        parts.append(f'**failed**: {row["error"]}')
    return '; '.join(parts) or 'ok'


def _tied(rows: list[dict], keys: list[str]) -> dict[str, set]:
    """Per figure key, the rows (by ``row``) tied with its best median."""
    return {k: ties([dict(r, method=r['row'], n_ok=r[f'{k.split("_")[0]}_n_ok'])
                     for r in rows], k) for k in keys}


def _cells(row: dict, keys: list[str], tied: dict[str, set]) -> list[str]:
    """``median (min–max)`` per key, bold where tied with the best."""
    out = []
    for k in keys:
        s = spread(dict(row, n_ok=row[f'{k.split("_")[0]}_n_ok']), k)
        out.append(f'**{s}**' if row['row'] in tied[k] else s)
    return out


def readme_table(data: dict) -> str:
    """The README's seg table (markdown) from the track's ``results.json``: per
    row the mIoU of each mode, median (min–max) over the finished seeds, ties in
    bold, the finished / planned seeds; then the command and its wall time."""
    meta, summary = data.get('meta') or {}, data.get('summary') or []
    modes = meta.get('modes') or []
    keys = [f'{m}_mIoU' for m in modes]
    L = ['| Method | ' + ' | '.join(f'{MODE_LABELS[m]}: mIoU' for m in modes) + ' | Seeds |',
         '|---|' + '---:|' * len(keys) + '---:|']
    for track in meta.get('tracks') or []:
        rows = [r for r in summary if r['track'] == track]
        tied = _tied(rows, keys)
        for r in rows:
            done = r['n_ok']
            planned = max(r[f'{m}_n_seeds'] for m in modes)
            L.append(f'| {r["label"]} | ' + ' | '.join(_cells(r, keys, tied))
                     + f' | {done}/{planned} |')
    took = meta.get('runs_seconds')
    L += ['', f'Command: `{meta.get("command", "")}`'
          + (f'; wall time of the finished runs {_fmt_seconds(took)}' if took else '') + '.']
    return '\n'.join(L) + '\n'


def markdown(results: list[dict], meta: dict) -> str:
    modes = meta['modes']
    summary = summarize(results, modes)
    n = len(meta.get('seeds') or [0])
    dirs = ', '.join(f'{t}: {d}' for t, d in meta['pretrained_dirs'].items()
                     if t in meta['tracks'])
    L = ['# CIM benchmark — seg track (Fashion-MNIST scenes)', '',
         f'{meta["seg_iters"]} iterations of batch 8 per run on {meta["scene_size"]} px '
         f'scenes ({meta["scenes_root"]}), scored by mmseg\'s IoUMetric on the validation '
         f'scenes; seeds: {", ".join(str(s) for s in meta.get("seeds") or [0])}; '
         f'pre-trained backbones from {dirs}. '
         f'Command: `{meta.get("command", "")}`.']
    if meta.get('runs_seconds'):
        L.append(f'Wall time of the finished runs: {_fmt_seconds(meta["runs_seconds"])}.')
    for track in meta['tracks']:
        rows = [r for r in summary if r['track'] == track]
        if not rows:
            continue
        keys = figures([m for m in modes if has_mode(track, m)])
        tied = _tied(rows, keys)
        L += ['', f'## {TRACK_TITLES[track]}', '']
        L.append('| Method | ' + ' | '.join(f'{MODE_LABELS[k.split("_")[0]]}: {k.split("_")[1]}'
                                           for k in keys) + ' | Status |')
        L.append('|---|' + '---:|' * len(keys) + '---|')
        for r in rows:
            L.append(f'| {r["label"]} | ' + ' | '.join(_cells(r, keys, tied))
                     + f' | {_status(r, modes)} |')
    L += ['', (f'mIoU / mAcc (%, 11 classes incl. background): median over {n} seeds '
               '(min–max); **bold**: the best median of a column in its table and every row '
               'whose range overlaps it (a tie).' if n > 1 else
               'mIoU / mAcc (%, 11 classes incl. background), one seed; bold: the best.'),
          'UperNet, fine-tuned: the shipped UperNet config, whole backbone trained (ViT: '
          'layer-wise lr decay 0.75). Frozen: the backbone frozen, a 1x1-conv linear head on '
          'its last features. Random init: the backbone\'s own initialisation, no weights.',
          '', 'Per-run figures: `results.json`, `results_seeds.csv`; plot: `seg.png`.', '']
    return '\n'.join(L)


def write_csv(summary: list[dict], modes: list[str], path: str) -> None:
    cols = ['row', 'track', 'method', 'label'] + [
        c for k in figures(modes) for c in (k, f'{k}_min', f'{k}_max')] + [
        f'{m}_{c}' for m in modes for c in ('n_ok', 'n_seeds')] + ['error']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore')
        w.writeheader()
        for r in summary:
            w.writerow(r)


def write_seed_csv(results: list[dict], path: str) -> None:
    cols = ['track', 'method', 'mode', 'seed', 'status', 'mIoU', 'mAcc', 'aAcc',
            'params_trainable', 'params_backbone_trainable', 'train_s', 'val_s', 'total_s',
            'error']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore')
        w.writeheader()
        for r in results:
            w.writerow(dict(r, **(r.get('eval') or {})))


def plot(summary: list[dict], modes: list[str], path: str) -> str:
    """mIoU per row and mode, min–max as error bars."""
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt  # after the backend choice
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(summary) + 2), 4))
    x = np.arange(len(summary))  # [rows]
    w = 0.8 / max(len(modes), 1)
    for i, mode in enumerate(modes):
        k = f'{mode}_mIoU'
        vals = np.array([r.get(k) or 0. for r in summary])  # [rows]
        err = np.array([[v - (r.get(f'{k}_min') or v), (r.get(f'{k}_max') or v) - v]
                        for v, r in zip(vals, summary)]).T.reshape(2, -1)  # [2, rows]
        bars = ax.bar(x + (i - (len(modes) - 1) / 2) * w, vals, w, label=MODE_LABELS[mode],
                      yerr=err if err.any() else None, capsize=2)
        ax.bar_label(bars, fmt='%.1f', fontsize=6, padding=1)
    ax.set_xticks(x, [r['label'] for r in summary], rotation=30, ha='right', fontsize=7)
    ax.set_ylabel('mIoU (%)')
    ax.set_title('Fashion-MNIST scenes, validation mIoU (median, min–max)', fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_seg_report(results: list[dict], out_dir: str, meta: dict) -> dict:
    """All outputs into ``out_dir``; returns their paths by kind."""
    os.makedirs(out_dir, exist_ok=True)
    modes = meta['modes']
    summary = summarize(results, modes)
    paths = dict(json=osp.join(out_dir, 'results.json'), csv=osp.join(out_dir, 'results.csv'),
                 md=osp.join(out_dir, 'results.md'))
    write_json(dict(meta=meta, runs=results, summary=summary), paths['json'])
    write_csv(summary, modes, paths['csv'])
    write_seed_csv(results, osp.join(out_dir, 'results_seeds.csv'))
    with open(paths['md'], 'w') as f:
        f.write(markdown(results, meta))
    paths['png'] = plot(summary, modes, osp.join(out_dir, 'seg.png'))
    return paths
