"""The README's "CIM across architectures" table, from the tracks' kept results.

One block per backbone family (a track of :mod:`tools.benchmark`): CIM's better
variant, the family's masked-image-modeling peer and random init, each as
``median (min–max)`` over the track's seeds, bold where tied with the block's
best (:func:`benchmarks.report.ties`), then the track's command and wall time.
CIM's better variant is the CIM row with the higher mean of its linear-probe and
fine-tune medians (k-NN is shown, not used to choose). Nothing runs: the table
is read from each track's ``results.json``.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

from .io import read_json
from .report import METRICS, _fmt_seconds, spread, summarize, ties

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


def across_table(dirs: dict[str, str]) -> str:
    """Markdown: ``dirs`` maps a track (``vit`` ...) to its results folder; a
    family whose folder holds no ``results.json`` is left out."""
    L = ['| Family | Method | k-NN | Linear | Fine-tune | Seeds |',
         '|---|---|---:|---:|---:|---:|']
    notes = []
    for family, (track, peer) in FAMILIES.items():
        data = read_json(osp.join(dirs.get(track, ''), 'results.json')) if track in dirs else None
        if not data:
            continue
        rows = family_rows(summarize(data.get('methods') or []), peer)
        if not rows:
            continue
        tied = {k: ties(rows, k) for k in METRICS}
        for i, r in enumerate(rows):
            cells = [f'**{spread(r, k)}**' if r['method'] in tied[k] else spread(r, k)
                     for k in METRICS]
            L.append(f'| {family if i == 0 else ""} | {r["label"]} | ' + ' | '.join(cells)
                     + f' | {r["n_ok"]}/{r["n_seeds"]} |')
        meta = data.get('meta') or {}
        took = meta.get('runs_seconds')
        notes.append(f'{family}: `{meta.get("command", "")}`'
                     + (f', {_fmt_seconds(took)}' if took else ''))
    L += ['', 'Fashion-MNIST test top-1 (%), median (min–max) over the seeds; bold: the best '
          'of its family and its ties. CIM: the variant with the better mean of linear and '
          'fine-tune. Commands and wall times: ' + '; '.join(notes) + '.']
    return '\n'.join(L) + '\n'
