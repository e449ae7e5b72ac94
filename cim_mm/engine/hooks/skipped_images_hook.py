"""Count, log and bound the unreadable images a training run skips."""
from __future__ import annotations

from typing import Optional

from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

from ...datasets.image_folder import too_many_bad_files
from ...utils.errors import UserError


def _tallied_dataset(dataset) -> Optional[object]:
    """The dataset (under wrappers such as ``RepeatDataset``) that keeps a
    ``bad_files`` tally, or None."""
    for _ in range(8):
        if getattr(dataset, 'bad_files', None) is not None:
            return dataset
        if not hasattr(dataset, 'dataset'):
            return None
        dataset = dataset.dataset
    return None


@HOOKS.register_module()
class SkippedImagesHook(Hook):
    """Log how many training images were skipped as unreadable, each epoch, and
    stop above the dataset's ``max_bad_share``.

    For datasets that keep a :class:`~cim_mm.datasets.BadFileTally` as
    ``bad_files`` (``UnlabeledImageFolder``); others are left alone. Every
    ``interval`` iterations and at each epoch's end the flagged indices of all
    ranks are gathered (a short list; one ``all_gather_object``): each rank
    then skips the files the others found, rank 0 names the files found by
    other ranks (whose warnings are not shown), and every rank stops with the
    same one-line :class:`UserError` when the merged count is above
    ``max_bad_share`` of the images. (In one process the dataset already stops
    by itself; the count is then exact without the gather.)

    Args:
        interval: merge and check every this many iterations.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 50) -> None:
        self.interval = max(1, int(interval))
        self._dataset = None

    def before_train(self, runner) -> None:
        self._dataset = _tallied_dataset(runner.train_loop.dataloader.dataset)

    def _merge_and_check(self, runner) -> tuple[int, int]:
        ds = self._dataset
        local = ds.bad_files.indices()
        per_rank = all_gather_object(local)  # [world_size] lists of indices
        local_set = set(local)
        found_elsewhere = {}
        for rank, indices in enumerate(per_rank):
            for idx in indices:
                if idx not in local_set:
                    found_elsewhere.setdefault(idx, rank)
        if found_elsewhere:
            ds.bad_files.merge(found_elsewhere)
            if is_main_process():
                for idx, rank in sorted(found_elsewhere.items()):
                    path = ds.get_data_info(idx).get('img_path', f'index {idx}')
                    runner.logger.warning(f'skipping {path}: unreadable image '
                                          f'(found by rank {rank})')
        num_bad, total = len(local_set) + len(found_elsewhere), len(ds)
        if num_bad > ds.max_bad_share * total:
            raise UserError(too_many_bad_files(num_bad, total, ds.max_bad_share,
                                               ds.folder))
        return num_bad, total

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self._dataset is not None and self.every_n_train_iters(runner, self.interval):
            self._merge_and_check(runner)

    def after_train_epoch(self, runner) -> None:
        if self._dataset is None:
            return
        num_bad, total = self._merge_and_check(runner)
        where = (f'epoch {runner.epoch + 1}: '
                 if isinstance(runner.train_loop, EpochBasedTrainLoop) else '')
        runner.logger.info(
            f'{where}{num_bad} of {total} images skipped as unreadable '
            f'({100 * num_bad / max(total, 1):.3g} %; the run stops above '
            f'max_bad_share={self._dataset.max_bad_share:g})')
