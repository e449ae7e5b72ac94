"""tools/benchmark.py and benchmarks: evaluation maths, adapters, every
method's training step, resumability, failures, the report, a smoke run.

Fast by default. ``CIM_BENCH_E2E=1`` adds a slower end-to-end run (every
method, worker subprocesses, FLOP counts).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

import cim_mm  # noqa: F401
from helpers import benchmark_opts
from benchmarks import report, runner
from benchmarks.evaluate import knn_predict, knn_top1, linear_probe, top1

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
E2E = os.environ.get('CIM_BENCH_E2E') == '1'


# ---------------------------------------------------------------- evaluation
def _clusters(n_per: int, classes: int = 4, dim: int = 16, spread: float = 0.05,
              seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(dim)[:classes] * 5.
    x = torch.cat([c + spread * torch.randn(n_per, dim, generator=g) for c in centers])
    y = torch.arange(classes).repeat_interleave(n_per)
    return x, y


def _knn_brute(tr, ytr, te, k, t, classes):
    preds = []
    for q in te:
        sims = [(float(torch.dot(q / q.norm(), x / x.norm())), int(c))
                for x, c in zip(tr, ytr)]
        sims.sort(key=lambda s: -s[0])
        votes = [0.] * classes
        for s, c in sims[:k]:
            votes[c] += float(np.exp(s / t))
        preds.append(int(np.argmax(votes)))  # ties: smallest class id
    return torch.tensor(preds)


def test_knn_equals_brute_force_loop():
    g = torch.Generator().manual_seed(1)
    tr, te = torch.randn(80, 8, generator=g), torch.randn(30, 8, generator=g)
    ytr = torch.randint(0, 5, (80, ), generator=g)
    for k, t in ((20, 0.07), (5, 1.0), (1, 0.5)):
        fast = knn_predict(tr, ytr, te, k=k, temperature=t, num_classes=5, chunk=7)
        assert torch.equal(fast, _knn_brute(tr, ytr, te, k, t, 5)), (k, t)


def test_knn_and_linear_probe_separable_clusters_give_100():
    tr, ytr = _clusters(30)
    te, yte = _clusters(10, seed=1)
    assert knn_top1(tr, ytr, te, yte, k=20) == 100.
    assert linear_probe(tr, ytr, te, yte) == 100.
    # and they are not trivially 100: shuffled train labels break both
    perm = ytr[torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))]
    assert knn_top1(tr, perm, te, yte, k=20) < 60.
    assert top1(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 3])) == 75.


def test_linear_probe_beats_chance_on_overlapping_clusters():
    tr, ytr = _clusters(50, spread=2.0)
    te, yte = _clusters(50, spread=2.0, seed=3)
    acc = linear_probe(tr, ytr, te, yte)
    assert 40. < acc < 100.


def test_flop_counter_exact_on_linear():
    from benchmarks.flops import count_flops
    lin = torch.nn.Linear(32, 16)
    x = torch.randn(4, 32)
    assert count_flops(lambda: lin(x)) == 2 * 4 * 32 * 16


# ------------------------------------------------------------------ adapters
def test_adapters():
    from benchmarks.models.adapters import GridHOGGenerator, SimMIMViT, TokenizerTargetGenerator
    from cim_mm.models.tokenizers.base import map_pixels
    tg = TokenizerTargetGenerator(dict(type='ToyTokenizer', vocab_size=16, downsample=2))
    x = map_pixels(torch.rand(2, 3, 8, 8))
    assert torch.equal(tg(x).argmax(1), tg.tokenizer.encode(x))
    assert tg(x).shape == (2, 16, 4, 4)
    tg2 = TokenizerTargetGenerator(dict(type='ToyTokenizer', vocab_size=16, downsample=2),
                                   img_size=4)
    assert tg2(x).shape == (2, 16, 2, 2)  # resized 8 -> 4 px first

    hog = GridHOGGenerator(patch_size=4, nbins=9, pool=2, gaussian_window=4)
    assert hog(torch.randn(2, 3, 32, 32)).shape == (2, 64, 3 * 9 * 4)

    vit = SimMIMViT(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                              feedforward_channels=64), img_size=16, patch_size=4)
    mask = torch.zeros(2, 4, 4)
    mask[:, :2] = 1
    (fmap, ) = vit(torch.randn(2, 3, 16, 16), mask)
    assert fmap.shape == (2, 32, 4, 4)


def test_every_method_builds_and_trains_one_step(fake_fashion_mnist):
    """Each spec's model + pipeline + optimizer does one real training step."""
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import benchmarks.models  # noqa: F401
    from benchmarks.data import build_pretrain_loader
    from benchmarks.evaluate import build_eval_backbone
    from benchmarks.pretrain import build_optim_wrapper
    from benchmarks.scales import build_scale
    from benchmarks.specs import METHODS, build_spec
    register_all_modules(init_default_scope=True)
    scale = build_scale('cpu-small', tokenizer_ckpt=None, data_root=fake_fashion_mnist)
    scale.densecl_queue = 64
    torch.manual_seed(0)
    for name in METHODS:
        spec = build_spec(name, scale)
        if spec.model is None:
            build_eval_backbone(spec.eval_backbone)
            continue
        model = MODELS.build(spec.model)
        model.init_weights()
        loader = build_pretrain_loader(scale.data_root, spec.pipeline, batch_size=4)
        optim = build_optim_wrapper(model, scale.optim_wrapper, 'cpu')
        log_vars = model.train_step(next(iter(loader)), optim)
        assert torch.isfinite(log_vars['loss']), name
        # the pre-trained backbone loads into the eval backbone, key for key
        build_eval_backbone(spec.eval_backbone, model.backbone.state_dict())


