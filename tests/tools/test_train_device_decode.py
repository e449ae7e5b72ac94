"""tools/train.py with the device-decode loader (on the CPU): a folder of JPEGs,
PNGs and WebPs with an unreadable file trains, checkpoints, draws its
visualisation and resumes, as with the recipes' CPU loader."""
from __future__ import annotations

import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch
from helpers import GOOD, tiny_train_cfg, write_images
from mmengine.config import Config
from PIL import Image

import cim_mm  # noqa: F401
from cim_mm.utils import safe_load

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
DEVICE_CFG = osp.join(ROOT, 'configs/_base_/datasets/imagenet_bs256_cim_device-decode.py')
IMG, GRID = 16, 4  # tiny_train_cfg's model: 16 px, patch 4


def device_decode_pipeline() -> list[dict]:
    """The device-decode config's pipeline at the tiny model's size."""
    out = []
    for t in Config.fromfile(DEVICE_CFG).train_dataloader.dataset.pipeline:
        t = dict(t)
        if t['type'] == 'DeferredRandomResizedCrop':
            t['scale'] = IMG
        elif t['type'] == 'BEiTMaskGenerator':
            t.update(input_size=(GRID, GRID), num_masking_patches=6, min_num_patches=2)
        out.append(t)
    return out


def _folder(tmp_path) -> str:
    """``write_images``' mixed folder (PNG, WebP, JPEG, a file that is no image)
    plus JPEGs the workers ship to the device: 5 good, one cut in half (no
    decoder reads it) and one with garbage scan data (OpenCV reads it)."""
    root = write_images(str(tmp_path / 'imgs'))
    rng = np.random.default_rng(1)
    for i in range(5):
        img = (rng.random((30 + 4 * i, 40, 3)) * 255).astype(np.uint8)  # [H, W, 3]
        Image.fromarray(img).save(osp.join(root, f'photo{i}.jpg'), quality=90)
    data = open(osp.join(root, 'photo0.jpg'), 'rb').read()
    scan = data.index(b'\xff\xda')
    with open(osp.join(root, 'cut.jpg'), 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(osp.join(root, 'garbage.jpg'), 'wb') as f:
        f.write(data[:scan + 12] + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    return root


def _cfg(root: str, work: str, epochs: int) -> str:
    cfg = Config.fromfile(tiny_train_cfg(root, work))
    loader = cfg.train_dataloader.to_dict()
    loader['dataset'].update(pipeline=device_decode_pipeline(),
                             max_bad_share=0.5)  # 1 of 16 files is unreadable by the worker
    loader.update(collate_fn=dict(type='pseudo_collate'), num_workers=0)
    return tiny_train_cfg(root, work, train_dataloader=loader,
                          train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=epochs),
                          custom_hooks=[dict(type='SkippedImagesHook'), dict(type='RNGStateHook'),
                                        dict(type='CIMVisualizationHook', interval=3,
                                             num_images=2)])


def test_device_decode_loader_trains_checkpoints_draws_and_resumes(tmp_path, capsys):
    import train
    root = _folder(tmp_path)
    n_files = len(GOOD) + 5 + 3  # even: no batch holds a lone unreadable file
    full = str(tmp_path / 'full')
    train.main([_cfg(root, full, epochs=2)])
    ckpt = safe_load(osp.join(full, 'epoch_2.pth'))
    assert ckpt['meta']['iter'] == 2 * n_files // 2  # batches of 2
    assert osp.isfile(osp.join(full, 'vis', 'cim_iter_000003.png'))
    log = ''.join(capsys.readouterr())
    assert 'Traceback' not in log
    assert re.search(r'skipping \S+broken\.jpg', log)  # by its worker
    assert re.search(r'skipping \S+cut\.jpg: unreadable image', log)  # on the device
    assert re.search(r'garbage\.jpg decoded on the CPU by OpenCV', log)

    # a run stopped after its first epoch, resumed: the same weights as the run
    # that was not stopped (RNGStateHook restores the generators the crop,
    # jitter, flip and mask are drawn from; the decode is deterministic)
    part = str(tmp_path / 'part')
    train.main([_cfg(root, part, epochs=1)])
    train.main([_cfg(root, part, epochs=2), '--resume'])
    resumed = safe_load(osp.join(part, 'epoch_2.pth'))
    assert resumed['meta']['iter'] == ckpt['meta']['iter']
    for k, v in ckpt['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][k], v, rtol=0, atol=0, msg=k)
