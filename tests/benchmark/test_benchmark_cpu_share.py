"""The benchmark refuses CPU runs that shared the machine (``--min-cpu-share``)."""
from __future__ import annotations

import json
import os.path as osp
import sys

import pytest

from benchmarks.cpu_share import (MAX_OTHER_CPU, MIN_CPU_SHARE, MIN_GUARDED_WALL_S,
                                        ContendedRun, OtherCPUMeter, check_cpu_share,
                                        parse_proc_stat)

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools'))


def _pre(wall_s: float, process_s: float) -> dict:
    return dict(wall_s=wall_s, process_s=process_s, iters=100)


def test_share_is_process_over_wall_and_recorded():
    pre = _pre(130.0, 120.0)
    check_cpu_share(pre)
    assert pre['cpu_share'] == pytest.approx(120 / 130, abs=1e-3)


@pytest.mark.parametrize('wall, proc', [(218.0, 126.1), (166.8, 122.7)])
def test_contended_runs_of_the_resnet_track_are_refused(wall, proc):
    # two committed ResNet-track runs (BYOL / DenseCL seed 0) that shared the machine
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

    from benchmarks import pretrain as pretrain_mod
    from benchmarks import worker
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

    def quiet(*args, **kwargs):  # as if the machine were idle, whatever it is now
        out = real(*args, **kwargs)
        out['wall_s'] = out['process_s']
        out['other_cpu'] = 0.0
        return out

    monkeypatch.setattr(pretrain_mod, 'pretrain', quiet)
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
    from benchmarks import runner
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


# ------------------------------------------------------------ other processes

PROC_STAT = '''cpu  100 20 30 1000 50 5 5 10 0 0
cpu0 50 10 15 500 25 3 2 5 0 0
cpu1 50 10 15 500 25 2 3 5 0 0
intr 12345
ctxt 6789
'''


def test_proc_stat_busy_is_user_nice_system_irq_softirq_steal():
    busy, n_cpus = parse_proc_stat(PROC_STAT)
    assert busy == 100 + 20 + 30 + 5 + 5 + 10  # idle (1000) and iowait (50) are not busy
    assert n_cpus == 2


def _fake_stat(tmp_path, busy_ticks: int, n_cpus: int) -> str:
    lines = [f'cpu  {busy_ticks} 0 0 999 0 0 0 0 0 0']
    lines += [f'cpu{i} 0 0 0 0 0 0 0 0 0 0' for i in range(n_cpus)]
    path = tmp_path / 'stat'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_other_cpu_is_machine_busy_minus_own_over_wall_and_cores(tmp_path, monkeypatch):
    """Direct computation with faked clocks: 2 cores, 10 s wall, the machine busy
    for 18 s of CPU, 15 s of it this process -> others used 3 / (10 x 2) = 0.15."""
    import os
    from benchmarks import cpu_share
    tck = os.sysconf('SC_CLK_TCK')
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    clocks = {'wall': 100.0, 'own': 7.0}
    monkeypatch.setattr(cpu_share.time, 'perf_counter', lambda: clocks['wall'])
    monkeypatch.setattr(cpu_share.time, 'process_time', lambda: clocks['own'])
    meter = OtherCPUMeter(_fake_stat(tmp_path, 1000 * tck, 2))
    meter.start()
    clocks.update(wall=110.0, own=22.0)
    meter.proc_stat = _fake_stat(tmp_path, 1000 * tck + 18 * tck, 2)
    assert meter.stop() == pytest.approx(3 / 20)


def test_other_cpu_is_none_when_it_cannot_be_fair(tmp_path, monkeypatch):
    import os
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    meter = OtherCPUMeter(_fake_stat(tmp_path, 5, 8))  # 8 host cores, 2 allowed
    meter.start()
    assert meter.stop() is None
    meter = OtherCPUMeter(str(tmp_path / 'missing'))  # no /proc/stat
    meter.start()
    assert meter.stop() is None


def test_a_real_measurement_is_a_share():
    meter = OtherCPUMeter()
    meter.start()
    sum(i * i for i in range(200_000))  # some own work, which must not count
    other = meter.stop()
    assert other is None or 0.0 <= other <= 1.0


def test_run_beside_another_job_is_refused_even_with_a_quiet_looking_share():
    """A measured case: 0.91 of its own threads (inside the quiet range) while
    another job ran; only the other-process share shows it."""
    pre = dict(_pre(500.0, 455.0), other_cpu=0.30)
    with pytest.raises(ContendedRun, match='other processes used 30%'):
        check_cpu_share(pre)
    check_cpu_share(dict(_pre(500.0, 455.0), other_cpu=MAX_OTHER_CPU))  # at the limit: ok
    check_cpu_share(dict(_pre(500.0, 455.0), other_cpu=None))  # not measured: share only
    check_cpu_share(dict(_pre(500.0, 455.0), other_cpu=0.9), min_share=0)  # guards off
    check_cpu_share(dict(_pre(MIN_GUARDED_WALL_S - 1, 1.0), other_cpu=0.9))  # smoke run


def test_finished_result_with_busy_neighbours_is_not_finished(tmp_path):
    from benchmarks import runner
    fp = dict(seed=0)
    run = tmp_path / 'mae'
    run.mkdir()
    result = dict(method='mae', status='ok', seed=0, device='cpu', settings=fp,
                  pretrain=dict(wall_s=500.0, process_s=470.0, iters=3000, other_cpu=0.25))
    (run / 'result.json').write_text(json.dumps(result))
    done, why = runner.finished(str(tmp_path), 'mae', fp)
    assert not done and why == 'contended (other processes used 25% of the CPU)'
    result['pretrain']['other_cpu'] = 0.01
    (run / 'result.json').write_text(json.dumps(result))
    assert runner.finished(str(tmp_path), 'mae', fp) == (True, '')
