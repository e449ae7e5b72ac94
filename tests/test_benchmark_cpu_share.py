"""The benchmark refuses CPU runs that shared the machine (``--min-cpu-share``)."""
from __future__ import annotations

import json
import os.path as osp
import sys

import pytest

from cim_mm.benchmark.cpu_share import (MIN_CPU_SHARE, MIN_GUARDED_WALL_S, ContendedRun,
                                        check_cpu_share)

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))


def _pre(wall_s: float, process_s: float) -> dict:
    return dict(wall_s=wall_s, process_s=process_s, iters=100)


def test_share_is_process_over_wall_and_recorded():
    pre = _pre(130.0, 120.0)
    check_cpu_share(pre)
    assert pre['cpu_share'] == pytest.approx(120 / 130, abs=1e-3)


@pytest.mark.parametrize('wall, proc', [(218.0, 126.1), (166.8, 122.7)])
def test_contended_runs_of_the_resnet_track_are_refused(wall, proc):
    # two runs committed on 2026-11-26 (BYOL / DenseCL seed 0) that shared the machine
    with pytest.raises(ContendedRun, match=f'got {proc / wall:.0%} of its CPU'):
        check_cpu_share(_pre(wall, proc))


def test_threshold_zero_and_smoke_runs_only_measure():
    pre = _pre(200.0, 50.0)
    check_cpu_share(pre, min_share=0)
    assert pre['cpu_share'] == 0.25
    check_cpu_share(_pre(MIN_GUARDED_WALL_S - 1, 1.0))  # smoke run: no verdict
    with pytest.raises(ContendedRun):
        check_cpu_share(_pre(MIN_GUARDED_WALL_S, MIN_GUARDED_WALL_S * MIN_CPU_SHARE * 0.99))


def test_contended_run_fails_before_eval_and_resume_reruns_it(tmp_path, monkeypatch,
                                                              fake_fashion_mnist):
    """A run under the share is recorded as failed (no result.json), others go on,
    and the next invocation reruns only it."""
    from benchmark import main

    from cim_mm.benchmark import pretrain as pretrain_mod
    from cim_mm.benchmark import worker
    real = pretrain_mod.pretrain

    def slow_wall(*args, **kwargs):  # as if other jobs had the cores for 100 s
        out = real(*args, **kwargs)
        out['wall_s'] += 100.0
        return out

    argv = ['--track', 'resnet', '--methods', 'mec,random', '--budget-s', '0.5',
            '--eval-subset', 'small', '--eval', 'knn', '--work-dir', str(tmp_path),
            '--in-process', '--data-root', fake_fashion_mnist]
    monkeypatch.setattr(pretrain_mod, 'pretrain', slow_wall)
    assert main(argv) == 1
    failed = json.load(open(tmp_path / 'mec' / 'failed.json'))
    assert failed['error'].startswith('ContendedRun: the run got')
    assert not (tmp_path / 'mec' / 'result.json').exists()
    assert (tmp_path / 'random' / 'result.json').exists()

    monkeypatch.setattr(pretrain_mod, 'pretrain', real)
    ran = []
    real_run = worker.run_method
    monkeypatch.setattr(worker, 'run_method', lambda s: ran.append(s['method']) or real_run(s))
    assert main(argv) == 0
    assert ran == ['mec']
    mec = json.load(open(tmp_path / 'mec' / 'result.json'))
    assert mec['status'] == 'ok' and 'cpu_share' in mec['pretrain']
    meta = json.load(open(tmp_path / 'results.json'))['meta']
    runs = [json.load(open(tmp_path / m / 'result.json'))['total_s'] for m in ('mec', 'random')]
    assert meta['runs_seconds'] == pytest.approx(sum(runs), abs=0.2)


def test_old_contended_result_is_not_finished_and_reported_failed(tmp_path):
    """A result.json written before the guard (no cpu_share) is judged by its clocks."""
    from cim_mm.benchmark import runner
    fp = dict(seed=0)
    run = tmp_path / 'byol'
    run.mkdir()
    result = dict(method='byol', label='BYOL', status='ok', seed=0, device='cpu',
                  settings=fp, pretrain=dict(wall_s=218.03, process_s=126.06, iters=86))
    (run / 'result.json').write_text(json.dumps(result))
    done, why = runner.finished(str(tmp_path), 'byol', fp)
    assert not done and why.startswith('contended (58% of its CPU')
    assert runner.finished(str(tmp_path), 'byol', fp, min_cpu_share=0) == (True, '')
    result['device'] = 'cuda'  # the guard is for CPU runs only
    (run / 'result.json').write_text(json.dumps(result))
    assert runner.finished(str(tmp_path), 'byol', fp)[0]
