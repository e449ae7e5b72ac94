"""The sync-free step: batched mask copy, masked-only generator, separable window.

Each fast path against the plain one it replaces (CPU, tiny shapes), and the
step's ops counted by ``helpers.count_host_syncs`` (what would wait for a CUDA device).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import make_batch, tiny_vit_cim_cfg
from helpers import count_host_syncs
from mmpretrain.registry import MODELS

from cim_mm.models.generators.beit_generator import masked_positions
from cim_mm.models.heads.sliding_window import box_mean, sliding_window_normalize

GRID = 4  # tiny_vit_cim_cfg: 16 px images, patch 4
NUM_MASKED = 6


def fixed_count_batch(batch_size: int = 4, num_masked: int = NUM_MASKED,
                      seed: int = 0) -> dict:
    """``make_batch`` with exactly ``num_masked`` masked positions per image
    (as ``BEiTMaskGenerator`` gives)."""
    batch = make_batch(batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for ds in batch['data_samples']:
        mask = torch.zeros(GRID * GRID, dtype=torch.bool)
        mask[torch.randperm(GRID * GRID, generator=g)[:num_masked]] = True
        ds.set_mask(mask.view(GRID, GRID))
    return batch


def build(head: str = 'respix', fast: bool = True, temperature: float = 0.0):
    cfg = tiny_vit_cim_cfg(head)
    cfg['data_preprocessor']['batched_masks'] = fast
    cfg['generator']['num_masked'] = NUM_MASKED if fast else None
    cfg['generator']['temperature'] = temperature
    if head == 'respix':
        cfg['head']['separable_window'] = fast
        cfg['head']['window_size'] = 3
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    return model


# ------------------------------------------------------------ mask transfer
def test_batched_masks_equal_per_sample_copies():
    batch = fixed_count_batch()
    fast, plain = build(fast=True), build(fast=False)
    out_fast = fast.data_preprocessor(copy.deepcopy(batch), True)['inputs']
    out_plain = plain.data_preprocessor(copy.deepcopy(batch), True)['inputs']
    assert len(out_fast) == len(out_plain) == 3
    assert out_fast[2].dtype == torch.bool and out_fast[2].shape == (4, GRID, GRID)
    for a, b in zip(out_fast, out_plain):
        assert torch.equal(a, b)


@pytest.mark.parametrize('fast, copies', [(True, 2), (False, 4 + 1)])
def test_masks_reach_the_device_in_one_copy(fast, copies):
    """On the meta device (a stand-in for CUDA on this CPU machine): the fast
    path copies the image batch and the stacked masks, two copies; the plain
    path one per data sample plus the images."""
    dp = build(fast=fast).data_preprocessor
    dp.to(torch.device('meta'))
    out, counter = count_host_syncs(lambda: dp(fixed_count_batch(), True))
    assert counter.copies == {'cpu->meta': copies}
    assert all(t.device.type == 'meta' for t in out['inputs'])
    assert not counter.syncs


# ------------------------------------------------------------ no host syncs
def test_sync_counter_sees_each_kind_of_sync():
    x = torch.randn(8)
    m = x > 0

    def syncing() -> None:
        x.sum().item()
        x[m]
        x.nonzero()
        bool(x.max() > 0)
        x.to('meta')

    _, counter = count_host_syncs(syncing)
    assert counter.syncs == {'_local_scalar_dense.default': 2,
                             'index.Tensor': 1, 'nonzero.default': 1}
    assert counter.copies == {'cpu->meta': 1}
    _, counter = count_host_syncs(lambda: (torch.where(m, x, 0.), x[m.long()]))
    assert not counter.syncs


@pytest.mark.parametrize('head', ['respix', 'revdet'])
@pytest.mark.parametrize('fast', [True, False])
def test_training_step_has_no_host_syncs(head, fast):
    model = build(head, fast=fast, temperature=1.0)
    data = model.data_preprocessor(fixed_count_batch(), True)
    losses, counter = count_host_syncs(lambda: model(**data, mode='loss'))
    assert not counter.syncs, dict(counter.syncs)
    assert not counter.copies
    assert torch.isfinite(losses['loss_gen']) and torch.isfinite(losses['loss_enh'])


# ------------------------------------------------------ masked-only generator
def test_masked_positions_pads_and_refuses_overflow():
    mask = torch.zeros(2, GRID, GRID, dtype=torch.bool)
    mask[0, 0, 1] = mask[0, 2, 3] = True  # 2 masked
    mask[1].view(-1)[[0, 5, 6, 15]] = True  # 4 masked
    idx, valid = masked_positions(mask, 4)
    assert idx.tolist()[1] == [0, 5, 6, 15] and valid[1].all()
    assert idx.tolist()[0][:2] == [1, 11] and valid[0].tolist() == [True, True, False, False]
    assert not mask.flatten(1).gather(1, idx[:, 2:])[0].any()  # padding: unmasked slots
    with pytest.raises(RuntimeError, match='num_masked'):
        masked_positions(mask, 3)


def _generator_pair(temperature: float):
    fast, plain = build(fast=True, temperature=temperature), build(fast=False,
                                                                   temperature=temperature)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _generator_inputs(model):
    data = model.data_preprocessor(fixed_count_batch(), True)
    img, tok, mask = data['inputs']
    ids = model.tokenizer.encode(tok)  # [B, h, w]
    return tok, mask, ids


def test_masked_only_logits_and_loss_equal_all_positions():
    fast, plain = _generator_pair(temperature=0.0)
    tok, mask, ids = _generator_inputs(fast)
    logits_fast = fast.generator(tok, mask)  # [B, K, V]
    logits_plain = plain.generator(tok, mask)  # [B, L, V]
    assert logits_fast.shape == (4, NUM_MASKED, 16) and logits_plain.shape == (4, 16, 16)
    idx, _ = masked_positions(mask, NUM_MASKED)
    gathered = logits_plain.gather(1, idx[..., None].expand(-1, -1, 16))
    torch.testing.assert_close(logits_fast, gathered, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.generator.loss(logits_fast, ids, mask),
                               plain.generator.loss(logits_plain, ids, mask),
                               rtol=1e-6, atol=1e-6)
    # argmax sampling: the same ids, kept ids untouched outside the mask
    s_fast = fast.generator.sample(logits_fast, ids, mask)
    s_plain = plain.generator.sample(logits_plain, ids, mask)
    assert torch.equal(s_fast, s_plain)
    assert torch.equal(s_fast[~mask], ids[~mask])


def test_masked_only_loss_with_fewer_masked_than_k():
    """Padding slots (fewer masked than K) carry no loss."""
    fast, plain = _generator_pair(temperature=0.0)
    tok, mask, ids = _generator_inputs(fast)
    mask = mask.clone()
    mask[0] = False
    mask[0, 0, 0] = True  # sample 0: 1 masked of K = 6
    torch.testing.assert_close(fast.generator.loss(fast.generator(tok, mask), ids, mask),
                               plain.generator.loss(plain.generator(tok, mask), ids, mask),
                               rtol=1e-6, atol=1e-6)


def test_masked_only_sampling_follows_the_softmax():
    """T = 1: the masked positions' sample frequencies match softmax(logits)."""
    fast, _ = _generator_pair(temperature=1.0)
    V, n = 4, 20000
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).expand(n, 1, V)  # [n, K=1, V]
    mask = torch.zeros(n, 2, 2, dtype=torch.bool)
    mask[:, 1, 0] = True  # position 2 of 4
    ids = torch.full((n, 2, 2), 7)
    fast.generator.num_masked = 1
    torch.manual_seed(0)
    out = fast.generator.sample(logits, ids, mask)  # [n, 2, 2]
    assert (out[:, 0] == 7).all() and (out[:, 1, 1] == 7).all()
    freq = torch.bincount(out[:, 1, 0], minlength=V).float() / n
    # binomial std at n = 20000 is <= 0.0036: 4 sigma
    torch.testing.assert_close(freq, torch.softmax(logits[0, 0], -1), atol=0.015, rtol=0)


