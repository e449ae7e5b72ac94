"""The README's "CIM across architectures" table, from the tracks' kept results.

One block per backbone family (a track of :mod:`tools.benchmark`): CIM's better
variant, the family's masked-image-modeling peer and random init, each as
``median (min–max)`` of linear probe and fine-tune over the track's seeds,
bold where tied with the block's best (:func:`benchmarks.report.ties`), then
each track's wall time and a link to its results (which name its command).
CIM's better variant is the CIM row with the higher mean of its linear-probe and
fine-tune medians. Nothing runs: the table
is read from each track's ``results.json``.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

from .io import read_json
from .paths import REPO_ROOT
from .report import _fmt_seconds, spread, summarize, ties

#: family -> (track, the family's masked-image-modeling peer in that track)
FAMILIES: dict[str, tuple[str, str]] = {
    'ViT': ('vit', 'mae'),
    'ResNet-18': ('resnet', 'spark'),
    'ConvNeXt': ('convnext', 'spark'),
    'Swin': ('swin', 'simmim'),
}
CIM_VARIANTS = ('cim-respix', 'cim-revdet')
CHOICE_METRICS = ('linear_top1', 'finetune_top1')


def better_cim(summary: list[dict]) -> Optional[dict]:
    """The CIM row with the higher mean of its linear and fine-tune medians
    (rows without both are not chosen); None when there is none."""
    rows = [r for r in summary if r['method'] in CIM_VARIANTS and r.get('n_ok')
            and all(isinstance(r.get(k), (int, float)) for k in CHOICE_METRICS)]
    if not rows:
        return None
    return max(rows, key=lambda r: sum(r[k] for k in CHOICE_METRICS) / len(CHOICE_METRICS))


def family_rows(summary: list[dict], peer: str) -> list[dict]:
    """CIM's better variant, the peer, random init (those present), in that order."""
    by = {r['method']: r for r in summary}
    cim = better_cim(summary)
    return [r for r in (cim, by.get(peer), by.get('random')) if r is not None]


#: the table's columns: the two evaluations the family comparison is about
COLUMNS = (('linear_top1', 'Linear'), ('finetune_top1', 'Fine-tune'))


def across_table(dirs: dict[str, str]) -> str:
    """Markdown: ``dirs`` maps a track (``vit`` ...) to its results folder; a
    family whose folder holds no ``results.json`` is left out. A row with fewer
    finished seeds than planned says so after its label."""
    L = ['| Family | Method | ' + ' | '.join(t for _, t in COLUMNS) + ' |',
         '|---|---|' + '---:|' * len(COLUMNS)]
    notes = []
    for family, (track, peer) in FAMILIES.items():
        data = read_json(osp.join(dirs.get(track, ''), 'results.json')) if track in dirs else None
        if not data:
            continue
        rows = family_rows(summarize(data.get('methods') or []), peer)
        if not rows:
            continue
        tied = {k: ties(rows, k) for k, _ in COLUMNS}
        for i, r in enumerate(rows):
            cells = [f'**{spread(r, k)}**' if r['method'] in tied[k] else spread(r, k)
                     for k, _ in COLUMNS]
            seeds = '' if r['n_ok'] == r['n_seeds'] else f' ({r["n_ok"]}/{r["n_seeds"]} seeds)'
            L.append(f'| {family if i == 0 else ""} | {r["label"]}{seeds} | '
                     + ' | '.join(cells) + ' |')
        took = (data.get('meta') or {}).get('runs_seconds')
        link = osp.relpath(osp.join(dirs[track], 'results.md'), REPO_ROOT)
        notes.append(f'[{family}]({link})'
                     + (f' {_fmt_seconds(took)}' if took else ''))
    L += ['', 'Top-1 (%), median (min–max) over the seeds; bold: the best of its family and '
          'its ties; CIM: its variant with the better mean of the two. Runs (results, '
          'command): ' + ', '.join(notes) + '.']
    return '\n'.join(L) + '\n'
