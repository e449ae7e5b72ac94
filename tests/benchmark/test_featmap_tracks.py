"""The ConvNeXt and Swin tracks of tools/benchmark.py: every method trains, the
evaluation protocol (a fresh output norm for every method), a smoke run.

CPU only, a tiny fake Fashion-MNIST, an untrained tokenizer.
"""
from __future__ import annotations

import json
import os.path as osp
import sys

import pytest
import torch

import cim_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
TRACKS = {'convnext': ('ConvNeXt', 'spark', 'SparseConvNeXt'),
          'swin': ('SwinTransformer', 'simmim', 'SimMIMSwinTransformer')}


def _scale(track: str, data_root: str):
    from mmpretrain.utils import register_all_modules

    from benchmarks.scales import build_scale
    register_all_modules(init_default_scope=True)
    return build_scale('cpu-small', tokenizer_ckpt=None, data_root=data_root, track=track)


@pytest.mark.parametrize('track', list(TRACKS))
def test_every_method_of_the_track_trains_one_step_and_evaluates(track, fake_fashion_mnist):
    from mmpretrain.registry import MODELS

    import benchmarks.models  # noqa: F401  (the benchmark's own registrations)
    from benchmarks.data import build_pretrain_loader
    from benchmarks.evaluate import build_eval_backbone, pooled_features
    from benchmarks.pretrain import build_optim_wrapper
    from benchmarks.specs import build_spec, track_methods
    family, mim, mim_backbone = TRACKS[track]
    scale = _scale(track, fake_fashion_mnist)
    assert scale.embed_dims == 256 and scale.enhancer['type'] == family
    methods = track_methods(track)
    assert set(methods) == {'cim-respix', 'cim-revdet', mim, 'simclr', 'random'}
    torch.manual_seed(0)
    for name in methods:
        spec = build_spec(name, scale)
        assert spec.eval_backbone['type'] == family and spec.eval_backbone['out_indices'] == (2, )
        assert spec.eval_fresh == ('norm0.', 'norm1.', 'norm2.'), name
        state = None
        if spec.model is not None:
            if name == mim:
                assert spec.model['backbone']['type'] == mim_backbone
            model = MODELS.build(spec.model)
            model.init_weights()
            loader = build_pretrain_loader(scale.data_root, spec.pipeline, batch_size=4)
            optim = build_optim_wrapper(model, scale.optim_wrapper, 'cpu')
            log_vars = model.train_step(next(iter(loader)), optim)
            assert torch.isfinite(log_vars['loss']), name
            state = model.backbone.state_dict()
        bb = build_eval_backbone(spec.eval_backbone, state, fresh=spec.eval_fresh)
        bb.eval()
        with torch.no_grad():
            feats = pooled_features(bb, torch.randn(2, 3, scale.img_size, scale.img_size))
        assert feats.shape == (2, scale.embed_dims), name
        # the output norm is the fresh one for every method (identity affine)
        assert torch.equal(bb.norm2.weight, torch.ones(256)), name
        assert torch.equal(bb.norm2.bias, torch.zeros(256)), name
        if state is not None:  # every other tensor is the pre-trained one
            for k, v in bb.state_dict().items():
                if not k.startswith('norm'):
                    assert torch.equal(v, state[k]), (name, k)


def test_fresh_keys_are_the_only_ones_allowed_to_differ():
    from benchmarks.evaluate import build_eval_backbone
    cfg = dict(type='ConvNeXt', arch=dict(depths=[1, 1], channels=[8, 16]), out_indices=(1, ),
               gap_before_final_norm=False)
    src = build_eval_backbone(dict(cfg, out_indices=(0, 1))).state_dict()  # norm0, norm1
    sparse = {k: v for k, v in src.items() if not k.startswith('norm')}  # SparK: no norms
    for state in (src, sparse):
        build_eval_backbone(cfg, state, fresh=('norm0.', 'norm1.'))
    with pytest.raises(KeyError, match='unexpected'):
        build_eval_backbone(cfg, src)  # norm0 is not the evaluated backbone's
    with pytest.raises(KeyError, match='missing'):
        build_eval_backbone(cfg, sparse)  # nor may norm1 be silently random
    broken = {k: v for k, v in sparse.items() if not k.startswith('stages.1.0.gamma')}
    with pytest.raises(KeyError, match='gamma'):
        build_eval_backbone(cfg, broken, fresh=('norm0.', 'norm1.'))


def test_the_other_tracks_recipes_are_unchanged(fake_fashion_mnist):
    """A spec without fresh keys digests as before they existed: the finished
    ViT / ResNet results keep resuming."""
    import hashlib
    from benchmarks.recipe import _same_maths, _strip_file_keys, recipe_digest
    from benchmarks.specs import build_spec
    scale = _scale('resnet', fake_fashion_mnist)
    spec = build_spec('simclr', scale)
    assert spec.eval_fresh == ()
    old = dict(model=_same_maths(spec.model), pipeline=spec.pipeline,
               eval_backbone=spec.eval_backbone, optim_options=spec.optim_options,
               optim_wrapper=scale.optim_wrapper, warmup_frac=scale.warmup_frac,
               min_lr_ratio=scale.min_lr_ratio)
    text = json.dumps(_strip_file_keys(old), sort_keys=True, default=repr)
    assert recipe_digest(spec, scale) == hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.mark.parametrize('track', list(TRACKS))
def test_smoke_run_of_the_track(track, tmp_path, fake_fashion_mnist):
    """tools/benchmark.py --track convnext / swin, in-process: the random-init row
    (no pre-training) through the whole report."""
    from benchmark import main
    rc = main(['--min-cpu-share', '0', '--track', track, '--methods', 'random',
               '--eval-subset', 'small', '--eval', 'knn', '--work-dir', str(tmp_path),
               '--in-process', '--data-root', fake_fashion_mnist])
    assert rc == 0
    data = json.load(open(tmp_path / 'results.json'))
    (row, ) = data['methods']
    assert row['method'] == 'random' and row['status'] == 'ok' and row['track'] == track
    assert 'fresh output norm' in row['eval']['feature']
    assert data['meta']['track'] == track
    assert f'track `{track}`' in open(tmp_path / 'results.md').read()
