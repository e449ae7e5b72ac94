"""``tools/train.py`` when a checkpoint can not be written (a full disk) or the
one given to ``--resume`` is cut off: one line saying what happened and what
to run, the good checkpoints untouched."""
from __future__ import annotations

import os
import os.path as osp
import socket
import subprocess
import sys
import uuid

import pytest
import torch
from helpers import tiny_vit_cim_cfg
from mmengine.config import Config

from cim_mm.utils import safe_load

TOOLS_DIR = osp.dirname(osp.abspath(__file__))
TESTS_DIR = osp.dirname(TOOLS_DIR)
ROOT = osp.dirname(TESTS_DIR)


def write_images(root: str, n: int = 8, size: int = 16) -> str:
    """``root/*.png``: deterministic RGB images."""
    import cv2
    import numpy as np
    rng = np.random.RandomState(0)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        cv2.imwrite(osp.join(root, f'img_{i}.png'),
                    rng.randint(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def write_config(path: str, data: str, max_iters: int = 4) -> str:
    """A tiny CIM run (toy tokenizer, 16 px, batch 2) with a checkpoint every
    2 iterations, as a config file for ``tools/train.py``."""
    cfg = dict(
        custom_imports=dict(imports=['cim_mm', 'helpers', 'disk_full_patch'],
                            allow_failed_imports=False),
        default_scope='mmpretrain',
        experiment_name=f'ckpt-failures-{uuid.uuid4().hex[:8]}',
        model=tiny_vit_cim_cfg('respix'),
        train_dataloader=dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='UnlabeledImageFolder', data_root=data, pipeline=[
                dict(type='SafeLoadImageFromFile'),
                dict(type='BEiTMaskGenerator', input_size=(4, 4), num_masking_patches=6,
                     min_num_patches=2),
                dict(type='PackInputs')])),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2,
                            max_keep_ckpts=-1),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook')],
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        log_level='WARNING',
    )
    Config(cfg).dump(path)
    return path


