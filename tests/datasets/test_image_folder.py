"""Pre-training on any folder of images: ``UnlabeledImageFolder``,
unreadable files skipped, named once, counted each epoch and bounded, the
ImageNet recipes reading through it, and a short run through tools/train.py."""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import os.path as osp
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import BROKEN, GOOD, tiny_pipeline, tiny_train_cfg, write_images
from mmengine.config import Config
from mmengine.dataset import DefaultSampler, default_collate
from mmengine.logging import MMLogger
from mmpretrain.registry import DATASETS
from PIL import Image
from torch.utils.data import DataLoader

import cim_mm  # noqa: F401
from cim_mm.datasets import IMG_EXTENSIONS, BadFileTally
from cim_mm.engine.hooks import skipped_images_hook
from cim_mm.engine.hooks.skipped_images_hook import SkippedImagesHook
from cim_mm.utils.errors import UserError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
CIM_DIR = osp.join(ROOT, 'configs', 'cim')
IN1K = sorted(glob.glob(osp.join(CIM_DIR, 'cim-*_in1k.py')))

@contextlib.contextmanager
def logged_to(path: str):
    """Copy the current mmengine logger's records (also those of forked
    DataLoader workers, which inherit the handler) to the file ``path``."""
    handler = logging.FileHandler(path)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def _build(root: str, **kwargs):
    return DATASETS.build(dict(type='UnlabeledImageFolder', data_root=root,
                               pipeline=tiny_pipeline(), **kwargs))


def _rel(ds, root: str) -> list[str]:
    return [osp.relpath(ds.get_data_info(i)['img_path'], root) for i in range(len(ds))]


# ------------------------------------------------------------------ listing
def test_lists_exactly_the_images_sorted(tmp_path):
    root = write_images(str(tmp_path))
    ds = _build(root)
    assert _rel(ds, root) == sorted(GOOD + [BROKEN])  # by name: no .txt, no hidden file
    assert _rel(_build(root), root) == _rel(ds, root)  # deterministic
    assert set(IMG_EXTENSIONS) == {'.jpg', '.jpeg', '.png', '.webp', '.bmp', '.tif',
                                   '.tiff', '.pgm', '.ppm'}
    sub = _build(root, data_prefix='x')  # data_root + data_prefix
    assert _rel(sub, osp.join(root, 'x')) == ['img4.png', 'y/img5.webp']


def test_linked_folders_followed_once(tmp_path):
    root = write_images(str(tmp_path / 'imgs'), broken=())
    other = write_images(str(tmp_path / 'other'), good=['far.png'], broken=())
    os.symlink(other, osp.join(root, 'linked'))  # e.g. a class folder on another disk
    os.symlink(osp.join(root, 'x'), osp.join(root, 'x', 'loop'))  # a loop
    assert _rel(_build(root), root) == sorted(GOOD + ['linked/far.png'])


def test_train_and_val_under_data_root_warned(tmp_path):
    for split in ('train', 'val'):
        write_images(str(tmp_path / split / 'n01'), good=['a.png'], broken=())
    log = str(tmp_path / 'log.txt')
    with logged_to(log):
        assert len(_build(str(tmp_path))) == 2
        assert len(_build(str(tmp_path / 'train'))) == 1
    with open(log) as f:
        text = f.read()
    assert text.count('all are read') == 1
    assert f'has train/ and val/ folders and all are read: set data_root to ' \
           f'{tmp_path / "train"}' in text, text


@pytest.mark.parametrize('case', ['empty', 'no_images', 'missing'])
def test_no_images_is_one_line_naming_folder_and_extensions(tmp_path, case):
    root = tmp_path / 'photos'
    if case != 'missing':
        root.mkdir()
    if case == 'no_images':
        (root / 'sub').mkdir()
        (root / 'sub' / 'readme.txt').write_text('x')
        (root / 'a.gif').write_bytes(b'GIF89a')
    with pytest.raises(UserError) as err:
        _build(str(root))
    msg = str(err.value)
    assert '\n' not in msg and str(root) in msg
    assert ('does not exist' in msg) == (case == 'missing')
    if case != 'missing':
        assert all(e in msg for e in IMG_EXTENSIONS)