def _one_step(spec, scale) -> None:
    from mmpretrain.registry import MODELS

    from benchmarks.data import build_pretrain_loader
    from benchmarks.evaluate import build_eval_backbone, pooled_features
    from benchmarks.pretrain import build_optim_wrapper
    if spec.model is None:
        build_eval_backbone(spec.eval_backbone)
        return
    model = MODELS.build(spec.model)
    model.init_weights()
    loader = build_pretrain_loader(scale.data_root, spec.pipeline, batch_size=4)
    optim = build_optim_wrapper(model, scale.optim_wrapper, 'cpu')
    log_vars = model.train_step(next(iter(loader)), optim)
    assert torch.isfinite(log_vars['loss']), spec.name
    bb = build_eval_backbone(spec.eval_backbone, model.backbone.state_dict())
    bb.eval()
    feats = pooled_features(bb, torch.randn(2, 3, scale.img_size, scale.img_size))
    assert feats.shape == (2, scale.embed_dims), spec.name


def test_resnet_track_every_method_trains_one_step(fake_fashion_mnist):
    """--track resnet: CIM-R18, the CNN peers (SparK, MEC included), random init."""
    from mmengine.logging import MessageHub
    from mmpretrain.utils import register_all_modules

    from benchmarks.scales import build_scale
    from benchmarks.specs import build_spec, track_methods
    register_all_modules(init_default_scope=True)
    MessageHub.get_current_instance().update_info('max_iters', 10)  # CosineEMA (BYOL, MEC)
    scale = build_scale('cpu-small', tokenizer_ckpt=None, data_root=fake_fashion_mnist,
                        track='resnet')
    assert scale.embed_dims == 256 and scale.resnet['depth'] == 18
    scale.densecl_queue = 64
    torch.manual_seed(0)
    assert set(track_methods('resnet')) >= {'spark', 'mec', 'byol', 'simsiam', 'mocov2',
                                            'barlowtwins', 'densecl', 'simclr'}
    for name in track_methods('resnet'):
        spec = build_spec(name, scale)
        if spec.model is not None:
            assert 'ResNet' in spec.model['backbone']['type'], name
        _one_step(spec, scale)


