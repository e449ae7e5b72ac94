"""tools/cpu_before_after.py: its figures are read and combined as documented."""
from __future__ import annotations

import json

import pytest

from helpers import load_tool


def _tool():
    return load_tool('cpu_before_after.py')


def test_demo_time_is_the_median_from_the_50th_iteration(tmp_path):
    log = tmp_path / 'demo.log'
    log.write_text(''.join(
        f'12/02 00:33:19 - mmengine - INFO - Iter(train) [{i:3d}/100]  lr: 1e-3  eta: 0:01:04  '
        f'time: {t}  data_time: 0.05  loss: 6.5\n' for i, t in ((25, 9.0), (50, 0.8), (75, 0.9),
                                                                 (100, 0.7))))
    assert _tool().demo_s_per_iter(str(log)) == pytest.approx(0.8)
    (tmp_path / 'empty.log').write_text('no iterations\n')
    with pytest.raises(SystemExit, match='no logged iteration time'):
        _tool().demo_s_per_iter(str(tmp_path / 'empty.log'))


def test_step_figures_and_summary(tmp_path):
    tool = _tool()
    runs = dict(base=[], after=[])
    for side, steps in (('base', (22., 21., 23.)), ('after', (19., 20., 18.))):
        for i, s in enumerate(steps):
            d = tmp_path / f'{side}{i}' / 'cim-respix'
            d.mkdir(parents=True)
            (d / 'result.json').write_text(json.dumps(dict(pretrain=dict(
                step_s_median=s, cim_breakdown=dict(segments_s=dict(tok_encode=s / 5))))))
            fig = tool.step_figures(str(d.parent))
            assert fig['segments_s']['tok_encode'] == pytest.approx(s / 5)
            fig['demo_s_per_iter'] = 0.9 if side == 'base' else 0.6
            runs[side].append(fig)
    s = tool.summary(runs)
    assert s['base']['step_s'] == dict(median=22., min=21., max=23., runs=[22., 21., 23.])
    assert s['speedup']['step_s'] == pytest.approx(22. / 19.)
    assert s['speedup']['demo_s_per_iter'] == pytest.approx(1.5)


def test_dry_run_names_both_sides(capsys):
    assert _tool().main(['HEAD', '--dry-run', '--out', '/nonexistent/out']) == 0
    out = capsys.readouterr().out
    assert 'base step: tools/benchmark.py --scale gpu --device cpu' in out
    assert 'after demo: tools/train.py configs/cim/' in out
