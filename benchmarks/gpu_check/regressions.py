"""What makes a GPU check refuse a run: a step slower than the last measured
row of the same device, or a compiled region that recompiles or breaks.

The rows are in ``reference.json`` beside this file, per device name
(``torch.cuda.get_device_name``) and ``method@batch``. A dry run has no row
(its device is a CPU), so only its compile counts are judged.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Optional

REFERENCE = osp.join(osp.dirname(osp.abspath(__file__)), 'reference.json')
#: a step this much slower than its row is a regression (runs on one card
#: differ by a few per cent; two H200 machines differed by up to 6 %)
TOLERANCE = 0.10


def load_reference(path: str = REFERENCE) -> dict:
    with open(path) as f:
        return json.load(f)['devices']


def _timed(results: dict) -> list[tuple[str, dict]]:
    """``(label, step figures)`` of every step the run timed as shipped."""
    rows = [(m, x) for m, x in (results.get('steps') or {}).items() if x]
    rows += [(f'{m} (large batch)', x) for m, x in (results.get('large_batch') or {}).items()
             if x]
    return rows


def find_regressions(results: dict, reference: Optional[dict] = None,
                     tolerance: float = TOLERANCE) -> list[str]:
    """One line per regression in ``results`` (a GPU check's results dict)."""
    reference = load_reference() if reference is None else reference
    device = (results.get('device') or {}).get('name')
    rows = (reference.get(device) or {}).get('steps_s', {}) if not results.get(
        'dry_run') else {}
    out = []
    for label, x in _timed(results):
        method = label.split(' ')[0]
        ref = rows.get(f"{method}@{x.get('batch_size')}")
        if ref is not None and x.get('step_s') is not None \
                and x['step_s'] > ref * (1 + tolerance):
            out.append(f"{label}: {x['step_s']:.4f} s/step at batch {x['batch_size']} is "
                       f"{x['step_s'] / ref - 1:+.0%} on the last measured {ref:.4f} s "
                       f"({device}; tolerance {tolerance:.0%})")
        dyn = x.get('dynamo') or {}
        if dyn.get('recompiles'):
            out.append(f"{label}: {dyn['recompiles']} frames compiled again after the first "
                       f"step (in {dyn.get('steps_after_first')} steps)")
        if dyn.get('graph_breaks'):
            reasons = '; '.join(f'{r} (x{n})' for r, n in (dyn.get('reasons') or {}).items())
            out.append(f"{label}: {dyn['graph_breaks']} graph breaks in its compiled "
                       f'regions: {reasons}')
    return out


def reference_row(results: dict, reference: Optional[dict] = None) -> Optional[dict]:
    """The reference of the run's device (None for a dry run or an unknown device)."""
    if results.get('dry_run'):
        return None
    reference = load_reference() if reference is None else reference
    return reference.get((results.get('device') or {}).get('name'))
