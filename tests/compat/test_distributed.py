"""Several processes on a machine without CUDA.

``cim_mm.compat.dist`` makes mmengine's ``init_dist`` (gloo, no
``set_device``), its DDP wrapper (no ``device_ids``) and torch's SyncBatchNorm
work on CPU. Then 2 CPU processes train the Fashion-MNIST demo configs (ViT
ResPix, ViT RevDet, ResNet with SyncBN) on tiny fake data:

* one torchrun of this file (``worker``) trains the three families one after
  the other (rank 1 in its own work dir, so what it writes can be seen) and
  checks SyncBN's CPU path against BatchNorm on the pooled batch;
* ``tools/dist_train.sh`` runs the ViT ResPix demo SIGKILLed after a
  checkpoint, then ``--resume``s it.

``RankRecorderHook`` makes each rank leave ``rank{r}.json``: losses, the DDP
wrapper's settings, a hash of the whole state dict and, per iteration, a
generator sample drawn from uniform logits (pure RNG) without touching the
training RNG.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import textwrap
from typing import Optional

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

import cim_mm  # noqa: F401  (installs the compat fixes)

TESTS_DIR = osp.dirname(osp.abspath(__file__))
HELPERS_DIR = osp.dirname(TESTS_DIR)  # tests/: helpers.py
ROOT = osp.dirname(HELPERS_DIR)
CIM_DIR = osp.join(ROOT, 'configs', 'cim')
FAMILIES = {
    'vit-respix': 'cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'vit-revdet': 'cim-revdet_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'resnet-syncbn': 'cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
}
ITERS = 4  # uninterrupted ViT ResPix run; the others run ITERS // 2
KILL_AT = 2  # checkpoint every 2 iterations; killed after the first one


# ------------------------------------------------------------------- hooks
def state_hash(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names, dtypes, values)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@HOOKS.register_module(force=True)
class RankRecorderHook(Hook):
    """Each rank writes ``out_dir/rank{r}.json`` after training."""

    priority = 'LOWEST'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.rec: dict = dict(losses={}, probes={})

    def before_train(self, runner) -> None:
        model = runner.model
        self.rec.update(
            rank=runner.rank, world_size=runner.world_size,
            wrapper=type(model).__name__,
            find_unused_parameters=getattr(model, 'find_unused_parameters', None),
            device_ids=getattr(model, 'device_ids', 'n/a'),
            sync_bn_layers=sum(isinstance(m, torch.nn.SyncBatchNorm)
                               for m in model.modules()),
            backend=str(torch.distributed.get_backend()))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # the generator's sampling on uniform logits: its draw is the RNG alone
        gen = getattr(runner.model, 'module', runner.model).generator
        h, w = gen.patch_resolution
        with torch.random.fork_rng(devices=[]):
            ids = gen.sample(torch.zeros(1, h * w, gen.vocab_size),
                             torch.zeros(1, h, w, dtype=torch.long),
                             torch.ones(1, h, w, dtype=torch.bool))  # [1, h, w]
        self.rec['probes'][runner.iter + 1] = ids.flatten().tolist()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self.rec['losses'][runner.iter + 1] = {
            k: float(v) for k, v in outputs.items() if k.startswith('loss')}

    def after_train(self, runner) -> None:
        self.rec.update(iter=runner.iter, state=state_hash(
            getattr(runner.model, 'module', runner.model)))
        os.makedirs(self.out_dir, exist_ok=True)
        with open(osp.join(self.out_dir, f'rank{runner.rank}.json'), 'w') as f:
            json.dump(self.rec, f)


@HOOKS.register_module(force=True)
class KillAllRanksHook(Hook):
    """Every rank SIGKILLs itself before iteration ``at + 1``, once rank 0 has
    written the checkpoint of iteration ``at`` (barrier)."""

    priority = 'VERY_HIGH'

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter == self.at:
            torch.distributed.barrier()
            os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------ worker (torchrun)
def check_cpu_sync_bn() -> dict:
    """SyncBatchNorm on each rank's CPU slice vs BatchNorm2d on the pooled batch:
    max |difference| (over ranks) of output, input grad, parameter grads (summed
    over ranks, as DDP does), running stats."""
    from torch import distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)  # the same on every rank
    x_all = torch.randn(3 * world, 4, 5, 5, generator=g) * 2 + 1  # [N, C, H, W]
    w_all = torch.randn(3 * world, 4, 5, 5, generator=g)  # loss weights
    ref = torch.nn.BatchNorm2d(4, momentum=0.3)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(4, generator=g) + 0.5)
        ref.bias.copy_(torch.randn(4, generator=g))
    sync = torch.nn.SyncBatchNorm(4, momentum=0.3)
    sync.load_state_dict(ref.state_dict())
    mine = slice(3 * rank, 3 * rank + 3)

    xr = x_all.clone().requires_grad_()
    yr = ref(xr)  # [N, C, H, W]
    (yr * w_all).sum().backward()
    x = x_all[mine].clone().requires_grad_()
    y = sync(x)  # [N / world, C, H, W]
    (y * w_all[mine]).sum().backward()
    grads = torch.cat([sync.weight.grad, sync.bias.grad])
    dist.all_reduce(grads)  # what DDP sums (then averages) over ranks

    def err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.detach() - b.detach()).abs().max()
    errors = dict(
        out=err(y, yr[mine]),
        grad_x=err(x.grad, xr.grad[mine]),
        grad_params=err(grads, torch.cat([ref.weight.grad, ref.bias.grad])),
        running_mean=err(sync.running_mean, ref.running_mean),
        running_var=err(sync.running_var, ref.running_var))
    worst = torch.stack(list(errors.values()))  # [5]
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # over the ranks
    return dict(zip(errors, worst.tolist()))


def worker(runs: list[tuple[str, str]], out: str) -> None:
    """Run under torchrun: train each ``(config, work_dir)`` in turn (rank r > 0
    in ``work_dir + '_rank{r}'``), then check SyncBN; rank 0 writes ``out``."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import train
    rank = int(os.environ['RANK'])
    for cfg, work in runs:
        train.main([cfg, '--launcher', 'pytorch',
                    '--work-dir', work if rank == 0 else f'{work}_rank{rank}'])
    result = check_cpu_sync_bn()
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(result, f)


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items()  # no rank variables left by
           if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE',
                        'MASTER_ADDR', 'MASTER_PORT')}  # in-process runs
    return dict(env, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='',
                PYTHONPATH=os.pathsep.join([ROOT, TESTS_DIR, HELPERS_DIR]))


