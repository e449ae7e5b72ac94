"""tools/analysis/reduced_decode.py: the share of crops a reduced-scale decode could serve."""
from __future__ import annotations

import os.path as osp
import sys

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))

from reduced_decode import crop_share, decode_ms  # noqa: E402


def test_crop_share_follows_the_crop_size_against_the_output():
    rng = np.random.default_rng(0)
    np.random.seed(0)
    assert crop_share((224, 224), 200, rng) == (0.0, 0.0)  # no crop is 2x a 224 output
    assert crop_share((4000, 4000), 200, rng) == (1.0, 1.0)  # every crop >= 1131 px
    s2, s4 = crop_share((1024, 768), 2000, rng)
    assert 0.5 < s2 < 0.9 and s4 == 0.0  # 896 px needs more than the 768 px side


def test_decode_times_every_scale():
    ms = decode_ms((128, 96), np.random.default_rng(0), repeats=2)
    assert set(ms) == {'full', '1/2', '1/4'} and all(v > 0 for v in ms.values())
