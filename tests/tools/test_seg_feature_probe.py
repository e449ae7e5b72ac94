"""tools/analysis/seg_feature_probe.py: token labels, the closed-form probe, the
feature scale, and one run on toy scenes with a saved MAE backbone."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from helpers import load_tool


def _tool():
    return load_tool('analysis', 'seg_feature_probe.py')


def test_token_labels_are_the_majority_of_each_patch():
    tool = _tool()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 11, (3, 8, 12))
    got = tool.token_labels(labels, 4)  # [3, 2, 3]
    assert got.shape == (3, 2, 3)
    for n in range(3):
        for i in range(2):
            for j in range(3):
                patch = labels[n, 4 * i:4 * i + 4, 4 * j:4 * j + 4].ravel()
                assert got[n, i, j] == np.bincount(patch, minlength=11).argmax()


def test_probe_finds_classes_in_a_small_direction_under_a_large_offset():
    """Tokens = a large constant + a class signal 100x smaller than it (the
    shape of features a short AdamW probe fails on): the standardised
    closed-form probe separates them; the stats show offset >> spread."""
    tool = _tool()
    rng = np.random.default_rng(1)
    means = rng.normal(size=(4, 16))  # a direction per class

    def tokens(n):
        y = rng.integers(0, 4, n)
        return 5. + 0.01 * (means[y] + 0.1 * rng.normal(size=(n, 16))), y

    (xtr, ytr), (xva, yva) = tokens(2000), tokens(500)
    pred = tool.ridge_probe(xtr, ytr, xva, num_classes=4)
    assert np.mean(pred == yva) > 0.98
    assert tool.miou(pred, yva, 4) > 95.
    stats = tool.feature_stats(xtr)
    np.testing.assert_allclose(stats['offset'], np.abs(xtr.mean(0)).mean())
    np.testing.assert_allclose(stats['spread'], xtr.std(0).mean())
    assert stats['offset'] > 100 * stats['spread']
    # PC1 against a direct SVD of the centred tokens
    s = np.linalg.svd(xtr - xtr.mean(0), compute_uv=False)
    np.testing.assert_allclose(stats['pc1_share'], s[0] ** 2 / np.sum(s ** 2), rtol=1e-8)


def test_miou_counts_present_classes_only():
    tool = _tool()
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    # class 0: 1 / 2, class 1: 2 / 3, class 2 absent from both
    assert abs(tool.miou(pred, gt, 3) - 100. * (1 / 2 + 2 / 3) / 2) < 1e-9


def _scenes(root, split: str, n: int, size: int = 32) -> None:
    rng = np.random.default_rng(0 if split == 'training' else 1)
    for d in ('images', 'annotations'):
        (root / d / split).mkdir(parents=True)
    for i in range(n):
        lab = np.zeros((size, size), np.uint8)
        img = np.zeros((size, size, 3), np.uint8)
        y, x = rng.integers(0, size - 12, 2)
        c = int(rng.integers(1, 11))
        lab[y:y + 12, x:x + 12] = c
        img[y:y + 12, x:x + 12] = 20 * c
        Image.fromarray(img).save(root / 'images' / split / f'{i:06d}.png')
        Image.fromarray(lab).save(root / 'annotations' / split / f'{i:06d}.png')


def test_main_on_toy_scenes(tmp_path, capsys):
    """A saved MAE evaluation backbone (32 px pre-training size) and random init
    on 32 px scenes: one row each in the JSON, scores in range, and the
    backbone's weights used (its tokens differ from random init's)."""
    tool = _tool()
    from benchmarks.scales import build_scale
    from benchmarks.specs import build_spec
    from mmpretrain.registry import MODELS
    cfg = build_spec('mae', build_scale('cpu-small')).eval_backbone
    torch.manual_seed(3)
    (tmp_path / 'pre' / 'mae').mkdir(parents=True)
    torch.save(MODELS.build(dict(cfg)).state_dict(), tmp_path / 'pre' / 'mae' / 'backbone.pth')
    scenes = tmp_path / 'scenes'
    _scenes(scenes, 'training', 6)
    _scenes(scenes, 'validation', 3)
    out = tmp_path / 'probe.json'
    assert tool.main(['--methods', 'mae,random', '--pretrained-dir', str(tmp_path / 'pre'),
                      '--scenes-root', str(scenes), '--out', str(out)]) == 0
    rows = {r['method']: r for r in json.load(open(out))['rows']}
    assert sorted(rows) == ['mae', 'random']
    for r in rows.values():
        assert 0. <= r['token_mIoU'] <= 100. and 0. <= r['token_acc'] <= 100.
        assert r['spread'] > 0.
    assert rows['mae']['offset'] != rows['random']['offset']
    assert 'mae: token mIoU' in capsys.readouterr().out


def test_missing_backbone_is_one_line(tmp_path, capsys):
    tool = _tool()
    scenes = tmp_path / 'scenes'
    _scenes(scenes, 'training', 2)
    _scenes(scenes, 'validation', 2)
    try:
        tool.main(['--methods', 'croco', '--pretrained-dir', str(tmp_path / 'none'),
                   '--scenes-root', str(scenes)])
    except SystemExit as e:
        assert e.code == 1
    else:
        raise AssertionError('no error for a missing backbone')
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'backbone.pth' in err[0] and '--methods croco' in err[0]