def write_config(path: str, family: str, data: str, tok: str, rec_dir: str,
                 iters: int, kill_at: Optional[int] = None) -> str:
    """A demo config at test size (batch 2 per process, checkpoints and
    pictures every 2 iterations) with the recorder (and kill) hooks."""
    extra = f"dict(type='KillAllRanksHook', at={kill_at})," if kill_at else ''
    norm = ("backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),"
            if family == 'resnet-syncbn' else '')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f'''\
            _base_ = [{osp.join(CIM_DIR, FAMILIES[family])!r}]
            custom_imports = dict(imports=['cim_mm', 'test_distributed'],
                                  allow_failed_imports=False)
            model = dict({norm} tokenizer=dict(checkpoint={tok!r}))
            train_dataloader = dict(batch_size=2, num_workers=0,
                                    dataset=dict(data_root={data!r}))
            train_cfg = dict(max_iters={iters})
            default_hooks = dict(logger=dict(interval=1),
                                 checkpoint=dict(interval=2, max_keep_ckpts=-1))
            custom_hooks = [
                dict(type='NonFiniteLossHook'),
                dict(type='RNGStateHook'),
                dict(type='CIMVisualizationHook', interval=2, num_images=2),
                dict(type='RankRecorderHook', out_dir={rec_dir!r}),
                {extra}
            ]
            log_level = 'WARNING'
        '''))
    return path


def read_ranks(rec_dir: str) -> list[dict]:
    recs = []
    for r in range(2):
        with open(osp.join(rec_dir, f'rank{r}.json')) as f:
            recs.append(json.load(f))
    return recs


def last_iter(work_dir: str) -> int:
    from cim_mm.utils import safe_load
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return int(safe_load(f.read().strip())['meta']['iter'])


