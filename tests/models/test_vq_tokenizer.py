"""VQTokenizer: the small trainable tokenizer (tiny shapes, CPU)."""
from __future__ import annotations

import json
import math
import os.path as osp
import sys

import numpy as np
import pytest
import torch

import cim_mm  # noqa: F401
from cim_mm.models.tokenizers import BaseTokenizer, map_pixels
from cim_mm.models.tokenizers.vq_tokenizer import VQTokenizer, evaluate_psnr
from cim_mm.utils import atomic_torch_save
from helpers import write_fashion_mnist
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(vocab_size=16, embed_dims=8, hidden_channels=16, num_res_blocks=1)


def tiny(**kwargs) -> VQTokenizer:
    cfg = dict(type='VQTokenizer', downsample=4, **TINY)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def smooth_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] in [0, 1]: upsampled random 4x4 gray images."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=size, mode='bilinear',
                                          align_corners=False)
    return img.expand(-1, 3, -1, -1).contiguous()


@pytest.mark.parametrize('downsample', [2, 4])
def test_shapes_and_range(downsample):
    torch.manual_seed(0)
    m = tiny(downsample=downsample)
    assert isinstance(m, BaseTokenizer)
    assert m.vocab_size == 16 and m.downsample == downsample
    x = map_pixels(smooth_images(2))
    with torch.no_grad():
        ids = m.encode(x)
        rec = m.decode(ids)
    s = 16 // downsample
    assert ids.shape == (2, s, s) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    assert rec.shape == (2, 3, 16, 16)
    assert float(rec.min()) >= 0 and float(rec.max()) <= 1
    assert m(smooth_images(2), mode='tensor').shape == (2, 3, 16, 16)
    samples = m(smooth_images(2), mode='predict')
    assert samples[0].recon.shape == (3, 16, 16)
    assert samples[0].token_ids.shape == (s, s)


def test_loss_mode_gradients_reach_encoder_and_decoder():
    torch.manual_seed(0)
    m = tiny()
    m.train()
    losses = m(smooth_images(4), mode='loss')
    assert set(losses) == {'loss_rec', 'loss_commit'}
    sum(losses.values()).backward()
    enc_first = m.encoder.layers[0].weight.grad
    dec_last = m.decoder.layers[-1].weight.grad
    assert enc_first is not None and enc_first.abs().sum() > 0  # straight-through
    assert dec_last is not None and dec_last.abs().sum() > 0
    assert bool(m.quantizer.initted)  # codebook initialised from the batch


def test_training_lowers_reconstruction_loss():
    torch.manual_seed(0)
    m = tiny()
    m.train()
    x = smooth_images(8)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    history = []
    for _ in range(50):
        losses = m(x, mode='loss')
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append(losses['loss_rec'].item())
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5])


def _trained(steps: int = 3) -> VQTokenizer:
    torch.manual_seed(0)
    m = tiny()
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for i in range(steps):
        losses = m(smooth_images(4, seed=i), mode='loss')
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return m.eval()


def test_checkpoint_roundtrip_plain_and_mmengine(tmp_path):
    m = _trained()
    x = map_pixels(smooth_images(3, seed=7))
    with torch.no_grad():
        ids, rec = m.encode(x), m.decode(m.encode(x))

    plain = str(tmp_path / 'tokenizer.pth')
    atomic_torch_save(m.tokenizer_state_dict(), plain)
    wrapped = str(tmp_path / 'iter_3.pth')  # as inside a CIM checkpoint
    atomic_torch_save(
        dict(meta=dict(iter=3, seed=np.int64(0)),
             state_dict={f'tokenizer.{k}': v
                         for k, v in m.state_dict().items()}), wrapped)
    for path in (plain, wrapped):
        torch.manual_seed(123)  # different random init
        m2 = tiny(checkpoint=path, frozen=True)
        assert not m2.training
        m2.train()  # frozen: stays in eval mode
        assert not m2.training
        assert not any(p.requires_grad for p in m2.parameters())
        m2.init_weights()  # mmengine calls it after building: weights stay
        with torch.no_grad():
            assert torch.equal(m2.encode(x), ids)
            assert torch.equal(m2.decode(ids), rec)


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        tiny(checkpoint=str(tmp_path / 'nope.pth'))
    msg = str(err.value)
    assert 'train_tokenizer' in msg and 'model.tokenizer.checkpoint' in msg
    assert '\n' not in msg


