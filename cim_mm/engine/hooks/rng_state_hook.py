"""Save the RNG states in checkpoints and restore them on ``--resume``."""
from __future__ import annotations

import random
from typing import Any, Callable, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

KEY = 'rng_state'


def get_rng_state() -> dict:
    """torch (CPU + every CUDA device), numpy and python RNG states, in types
    that load with ``torch.load(weights_only=True)``: uint8/int64 tensors,
    ints, floats, strings, tuples, lists, None (no numpy objects)."""
    np_state = np.random.get_state(legacy=True)  # ('MT19937', keys, pos, has_gauss, gauss)
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(kind=str(np_state[0]),
                   keys=torch.from_numpy(np.asarray(np_state[1], dtype=np.int64).copy()),
                   pos=int(np_state[2]), has_gauss=int(np_state[3]),
                   cached_gaussian=float(np_state[4])),
        python=random.getstate(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state['torch'].cpu().to(torch.uint8))
    npst = state['numpy']
    np.random.set_state((npst['kind'], npst['keys'].cpu().numpy().astype(np.uint32),
                         int(npst['pos']), int(npst['has_gauss']),
                         float(npst['cached_gaussian'])))
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu().to(torch.uint8) for s in cuda])
        else:
            print_log(f'RNGStateHook: the checkpoint has {len(cuda)} CUDA RNG states '
                      f'but {torch.cuda.device_count()} devices are visible; CUDA '
                      'RNG states not restored', logger='current', level=30)


class _RestoreAfterSkip:
    """Wraps ``IterBasedTrainLoop.dataloader_iterator``: after the loop has
    replayed (skipped) the ``skip`` batches of the resumed iterations, restore the
    RNG states, then hand the original iterator back to the loop."""

    def __init__(self, loop: IterBasedTrainLoop, skip: int, restore: Callable[[], None]):
        self._loop = loop
        self._it = loop.dataloader_iterator
        self._left = skip
        self._restore = restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._left <= 0:
            self._restore()
            self._loop.dataloader_iterator = self._it  # unwrap
            return next(self._it)
        self._left -= 1
        return next(self._it)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue with the random streams of the interrupted run.

    mmengine checkpoints keep the seed but not the RNG states, so a resumed run
    draws other masks, flips and generator samples than the run it continues.
    This hook stores torch (CPU and CUDA), numpy and python RNG states under
    ``checkpoint['rng_state']`` and, on resume, restores them at the point
    where the interrupted run saved them:

    - ``IterBasedTrainLoop``: mmengine replays the dataloader for the resumed
      iterations before going on (which draws random numbers when
      ``num_workers=0``); the states are restored right after that replay,
      before the next batch is loaded;
    - other loops (epoch-based): at ``before_train``.

    Single process: the resumed run continues bit-for-bit as the uninterrupted
    one would have (``tests/engine/test_reliability.py``). Distributed: only rank 0
    saves checkpoints, so at each iteration (epoch) where a ``CheckpointHook``
    will save, every rank's states are gathered to rank 0 first and stored as
    ``rng_state['per_rank']``; a resume with the same number of processes
    restores each rank's own states (``tests/compat/test_distributed.py``). Without
    them (another world size, a checkpoint saved elsewhere) every rank is
    re-seeded from ``(seed, iteration, rank)``: reproducible, distinct per
    rank, but not the uninterrupted stream. With dataloader workers, the
    workers' own streams are reproduced by mmengine's replay.

    Only ``--resume`` restores states; ``load_from`` (weights only) does not.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._per_rank: Optional[list] = None  # gathered before a distributed save

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if runner.world_size > 1 and _checkpoint_due(runner, by_epoch=False):
            self._per_rank = all_gather_object(get_rng_state())

    def after_train_epoch(self, runner) -> None:
        if runner.world_size > 1 and _checkpoint_due(runner, by_epoch=True):
            self._per_rank = all_gather_object(get_rng_state())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = get_rng_state()
        if runner.world_size > 1 and self._per_rank is not None:
            per_rank, self._per_rank = self._per_rank, None
            per_rank[runner.rank] = dict(checkpoint[KEY])  # the state at saving
            checkpoint[KEY]['per_rank'] = per_rank

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        state = checkpoint.get(KEY)
        if state is None:
            print_log('RNGStateHook: the checkpoint has no RNG state (saved without '
                      'this hook); the resumed run will draw other random numbers '
                      'than the interrupted one', logger='current', level=30)
            return
        self._pending = state

    def before_train(self, runner) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        per_rank = state.get('per_rank')
        if runner.world_size > 1 and per_rank is not None and \
                len(per_rank) == runner.world_size:
            own = per_rank[runner.rank]
            restore = lambda: set_rng_state(own)  # noqa: E731
        elif runner.world_size > 1:
            print_log('RNGStateHook: the checkpoint has no RNG states of these '
                      f'{runner.world_size} processes; each rank is re-seeded from '
                      '(seed, iteration, rank)', logger='current', level=30)
            seed = runner.seed if runner.seed is not None else 0
            it = runner.iter
            restore = lambda: _reseed(seed, it, runner.rank)  # noqa: E731
        else:
            restore = lambda: set_rng_state(state)  # noqa: E731
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterSkip(loop, loop.iter, restore)
        else:
            restore()


def _checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` of ``runner`` saves after this iteration
    (``by_epoch=False``) / epoch (``True``): its own ``after_train_*`` test."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False


def _reseed(seed: int, iteration: int, rank: int) -> None:
    s = (int(seed) * 1_000_003 + int(iteration) * 7_919 + int(rank)) % (2**32)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
