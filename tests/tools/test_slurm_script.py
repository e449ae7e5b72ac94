"""tools/slurm_train.sh builds the srun line it should (a fake srun records it)."""
from __future__ import annotations

import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'slurm_train.sh')


def _run(tmp_path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    fake = tmp_path / 'bin'
    fake.mkdir(exist_ok=True)
    srun = fake / 'srun'
    # one argument per line, and OMP_NUM_THREADS as the job would see it
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n'
                    'echo "OMP=${OMP_NUM_THREADS:-unset}" >> "$SRUN_LOG"\n')
    srun.chmod(0o755)
    e = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    e.update(PATH=f'{fake}:{os.environ["PATH"]}', SRUN_LOG=str(tmp_path / 'srun.txt'), **env)
    return subprocess.run(['bash', SCRIPT, 'part', 'job', 'cfg.py', 'wd', *extra], env=e,
                          capture_output=True, text=True)


def test_gpu_partition_requests_gpus_per_node(tmp_path):
    r = _run(tmp_path, dict(GPUS='16', GPUS_PER_NODE='8'), '--resume')
    assert r.returncode == 0, r.stderr
    args = (tmp_path / 'srun.txt').read_text().splitlines()
    assert '--gres=gpu:8' in args and '--ntasks=16' in args and '--ntasks-per-node=8' in args
    assert args[-3:] == ['--launcher=slurm', '--resume', 'OMP=unset']
    assert 'cfg.py' in args and '--work-dir=wd' in args


def test_cpu_partition_requests_no_gpu(tmp_path):
    r = _run(tmp_path, dict(GPUS='4', GPUS_PER_NODE='0', TASKS_PER_NODE='2',
                            CPUS_PER_TASK='3'))
    assert r.returncode == 0, r.stderr
    args = (tmp_path / 'srun.txt').read_text().splitlines()
    assert not any(a.startswith('--gres') for a in args)
    assert '--ntasks=4' in args and '--ntasks-per-node=2' in args
    assert '--cpus-per-task=3' in args and args[-1] == 'OMP=3'


@pytest.mark.parametrize('env', [dict(GPUS_PER_NODE='0'), dict()])
def test_bad_use_is_one_line(tmp_path, env):
    if env:  # CPU partition without TASKS_PER_NODE
        r = _run(tmp_path, env)
        assert 'needs TASKS_PER_NODE' in r.stderr
    else:  # missing arguments
        e = dict(os.environ)
        r = subprocess.run(['bash', SCRIPT, 'part'], env=e, capture_output=True, text=True)
        assert r.stderr.strip().startswith('usage:')
    assert r.returncode == 2 and not (tmp_path / 'srun.txt').exists()