def test_split_and_bad_share_refused_in_one_line(tmp_path):
    root = write_images(str(tmp_path))
    with pytest.raises(UserError, match="no split.*data_root at that split's folder"):
        _build(root, split='train')
    with pytest.raises(UserError, match='fraction'):
        _build(root, max_bad_share=5)


# ------------------------------------------------- pipeline, sampler, workers
def test_self_supervised_pipeline_and_ddp_sampler(tmp_path, monkeypatch):
    root = write_images(str(tmp_path), broken=())
    ds = _build(root)
    batch = default_collate([ds[0], ds[1]])
    assert batch['inputs'].shape == (2, 3, 16, 16) and batch['inputs'].dtype == torch.uint8
    masks = torch.stack([s.mask for s in batch['data_samples']])  # [B, 4, 4]
    assert masks.shape == (2, 4, 4) and 2 <= int(masks[0].sum()) <= 6

    # two DDP ranks: disjoint shards of the same (shuffled) order covering every image
    from mmengine.dataset import sampler as sampler_mod
    shards = []
    for rank in range(2):
        monkeypatch.setattr(sampler_mod, 'get_dist_info', lambda r=rank: (r, 2))
        shards.append(list(DefaultSampler(ds, shuffle=True, seed=3)))
    assert len(shards[0]) == len(shards[1]) == 4
    assert sorted(shards[0] + shards[1]) == list(range(len(ds)))


def test_bad_file_skipped_named_once_with_workers(tmp_path):
    root = write_images(str(tmp_path / 'imgs'))
    ds = _build(root, max_bad_share=0.2)
    bad = _rel(ds, root).index(BROKEN)
    loader = DataLoader(ds, batch_size=3, num_workers=1, collate_fn=default_collate,
                        sampler=DefaultSampler(ds, shuffle=True, seed=0))
    log = str(tmp_path / 'log.txt')
    with logged_to(log):
        for epoch in range(2):  # workers restart each epoch: the tally is shared memory
            loader.sampler.set_epoch(epoch)
            seen = sum(len(b['data_samples']) for b in loader)
            assert seen == len(ds)  # the bad one replaced by another image
            assert ds.bad_files.indices() == [bad]  # marked in a worker, seen here
    with open(log) as f:
        text = f.read()
    assert text.count(f'skipping {osp.join(root, BROKEN)}: unreadable image') == 1, text


def test_too_many_bad_files_stop_in_one_line(tmp_path):
    root = write_images(str(tmp_path), broken=('a/broken.jpg', 'z/bad.png'))
    ds = _build(root, max_bad_share=0.1)  # 2 of 10 > 10 %
    with pytest.raises(UserError) as err:
        for i in range(len(ds)):
            ds[i]
    msg = str(err.value)
    assert msg.startswith('2 of 10 images in ') and 'max_bad_share=0.1' in msg
    assert '\n' not in msg
    ds = _build(root, max_bad_share=0.2)  # 2 of 10 = 20 %: allowed
    assert all(ds[i] is not None for i in range(len(ds)))
    assert ds.bad_files.count() == 2
    # raised in a DataLoader worker: the main process gets the same UserError
    ds = _build(root, max_bad_share=0.1)
    batches = iter(DataLoader(ds, batch_size=10, num_workers=1, collate_fn=default_collate))
    try:
        with pytest.raises(UserError, match=r'2 of 10 images in .*max_bad_share=0.1\)'):
            next(batches)
    finally:
        batches._shutdown_workers()  # now, not seconds later when collected


def test_tally_merge_count():
    tally = BadFileTally(6)
    assert tally.mark(4) and not tally.mark(4)
    tally.merge([1, 4])
    assert tally.indices() == [1, 4] and tally.count() == 2 and tally.is_bad(1)