def test_fast_and_plain_step_give_the_same_losses():
    """Argmax sampling (T = 0): the whole step is deterministic, both paths agree."""
    fast, plain = _generator_pair(temperature=0.0)
    batch = fixed_count_batch()
    lf = fast(**fast.data_preprocessor(copy.deepcopy(batch), True), mode='loss')
    lp = plain(**plain.data_preprocessor(copy.deepcopy(batch), True), mode='loss')
    assert set(lf) == set(lp)
    for k in lf:
        torch.testing.assert_close(lf[k], lp[k], rtol=1e-5, atol=1e-6)


# -------------------------------------------------------- separable window
@pytest.mark.parametrize('window', [1, 3, 5, 17])
@pytest.mark.parametrize('size', [(7, 9), (32, 32)])
def test_separable_box_mean_equals_2d_pool(window, size):
    """Border windows included (window 17 > the 7 px side)."""
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    ref = F.avg_pool2d(x, window, stride=1, padding=window // 2, count_include_pad=False)
    torch.testing.assert_close(box_mean(x, window), ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize('window', [3, 9, 17])
def test_separable_normalize_equals_2d(window):
    """ResPix targets: the separable and 2-D pools agree to float32 rounding."""
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(2, 3, 32, 32, generator=g) * 255).round() / 58.4 - 2.1
    img[..., :8, :8] = 2.0  # a flat corner: the variance's cancellation shows
    out = sliding_window_normalize(img, window, separable=True)
    ref = sliding_window_normalize(img, window, separable=False)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
