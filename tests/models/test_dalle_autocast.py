"""DALLETokenizer's precision under an outer autocast.

``AmpOptimWrapper`` opens a bf16 autocast around the whole forward. A tokenizer
built with ``decode_dtype=None`` / ``'float32'`` must still run in full
precision inside it; ``'bfloat16'`` runs in bf16 there (on CPU only inside an
outer CPU autocast). Tiny random DALL-E, CPU.
"""
from __future__ import annotations

import pytest
import torch

from cim_mm.models.tokenizers import map_pixels
from cim_mm.models.tokenizers.dalle import DALLETokenizer

SIZES = dict(vocab_size=64, n_hid=16, n_blk_per_group=1, n_init=8)


@pytest.fixture(scope='module')
def weights() -> dict:
    torch.manual_seed(0)
    tok = DALLETokenizer(allow_random_init=True, **SIZES)
    with torch.no_grad():  # non-zero biases: every layer's precision shows
        for name, p in tok.named_parameters():
            if name.endswith('.b'):
                p.normal_(std=0.1)
    return tok.state_dict()


def _tok(weights: dict, decode_dtype: str | None) -> DALLETokenizer:
    tok = DALLETokenizer(allow_random_init=True, decode_dtype=decode_dtype, **SIZES)
    tok.load_state_dict(weights)
    return tok


def _run(tok: DALLETokenizer, outer_autocast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    img = map_pixels(torch.rand(2, 3, 32, 32))  # [B, 3, H, W]
    ids = torch.randint(0, SIZES['vocab_size'], (2, 4, 4))  # [B, h, w]
    ctx = torch.autocast('cpu', dtype=torch.bfloat16, enabled=outer_autocast)
    with ctx:
        return tok.encode_logits(img), tok.decode(ids)


@pytest.mark.parametrize('decode_dtype', [None, 'float32'])
def test_full_precision_tokenizer_ignores_outer_autocast(weights, decode_dtype):
    tok = _tok(weights, decode_dtype)
    ref_logits, ref_img = _run(tok, outer_autocast=False)
    logits, img = _run(tok, outer_autocast=True)
    assert logits.dtype == img.dtype == torch.float32
    torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(img, ref_img, rtol=1e-6, atol=1e-6)
    # the outer autocast is still on after the tokenizer returns
    with torch.autocast('cpu', dtype=torch.bfloat16):
        tok.decode(torch.zeros(1, 2, 2, dtype=torch.long))
        assert torch.is_autocast_enabled('cpu')
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_bf16_tokenizer_runs_in_bf16_inside_outer_autocast(weights):
    ref_logits, ref_img = _run(_tok(weights, None), outer_autocast=False)
    tok = _tok(weights, 'bfloat16')
    # no outer autocast on CPU: float32, the same as full precision
    logits, img = _run(tok, outer_autocast=False)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(img, ref_img, rtol=1e-6, atol=1e-6)
    # inside one: bf16 inside, float32 out, slightly different values
    logits, img = _run(tok, outer_autocast=True)
    assert logits.dtype == img.dtype == torch.float32
    d_logits = (logits - ref_logits).abs().max().item()
    d_img = (img - ref_img).abs().max().item()
    scale = ref_logits.abs().max().item()
    assert 1e-5 < d_logits < 0.05 * scale, (d_logits, scale)
    assert 1e-5 < d_img < 0.05, d_img