# -------------------------------------------------------- unit: the fixes
def test_dist_fixes_apply_once():
    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    from cim_mm.compat.dist import apply as install_dist_compat
    before = (dist_utils._init_dist_pytorch, dist_utils._init_dist_slurm,
              dist_utils._init_dist_mpi, MMDistributedDataParallel.__init__,
              MMDistributedDataParallel._passing_sync_batchnorm_handle,
              torch.nn.SyncBatchNorm.forward)
    assert all(getattr(f, '_cim_mm_dist_compat', False) for f in before)
    install_dist_compat()
    after = (dist_utils._init_dist_pytorch, dist_utils._init_dist_slurm,
             dist_utils._init_dist_mpi, MMDistributedDataParallel.__init__,
             MMDistributedDataParallel._passing_sync_batchnorm_handle,
             torch.nn.SyncBatchNorm.forward)
    assert after == before


@pytest.mark.parametrize('cuda', [False, True])
def test_init_wrapper_changes_nothing_with_cuda(monkeypatch, cuda):
    from cim_mm.compat import dist as dist_compat
    calls = []

    def fake_init(backend, **kwargs):
        torch.cuda.set_device(3)  # a no-op only when CUDA is absent
        calls.append((backend, kwargs))

    set_device = []
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: set_device.append(d))
    monkeypatch.setattr(dist_compat, '_cuda_absent', lambda: not cuda)
    dist_compat._cpu_safe_init(fake_init)('nccl', timeout=5)
    assert calls == [('nccl' if cuda else 'gloo', dict(timeout=5))]
    assert set_device == ([3] if cuda else [])


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path of the fix')
def test_process_group_is_destroyed_before_interpreter_finalization(tmp_path):
    """mmengine never destroys the gloo group it makes; one left to the
    interpreter's finalization can SIGABRT a rank at exit (a gloo thread that
    drops a tensor then needs the GIL). After mmengine's init_dist (fixed) and a
    DDP step whose wrapper is left in a reference cycle (as a finished Runner
    is), the group is gone and its threads joined by
    the time the atexit handlers registered before init_dist run (atexit runs
    last-registered first), i.e. while the interpreter is still whole."""
    script = tmp_path / 'probe.py'
    script.write_text(textwrap.dedent('''\
        import atexit, os, sys
        import torch
        import torch.distributed as dist
        from cim_mm.compat import apply_all
        apply_all()
        def threads():  # native threads too: /proc names them
            return sorted(open(f'/proc/self/task/{t}/comm').read().strip()
                          for t in os.listdir('/proc/self/task'))
        def probe():
            gloo = [t for t in threads() if 'gloo' in t]
            sys.stdout.write(f'at exit: initialized={dist.is_initialized()} gloo={gloo}\\n')
        atexit.register(probe)  # before init_dist: runs after its handler
        from mmengine.dist import init_dist
        from mmengine.model import MMDistributedDataParallel
        def train():  # as tools/train.py: the runner's model is local
            init_dist('pytorch', backend='nccl')
            ddp = MMDistributedDataParallel(torch.nn.Linear(2, 2), device_ids=[0])
            ddp(torch.ones(1, 2)).sum().backward()
            dist.all_reduce(torch.ones(2))
            runner = dict(model=ddp)
            runner['self'] = runner  # a reference cycle, as mmengine's Runner
        train()
        print(f'trained: initialized={dist.is_initialized()} '
              f'gloo={any("gloo" in t for t in threads())}')
    '''))
    env = dict(child_env(), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
               RANK='0', LOCAL_RANK='0', WORLD_SIZE='1')
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if 'initialized=' in ln]
    assert lines == ['trained: initialized=True gloo=True',
                     'at exit: initialized=False gloo=[]'], proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path of the fix')
