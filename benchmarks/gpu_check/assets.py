"""Files the GPU check runs on: DALL-E weights in the official format, JPEGs.

* DALL-E: ``encoder.pkl`` / ``decoder.pkl`` exactly as OpenAI ships them --
  ``torch.save`` of the reference ``dall_e.Encoder`` / ``dall_e.Decoder``
  modules (pip package ``dall-e==0.1``), here with their random
  initialisation -- so the check reads them through the same safe loader
  (:func:`cim_mm.models.tokenizers.dalle.load_dalle_state_dict`) as real
  weights. Cost figures do not depend on the weights.
* JPEGs: ImageNet's ``train/<class>/<name>.JPEG`` layout, sizes like
  ImageNet's, smooth random content (low-resolution noise upsampled, plus
  grain) encoded at quality 90 (~90 kB each, ImageNet's mean is ~110 kB), so
  decoding costs about what a photo costs.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional

import numpy as np


def write_official_dalle(folder: str, sizes: Optional[dict] = None,
                         seed: int = 0) -> dict:
    """``folder/encoder.pkl``, ``folder/decoder.pkl`` in the official format.

    Args:
        sizes: None for the official architecture (n_hid 256, 2 blocks per
            group, vocab 8192, n_init 128), or ``dict(vocab_size, n_hid,
            n_blk_per_group, n_init)`` for a tiny one (the reference's
            validators, which want n_hid >= 64 and vocab >= 512, are switched
            off while building it).

    Returns:
        ``dict(dir, encoder_mb, decoder_mb, params_m)``.
    """
    import torch
    try:
        import attr
        import dall_e
    except ImportError as err:
        raise ImportError(
            f'writing DALL-E files in the official format needs the reference '
            f'package dall_e ({err}): `pip install --no-deps dall-e==0.1`, or run '
            'tools/gpu_check.sh, which packs it with the other pure-Python '
            'dependencies') from None
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    if sizes is None:
        enc, dec = dall_e.Encoder(), dall_e.Decoder()
    else:
        s = dict(sizes)
        with attr.validators.disabled():
            enc = dall_e.Encoder(n_hid=s['n_hid'], n_blk_per_group=s['n_blk_per_group'],
                                 vocab_size=s['vocab_size'])
            dec = dall_e.Decoder(n_init=s['n_init'], n_hid=s['n_hid'],
                                 n_blk_per_group=s['n_blk_per_group'],
                                 vocab_size=s['vocab_size'])
    out = dict(dir=folder)
    params = 0
    for name, mod in (('encoder', enc), ('decoder', dec)):
        path = osp.join(folder, f'{name}.pkl')
        torch.save(mod, path)  # what https://cdn.openai.com/dall-e/{name}.pkl holds
        out[f'{name}_mb'] = round(osp.getsize(path) / 2**20, 1)
        params += sum(p.numel() for p in mod.parameters())
    out['params_m'] = round(params / 1e6, 1)
    return out


def write_jpegs(root: str, num: int, side: tuple = (320, 560), classes: int = 4,
                seed: int = 0) -> dict:
    """``num`` JPEGs under ``root/train/n0000000<c>/img_<i>.JPEG``.

    Returns:
        ``dict(dir, num, mean_kb, side)``; ``dir`` is ``root/train``.
    """
    import cv2
    rng = np.random.default_rng(seed)
    lo, hi = int(side[0]), int(side[1])
    total = 0
    for i in range(num):
        folder = osp.join(root, 'train', f'n{i % classes:08d}')
        os.makedirs(folder, exist_ok=True)
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        low = rng.integers(0, 256, (max(h // 24, 2), max(w // 24, 2), 3), dtype=np.uint8)
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)  # [h, w, 3]
        grain = rng.integers(-30, 31, img.shape)  # ~90 kB at 440 px, near ImageNet's
        img = np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        path = osp.join(folder, f'img_{i:05d}.JPEG')
        if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f'could not write {path}')
        total += osp.getsize(path)
    return dict(dir=osp.join(root, 'train'), num=num,
                mean_kb=round(total / max(num, 1) / 1024, 1), side=[lo, hi])
