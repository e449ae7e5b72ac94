"""The recipe digest (benchmarks/recipe.py): a changed method recipe makes
its finished results stale on resume, and only its own; results made before
recipes were recorded resume and get the current recipe written in."""
from __future__ import annotations

import json
import os
import os.path as osp

import cim_mm  # noqa: F401
from helpers import benchmark_opts
from benchmarks import runner
from benchmarks.recipe import method_recipes, recipe_digest
from benchmarks.scales import build_scale
from benchmarks.specs import build_spec


def _result(method: str, settings: dict) -> dict:
    return dict(method=method, label=method, status='ok', scale='cpu-small', device='cpu',
                seed=settings.get('seed', 0), settings=settings,
                pretrain=dict(iters=10, images=640, batch_size=64, wall_s=3.0, img_per_s=200.,
                              wall_img_per_s=190., step_s_mean=0.32, peak_mem_mb=900.,
                              mem_delta_mb=120., mem_method='test'),
                eval=dict(knn_top1=70., linear_top1=75., finetune_top1=80.), notes=[],
                eval_s=5., total_s=9.)


def test_digest_follows_the_recipe_not_the_tokenizer_file():
    scale = build_scale('cpu-small', tokenizer_ckpt=None)
    other = build_scale('cpu-small', tokenizer_ckpt='/elsewhere/tokenizer.pth')
    base = recipe_digest(build_spec('cim-respix', scale), scale)
    assert len(base) == 12 and int(base, 16) >= 0
    # the tokenizer's file is tokenizer_id's business, not the recipe's
    assert recipe_digest(build_spec('cim-respix', other), other) == base
    # one knob changed (ResPix window 9 -> 5) -> another digest
    w5 = build_spec('cim-respix@window5', scale)
    assert w5.model['head']['window_size'] == 5
    assert recipe_digest(w5, scale) != base
    # the scale's optimizer is part of every method's recipe
    mae = recipe_digest(build_spec('mae', scale), scale)
    scale.optim_wrapper['optimizer']['lr'] *= 2
    assert recipe_digest(build_spec('mae', scale), scale) != mae
    # every method its own digest; the same inputs give the same digest
    d = method_recipes(dict(scale='cpu-small'), ['cim-respix', 'cim-revdet', 'mae', 'random'])
    assert len(set(d.values())) == 4 and d['cim-respix'] == base
    assert method_recipes(dict(scale='cpu-small'), ['mae'])['mae'] == mae


def test_changed_recipe_reruns_only_that_method(tmp_path, monkeypatch):
    opts = benchmark_opts(tmp_path, methods='mae,simmim')
    real = runner.method_recipes(opts, ['mae', 'simmim'])
    calls = []

    def fake_run_one(settings, in_process):
        calls.append(settings['method'])
        assert settings['fingerprint']['recipe'] == recipes_now()[settings['method']]
        d = osp.join(settings['work_dir'], settings['run_name'])
        os.makedirs(d, exist_ok=True)
        json.dump(_result(settings['method'], settings['fingerprint']),
                  open(osp.join(d, 'result.json'), 'w'))
        return True, ''

    changed = {}

    def recipes_now():
        return dict(real, **changed)

    monkeypatch.setattr(runner, 'run_one', fake_run_one)
    monkeypatch.setattr(runner, 'method_recipes', lambda o, ms: {m: recipes_now()[m] for m in ms})
    assert runner.run_benchmark(dict(opts)) == 0
    assert calls == ['mae', 'simmim']
    calls.clear()
    changed['simmim'] = 'f' * 12  # e.g. a default of SimMIM's spec changed
    assert runner.run_benchmark(dict(opts)) == 0
    assert calls == ['simmim']
    assert json.load(open(tmp_path / 'simmim' / 'result.json'))['settings']['recipe'] == 'f' * 12
    fp = dict(runner.fingerprint(dict(opts, tokenizer_id='random')), recipe=real['mae'])
    assert runner.finished(str(tmp_path), 'mae', fp) == (True, '')
    assert runner.finished(str(tmp_path), 'mae', dict(fp, recipe='0' * 12)) == (
        False, 'settings changed (recipe)')
    # a caller without a recipe compares the settings only
    assert runner.finished(str(tmp_path), 'mae', runner.fingerprint(
        dict(opts, tokenizer_id='random')))[0]


def test_result_without_recipe_is_rerun(tmp_path, monkeypatch):
    opts = benchmark_opts(tmp_path, methods='mae')
    fp = runner.fingerprint(dict(opts, tokenizer_id=runner.tokenizer_id(None)))
    os.makedirs(tmp_path / 'mae')
    json.dump(_result('mae', fp), open(tmp_path / 'mae' / 'result.json', 'w'))  # no recipe
    calls = []
    monkeypatch.setattr(runner, 'run_one', lambda s, i: calls.append(s) or (True, ''))
    recipe = runner.method_recipes(opts, ['mae'])['mae']
    assert runner.finished(str(tmp_path), 'mae', dict(fp, recipe=recipe)) == (
        False, 'settings changed (recipe)')
    assert runner.run_benchmark(dict(opts)) == 0
    assert len(calls) == 1  # re-run: its recipe is unknown