@pytest.mark.parametrize('launcher', ['pytorch', 'slurm'])
def test_init_dist_and_ddp_without_cuda(monkeypatch, launcher):
    """mmengine's init_dist (nccl requested, as mmpretrain's runtime does) and
    its DDP wrapper with ``device_ids=[LOCAL_RANK]`` (as ``Runner.wrap_model``
    passes) work in one CPU process."""
    import multiprocessing as mp

    from mmengine.dist import init_dist
    from mmengine.model import MMDistributedDataParallel

    # what the launcher sets (torchrun / srun); the slurm path writes RANK,
    # WORLD_SIZE, LOCAL_RANK itself: set here too, so they are undone after
    env = dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), RANK='0',
               LOCAL_RANK='0', WORLD_SIZE='1')
    if launcher == 'slurm':
        env.update(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_NODELIST='localhost',
                   SLURM_LOCALID='0')
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    start_method = mp.get_start_method(allow_none=True)  # init_dist may set 'spawn'
    init_dist(launcher, backend='nccl')
    try:
        assert torch.distributed.get_backend() == 'gloo'
        assert torch.distributed.get_world_size() == 1
        torch.manual_seed(0)
        # no conv bias: before a BN its gradient is 0 up to rounding
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1, bias=False),
                                  torch.nn.SyncBatchNorm(2))
        ref = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1, bias=False),
                                  torch.nn.BatchNorm2d(2))
        ref.load_state_dict(net.state_dict())
        ddp = MMDistributedDataParallel(net, device_ids=[0], find_unused_parameters=False)
        assert ddp.device_ids is None
        x, w = torch.randn(4, 3, 5, 5), torch.randn(4, 2, 5, 5)
        (ddp(x) * w).sum().backward()
        (ref(x) * w).sum().backward()
        for (k, a), b in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5,
                                       msg=k)  # DDP of 1 process = no DDP
        torch.testing.assert_close(net[1].running_var, ref[1].running_var)
    finally:
        torch.distributed.destroy_process_group()
        mp.set_start_method(start_method, force=True)


def test_sync_bn_single_process_is_batch_norm():
    """Outside a process group the patched SyncBatchNorm is torch's own (plain
    batch norm), so one-process runs are unchanged."""
    x = torch.randn(6, 3, 4, 4)
    sync, ref = torch.nn.SyncBatchNorm(3), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(sync(x), ref(x))
    torch.testing.assert_close(sync.running_var, ref.running_var)


# ------------------------------------------------- 2 processes (torchrun)
@pytest.fixture(scope='module')
def dist_runs(tmp_path_factory) -> dict:
    """One torchrun: the three families (ViT ResPix for ITERS iterations, the
    others ITERS // 2) and the SyncBN check, 2 CPU processes."""
    from helpers import write_fashion_mnist
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    from cim_mm.utils import atomic_torch_save
    tmp = tmp_path_factory.mktemp('dist')
    data = write_fashion_mnist(str(tmp / 'data'), n_train=64, n_test=8)
    tok_cfg = Config.fromfile(osp.join(CIM_DIR, FAMILIES['vit-respix'])).model.tokenizer
    tok_cfg = dict(tok_cfg.to_dict(), checkpoint=None, allow_random_init=True)
    torch.manual_seed(0)
    tok = str(tmp / 'tokenizer.pth')
    atomic_torch_save(MODELS.build(tok_cfg).tokenizer_state_dict(), tok)

    runs, info = [], dict(tmp=str(tmp), data=data, tok=tok)
    for fam in FAMILIES:
        iters = ITERS if fam == 'vit-respix' else ITERS // 2
        cfg = write_config(str(tmp / f'{fam}.py'), fam, data, tok,
                           str(tmp / 'rec' / fam), iters)
        runs.append((cfg, str(tmp / 'work' / fam)))
    info['runs'] = dict(zip(FAMILIES, runs))
    info['sync_bn'] = str(tmp / 'sync_bn.json')
    script = (f'import sys; sys.path[:0] = [{TESTS_DIR!r}, {HELPERS_DIR!r}]; import test_distributed as T; '
              f'T.worker({runs!r}, {info["sync_bn"]!r})')
    script_file = tmp / 'worker.py'
    script_file.write_text(script)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={free_port()}', str(script_file)],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=400)
    (tmp / 'torchrun.log').write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return info


