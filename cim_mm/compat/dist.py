"""Several processes without CUDA (mmengine 0.10.7, torch 2.14).

Four things stop ``tools/dist_train.sh CONFIG N`` on a machine without a GPU
(mmengine 0.10). Applied by :func:`cim_mm.compat.apply_all`, tested in
``tests/compat/test_distributed.py``. Fixes 1 and 2 act only where CUDA is absent;
fix 3 only on CPU tensors, where torch would raise; fix 4 rides on fix 1:

1. mmengine's ``init_dist`` calls ``torch.cuda.set_device(local_rank)`` for the
   pytorch / slurm / mpi launchers and defaults to (and the mmpretrain runtime
   configures) the ``nccl`` backend. Without CUDA: ``nccl`` becomes ``gloo``
   (one warning line) and ``set_device`` is skipped; the launchers' own
   environment handling (ranks, ``MASTER_ADDR``/``PORT``) is kept as is.
2. mmengine's ``Runner.wrap_model`` builds ``MMDistributedDataParallel`` with
   ``device_ids=[LOCAL_RANK]``, which torch's DDP refuses for a module on the
   CPU. Without CUDA, for a module whose parameters are all on the CPU,
   ``device_ids`` / ``output_device`` are dropped (DDP's CPU mode), and DDP's
   refusal of SyncBatchNorm layers in a CPU module is skipped (3. runs them).
3. ``torch.nn.SyncBatchNorm`` (``sync_bn='torch'``, or ``norm_cfg=dict(type=
   'SyncBN')`` as in the ResNet-50 recipe) raises ``ValueError`` on CPU tensors
   in a distributed training step, and its kernels (``batch_norm_stats``) are
   GPU-only. For CPU inputs only, :func:`cpu_sync_batch_norm` computes the same
   thing (global batch mean / biased variance over all ranks for the
   normalisation, unbiased for the running variance) with autograd-aware
   all-reduces; every other input takes torch's own path.
4. mmengine never destroys the process group it creates, so a gloo group is
   left to the interpreter's finalization, where its C++ worker threads can
   still drop tensors that Python objects own; taking the GIL then aborts the
   process (``terminate called without an active exception``, SIGABRT), e.g.
   a rank that finishes while rank 0 is still saving its checkpoint, and
   torchrun then kills rank 0 mid-save. Without CUDA, once ``init_dist`` has
   made the group, an ``atexit`` handler destroys it while the interpreter is
   still whole (before finalization), then collects garbage, so that the
   group's last reference goes and its destructor joins its threads.
   Destroying alone is not enough: a finished Runner is a reference cycle that
   holds the DDP wrapper, hence the group, until the finalization's own
   collection; and ``torch.distributed.nn.functional``, which DDP imports,
   binds ``group.WORLD`` as default arguments at import time, so imported
   after the group exists it would hold the group for ever. The fix imports it
   before the group is made, where those defaults are ``None``.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gc
from typing import Any, Callable, Iterator, Optional

import torch
import torch.distributed as torch_dist
import mmengine
from mmengine.dist import utils as dist_utils
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from torch import nn

from .versions import version_at_least

_PATCHED = '_cim_mm_dist_compat'


def _cuda_absent() -> bool:
    return not torch.cuda.is_available()


@contextlib.contextmanager
def _cuda_set_device_skipped() -> Iterator[None]:
    """``torch.cuda.set_device`` does nothing inside (CUDA absent only)."""
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def _cpu_backend(backend: Optional[str]) -> Optional[str]:
    if backend == 'nccl':
        print_log("init_dist: CUDA is not available, so backend 'nccl' -> 'gloo'",
                  logger='current', level=30)
        return 'gloo'
    return backend


def _cpu_safe_init(fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap one of mmengine's ``_init_dist_{pytorch,slurm,mpi}(backend, ...)``."""
    if getattr(fn, _PATCHED, False):
        return fn

    @functools.wraps(fn)
    def init(backend: str = 'nccl', *args: Any, **kwargs: Any) -> None:
        if not _cuda_absent():
            return fn(backend, *args, **kwargs)
        _bind_world_defaults_before_init()
        with _cuda_set_device_skipped():
            fn(_cpu_backend(backend), *args, **kwargs)
        _destroy_at_exit()

    setattr(init, _PATCHED, True)
    return init


def _bind_world_defaults_before_init() -> None:
    """Import ``torch.distributed.nn.functional`` while no group exists: its
    functions' ``group=group.WORLD`` defaults then hold ``None``, not a
    reference that would outlive :func:`_destroy_process_group`."""
    if not torch_dist.is_initialized():
        import torch.distributed.nn.functional  # noqa: F401


