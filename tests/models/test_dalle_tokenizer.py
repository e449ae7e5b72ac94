"""DALLETokenizer against the reference ``dall_e`` package (tiny sizes, CPU)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cim_mm.models.tokenizers import map_pixels, unmap_pixels
from cim_mm.models.tokenizers.dalle import DALLETokenizer, load_dalle_state_dict
from cim_mm.utils import CheckpointSecurityError

ROOT = Path(__file__).resolve().parents[2]
# Tiny architecture (dall_e's attrs validators want n_hid >= 64, vocab >= 512;
# they are switched off while building the reference).
SIZES = dict(vocab_size=64, n_hid=16, n_blk_per_group=1, n_init=8)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """Reference modules, saved like the official files (``torch.save(module)``)."""
    attr = pytest.importorskip('attr')
    dall_e = pytest.importorskip('dall_e')
    torch.manual_seed(0)
    with attr.validators.disabled():
        enc = dall_e.Encoder(n_hid=16, n_blk_per_group=1, vocab_size=64)
        dec = dall_e.Decoder(n_init=8, n_hid=16, n_blk_per_group=1, vocab_size=64)
    with torch.no_grad():  # non-zero biases, so they are checked too
        for m in (enc, dec):
            for name, p in m.named_parameters():
                if name.endswith('.b'):
                    p.normal_(std=0.1)
    folder = tmp_path_factory.mktemp('dalle')
    torch.save(enc, folder / 'encoder.pkl')
    torch.save(dec, folder / 'decoder.pkl')
    # the same in torch's legacy (pre-zip) serialization format
    torch.save(enc, folder / 'encoder_legacy.pkl', _use_new_zipfile_serialization=False)
    torch.save(dec, folder / 'decoder_legacy.pkl', _use_new_zipfile_serialization=False)
    return enc.eval(), dec.eval(), folder


def _tokenizer(enc_path, dec_path) -> DALLETokenizer:
    return DALLETokenizer(encoder_path=str(enc_path), decoder_path=str(dec_path), **SIZES)


def _check_against_reference(tok, enc, dec) -> None:
    torch.manual_seed(1)
    img = map_pixels(torch.rand(2, 3, 32, 32))  # [B, 3, H, W]
    with torch.no_grad():
        ref_logits = enc(img)  # [B, vocab, 4, 4]
        ids = ref_logits.argmax(1)  # [B, 4, 4]
        onehot = F.one_hot(ids, 64).permute(0, 3, 1, 2).float()  # [B, vocab, 4, 4]
        ref_img = unmap_pixels(torch.sigmoid(dec(onehot)[:, :3]))  # [B, 3, 32, 32]

    logits = tok.encode_logits(img)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(tok.encode(img), ids)
    out = tok.decode(ids)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref_img, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('suffix', ['', '_legacy'])
def test_matches_reference_from_official_pickles(reference, suffix):
    enc, dec, folder = reference
    tok = _tokenizer(folder / f'encoder{suffix}.pkl', folder / f'decoder{suffix}.pkl')
    # same keys as the reference modules, so official state dicts load strictly
    assert set(tok.encoder.state_dict()) == set(enc.state_dict())
    assert set(tok.decoder.state_dict()) == set(dec.state_dict())
    _check_against_reference(tok, enc, dec)
    # frozen: no grads, stays in eval mode when a parent calls .train()
    assert not any(p.requires_grad for p in tok.parameters())
    tok.train()
    assert not tok.training and not tok.decoder.training


def test_converter_round_trip(reference, tmp_path):
    enc, dec, folder = reference
    out = tmp_path / 'dalle.pth'
    subprocess.run([sys.executable, str(ROOT / 'tools/model_converters/dalle_to_state_dict.py'),
                    str(folder / 'encoder.pkl'), str(folder / 'decoder.pkl'), str(out)],
                   check=True, cwd=ROOT, capture_output=True)
    ckpt = torch.load(out, weights_only=True)  # plain tensors only
    assert set(ckpt) == {'encoder', 'decoder'}
    _check_against_reference(_tokenizer(out, out), enc, dec)


def test_wrong_part_is_rejected(reference):
    _, _, folder = reference
    with pytest.raises(ValueError, match='decoder was expected'):
        load_dalle_state_dict(str(folder / 'encoder.pkl'), 'decoder')


class _Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned > "$PWNED_FILE"', ))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    monkeypatch.setenv('PWNED_FILE', str(marker))
    evil = {'blocks.input.w': torch.zeros(1), 'x': _Evil()}
    torch.save(evil, tmp_path / 'zip.pkl')
    torch.save(evil, tmp_path / 'legacy.pkl', _use_new_zipfile_serialization=False)
    (tmp_path / 'raw.pkl').write_bytes(pickle.dumps(_Evil(), protocol=2))
    for name in ('zip.pkl', 'legacy.pkl', 'raw.pkl'):
        with pytest.raises(CheckpointSecurityError, match='system') as info:
            load_dalle_state_dict(str(tmp_path / name), 'encoder')
        assert '\n' not in str(info.value)
    assert not marker.exists()


def test_missing_weights(reference):
    with pytest.raises(FileNotFoundError, match='encoder_path') as info:
        DALLETokenizer(encoder_path=None, decoder_path=None, **SIZES)
    assert 'https://cdn.openai.com/dall-e/encoder.pkl' in str(info.value)
    assert '\n' not in str(info.value)
    _, _, folder = reference
    with pytest.raises(FileNotFoundError, match='decoder_path'):
        DALLETokenizer(encoder_path=str(folder / 'encoder.pkl'),
                       decoder_path='/nonexistent/decoder.pkl', **SIZES)


def test_random_init_build_from_registry():
    from mmpretrain.registry import MODELS
    tok = MODELS.build(dict(type='DALLETokenizer', encoder_path=None, decoder_path=None,
                            allow_random_init=True, **SIZES))
    assert tok.vocab_size == 64 and tok.downsample == 8
    ids = tok.encode(map_pixels(torch.rand(1, 3, 16, 16)))
    assert ids.shape == (1, 2, 2) and ids.dtype == torch.int64
    img = tok.decode(ids)
    assert img.shape == (1, 3, 16, 16) and 0 <= img.min() and img.max() <= 1