def test_ablations_apply_one_knob(fake_fashion_mnist):
    from benchmarks.ablations import ablation_names, parse_ablations
    from benchmarks.scales import build_scale
    from benchmarks.specs import build_spec
    scale = build_scale('cpu-small', tokenizer_ckpt=None, data_root=fake_fashion_mnist)
    names = ablation_names()
    assert 'cim-revdet@temp0' in names and 'cim-respix@window3' in names
    assert 'cim-revdet@window3' not in names  # ResPix only
    base = build_spec('cim-revdet', scale)
    spec = build_spec('cim-revdet@temp0', scale)
    assert spec.model['generator']['temperature'] == 0.0
    assert base.model['generator']['temperature'] == 1.0  # the base is untouched
    mask = next(t for t in build_spec('cim-respix@mask55', scale).pipeline
                if t['type'] == 'BEiTMaskGenerator')
    assert mask['num_masking_patches'] == 35
    assert build_spec('cim-respix@gen-depth6', scale).model['generator']['backbone'][
        'arch']['num_layers'] == 6
    assert build_spec('cim-respix@window5', scale).model['head']['window_size'] == 5
    assert build_spec('cim-respix', scale).model['head']['window_size'] == 9  # the demo's
    assert build_spec('cim-revdet@enh-w2', scale).model['loss_weights']['enh'] == 2.0
    warm = build_spec('cim-revdet@gen-warm10', scale).model
    assert warm['generator_warmup'] == 0.1 and warm['type'] == 'CIMAblation'
    assert build_spec('cim-revdet@temp0', scale).model['type'] == 'CIM'
    with pytest.raises(ValueError, match='unknown ablation'):
        parse_ablations('cim-revdet@nope')
    torch.manual_seed(0)
    for name in ('cim-revdet@gen-in-enhancer', 'cim-respix@enh-in-paste',
                 'cim-respix@gen-width128'):
        _one_step(build_spec(name, scale), scale)


# ------------------------------------------------------------------ report
def _fake_result(method, label, **kw):
    r = dict(method=method, label=label, status='ok', scale='cpu-small', device='cpu',
             pretrain=dict(iters=10, images=640, batch_size=64, wall_s=3.0, img_per_s=200.,
                           wall_img_per_s=190., step_s_mean=0.32, peak_mem_mb=900.,
                           mem_delta_mb=120., mem_method='test'),
             eval=dict(knn_top1=70., linear_top1=75., finetune_top1=80.),
             notes=[f'{label} note'], eval_s=5., total_s=9.)
    r.update(kw)
    return r