def _destroy_process_group() -> None:
    """Destroy the default process group if one is still up, then collect the
    garbage (finished runners, DDP wrappers) that still references it, so its
    C++ destructor joins the group's threads now (the ``atexit`` handler of
    fix 4; a no-op when the program destroyed it itself)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
        gc.collect()


def _destroy_at_exit() -> None:
    """Register :func:`_destroy_process_group` to run at exit, once."""
    atexit.unregister(_destroy_process_group)  # at most one registration
    atexit.register(_destroy_process_group)


def install_init_dist_fix() -> None:
    """Make mmengine's ``init_dist`` work without CUDA. Idempotent."""
    for name in ('_init_dist_pytorch', '_init_dist_slurm', '_init_dist_mpi'):
        setattr(dist_utils, name, _cpu_safe_init(getattr(dist_utils, name)))


def install_cpu_ddp_fix() -> None:
    """``MMDistributedDataParallel`` on a CPU module: no ``device_ids``. Idempotent."""
    original = MMDistributedDataParallel.__init__
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def __init__(self, module: nn.Module, *args: Any, **kwargs: Any) -> None:
        if (_cuda_absent() and kwargs.get('device_ids') is not None
                and all(p.device.type == 'cpu' for p in module.parameters())):
            kwargs['device_ids'] = None
            kwargs['output_device'] = None
        original(self, module, *args, **kwargs)

    setattr(__init__, _PATCHED, True)
    MMDistributedDataParallel.__init__ = __init__

    check_sync_bn = MMDistributedDataParallel._passing_sync_batchnorm_handle

    @functools.wraps(check_sync_bn)
    def _passing_sync_batchnorm_handle(self, module: nn.Module) -> None:
        if _cuda_absent() and self.device_type == 'cpu':
            return  # SyncBatchNorm on CPU: cpu_sync_batch_norm (installed below)
        check_sync_bn(self, module)

    setattr(_passing_sync_batchnorm_handle, _PATCHED, True)
    MMDistributedDataParallel._passing_sync_batchnorm_handle = \
        _passing_sync_batchnorm_handle


class _AllReduceSum(torch.autograd.Function):
    """``sum`` over the ranks of ``group``; the gradient is summed the same way
    (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = x.clone()
        torch_dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        grad = grad.clone()
        torch_dist.all_reduce(grad, group=ctx.group)
        return grad, None


def cpu_sync_batch_norm(bn: nn.SyncBatchNorm, x: torch.Tensor,
                        group: Any) -> torch.Tensor:
    """Training-mode batch norm over the batch of every rank of ``group``.

    Args:
        bn: the layer (its weight, bias, eps, momentum and running buffers).
        x: ``[N, C, *]`` this rank's input (any N, the same C everywhere).
        group: the process group to synchronise over.

    Returns:
        ``[N, C, *]`` ``(x - mean) / sqrt(var + eps) * weight + bias`` with the
        mean and biased variance of all ranks' inputs pooled; gradients flow
        through them to every rank's input (all-reduce of the gradient). The
        running mean / variance (unbiased) are updated as
        :class:`torch.nn.BatchNorm2d` does on the pooled batch.
    """
    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(t, group)
    c = x.shape[1]
    dims = [0] + list(range(2, x.dim()))  # every axis but the channel
    shape = [1, c] + [1] * (x.dim() - 2)
    xf = x.float()
    count = x.new_tensor([x.numel() // c], dtype=torch.float32)  # [1]
    sums = all_reduce(torch.cat([xf.sum(dims), count]))  # [C + 1]
    n = sums[c]
    mean = sums[:c] / n  # [C]
    centred = xf - mean.view(shape)  # [N, C, *]
    var = all_reduce((centred * centred).sum(dims)) / n  # [C], biased
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.weight is not None:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)

    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            unbiased = var.detach() * n / (n - 1).clamp(min=1)
            bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), factor)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)
    return y.to(x.dtype)


def install_cpu_sync_bn_fix() -> None:
    """``nn.SyncBatchNorm`` on CPU tensors in a distributed training step: use
    :func:`cpu_sync_batch_norm` instead of raising. Idempotent."""
    original = nn.SyncBatchNorm.forward
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def forward(self: nn.SyncBatchNorm, input: torch.Tensor) -> torch.Tensor:
        if (input.device.type == 'cpu' and self.training
                and torch_dist.is_available() and torch_dist.is_initialized()):
            self._check_input_dim(input)
            self._check_non_zero_input_channels(input)
            group = self.process_group or torch_dist.group.WORLD
            return cpu_sync_batch_norm(self, input, group)
        return original(self, input)

    setattr(forward, _PATCHED, True)
    nn.SyncBatchNorm.forward = forward


def needed() -> bool:
    """mmengine 0.10 assumes CUDA for its distributed launchers and DDP wrapper."""
    return not version_at_least(mmengine.__version__, '0.11')


def applied() -> bool:
    return getattr(MMDistributedDataParallel.__init__, _PATCHED, False)


def apply() -> None:
    """Apply the four fixes above. Idempotent; each acts only without CUDA."""
    install_init_dist_fix()
    install_cpu_ddp_fix()
    install_cpu_sync_bn_fix()
