"""CIM core: generator, corruption, heads, algorithm (ViT enhancer)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import make_batch, tiny_vit_cim_cfg
from mmpretrain.registry import MODELS

from cim_mm.models.generators import gumbel_max_sample
from cim_mm.models.heads import patchify, sliding_window_normalize, unpatchify
from cim_mm.models.tokenizers import map_pixels


def build(head: str = 'respix'):
    torch.manual_seed(0)
    model = MODELS.build(tiny_vit_cim_cfg(head))
    model.init_weights()
    return model


# ----------------------------------------------------------------- data path
def test_preprocessor_views_and_mask():
    model = build()
    batch = make_batch()
    out = model.data_preprocessor(batch, True)
    img, tok, mask = out['inputs']
    raw = batch['inputs'].float()
    torch.testing.assert_close(img, (raw - 127.5) / 127.5)
    expect_tok = map_pixels(F.interpolate(raw / 255., size=(8, 8), mode='bicubic',
                                          antialias=True, align_corners=False).clamp(0, 1))
    torch.testing.assert_close(tok, expect_tok)
    assert tok.min() >= 0.1 - 1e-6 and tok.max() <= 0.9 + 1e-6
    assert mask.dtype == torch.bool and mask.shape == (4, 4, 4)
    expect_mask = torch.stack([torch.as_tensor(ds.mask) for ds in batch['data_samples']])
    assert torch.equal(mask, expect_mask.bool())


def test_preprocessor_normalize_is_the_enhancer_view_and_inverts():
    from cim_mm.models.data_preprocessors import CIMDataPreprocessor
    model = build()
    dp = model.data_preprocessor
    batch = make_batch()
    img = dp(batch, True)['inputs'][0]
    raw = batch['inputs'].float()
    assert dp.normalizes
    assert torch.equal(dp.normalize(raw), img)
    torch.testing.assert_close(dp.denormalize(img), raw)
    plain = CIMDataPreprocessor(tokenizer_img_size=8)  # no mean / std: as is
    assert not plain.normalizes
    assert torch.equal(plain.normalize(raw), raw) and torch.equal(plain.denormalize(raw), raw)
    with pytest.raises(AttributeError):
        dp.normalizes = False  # read-only


@pytest.mark.parametrize('batch, match', [
    (dict(grid=5), r"the batch's masks are 5x5 but the token grid is 4x4 .*"
     r'BEiTMaskGenerator input_size=\(4, 4\)'),
    (dict(img_size=20), r"the batch's images are 20x20 but backbone.img_size is 16x16"),
])
def test_a_batch_that_does_not_fit_is_one_line(batch, match):
    """The batch is checked against the sizes the build fixed, before any work."""
    model = build()
    assert (model.batch_sizes.mask_grid, model.batch_sizes.image_size) == ((4, 4), (16, 16))
    data = model.data_preprocessor(make_batch(**batch), True)
    encode = []
    model.tokenizer.encode = lambda x: encode.append(x)
    with pytest.raises(ValueError, match=match) as err:
        model.loss(data['inputs'], data['data_samples'])
    assert '\n' not in str(err.value) and encode == []


def test_a_cnn_enhancer_with_a_neck_takes_any_image_size():
    from helpers import tiny_resnet_cim_cfg
    model = MODELS.build(tiny_resnet_cim_cfg('revdet'))
    assert (model.batch_sizes.mask_grid, model.batch_sizes.image_size) == ((4, 4), None)
    # 32 px: levels 8x8 and 4x4, both merged onto the 4x4 grid by the neck
    data = model.data_preprocessor(make_batch(img_size=32), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['loss_enh'])


# ---------------------------------------------------------------- generator
def test_gumbel_max_matches_softmax_distribution():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    n = 40000
    ids = gumbel_max_sample(logits.expand(n, -1), 1.0, generator=g)
    freq = torch.bincount(ids, minlength=4).float() / n
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.01, rtol=0)
    # temperature 0.5 sharpens as softmax(logits / 0.5)
    ids = gumbel_max_sample(logits.expand(n, -1), 0.5, generator=g)
    freq = torch.bincount(ids, minlength=4).float() / n
    torch.testing.assert_close(freq, (logits / 0.5).softmax(-1)[0], atol=0.01, rtol=0)
    assert gumbel_max_sample(logits, 0.0).item() == 0


def test_generator_loss_is_masked_cross_entropy():
    model = build()
    gen = model.generator
    B, h, w, V = 2, 4, 4, gen.vocab_size
    logits = torch.randn(B, h * w, V)
    ids = torch.randint(0, V, (B, h, w))
    mask = torch.rand(B, h, w) < 0.5
    mask[0, 0, 0] = True
    direct = F.cross_entropy(logits[mask.flatten(1)], ids[mask])
    torch.testing.assert_close(gen.loss(logits, ids, mask), direct)


def test_sample_keeps_unmasked_ids():
    model = build()
    B, h, w, V = 3, 4, 4, model.generator.vocab_size
    logits = torch.randn(B, h * w, V)
    ids = torch.randint(0, V, (B, h, w))
    mask = torch.rand(B, h, w) < 0.5
    sampled = model.generator.sample(logits, ids, mask)
    assert torch.equal(sampled[~mask], ids[~mask])
    assert sampled.shape == ids.shape and sampled.dtype == torch.long


# --------------------------------------------------------------- corruption
def test_empty_mask_gives_decode_of_own_ids_and_no_replacement():
    model = build('revdet')
    batch = make_batch(mask_ratio=0.0)
    img, tok, mask = model.data_preprocessor(batch, True)['inputs']
    assert not mask.any()
    ids = model.tokenizer.encode(tok)
    logits = model.generator(tok, mask)
    corrupted, sampled, replaced = model.corrupt(logits, ids, mask, img.shape[-2:])
    assert torch.equal(sampled, ids)
    assert not replaced.any()
    expect = model._denormalized_to_enhancer(model.tokenizer.decode(ids), img.shape[-2:])
    torch.testing.assert_close(corrupted, expect)


def test_revdet_labels_are_a_direct_id_comparison():
    model = build('revdet')
    B, h, w, V = 4, 4, 4, model.generator.vocab_size
    ids = torch.randint(0, V, (B, h, w))
    mask = torch.ones(B, h, w, dtype=torch.bool)
    # logits that put all mass on id 3: sampled == 3 where masked
    logits = torch.full((B, h * w, V), -1e4)
    logits[..., 3] = 1e4
    _, sampled, replaced = model.corrupt(logits, ids, mask, (16, 16))
    assert torch.equal(sampled, torch.full_like(ids, 3))
    assert torch.equal(replaced, ids != 3)  # a sample equal to the original is not replaced


# -------------------------------------------------------------------- heads
def test_sliding_window_matches_direct_per_pixel_computation():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 11) * 255
    k, eps = 5, 1e-6
    out = sliding_window_normalize(x, k, eps)
    r = k // 2
    expect = torch.empty_like(x)
    for i in range(9):
        for j in range(11):
            win = x[:, :, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            mu = win.mean(dim=(2, 3))
            var = win.var(dim=(2, 3), unbiased=False)
            expect[:, :, i, j] = (x[:, :, i, j] - mu) / torch.sqrt(var + eps)
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='odd'):
        sliding_window_normalize(x, 4)


def test_patchify_round_trip_and_layout():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 48)
    # patch (row 0, col 1), pixel (0, 0), channel c
    assert p[0, 1, 0].item() == x[0, 0, 0, 4].item()
    assert p[0, 1, 1].item() == x[0, 1, 0, 4].item()
    torch.testing.assert_close(unpatchify(p, 4, (2, 2)), x)


def test_respix_target_and_loss():
    head = MODELS.build(dict(type='ResPixHead', in_channels=8, patch_size=4, window_size=3))
    img = torch.rand(2, 3, 8, 8)
    feats = torch.randn(2, 4, 8)
    target = patchify(sliding_window_normalize(img, 3), 4)
    torch.testing.assert_close(head.target(img), target)
    loss = head.loss(feats, original=img)['loss']
    torch.testing.assert_close(loss, F.mse_loss(head(feats), target))


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_gradients_flow_only_where_they_must(head):
    model = build(head)
    data = model.data_preprocessor(make_batch(), True)

    losses = model(**data, mode='loss')
    model.zero_grad()
    losses['loss_enh'].backward()
    gen_grads = [p.grad for p in model.generator.parameters() if p.grad is not None]
    assert all(g.abs().sum() == 0 for g in gen_grads), 'loss_enh reached the generator'
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())

    losses = model(**data, mode='loss')
    model.zero_grad()
    losses['loss_gen'].backward()
    for name, p in model.named_parameters():
        if not name.startswith('generator.'):
            assert p.grad is None or p.grad.abs().sum() == 0, f'loss_gen reached {name}'
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.generator.parameters())
    assert all(not p.requires_grad for p in model.tokenizer.parameters())


def test_tokenizer_stays_in_eval_mode():
    model = build()
    model.train()
    assert model.training and not model.tokenizer.training


# ------------------------------------------------------------------ training
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_few_steps_on_fixed_batch_lower_both_losses(head):
    model = build(head)
    model.train()
    data = model.data_preprocessor(make_batch(batch_size=8, seed=1, smooth=True), True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3)
    torch.manual_seed(0)
    history = []
    for _ in range(60):
        losses = model(**data, mode='loss')
        history.append((losses['loss_gen'].item(), losses['loss_enh'].item()))
        opt.zero_grad()
        (losses['loss_gen'] + losses['loss_enh']).backward()
        opt.step()
    first = torch.tensor(history[:5]).mean(0)
    last = torch.tensor(history[-5:]).mean(0)
    assert last[0] < 0.9 * first[0], f'loss_gen did not fall: {first} -> {last}'
    assert last[1] < 0.9 * first[1], f'loss_enh did not fall: {first} -> {last}'


def test_extract_feat_runs_without_corruption():
    model = build()
    img = torch.randn(2, 3, 16, 16)
    feats = model.extract_feat([img])
    assert feats[-1].shape == (2, 32, 4, 4)
    direct = model.backbone(img)[-1]
    torch.testing.assert_close(feats[-1], direct)


def test_checkpoint_leaves_out_the_frozen_tokenizer_and_still_loads_strictly():
    model = build()
    tok = MODELS.build(dict(type='VQTokenizer', vocab_size=16, downsample=2,
                            embed_dims=8, hidden_channels=16, num_res_blocks=1,
                            frozen=True, allow_random_init=True))
    model.tokenizer = tok
    sd = model.state_dict()
    assert not any(k.startswith('tokenizer.') for k in sd)
    assert any(k.startswith('generator.') for k in sd)
    other = build()
    other.tokenizer = MODELS.build(dict(type='VQTokenizer', vocab_size=16, downsample=2,
                                        embed_dims=8, hidden_channels=16,
                                        num_res_blocks=1, frozen=True,
                                        allow_random_init=True))
    before = {k: v.clone() for k, v in other.tokenizer.state_dict().items()}
    other.load_state_dict(sd, strict=True)  # no missing-key error
    for k, v in other.tokenizer.state_dict().items():
        torch.testing.assert_close(v, before[k])  # tokenizer kept as built
    model.save_tokenizer = True
    assert any(k.startswith('tokenizer.') for k in model.state_dict())
