"""tools/benchmark.py --across-table: per family CIM's better variant, the family's
MIM peer and random init, read from each track's results.json."""
from __future__ import annotations

import json
import os.path as osp
import sys

import pytest

from benchmarks.across import across_table, better_cim

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))


def _run(method: str, seed: int, knn: float, linear: float, ft: float) -> dict:
    return dict(method=method, label=method.upper(), status='ok', seed=seed,
                eval=dict(knn_top1=knn, linear_top1=linear, finetune_top1=ft))


def _track(folder, runs: list[dict], command: str) -> str:
    folder.mkdir()
    (folder / 'results.json').write_text(json.dumps(dict(
        meta=dict(command=command, runs_seconds=3725.), methods=runs)))
    return str(folder)


def test_better_variant_is_chosen_on_linear_and_finetune_and_rows_are_ordered(tmp_path):
    runs = []
    for sd in range(3):  # ResPix: better k-NN, worse linear + fine-tune mean
        runs += [_run('cim-respix', sd, 80 + sd, 70, 60), _run('cim-revdet', sd, 60, 72, 62 + sd),
                 _run('spark', sd, 70, 75, 80), _run('simclr', sd, 90, 90, 90),
                 _run('random', sd, 50, 60, 50 + sd)]
    conv = _track(tmp_path / 'conv', runs, 'python tools/benchmark.py --track convnext')
    table = across_table({'convnext': conv, 'swin': str(tmp_path / 'none')})
    lines = [ln for ln in table.splitlines() if ln.startswith('| ')][1:]
    assert [ln.split('|')[2].strip() for ln in lines] == ['CIM-REVDET', 'SPARK', 'RANDOM']
    assert lines[0].startswith('| ConvNeXt | CIM-REVDET |') and lines[1].startswith('|  |')
    # linear and fine-tune medians with ranges; the peer's are the best, bold
    assert lines[0].endswith('| 72.00 (72.00–72.00) | 63.00 (62.00–64.00) |')
    assert lines[1].endswith('| **75.00 (75.00–75.00)** | **80.00 (80.00–80.00)** |')
    assert 'SIMCLR' not in table and 'Swin' not in table  # no results: no block
    link = osp.relpath(osp.join(conv, 'results.md'), ROOT)  # repository-relative
    assert f'[ConvNeXt]({link}) 1 h 02 min' in table
    assert '80.00 (80.00' not in lines[0] + lines[2]  # k-NN is not a column
    summary = [dict(method='cim-respix', n_ok=1, linear_top1=None, finetune_top1=50.)]
    assert better_cim(summary) is None  # a row without both figures is not chosen


def test_cli_prints_the_table_and_refuses_an_unknown_track(tmp_path, capsys):
    from benchmark import main
    d = _track(tmp_path / 'sw', [_run('cim-respix', 0, 1, 2, 3), _run('random', 0, 1, 1, 1)],
               'cmd')
    assert main(['--across-table', f'swin={d}', 'vit=' + str(tmp_path / 'x'),
                 'resnet=' + str(tmp_path / 'x'), 'convnext=' + str(tmp_path / 'x')]) == 0
    out = capsys.readouterr().out
    assert '| Swin | CIM-RESPIX (1/1 seeds) |' not in out and '| Swin | CIM-RESPIX |' in out and 'ViT' not in out.split('\n\n')[0]
    with pytest.raises(SystemExit):
        main(['--across-table', 'deit=dir'])
    assert 'give TRACK=DIR with TRACK one of vit, resnet, convnext, swin' in \
        capsys.readouterr().err
