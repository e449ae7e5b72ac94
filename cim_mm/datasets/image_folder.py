"""A folder of images, any layout, no labels: the pre-training dataset."""
from __future__ import annotations

import logging
import os
import os.path as osp
from typing import Optional, Sequence, Union

from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..utils.errors import UserError
from .bad_files import BadFileTally

#: image file extensions read by default (compared lower-case)
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif', '.tiff', '.pgm',
                  '.ppm')


def too_many_bad_files(num_bad: int, total: int, max_share: float, root: str) -> str:
    """The one-line message that stops a run with too many unreadable images."""
    return (f'{num_bad} of {total} images in {root} could not be loaded '
            f'({100 * num_bad / max(total, 1):.3g} %, more than max_bad_share='
            f'{max_share:g}): fix or remove the files named in the log, or raise '
            'train_dataloader.dataset.max_bad_share')


def find_images(root: str, extensions: Sequence[str]) -> list[str]:
    """Image files under ``root``, recursively, as sorted paths relative to it.

    Extensions compare case-insensitively; hidden files and folders (name
    starting with ``.``, e.g. macOS ``._x.jpg`` copies) are left out; folder
    links are followed once.
    """
    exts = tuple(e.lower() for e in extensions)
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = osp.realpath(dirpath)
        if real in seen:  # a link back to a folder already read
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        rel = osp.relpath(dirpath, root)
        for name in filenames:
            if not name.startswith('.') and name.lower().endswith(exts):
                found.append(osp.normpath(osp.join(rel, name)))
    return sorted(found)


@DATASETS.register_module()
class UnlabeledImageFolder(BaseDataset):
    """Every image under ``data_root/data_prefix``, searched recursively.

    No meta files, class folders or labels: ImageNet's ``train/<class>/*.JPEG``,
    a flat folder of photos, or nested folders all work unchanged, in a sorted,
    deterministic order (the same on every rank). Each sample is
    ``dict(img_path=...)`` for the pipeline (``SafeLoadImageFromFile`` ...).

    Unreadable images: when the pipeline returns ``None`` for an index (what
    ``SafeLoadImageFromFile(on_error='skip')`` does, after naming the file),
    the index is flagged in a :class:`BadFileTally` shared by the DataLoader
    workers; mmengine then loads another, random index, and a flagged index is
    never decoded again (so each file is named once). When more than
    ``max_bad_share`` of the images are flagged, loading stops with a one-line
    :class:`UserError`. ``SkippedImagesHook`` logs the count each epoch and adds
    up the ranks of a distributed run. (So the pipeline must return ``None``
    only for a bad file, never at random: a flagged index is not tried again.)

    Args:
        data_root: the folder (e.g. ``data/imagenet/train``).
        data_prefix: optional sub-folder of ``data_root``.
        extensions: file endings to read, any case; default :data:`IMG_EXTENSIONS`.
        max_bad_share: largest tolerated share of unreadable images, 0.01 = 1 %.
        split: not supported (a folder has no splits): point ``data_root`` at the
            split's folder instead; given only to say so in one line.
        **kwargs: mmpretrain ``BaseDataset`` arguments (``pipeline``,
            ``indices``, ``serialize_data``, ``max_refetch`` ...).
    """

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 max_bad_share: float = 0.01,
                 split: Optional[str] = None,
                 **kwargs) -> None:
        if split is not None:
            raise UserError(
                f"UnlabeledImageFolder has no split (got split={split!r}): drop it and "
                f"point data_root at that split's folder (e.g. data/imagenet/{split})")
        if not 0 <= float(max_bad_share) <= 1:
            raise UserError(f'max_bad_share is a fraction in [0, 1] (0.01 = 1 %), '
                            f'got {max_bad_share}')
        if not (data_root or data_prefix):
            raise UserError('UnlabeledImageFolder needs data_root: set '
                            'train_dataloader.dataset.data_root=FOLDER')
        self.extensions = tuple(
            (e if e.startswith('.') else '.' + e).lower() for e in extensions)
        self.max_bad_share = float(max_bad_share)
        self.bad_files: Optional[BadFileTally] = None
        super().__init__(ann_file='', data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    @property
    def folder(self) -> str:
        """The folder searched: ``data_root`` joined with ``data_prefix``."""
        return osp.normpath(self.img_prefix)

    def load_data_list(self) -> list[dict]:
        root = self.folder
        exts = ' '.join(self.extensions)
        if not osp.isdir(root):
            raise UserError(f'image folder {root} does not exist: set '
                            f'train_dataloader.dataset.data_root to a folder of images '
                            f'({exts}, searched recursively)')
        files = find_images(root, self.extensions)
        if not files:
            raise UserError(f'no images in {root} (searched recursively for {exts}, '
                            'any case): put images there or set '
                            'train_dataloader.dataset.data_root to another folder')
        print_log(f'UnlabeledImageFolder: {len(files)} images in {root}',
                  logger='current', level=logging.INFO)
        splits = {f.split(os.sep)[0] for f in files if os.sep in f}
        held_out = sorted(splits & {'val', 'valid', 'validation', 'test'})
        if 'train' in splits and held_out:  # e.g. data_root=data/imagenet
            print_log(f'{root} has train/ and {"/, ".join(held_out)}/ folders and all '
                      f'are read: set data_root to {osp.join(root, "train")} to '
                      'pre-train on the training images only',
                      logger='current', level=logging.WARNING)
        return [dict(img_path=osp.join(root, f)) for f in files]

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        super().full_init()
        # made here, in the main process, before the DataLoader starts its workers
        self.bad_files = BadFileTally(len(self))

    def prepare_data(self, idx: int) -> Optional[dict]:
        """The pipeline's output for ``idx``; ``None`` for an unreadable image."""
        tally = self.bad_files
        if tally is not None and tally.is_bad(idx):
            return None  # named when it was found; not decoded again
        data = super().prepare_data(idx)
        if data is None and tally is not None and tally.mark(idx):
            num_bad = tally.count()
            if num_bad > self.max_bad_share * len(self):
                raise UserError(too_many_bad_files(num_bad, len(self),
                                                   self.max_bad_share, self.folder))
        return data