def train(cfg: str, work: str, *args: str, disk_full_at: str = '') -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               CIM_MM_TEST_DISK_FULL=disk_full_at,
               PYTHONPATH=os.pathsep.join([ROOT, TESTS_DIR, TOOLS_DIR]))
    env.pop('CIM_MM_DEBUG', None)
    return subprocess.run([sys.executable, 'tools/train.py', cfg, '--work-dir', work, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr without the third-party warnings (lines of ``file:line: XWarning``
    and the source line under each)."""
    lines = proc.stderr.splitlines()
    keep, skip_next = [], False
    for line in lines:
        if skip_next:
            skip_next = False
            continue
        if 'Warning: ' in line and not line.startswith('train.py:'):
            skip_next = True
            continue
        keep.append(line)
    return keep


def pointer(work: str) -> str:
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> str:
    return write_images(str(tmp_path_factory.mktemp('images')))


def test_full_disk_is_one_line_naming_the_file_the_intact_checkpoint_and_resume(
        tmp_path, data):
    cfg = write_config(str(tmp_path / 'tiny.py'), data)
    work = str(tmp_path / 'work')
    proc = train(cfg, work, disk_full_at='iter_4.pth')
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    new, intact = osp.join(work, 'iter_4.pth'), osp.join(work, 'iter_2.pth')
    assert line.startswith('train.py: error: could not write ')
    assert new in line and 'No space left on device' in line
    assert f'the last saved checkpoint {intact} is intact' in line and '--resume' in line
    assert 'Traceback' not in proc.stderr and 'inline_container' not in proc.stderr
    # the previous checkpoint still loads, and nothing half-written is left
    assert pointer(work) == intact
    assert safe_load(intact)['meta']['iter'] == 2
    assert not osp.exists(new)
    assert [f for f in os.listdir(work) if f.endswith('.tmp')] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train_two_processes(cfg: str, work: str, disk_full_at: str) -> list[tuple[int, str]]:
    """``tools/train.py --launcher pytorch`` as 2 CPU processes (gloo), started as
    torchrun starts them; ``[(exit code, stderr)]`` per rank."""
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k != 'CIM_MM_DEBUG'}
        env.update(CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', CIM_MM_TEST_DISK_FULL=disk_full_at,
                   PYTHONPATH=os.pathsep.join([ROOT, TESTS_DIR, TOOLS_DIR]),
                   RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2', LOCAL_WORLD_SIZE='2',
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
        procs.append(subprocess.Popen(
            [sys.executable, 'tools/train.py', cfg, '--work-dir', work, '--launcher', 'pytorch'],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, err))
    return results


def test_full_disk_on_rank0_stops_every_rank_with_the_same_line(tmp_path, data):
    """Rank 0 can not write iter_4.pth of a 6-iteration run: rank 1 does not run
    on into gloo's 'Connection closed by peer', both print rank 0's line."""
    cfg = write_config(str(tmp_path / 'tiny.py'), data, max_iters=6)
    c = Config.fromfile(cfg)
    c.env_cfg = dict(dist_cfg=dict(backend='gloo'))
    c.dump(cfg)
    work = str(tmp_path / 'work')
    results = train_two_processes(cfg, work, disk_full_at='iter_4.pth')
    lines = []
    for rank, (code, err) in enumerate(results):
        assert code == 1, f'rank {rank}: {err[-3000:]}'
        assert 'Traceback' not in err and 'gloo' not in err, f'rank {rank}: {err[-3000:]}'
        kept = error_lines(subprocess.CompletedProcess([], code, '', err))
        assert len(kept) == 1, f'rank {rank}: {err[-3000:]}'
        lines.append(kept[0])
    assert lines[0] == lines[1]
    new, intact = osp.join(work, 'iter_4.pth'), osp.join(work, 'iter_2.pth')
    assert lines[0].startswith(f'train.py: error: could not write {new} ')
    assert f'the last saved checkpoint {intact} is intact' in lines[0] and '--resume' in lines[0]
    assert pointer(work) == intact and not osp.exists(new)


class _TwoRanks:
    """mmengine.dist as rank ``rank`` of 2 sees it; ``broadcast`` fills the
    tensors from ``sent`` (what rank 0 broadcasts, in order) and records them."""

    def __init__(self, rank: int, sent: list = ()) -> None:
        self.rank, self.sent, self.calls = rank, list(sent), []

    def install(self, monkeypatch) -> None:
        from cim_mm.utils import agreed_save
        monkeypatch.setattr(agreed_save.dist, 'is_distributed', lambda: True)
        monkeypatch.setattr(agreed_save.dist, 'get_rank', lambda: self.rank)
        monkeypatch.setattr(agreed_save.dist, 'broadcast', self.broadcast)

    def broadcast(self, data: torch.Tensor, src: int = 0) -> None:
        assert src == 0
        if self.rank != 0:
            data.copy_(self.sent[len(self.calls)])
        self.calls.append(data.clone())


def test_agreed_save_costs_one_int_when_the_save_succeeds(monkeypatch):
    from cim_mm.utils.agreed_save import agreed_save
    saved = []
    ranks = _TwoRanks(rank=0)
    ranks.install(monkeypatch)
    agreed_save(lambda: saved.append(1), 'iter_2.pth')
    assert saved == [1] and len(ranks.calls) == 1
    assert ranks.calls[0].dtype == torch.int64 and ranks.calls[0].tolist() == [0]


def test_agreed_save_gives_rank0_line_to_every_rank(monkeypatch):
    from cim_mm.utils import agreed_save as mod
    from cim_mm.utils.safe_checkpoint import CheckpointWriteError
    line = 'could not write /w/iter_4.pth ([Errno 28] No space left on device); é'

    def full():
        raise CheckpointWriteError(line)
    rank0 = _TwoRanks(rank=0)
    rank0.install(monkeypatch)
    with pytest.raises(CheckpointWriteError) as err0:
        mod.agreed_save(full, 'iter_4.pth')
    assert str(err0.value) == line and len(rank0.calls) == 2  # the length, then the line
    rank1 = _TwoRanks(rank=1, sent=rank0.calls)
    rank1.install(monkeypatch)
    saved = []
    with pytest.raises(CheckpointWriteError) as err1:
        mod.agreed_save(lambda: saved.append(1), 'iter_4.pth')  # a no-op off rank 0
    assert str(err1.value) == line and saved == [1]


def test_agreed_save_keeps_rank0_bug_and_names_it_elsewhere(monkeypatch):
    from cim_mm.utils import agreed_save as mod
    from cim_mm.utils.safe_checkpoint import CheckpointWriteError

    def bug():
        raise TypeError('cannot pickle')
    rank0 = _TwoRanks(rank=0)
    rank0.install(monkeypatch)
    with pytest.raises(TypeError):  # rank 0: its own exception and traceback
        mod.agreed_save(bug, 'iter_4.pth')
    rank1 = _TwoRanks(rank=1, sent=rank0.calls)
    rank1.install(monkeypatch)
    with pytest.raises(CheckpointWriteError) as err:
        mod.agreed_save(lambda: None, 'iter_4.pth')
    assert str(err.value) == ("rank 0 could not save the checkpoint iter_4.pth: TypeError: "
                              "cannot pickle (the traceback is in rank 0's output)")


def test_full_disk_error_unit(tmp_path, monkeypatch):
    """``atomic_torch_save`` itself: no ``last_checkpoint`` beside the file,
    so no resume advice; the file that was there is unchanged."""
    import errno

    from cim_mm.utils import safe_checkpoint
    path = str(tmp_path / 'weights.pth')
    safe_checkpoint.atomic_torch_save({'w': torch.ones(2)}, path)

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(safe_checkpoint.CheckpointWriteError) as err:
        safe_checkpoint.atomic_torch_save({'w': torch.zeros(2)}, path)
    msg = str(err.value)
    assert msg == (f'could not write {path} ([Errno 28] No space left on device); '
                   'nothing was replaced')
    monkeypatch.undo()
    assert torch.equal(safe_load(path)['w'], torch.ones(2))
    assert os.listdir(tmp_path) == ['weights.pth']


def test_other_errors_while_saving_keep_their_type(tmp_path, monkeypatch):
    """Only an OSError is a write failure; a bug in what is saved stays a bug."""
    from cim_mm.utils import safe_checkpoint

    def broken(obj, f, *args, **kwargs):
        raise TypeError('cannot pickle')
    monkeypatch.setattr(torch, 'save', broken)
    with pytest.raises(TypeError):
        safe_checkpoint.atomic_torch_save({'w': torch.zeros(2)}, str(tmp_path / 'x.pth'))
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data) -> tuple[str, str]:
    """A finished 4-iteration run: iter_2.pth, iter_4.pth, last_checkpoint."""
    tmp = tmp_path_factory.mktemp('trained')
    cfg = write_config(str(tmp / 'tiny.py'), data)
    work = str(tmp / 'work')
    proc = train(cfg, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pointer(work) == osp.join(work, 'iter_4.pth')
    return cfg, work


def truncate(path: str) -> None:
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size // 2)


@pytest.mark.parametrize('how', ['path', 'auto'])
def test_truncated_resume_checkpoint_names_the_previous_one(tmp_path, trained, how):
    import shutil
    cfg, done = trained
    work = str(tmp_path / 'work')
    shutil.copytree(done, work)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'iter_4.pth'))  # the copy's own
    cut, prev = osp.join(work, 'iter_4.pth'), osp.join(work, 'iter_2.pth')
    truncate(cut)
    # a later, also truncated checkpoint is passed over
    shutil.copy(cut, osp.join(work, 'iter_6.pth'))
    args = ['--resume', cut] if how == 'path' else ['--resume']
    proc = train(cfg, work, *args, '--cfg-options', 'train_cfg.max_iters=6')
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f'train.py: error: --resume: {cut} is truncated or corrupt')
    assert f'the previous checkpoint {prev} loads: run the same command with ' \
           f'--resume {prev}' in lines[0]
    assert 'Traceback' not in proc.stderr


def test_truncated_resume_checkpoint_without_an_earlier_one(tmp_path, trained):
    import shutil
    cfg, done = trained
    work = str(tmp_path / 'work')
    os.makedirs(work)
    cut = osp.join(work, 'iter_2.pth')
    shutil.copy(osp.join(done, 'iter_2.pth'), cut)
    truncate(cut)
    proc = train(cfg, work, '--resume', cut)
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f'--resume: {cut} is truncated or corrupt' in lines[0]
    assert f'no other checkpoint in {work} loads: train from the start without ' \
           '--resume' in lines[0]