def test_hook_adds_up_ranks_names_others_and_stops(tmp_path, monkeypatch):
    root = write_images(str(tmp_path), broken=())
    ds = _build(root, max_bad_share=0.3)  # 8 images: stop above 2.4
    ds.bad_files.mark(0)  # this rank found image 0; rank 1 found 0 and 5
    logs = []
    logger = SimpleNamespace(info=logs.append, warning=logs.append)
    runner = SimpleNamespace(logger=logger, epoch=0, iter=0,
                             train_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=ds)))
    others = [[0, 5]]
    monkeypatch.setattr(skipped_images_hook, 'all_gather_object',
                        lambda obj: [obj] + others)
    hook = SkippedImagesHook(interval=1)
    hook.before_train(runner)
    hook.after_train_epoch(runner)
    assert ds.bad_files.indices() == [0, 5]  # rank 1's file is skipped here too
    assert logs[0] == f'skipping {ds.get_data_info(5)["img_path"]}: unreadable image ' \
                      '(found by rank 1)'
    assert logs[1].startswith('2 of 8 images skipped as unreadable (25 %')
    others[0] = [0, 5, 6]
    with pytest.raises(UserError, match=r'^3 of 8 images in .* max_bad_share=0.3'):
        hook.after_train_iter(runner, 0)


# ------------------------------------------------------------- the recipes
@pytest.mark.parametrize('path', IN1K, ids=[osp.basename(p)[:-len('_in1k.py')] for p in IN1K])
def test_in1k_recipes_read_any_folder_safely(path, tmp_path):
    cfg = Config.fromfile(path)
    ds_cfg = cfg.train_dataloader.dataset
    assert ds_cfg.type == 'UnlabeledImageFolder' and 'split' not in ds_cfg
    assert ds_cfg.data_root == 'data/imagenet/train/' and ds_cfg.max_bad_share == 0.01
    load = ds_cfg.pipeline[0]
    assert load.type == 'SafeLoadImageFromFile' and load.on_error == 'skip'
    assert 'SkippedImagesHook' in [h.type for h in cfg.custom_hooks]
    # data_root alone points it at a folder of PNG / WebP images
    root = write_images(str(tmp_path), broken=())
    ds_cfg.data_root = root
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == len(GOOD)
    sample = ds[0]
    assert sample['inputs'].shape == (3, 224, 224)
    assert sample['data_samples'].mask.shape == (14, 14)


# --------------------------------------------------- through tools/train.py
def _log_text(work_dir: str) -> str:
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        return f.read()


def test_train_skips_names_and_counts_bad_file(tmp_path):
    import train
    root = write_images(str(tmp_path / 'imgs'))
    work = str(tmp_path / 'work')
    cfg = tiny_train_cfg(str(tmp_path / 'elsewhere'), work)
    train.main([cfg, '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                'train_dataloader.dataset.max_bad_share=0.2'])
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    log = _log_text(work)
    assert log.count(f'skipping {osp.join(root, BROKEN)}: unreadable image') == 1, log
    for epoch in (1, 2):
        assert f'epoch {epoch}: 1 of 9 images skipped as unreadable (11.1 %' in log, log


def test_train_stops_above_bad_share_in_one_line(tmp_path, capsys):
    import train
    root = write_images(str(tmp_path / 'imgs'))
    cfg = tiny_train_cfg(root, str(tmp_path / 'work'))  # default 1 %: 1 of 9 is too many
    with pytest.raises(SystemExit) as exit_:  # (workers: see test_too_many_bad_files_...)
        train.main([cfg, '--cfg-options', 'train_dataloader.num_workers=0'])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith('train.py: error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert lines[0].startswith(f'train.py: error: 1 of 9 images in {root} could not be '
                               'loaded (11.1 %, more than max_bad_share=0.01)'), lines


def test_train_on_empty_folder_is_one_line(tmp_path, capsys):
    import train
    (tmp_path / 'empty').mkdir()
    cfg = tiny_train_cfg(str(tmp_path / 'empty'), str(tmp_path / 'work'))
    with pytest.raises(SystemExit):
        train.main([cfg])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith('train.py: error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert f'no images in {tmp_path / "empty"}' in lines[0] and '.webp' in lines[0]