@pytest.mark.parametrize('family', list(FAMILIES))
def test_two_processes_train_in_step(dist_runs, family):
    r0, r1 = read_ranks(osp.join(dist_runs['tmp'], 'rec', family))
    iters = ITERS if family == 'vit-respix' else ITERS // 2
    for r, rec in enumerate((r0, r1)):
        assert (rec['rank'], rec['world_size'], rec['iter']) == (r, 2, iters)
        assert rec['backend'] == 'gloo'
        assert rec['wrapper'] == 'MMDistributedDataParallel'
        assert rec['find_unused_parameters'] is False and rec['device_ids'] is None
        assert sorted(map(int, rec['losses'])) == list(range(1, iters + 1))
        assert all(np.isfinite(v) for it in rec['losses'].values() for v in it.values())
    # the same weights (and, with SyncBN, the same running statistics) on both ranks
    assert r0['state'] == r1['state']
    # each rank its own data and random streams: other losses, other samples
    assert r0['losses']['1'] != r1['losses']['1']
    for it in r0['probes']:
        assert r0['probes'][it] != r1['probes'][it], f'same samples at iteration {it}'
    if family == 'resnet-syncbn':
        assert r0['sync_bn_layers'] > 0 and r0['sync_bn_layers'] == r1['sync_bn_layers']
    else:
        assert r0['sync_bn_layers'] == 0


def test_cpu_sync_bn_equals_batch_norm_on_the_pooled_batch(dist_runs):
    with open(dist_runs['sync_bn']) as f:
        errors = json.load(f)
    assert set(errors) == {'out', 'grad_x', 'grad_params', 'running_mean', 'running_var'}
    assert max(errors.values()) < 1e-4, errors  # unsynchronised BN: ~0.5


@pytest.mark.parametrize('family', list(FAMILIES))
def test_only_rank0_writes_checkpoints_and_pictures(dist_runs, family):
    work = dist_runs['runs'][family][1]
    iters = ITERS if family == 'vit-respix' else ITERS // 2
    assert last_iter(work) == iters
    assert osp.isfile(osp.join(work, f'iter_{iters}.pth'))
    assert osp.isfile(osp.join(work, 'vis', f'cim_iter_{iters:06d}.png'))
    written = [p for p in glob.glob(osp.join(f'{work}_rank1', '**'), recursive=True)
               if osp.isfile(p)]
    assert written == []  # no checkpoint, picture, log or config from rank 1


def test_killed_two_process_run_resumes_as_if_uninterrupted(dist_runs):
    """tools/dist_train.sh, SIGKILLed (both ranks) after the checkpoint of
    iteration KILL_AT, then ``--resume``: the same iterations, losses and
    samples on each rank, and the same final weights, as the uninterrupted run."""
    tmp, work = dist_runs['tmp'], osp.join(dist_runs['tmp'], 'killed')
    rec = osp.join(tmp, 'rec', 'resumed')
    args = ('vit-respix', dist_runs['data'], dist_runs['tok'])
    killed_cfg = write_config(osp.join(tmp, 'killed.py'), *args,
                              osp.join(tmp, 'rec', 'killed'), ITERS, kill_at=KILL_AT)
    resume_cfg = write_config(osp.join(tmp, 'resume.py'), *args, rec, ITERS)

    def dist_train(cfg, *extra):
        env = dict(child_env(), PORT=str(free_port()))
        return subprocess.run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work,
                               *extra], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    proc = dist_train(killed_cfg)
    assert proc.returncode != 0 and 'SIGKILL' in proc.stderr, proc.stderr[-4000:]
    assert last_iter(work) == KILL_AT
    assert not osp.exists(osp.join(work, f'iter_{KILL_AT + 1}.pth'))

    proc = dist_train(resume_cfg, '--resume')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert last_iter(work) == ITERS
    full = read_ranks(osp.join(tmp, 'rec', 'vit-respix'))
    resumed = read_ranks(rec)
    for r in range(2):
        got, want = resumed[r], full[r]
        assert sorted(map(int, got['losses'])) == list(range(KILL_AT + 1, ITERS + 1))
        for it, losses in got['losses'].items():
            for k, v in losses.items():
                np.testing.assert_allclose(v, want['losses'][it][k], rtol=1e-6,
                                           err_msg=f'rank {r} {k} at iteration {it}')
            assert got['probes'][it] == want['probes'][it]
        assert got['state'] == want['state'], f'rank {r}: other final weights'