def test_report_writes_md_csv_json_png(tmp_path):
    cim = _fake_result('cim-respix', 'CIM-ResPix')
    cim['pretrain']['cim_breakdown'] = dict(
        profiled_steps=5, step_s=0.5, corruption_share=0.4, enhancer_share=0.5,
        other_share=0.1, segments_s=dict(tok_encode=0.05, gen_fwd=0.05, gen_bwd=0.05,
                                         sample=0.01, tok_decode=0.04, corrupt_other=0.,
                                         enh_fwd=0.1, enh_bwd=0.15, preprocess=0.01,
                                         optim_step=0.02, other=0.02))
    results = [cim, _fake_result('mae', 'MAE', eval=dict(knn_top1=72.)),
               dict(method='simclr', label='SimCLR', status='failed', error='boom')]
    meta = dict(scale='cpu-small', device='cpu', budget_desc='3 s', eval_desc='tiny',
                batch_size=64)
    flops = dict(dalle_encoder_112=52.1, dalle_decoder_14_to_112=58.5, vit_b16_fwd_224=33.7,
                 vit_b16_fwd_bwd_224=100.9, cim_respix_step=229., beit_step=160.,
                 cim_over_beit=1.43, targets={}, arch='ViT-B/16', mask_patches=75)
    paths = report.write_report(results, str(tmp_path), meta, flops)
    md = open(paths['md']).read()
    assert '| CIM-ResPix |' in md and '| MAE |' in md and '**failed**: boom' in md
    assert '**72.00**' in md  # best k-NN in bold
    assert 'Where a CIM step goes' in md and '40.0 %' in md
    assert '1.43x' in md
    data = json.load(open(paths['json']))
    assert [m['method'] for m in data['methods']] == ['cim-respix', 'mae', 'simclr']
    rows = open(paths['csv']).read().splitlines()
    assert rows[0].split(',')[:3] == ['method', 'label', 'status'] and len(rows) == 4
    for p in paths['png']:
        with open(p, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert {osp.basename(p) for p in paths['png']} == {
        'quality.png', 'cost.png', 'cim_breakdown.png'}


def test_report_only_names_the_results_tokenizer():
    """``--report-only`` builds no tokenizer: the report names the one in the results."""
    from benchmarks.runner import REPO_ROOT, report_meta
    tok = osp.join(REPO_ROOT, 'work_dirs', 'vq', 'tokenizer.pth')
    opts = dict(scale='cpu-small', device='cpu', budget_s=480., eval='all',
                eval_subset='medium', report_only=True, tokenizer_ckpt=None)
    cim = _fake_result('cim-revdet@temp0', 'x', settings=dict(tokenizer_id=f'{tok}:279323:17957'))
    assert report_meta(opts, [cim, _fake_result('mae', 'MAE')], 0.)['tokenizer'] == \
        osp.join('work_dirs', 'vq', 'tokenizer.pth')
    rnd = _fake_result('cim-revdet', 'x', settings=dict(tokenizer_id='random'))
    assert report_meta(opts, [rnd], 0.)['tokenizer'] == 'random VQ tokenizer (smoke test)'
    assert report_meta(opts, [_fake_result('mae', 'MAE')], 0.)['tokenizer'] is None


def test_report_seeds_median_spread_and_ties(tmp_path):
    def run(m, seed, lin, knn=60.):
        return _fake_result(m, m.upper(), seed=seed,
                            eval=dict(knn_top1=knn, linear_top1=lin, finetune_top1=50.))
    results = [run('a', 0, 80.), run('a', 1, 82.), run('a', 2, 81.),
               run('b', 0, 80.5, knn=70.), run('b', 1, 78.), run('b', 2, 79.),
               run('c', 0, 75.), run('c', 1, 76.), run('c', 2, 74.)]
    summary = {r['method']: r for r in report.summarize(results)}
    assert summary['a']['linear_top1'] == 81. and summary['a']['linear_top1_min'] == 80.
    assert summary['a']['linear_top1_max'] == 82. and summary['a']['n_ok'] == 3
    # b's range 78-80.5 overlaps a's 80-82: a tie; c's 74-76 does not
    assert report.ties(report.summarize(results), 'linear_top1') == {'a', 'b'}
    meta = dict(scale='cpu-small', budget_desc='3 s', eval_desc='tiny', batch_size=64,
                seeds=[0, 1, 2], command='cmd', seconds=75.)
    paths = report.write_report(results, str(tmp_path), meta)
    md = open(paths['md']).read()
    assert '**81.00 (80.00–82.00)**' in md and '**79.00 (78.00–80.50)**' in md
    assert '| C | **60.00 (60.00–60.00)** | 75.00 (74.00–76.00) |' in md  # k-NN: all tie
    assert 'median over 3 seeds' in md and '1 min 15 s' in md
    data = json.load(open(paths['json']))
    assert len(data['methods']) == 9 and len(data['summary']) == 3
    rows = open(paths['csv']).read().splitlines()
    assert len(rows) == 4 and 'linear_top1_min' in rows[0]
    assert len(open(tmp_path / 'results_seeds.csv').read().splitlines()) == 10
    table = report.readme_table(data)
    assert '| A | **60.00 (60.00–60.00)** | **81.00 (80.00–82.00)** |' in table
    assert 'median over the finished seeds of 3' in table and '`cmd`' in table
    assert '| 3/3 |' in table and 'unfinished' not in table
    # the table's cost: the finished runs' own wall time, however many resumes made it
    timed = dict(data, meta=dict(data['meta'], runs_seconds=3720.))
    assert 'wall time of the finished runs 1 h 02 min.' in report.readme_table(timed)
    assert 'of the finished runs (pre-training + evaluation, summed over every ' \
        'invocation that made them): 1 h 02 min' in report.markdown(
            results, dict(meta, runs_seconds=3720.))
    # a table cut short says which rows lack seeds
    cut = dict(data, methods=[dict(m, status='missing') if m['method'] == 'a' and m['seed'] > 0
                              else m for m in data['methods']])
    cut_table = report.readme_table(cut)
    row_a = next(line for line in cut_table.splitlines() if line.startswith('| A |'))
    assert '| 1/3 |' in row_a and '80.00' in row_a and '–' not in row_a  # one seed: no range
    assert 'unfinished' in cut_table
    # the per-run report tells seeds not run yet from failed ones
    rows = [dict(r, status='missing', error='no result.json') if r['method'] == 'a' and
            r['seed'] == 1 else dict(r, status='failed', error='ContendedRun: x')
            if r['method'] == 'a' and r['seed'] == 2 else r for r in results]
    md_cut = report.markdown(rows, meta)
    row_a = next(line for line in md_cut.splitlines() if line.startswith('| A |'))
    assert row_a.endswith('| 1 of 3 seeds; 1 not run yet; **1 failed**: ContendedRun: x |')
    rows = [dict(r, status='missing') if r['method'] == 'a' and r['seed'] else r
            for r in results]
    row_a = next(line for line in report.markdown(rows, meta).splitlines()
                 if line.startswith('| A |'))
    assert row_a.endswith('| 1 of 3 seeds; 2 not run yet |') and 'failed' not in row_a
    # ablation reports add the change against the demo recipe
    md = report.markdown([run('cim-revdet', 0, 80.), run('cim-revdet@temp0', 0, 81.5)],
                         dict(meta, ablation=True))
    assert '| CIM-REVDET@TEMP0 | +0.00 | +1.50 | +0.00 | +0 |' in md


# ------------------------------------------------------- resume and failures
def test_finished_method_is_skipped_and_stale_one_rerun(tmp_path, monkeypatch):
    opts = benchmark_opts(tmp_path, methods='mae,simmim')
    fp = runner.fingerprint(dict(opts, tokenizer_id=runner.tokenizer_id(None)))
    fp = dict(fp, recipe=runner.method_recipes(opts, ['mae'])['mae'])
    # mae: finished with these settings and recipe; simmim: finished with another budget
    done = _fake_result('mae', 'MAE', settings=fp)
    os.makedirs(tmp_path / 'mae')
    json.dump(done, open(tmp_path / 'mae' / 'result.json', 'w'))
    stale = _fake_result('simmim', 'SimMIM', settings=dict(fp, budget_s=999.))
    os.makedirs(tmp_path / 'simmim')
    json.dump(stale, open(tmp_path / 'simmim' / 'result.json', 'w'))
    calls = []

    def fake_run_one(settings, in_process):
        calls.append(settings['method'])
        r = _fake_result(settings['method'], 'SimMIM', settings=settings['fingerprint'])
        json.dump(r, open(osp.join(settings['work_dir'], settings['method'],
                                   'result.json'), 'w'))
        return True, ''

    monkeypatch.setattr(runner, 'run_one', fake_run_one)
    assert runner.run_benchmark(opts) == 0
    assert calls == ['simmim']  # mae skipped
    assert runner.finished(str(tmp_path), 'mae', fp)[0]
    md = open(tmp_path / 'results.md').read()
    assert '| MAE |' in md and '| SimMIM |' in md
    # a second run re-runs nothing
    calls.clear()
    assert runner.run_benchmark(dict(opts)) == 0
    assert calls == []


def test_seeds_resume_per_method_and_seed(tmp_path, monkeypatch):
    opts = benchmark_opts(tmp_path, methods='mae,simmim', seeds=2)
    calls = []

    def fake_run_one(settings, in_process):
        calls.append(settings['run_name'])
        assert settings['fingerprint']['seed'] == settings['seed']
        d = osp.join(settings['work_dir'], settings['run_name'])
        os.makedirs(d, exist_ok=True)
        json.dump(_fake_result(settings['method'], settings['method'], seed=settings['seed'],
                               settings=settings['fingerprint']),
                  open(osp.join(d, 'result.json'), 'w'))
        return True, ''

    monkeypatch.setattr(runner, 'run_one', fake_run_one)
    assert runner.run_benchmark(opts) == 0
    # seed-major: every method's first seed before any second seed
    assert calls == ['mae', 'simmim', 'mae_seed1', 'simmim_seed1']
    os.remove(tmp_path / 'simmim_seed1' / 'result.json')  # e.g. interrupted
    calls.clear()
    assert runner.run_benchmark(dict(opts)) == 0
    assert calls == ['simmim_seed1']
    data = json.load(open(tmp_path / 'results.json'))
    assert [(m['method'], m['seed']) for m in data['methods']] == [
        ('mae', 0), ('mae', 1), ('simmim', 0), ('simmim', 1)]
    # the fingerprint only names the new options when they are not at their default
    fp = runner.fingerprint(dict(opts, tokenizer_id='x'))
    assert 'track' not in fp and 'clock' not in fp
    assert runner.fingerprint(dict(opts, clock='process'))['clock'] == 'process'
    # the tokenizer only matters to CIM / BEiT runs
    json.dump(_fake_result('mae', 'MAE', settings=dict(fp, tokenizer_id='other')),
              open(tmp_path / 'mae' / 'result.json', 'w'))
    assert runner.finished(str(tmp_path), 'mae', fp)[0]
    os.makedirs(tmp_path / 'cim-revdet_seed1')
    json.dump(_fake_result('cim-revdet', 'CIM', settings=dict(fp, tokenizer_id='other')),
              open(tmp_path / 'cim-revdet_seed1' / 'result.json', 'w'))
    assert runner.finished(str(tmp_path), 'cim-revdet_seed1', fp) == (
        False, 'settings changed (tokenizer_id)')


def test_suite_runs_vit_resnet_and_ablations(tmp_path, monkeypatch, fake_fashion_mnist,
                                             capsys):
    import benchmark
    seen = []
    monkeypatch.setattr(runner, 'run_benchmark', lambda o: seen.append(o) or 0)
    assert benchmark.main(['--suite', '--seeds', '3', '--budget-s', '60', '--ablate-budget-s',
                           '480', '--work-dir', str(tmp_path), '--data-root',
                           fake_fashion_mnist]) == 0
    assert [(o['track'], o['ablate'], o['seeds'], o['budget_s']) for o in seen] == [
        ('vit', None, 3, 60.), ('resnet', None, 3, 60.), ('vit', 'all', 1, 480.)]
    assert [osp.basename(o['work_dir']) for o in seen] == ['vit', 'resnet', 'ablation']
    out = capsys.readouterr().out
    assert 'suite: vit: 33 run(s)' in out and 'resnet: 33 run(s)' in out and 'ETA' in out


def test_process_clock_counts_cpu_time_over_threads():
    import time

    from benchmarks.pretrain import get_clock, process_clock
    assert get_clock('wall') is time.perf_counter
    t0, w0 = process_clock(), time.perf_counter()
    time.sleep(0.2)  # waiting costs no CPU time
    assert process_clock() - t0 < 0.05 and time.perf_counter() - w0 >= 0.2
    t0 = process_clock()
    x = 0
    while process_clock() - t0 < 0.05:  # busy: it advances
        x += 1
    with pytest.raises(ValueError, match='unknown clock'):
        get_clock('sundial')


def test_failed_method_others_still_run_then_exit_1(tmp_path, monkeypatch, capsys):
    opts = benchmark_opts(tmp_path, methods='mae,simclr,random')
    ran = []

    def fake_run_one(settings, in_process):
        m = settings['method']
        ran.append(m)
        if m == 'simclr':
            return False, 'RuntimeError: boom'
        os.makedirs(osp.join(settings['work_dir'], m), exist_ok=True)
        json.dump(_fake_result(m, m, settings=settings['fingerprint']),
                  open(osp.join(settings['work_dir'], m, 'result.json'), 'w'))
        return True, ''

    monkeypatch.setattr(runner, 'run_one', fake_run_one)
    assert runner.run_benchmark(opts) == 1
    assert ran == ['mae', 'simclr', 'random']
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'simclr (RuntimeError: boom)' in err[0]
    assert '**failed**: RuntimeError: boom' in open(tmp_path / 'results.md').read()


def test_unknown_method_is_one_line_error(tmp_path, capsys):
    from benchmark import main
    with pytest.raises(SystemExit) as e:
        main(['--methods', 'cim-respix,nope', '--work-dir', str(tmp_path)])
    assert e.value.code == 1
    assert 'unknown method(s) nope' in capsys.readouterr().err


# --------------------------------------------------------------- smoke runs
def test_smoke_run_cpu_small(tmp_path, fake_fashion_mnist):
    """The smoke command, in-process and with a random tokenizer."""
    from benchmark import main
    # the flow, not the CPU-share guard (tests/benchmark/test_benchmark_cpu_share.py):
    # a loaded machine must not fail it
    rc = main(['--min-cpu-share', '0', '--scale', 'cpu-small', '--methods', 'cim-respix,mae',
               '--budget-s', '3',
               '--eval-subset', 'small', '--work-dir', str(tmp_path), '--in-process',
               '--tokenizer', 'random', '--data-root', fake_fashion_mnist])
    assert rc == 0
    for f in ('results.md', 'results.csv', 'results.json', 'quality.png', 'cost.png',
              'cim_breakdown.png', 'cim-respix/result.json', 'mae/result.json'):
        assert (tmp_path / f).is_file(), f
    data = json.load(open(tmp_path / 'results.json'))
    by = {m['method']: m for m in data['methods']}
    assert by['cim-respix']['pretrain']['iters'] >= 1
    br = by['cim-respix']['pretrain']['cim_breakdown']
    assert br['profiled_steps'] >= 1 and 0 < br['corruption_share'] < 1
    for m in by.values():
        for k in ('knn_top1', 'linear_top1', 'finetune_top1'):
            assert 0 <= m['eval'][k] <= 100
        assert m['pretrain']['img_per_s'] > 0 and m['pretrain']['peak_mem_mb'] > 0


def test_smoke_run_resnet_track_seeds_process_clock(tmp_path, fake_fashion_mnist):
    """--track resnet with 2 seeds on the process clock, in-process."""
    from benchmark import main
    rc = main(['--min-cpu-share', '0', '--track', 'resnet', '--methods', 'mec,random',
               '--budget-s', '0.5',
               '--seeds', '2', '--clock', 'process', '--eval-subset', 'small', '--eval', 'knn',
               '--work-dir', str(tmp_path), '--in-process', '--data-root',
               fake_fashion_mnist])
    assert rc == 0
    data = json.load(open(tmp_path / 'results.json'))
    assert [(m['method'], m['seed']) for m in data['methods']] == [
        ('mec', 0), ('mec', 1), ('random', 0), ('random', 1)]
    mec = data['methods'][0]
    assert mec['pretrain']['clock'] == 'process' and mec['pretrain']['iters'] >= 1
    assert mec['pretrain']['process_s'] > 0 and mec['settings']['track'] == 'resnet'
    assert data['meta']['track'] == 'resnet' and 'track `resnet`' in open(
        tmp_path / 'results.md').read()


@pytest.mark.skipif(not E2E, reason='slow end-to-end run: set CIM_BENCH_E2E=1')
def test_end_to_end_all_methods_subprocess(tmp_path, fake_fashion_mnist):
    from benchmark import main
    rc = main(['--min-cpu-share', '0', '--scale', 'cpu-small', '--budget-s', '5',
               '--eval-subset', 'small',
               '--work-dir', str(tmp_path), '--tokenizer', 'random', '--flops',
               '--data-root', fake_fashion_mnist])
    assert rc == 0
    data = json.load(open(tmp_path / 'results.json'))
    assert all(m['status'] == 'ok' for m in data['methods'])
    assert 40 < data['flops']['dalle_encoder_112'] < 65
    assert 1.0 < data['flops']['cim_over_beit'] < 3.0


def test_missing_data_root_is_one_line_error(tmp_path, capsys):
    from benchmark import main
    with pytest.raises(SystemExit) as e:
        main(['--methods', 'mae', '--work-dir', str(tmp_path / 'w'),
              '--data-root', str(tmp_path / 'nowhere')])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'no Fashion-MNIST in' in err[0] and '--data-root' in err[0]
    assert not (tmp_path / 'w').exists()  # nothing ran
