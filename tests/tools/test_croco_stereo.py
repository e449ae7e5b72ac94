"""tools/visualization/croco_stereo.py at toy size, on a synthetic rectified pair."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import load_tool


def _tool():
    return load_tool('visualization', 'croco_stereo.py')


def _pair(folder, h: int = 48, w: int = 64, shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (h, w + shift, 3), dtype=np.uint8)
    left, right = scene[:, shift:], scene[:, :w]  # the right view: the scene shifted
    Image.fromarray(left).save(folder / 'left.png')
    Image.fromarray(right).save(folder / 'right.png')
    return left, right


def test_crops_take_both_views_at_the_same_place(tmp_path):
    tool = _tool()
    left, right = _pair(tmp_path)
    l2, r2 = tool.load_pair(str(tmp_path), 64)
    assert np.array_equal(l2, left) and np.array_equal(r2, right)  # same width: no resize
    tops, xs = np.array([0, 5]), np.array([7, 2])
    v1, v2 = tool.crops(left, right, tops, xs, 16)
    assert v1.shape == v2.shape == (2, 3, 16, 16)
    assert torch.equal(v1[1], torch.from_numpy(left[5:21, 2:18]).permute(2, 0, 1).float())
    assert torch.equal(v2[0], torch.from_numpy(right[0:16, 7:23]).permute(2, 0, 1).float())
    t, x = tool.places(np.random.default_rng(0), 50, (30, 48), 64, 16)
    assert (t >= 30).all() and (t + 16 <= 48).all() and (x + 16 <= 64).all()


def test_toy_run_writes_the_picture_and_the_figures(tmp_path, capsys):
    _pair(tmp_path)
    out = tmp_path / 'croco.png'
    assert _tool().main(['--pair-dir', str(tmp_path), '--out', str(out), '--steps', '3',
                         '--crop', '8', '--patch', '4', '--width', '64', '--num', '2']) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (2 * (16 + 4) + 4, 6 * (16 + 4) + 4, 3)  # 2 rows, 6 columns, x2
    res = json.loads((tmp_path / 'croco.json').read_text())
    assert res['held_out_crops'] == 256 and res['steps'] == 3
    assert res['pair']['mean'] > 0 and res['other_view2']['mean'] > 0
    assert 0 <= res['pair_better_share'] <= 1
    assert 'held-out crops better' in capsys.readouterr().out


def test_bad_pair_dir_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _tool().main(['--pair-dir', str(tmp_path), '--out', str(tmp_path / 'x.png')])
    err = capsys.readouterr().err
    assert 'left.png not found' in err and 'Traceback' not in err
