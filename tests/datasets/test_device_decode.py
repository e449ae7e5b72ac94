"""The device-decode loader (worker draws, device decodes and augments) against
the recipes' CPU loader, on the CPU: same seed, same crop / jitter / flip / mask."""
from __future__ import annotations

import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from PIL import Image

from cim_mm.datasets.cropped_color_jitter import GREY_KEY, CroppedColorJitter
from cim_mm.models.device_augment import color_jitter, decode_and_augment
from cim_mm.datasets.device_decode import (BYTES_KEY, DeferredRandomFlip, LoadJPEGBytes)
from cim_mm.models.data_preprocessors import CIMDataPreprocessor
from cim_mm.utils.errors import UserError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CPU_CFG = osp.join(ROOT, 'configs/_base_/datasets/imagenet_bs256_cim.py')
DEVICE_CFG = osp.join(ROOT, 'configs/_base_/datasets/imagenet_bs256_cim_device-decode.py')
SIZE = 32  # crop side
MASK = dict(type='BEiTMaskGenerator', input_size=(4, 4), num_masking_patches=6,
            max_num_patches=None, min_num_patches=2)


def small(pipeline: list) -> list[dict]:
    """A config's train pipeline at SIZE px, its mask on a 4x4 grid."""
    out = []
    for t in pipeline:
        t = dict(t)
        if t['type'].endswith('RandomResizedCrop'):
            t['scale'] = SIZE
        elif t['type'] == 'BEiTMaskGenerator':
            t = dict(MASK)
        out.append(t)
    return out


def pipelines() -> tuple[Compose, Compose]:
    cpu = Config.fromfile(CPU_CFG).train_pipeline
    dev = Config.fromfile(DEVICE_CFG).train_dataloader.dataset.pipeline
    return Compose(small(cpu)), Compose(small(dev))


def scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth random RGB uint8 scene with noise ``[h, w, 3]``, as photos are."""
    low = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def write(folder, name: str, rgb: np.ndarray, mode: str = 'RGB', **save) -> str:
    path = osp.join(str(folder), name)
    Image.fromarray(rgb).convert(mode).save(path, **save)
    return path


def run(pipeline: Compose, path: str, seed: int) -> dict:
    np.random.seed(seed)  # crop, jitter, flip
    random.seed(seed)  # the mask
    return pipeline(dict(img_path=path))


def device_batch(packed: list[dict]) -> torch.Tensor:
    batch = pseudo_collate(packed)
    return decode_and_augment(batch['inputs'], [ds.metainfo for ds in batch['data_samples']],
                              torch.device('cpu'))  # [B, 3, H, W] BGR


def test_the_two_configs_draw_from_the_same_distributions():
    cpu = {t['type']: t for t in Config.fromfile(CPU_CFG).train_pipeline}
    dev = {t['type']: t for t in Config.fromfile(DEVICE_CFG).train_dataloader.dataset.pipeline}
    pairs = [('RandomResizedCrop', 'DeferredRandomResizedCrop'),
             ('CroppedColorJitter', 'DeferredColorJitter'),
             ('RandomFlip', 'DeferredRandomFlip'), ('BEiTMaskGenerator', 'BEiTMaskGenerator')]
    for a, b in pairs:
        assert {k: v for k, v in cpu[a].items() if k != 'type'} == \
            {k: v for k, v in dev[b].items() if k != 'type'}, (a, b)
    assert Config.fromfile(DEVICE_CFG).train_dataloader.collate_fn.type == 'pseudo_collate'


def test_device_jitter_equals_the_cpu_jitter():
    """On the same crop, with the same order and factors: equal to the grey level."""
    rng = np.random.default_rng(0)
    jitter = CroppedColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.)
    crops, orders, factors, pivots, refs = [], [], [], [], []
    for i in range(64):
        bgr = scene(rng, 24, 20)[..., ::-1].copy()
        order = rng.permutation(4)
        f = rng.uniform(0.6, 1.4, 3)
        off = rng.random(3) < 0.15  # a factor that is off (None)
        f = [None if o else float(x) for o, x in zip(off, f)]
        pivot = float(rng.uniform(0, 255))
        jitter._rand_params = lambda o=order, f=f: (o, *f, None)
        refs.append(jitter(dict(img=bgr.copy(), **{GREY_KEY: pivot}))['img'][..., ::-1])
        crops.append(bgr[..., ::-1].transpose(2, 0, 1).copy())
        orders.append(order)
        factors.append([np.nan if x is None else x for x in f])
        pivots.append(pivot)
    out = color_jitter(torch.tensor(np.stack(crops), dtype=torch.float32),
                       torch.tensor(np.stack(orders)),
                       torch.tensor(factors, dtype=torch.float32),
                       torch.tensor(pivots, dtype=torch.float64))  # [B, 3, H, W] RGB
    ref = torch.tensor(np.stack(refs).transpose(0, 3, 1, 2).astype(np.float32))
    diff = (out - ref).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, (diff.max(), diff.mean())


def test_same_seed_same_crop_jitter_flip_and_mask(tmp_path):
    """JPEGs of several sizes (colour and grey): the device path against the CPU
    loader, image by image and seed by seed."""
    cpu, dev = pipelines()
    rng = np.random.default_rng(1)
    paths = [write(tmp_path, f'c{i}.jpg', scene(rng, w, h), quality=90)
             for i, (w, h) in enumerate([(120, 90), (64, 96), (50, 50), (200, 75)])]
    paths.append(write(tmp_path, 'grey.jpg', scene(rng, 80, 60), mode='L', quality=90))
    diffs = []
    for seed in range(6):
        for path in paths:
            ref = run(cpu, path, seed)
            packed = run(dev, path, seed)
            assert packed['inputs'].dim() == 1  # the JPEG itself travels
            out = device_batch([packed])[0]
            assert torch.equal(packed['data_samples'].mask, ref['data_samples'].mask)
            diffs.append((out - ref['inputs'].float()).abs())
    diffs = torch.stack(diffs)
    # two JPEG decoders and two bicubic resizes (Pillow's fixed point, PyTorch's
    # float): the same crop, the same jitter, up to rounding
    assert diffs.mean() < 1.0 and torch.quantile(diffs.flatten(), 0.99) <= 4, (
        diffs.mean(), torch.quantile(diffs.flatten(), 0.99))


def test_files_the_device_cannot_decode_are_decoded_by_the_worker(tmp_path):
    cpu, dev = pipelines()
    rng = np.random.default_rng(2)
    png = write(tmp_path, 'a.png', scene(rng, 70, 50))
    cmyk = write(tmp_path, 'b.jpg', scene(rng, 60, 40), mode='CMYK', quality=95)
    assert BYTES_KEY not in LoadJPEGBytes()(dict(img_path=cmyk))
    for path in (png, cmyk):
        for seed in range(4):
            ref = run(cpu, path, seed)
            packed = run(dev, path, seed)
            assert tuple(packed['inputs'].shape) == (3, SIZE, SIZE)  # the worker's crop
            out = device_batch([packed])[0]
            assert (out - ref['inputs'].float()).abs().max() <= 1


def test_a_mixed_batch_keeps_its_order(tmp_path):
    """JPEGs and worker-decoded files in one batch: each sample its own pixels."""
    _, dev = pipelines()
    rng = np.random.default_rng(3)
    paths = [write(tmp_path, 'a.jpg', scene(rng, 90, 70), quality=90),
             write(tmp_path, 'b.png', scene(rng, 90, 70)),
             write(tmp_path, 'c.jpg', scene(rng, 60, 80), quality=90)]
    packed = [run(dev, p, 7) for p in paths]
    together = device_batch(packed)
    alone = torch.cat([device_batch([p]) for p in packed])
    assert torch.equal(together, alone)


def test_the_preprocessor_gives_the_cpu_loaders_views(tmp_path):
    cpu, dev = pipelines()
    rng = np.random.default_rng(4)
    paths = [write(tmp_path, f'{i}.jpg', scene(rng, 100, 80), quality=90) for i in range(4)]
    pre = CIMDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                              to_rgb=True, tokenizer_img_size=16)
    ref = pre(default_collate([run(cpu, p, 3) for p in paths]))
    batch = pseudo_collate([run(dev, p, 3) for p in paths])
    assert CIMDataPreprocessor.is_deferred(batch)
    out = pre(batch)
    assert [tuple(x.shape) for x in out['inputs']] == [tuple(x.shape) for x in ref['inputs']]
    assert torch.equal(out['inputs'][2], ref['inputs'][2])  # masks
    enh = (out['inputs'][0] - ref['inputs'][0]).abs() * 58.  # back to grey levels
    assert enh.mean() < 1.0, enh.mean()


def _damaged(tmp_path, rng) -> tuple[str, str, str]:
    """A good JPEG, one whose scan data is garbage (header intact: the worker
    ships it; OpenCV decodes it, the device decoder refuses it) and one cut
    in half (OpenCV cannot decode it either)."""
    good = write(tmp_path, 'good.jpg', scene(rng, 64, 48), quality=90)
    data = open(good, 'rb').read()
    start = data.index(b'\xff\xda')  # start of scan
    garbage, cut = osp.join(str(tmp_path), 'garbage.jpg'), osp.join(str(tmp_path), 'cut.jpg')
    with open(garbage, 'wb') as f:
        f.write(data[:start + 12] + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 2])
    return good, garbage, cut


def _log_lines(monkeypatch) -> list[str]:
    from mmengine.logging import MMLogger
    seen: list[str] = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'log', lambda lvl, msg, *a, **k: seen.append(msg))
    return seen


def test_a_file_the_device_refuses_is_decoded_as_the_cpu_loader_decodes_it(tmp_path,
                                                                           monkeypatch):
    """Header intact, scan data garbage: the CPU loader trains on what OpenCV
    makes of it, and so does the device path, with one warning naming it."""
    cpu, dev = pipelines()
    good, garbage, _ = _damaged(tmp_path, np.random.default_rng(5))
    seen = _log_lines(monkeypatch)
    packed = [run(dev, good, 0), run(dev, garbage, 1)]
    assert all(p['inputs'].dim() == 1 for p in packed)  # both shipped encoded
    out = device_batch(packed)
    for row, (path, seed) in zip(out, ((good, 0), (garbage, 1))):
        ref = run(cpu, path, seed)['inputs'].float()  # [3, H, W] BGR
        assert (row - ref).abs().mean() < 1.0, path
    assert [m for m in seen if 'garbage.jpg' in m and 'OpenCV' in m], seen


def test_a_file_no_decoder_reads_is_replaced_by_another_of_its_batch(tmp_path, monkeypatch):
    """Cut in half: the CPU loader skips it (another file in its place); the
    device path gives its sample another image of the batch, with its draws,
    and names the file; a batch with nothing readable stops in one line."""
    _, dev = pipelines()
    good, _, cut = _damaged(tmp_path, np.random.default_rng(6))
    seen = _log_lines(monkeypatch)
    packed = [run(dev, cut, 0), run(dev, good, 1)]
    out = device_batch(packed)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    torch.testing.assert_close(out[1:], device_batch(packed[1:]), rtol=0, atol=0)
    assert [m for m in seen if m.startswith('skipping') and 'cut.jpg' in m], seen
    with pytest.raises(UserError, match='no image of a batch could be decoded.*cut.jpg'):
        device_batch([run(dev, cut, 2)])


def test_only_what_the_device_does_alike_is_accepted():
    with pytest.raises(ValueError, match='horizontal'):
        DeferredRandomFlip(prob=0.5, direction='vertical')
    with pytest.raises(ValueError, match="color_type='color'"):
        LoadJPEGBytes(color_type='unchanged')


def _two_jpegs(tmp_path) -> tuple[list[torch.Tensor], list[str]]:
    from torchvision.io import read_file
    rng = np.random.default_rng(6)
    paths = [write(tmp_path, f'{i}.jpg', scene(rng, 40 + 8 * i, 32), quality=90)
             for i in range(2)]
    return [read_file(p) for p in paths], paths


def test_a_batch_that_fails_for_no_file_is_decoded_alone_and_said(tmp_path, monkeypatch):
    """The batched call fails though each file decodes: the same images,
    one by one, and a warning that says so."""
    import torchvision.io as tvio
    from mmengine.logging import MMLogger

    from cim_mm.models.device_augment import decode_jpegs
    encoded, paths = _two_jpegs(tmp_path)
    want = decode_jpegs(encoded, paths, torch.device('cpu'))
    real = tvio.decode_jpeg

    def no_batches(data, *args, **kwargs):
        if isinstance(data, list):
            raise RuntimeError('batched decode unavailable')
        return real(data, *args, **kwargs)

    monkeypatch.setattr(tvio, 'decode_jpeg', no_batches)
    seen = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning', lambda msg, *a, **k: seen.append(msg))
    monkeypatch.setattr(logger, 'log', lambda lvl, msg, *a, **k: seen.append(msg))
    got = decode_jpegs(encoded, paths, torch.device('cpu'))
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, want))
    assert any('batched decode unavailable' in m and 'file by file' in m for m in seen), seen


def test_out_of_memory_in_the_batched_decode_is_raised_as_it_is(tmp_path, monkeypatch):
    import torchvision.io as tvio

    from cim_mm.models.device_augment import decode_jpegs
    encoded, paths = _two_jpegs(tmp_path)
    calls = []

    def oom(data, *args, **kwargs):
        calls.append(data)
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    monkeypatch.setattr(tvio, 'decode_jpeg', oom)
    with pytest.raises(torch.OutOfMemoryError, match='out of memory'):
        decode_jpegs(encoded, paths, torch.device('cpu'))
    assert len(calls) == 1  # no file-by-file retry
