"""The fast frozen DALL-E tokenizer (channels_last, 1x1 convs before upsampling)
computes what the plain one does. Tiny random DALL-E, CPU."""
from __future__ import annotations

import pytest
import torch

from cim_mm.models.tokenizers import map_pixels
from cim_mm.models.tokenizers.dalle import DALLETokenizer
from cim_mm.models.tokenizers.dalle_lowres import upsampled_block

SIZES = dict(vocab_size=64, n_hid=16, n_blk_per_group=2, n_init=8)
PLAIN = dict(channels_last=False, lowres_1x1=False)


@pytest.fixture(scope='module')
def weights() -> dict:
    torch.manual_seed(0)
    tok = DALLETokenizer(allow_random_init=True, **PLAIN, **SIZES)
    with torch.no_grad():  # non-zero biases: every layer shows
        for name, p in tok.named_parameters():
            if name.endswith('.b'):
                p.normal_(std=0.1)
    return tok.state_dict()


def _tok(weights: dict, **kw) -> DALLETokenizer:
    tok = DALLETokenizer(allow_random_init=True, **SIZES, **kw)
    tok.load_state_dict(weights)
    return tok


def _inputs(batch: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    img = map_pixels(torch.rand(batch, 3, size, size, generator=g))  # [B, 3, H, W]
    ids = torch.randint(0, SIZES['vocab_size'], (batch, size // 8, size // 8),
                        generator=g)  # [B, h, w]
    return img, ids


@pytest.mark.parametrize('fast', [dict(), dict(channels_last=False),
                                  dict(lowres_1x1=False)])
def test_fast_tokenizer_equals_plain(weights, fast):
    """Default (both on) and each switch alone: same ids, same decoded images."""
    plain, tok = _tok(weights, **PLAIN), _tok(weights, **fast)
    assert set(tok.state_dict()) == set(plain.state_dict())
    img, ids = _inputs()
    torch.testing.assert_close(tok.encode_logits(img), plain.encode_logits(img),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(tok.encode(img), plain.encode(img))
    out, ref = tok.decode(ids), plain.decode(ids)
    assert out.shape == ref.shape == (3, 3, 32, 32) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_channels_last_weights_and_activations(weights):
    tok = _tok(weights)
    assert tok.encoder.blocks.input.w.is_contiguous(memory_format=torch.channels_last)
    x = tok.decoder.embed(_inputs()[1], torch.channels_last)  # [B, n_init, h, w]
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert tok.encode_logits(_inputs()[0]).is_contiguous(memory_format=torch.channels_last)


def test_upsampled_block_equals_block_after_upsampling(weights):
    """Each group's first block after an upsampling, on its own."""
    dec = _tok(weights, **PLAIN).decoder
    torch.manual_seed(2)
    checked = 0
    for g in (1, 2, 3):
        group, nxt = dec.blocks[g], dec.blocks[g + 1]  # blocks[0] is the input conv
        up, block = group.upsample, nxt.block_1
        x = torch.randn(2, block.res_path.conv_1.w.shape[1], 5, 6)  # [B, n_in, h, w]
        torch.testing.assert_close(upsampled_block(block, x, up), block(up(x)),
                                   rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == 3


def test_fast_decode_under_bf16_autocast_matches_plain(weights):
    """bf16 (the recipes' decode_dtype, here inside an outer CPU autocast)."""
    plain = _tok(weights, decode_dtype='bfloat16', **PLAIN)
    tok = _tok(weights, decode_dtype='bfloat16')
    img, ids = _inputs()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, ref = tok.decode(ids), plain.decode(ids)
        logits, ref_logits = tok.encode_logits(img), plain.encode_logits(img)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0.02)
    torch.testing.assert_close(logits, ref_logits, rtol=0.02,
                               atol=0.02 * ref_logits.abs().max().item())