def test_architecture_mismatch_is_one_clear_error(tmp_path):
    path = str(tmp_path / 'tok.pth')
    atomic_torch_save(tiny().tokenizer_state_dict(), path)
    with pytest.raises(ValueError, match='architecture'):
        tiny(checkpoint=path, hidden_channels=32)


def test_evaluate_psnr_matches_direct_computation():
    torch.manual_seed(0)
    m = tiny()
    batches = [smooth_images(3, seed=1), smooth_images(5, seed=2)]
    res = evaluate_psnr(m, batches)
    with torch.no_grad():
        x = torch.cat(batches)
        rec = m.decode(m.encode(map_pixels(x)))
    mse = ((rec.double() - x.double())**2).mean().item()
    assert res['psnr'] == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert res['num_images'] == 8
    used = m.encode(map_pixels(x)).unique().numel()
    assert res['codes_used'] == used
    assert res['codebook_usage'] == pytest.approx(used / 16)
    # mmengine batches (default_collate: stacked uint8 images) go through the
    # tokenizer's [0, 1] data preprocessor
    u8 = [(b * 255).round().to(torch.uint8) for b in batches]
    res2 = evaluate_psnr(m, [dict(inputs=b, data_samples=None) for b in u8])
    x2 = torch.cat(u8).float() / 255
    with torch.no_grad():
        rec2 = m.decode(m.encode(map_pixels(x2)))
    mse2 = ((rec2.double() - x2.double())**2).mean().item()
    assert res2['psnr'] == pytest.approx(10 * math.log10(1 / mse2), rel=1e-6)


def test_train_tokenizer_tool_end_to_end(tmp_path):
    """Config + tools/train_tokenizer.py on a tiny fake Fashion-MNIST."""
    data = write_fashion_mnist(str(tmp_path / 'fmnist'), n_train=16, n_test=12)
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import train_tokenizer
    finally:
        sys.path.pop(0)
    work = tmp_path / 'work'
    opts = [
        f'train_dataloader.dataset.data_root={data}',
        f'eval_dataloader.dataset.data_root={data}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'eval_dataloader.batch_size=5', 'eval_dataloader.num_workers=0',
        'train_cfg.max_iters=2', 'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1', 'param_scheduler.1.end=2',
        'model.hidden_channels=16', 'model.embed_dims=8', 'model.vocab_size=16',
        'default_hooks.checkpoint.interval=2', 'visualizer.vis_backends=[]'
    ]
    cfg = osp.join(ROOT, 'configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py')
    threads = torch.get_num_threads()
    try:
        report = train_tokenizer.main([
            cfg, '--work-dir', str(work), '--cpu-threads', str(threads),
            '--cfg-options', *opts
        ])
    finally:
        torch.set_num_threads(threads)
    assert report['num_images'] == 12  # the test split, not the train split
    assert report['train_iters'] == 2
    with open(work / 'tokenizer.json') as f:
        assert json.load(f)['psnr'] == pytest.approx(report['psnr'])
    x = map_pixels(torch.rand(1, 3, 32, 32))
    m = tiny(checkpoint=str(work / 'tokenizer.pth'))
    m_runner = tiny(checkpoint=str(work / 'iter_2.pth'))  # mmengine checkpoint
    with torch.no_grad():
        assert m.encode(x).shape == (1, 8, 8)
        assert torch.equal(m.decode(m.encode(x)), m_runner.decode(m_runner.encode(x)))
