"""``tools/gpu_check.sh --dry-run``: every stage of the GPU acceptance check at
toy size on the CPU, run once for the module."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import results as R
from benchmarks.gpu_check.check import STAGES
from benchmarks.gpu_check.settings import LARGE_BATCH_METHODS, METHODS

ROOT = Path(__file__).resolve().parents[2]


def without_seg_stack_env(folder: Path) -> dict:
    """An environment whose Pythons (the check and its tools/train.py runs) find no
    mmseg and no mmcv.ops, as on a bare GPU machine: a ``sitecustomize`` that
    imports ``tests/tools/no_seg_stack.py`` first."""
    (folder / 'sitecustomize.py').write_text(
        'import sys\n'
        f'sys.path.insert(0, {str(ROOT / "tests" / "tools")!r})\n'
        'import no_seg_stack  # noqa: F401,E402\n'
        'sys.path.pop(0)\n')
    old = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), *old]))


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory) -> tuple[dict, str, subprocess.CompletedProcess]:
    """The dry run as on a bare GPU machine: without mmseg and mmcv's compiled ops."""
    out = tmp_path_factory.mktemp('gpu_check')
    env = dict(without_seg_stack_env(tmp_path_factory.mktemp('no_seg')), PYTHON=sys.executable,
               OMP_NUM_THREADS='1')
    probe = subprocess.run([sys.executable, '-c', 'import mmseg'], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and 'mmseg' in probe.stderr  # the blocker is on
    proc = subprocess.run(['bash', str(ROOT / 'tools' / 'gpu_check.sh'), '--dry-run',
                           '--out', str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    res = json.loads((out / 'results.json').read_text())
    failed = {k: v.get('error') for k, v in res['stages'].items() if not v['ok']}
    assert proc.returncode == 0, (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    return res, (out / 'results.md').read_text(), proc


def test_every_stage_runs_and_every_figure_is_finite(dry_run):
    res, _, _ = dry_run
    assert res['dry_run'] is True and res['status'] == 'complete'
    assert list(res['stages']) == list(STAGES)
    assert all(st['ok'] for st in res['stages'].values()), res['stages']
    assert R.missing_fields(res) == [] and res['missing_fields'] == []
    for f in R.required_fields(res):  # the same check, spelled out
        v = R.get(res, f)
        assert isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v)), f
    assert res['wall_s'] < 180


def test_figures_are_consistent(dry_run):
    res, _, _ = dry_run
    steps, sm = res['steps'], res['summary']
    for m in METHODS:
        x = steps[m]
        assert x['batch_size'] == 4 and x['step_s'] > 0 and x['flops_per_step'] > 0
        assert x['img_per_s'] == pytest.approx(4 / x['step_s'])
        assert x['mfu'] == pytest.approx(x['flops_per_step'] / x['step_s'] / 1e12
                                         / res['settings']['peak_tflops'])
        assert all(math.isfinite(v) for v in x['losses'].values())
    # CIM's step does BEiT's work plus the corruption path: more FLOPs per image
    assert sm['flops_cim_respix_over_beit'] > 1
    assert sm['cim_respix_over_beit'] == pytest.approx(
        steps['cim-respix']['step_s'] / steps['beit']['step_s'])
    assert res['loader']['img_per_s'] > 0 and res['loader']['batches'] >= 3
    # the real recipe pipeline decoded the JPEGs
    assert res['loader']['pipeline'][0] in ('SafeLoadImageFromFile', 'LoadImageFromFile')
    assert 'RandomResizedCrop' in res['loader']['pipeline']
    # the device-decode loader: the JPEGs travel, the device stage is timed
    dd = res['stages']['loader_device_decode']
    assert dd['ok'], dd.get('error')
    dd = res['loader_device_decode']
    assert dd['pipeline'][0] == 'LoadJPEGBytes' and dd['worker_decoded'] == 0
    assert dd['device_stage_ms_per_batch'] > 0
    assert dd['img_per_s'] == pytest.approx(min(dd['worker_img_per_s'],
                                                dd['device_stage_img_per_s']))
    assert res['assets']['jpegs']['num'] == 16
    # the DALL-E files were official-format pickles, read by the safe loader
    assert res['assets']['dalle']['encoder_mb'] > 0
    # decode: an fp32 tokenizer is not reached by the outer bf16 autocast; a
    # bf16 one is, and differs a little
    dc = res['decode']
    assert dc['fp32_under_autocast_max_diff'] == 0
    assert 0 < dc['max_abs_diff_bf16_fp32'] < 0.1
    assert dc['dtypes'] == dict(bf16='torch.float32', fp32_outer='torch.float32')
    # kill-and-resume through tools/train.py (fp32 on CPU): same losses
    rs = res['amp_resume']
    assert rs['equal'] is True and rs['iters'] == 2 * rs['killed_after']
    assert rs['resumed_losses'] == rs['uninterrupted_losses']


def test_markdown_names_the_device_and_says_dry_run(dry_run):
    res, md, proc = dry_run
    assert res['device']['name'] in md and res['device']['torch'] in md
    assert '**dry run**' in md and res['date'] in md
    for label in ('CIM-ResPix', 'CIM-RevDet', 'BEiT v1', 'MAE', 'CIM-ResPix R50',
                  'CIM-ResPix ConvNeXt-T', 'CIM-ResPix Swin-T'):
        assert f'| {label} | 4 |' in md
    for label in ('CIM-ResPix', 'BEiT v1'):
        assert f'| {label} | 8 |' in md  # the large batch
    # the first H200 run stays as the before row, read from its results.json
    assert '| before: CIM-ResPix, eager (NVIDIA H200, d285d90) | 128 | 0.2571 |' in md
    assert '| before: BEiT v1, eager | 128 | 0.1733 |' in md
    assert 'complete' in proc.stdout.splitlines()[-1]


# every fast-path switch of the recipes, by method, as read back from the run
CIM_SWITCHES = {'merge_groups', 'sdpa', 'channels_last_tokenizer', 'lowres_1x1',
                'bf16_decode', 'num_masked', 'batched_masks', 'separable_window',
                'cudnn_benchmark'}
EXPECTED_ON = {
    'cim-respix': CIM_SWITCHES | {'fused_adamw', 'compile'},
    'cim-revdet': (CIM_SWITCHES - {'separable_window'}) | {'fused_adamw'},
    'beit': {'merge_groups', 'fused_adamw', 'sdpa', 'channels_last_tokenizer',
             'lowres_1x1', 'bf16_decode', 'cudnn_benchmark'},
    'cim-resnet50': CIM_SWITCHES | {'channels_last_enhancer'},
}


def test_dry_run_names_every_fast_path_switch_as_on(dry_run):
    res, md, _ = dry_run
    on = res['summary']['switches_on']
    for m, want in EXPECTED_ON.items():
        assert want <= set(on[m]), (m, res['steps'][m]['switches'])
        if m in LARGE_BATCH_METHODS:  # the same switches (compile: traced once, first)
            assert set(on[f'{m}@large_batch']) | {'compile'} == set(on[m]) | {'compile'}
    sw = res['steps']['cim-respix']['switches']
    assert sw['num_masked'] == 'on: 6'  # the toy mask's count, not the recipe's 75
    assert sw['merge_groups'].startswith('on: 2 param groups')
    # the compile path ran (backend eager) for the first method: its blocks, a
    # compile time apart from the step time; later ones name what they would compile
    x = res['steps']['cim-respix']
    assert x['compiled'] == ['backbone.layers.0', 'backbone.layers.1',
                             'generator.backbone.layers.0']  # the tokenizer's compile: off
    assert x['compile_s'] > 0 and x['first_step_s'] > x['step_s']
    assert res['steps']['beit']['switches']['compile'] == (
        'skipped: no CUDA (would compile backbone.layers)')
    assert 'generator.backbone.layers' in res['steps']['cim-resnet50']['switches']['compile']
    assert 'switches found on' in md and 'separable_window' in md


def test_host_syncs_and_loader_are_set_against_each_step(dry_run):
    res, _, _ = dry_run
    sm = res['summary']
    for m in METHODS:
        x = res['steps'][m]
        assert x['host_syncs_per_step'] == x['sync_ops_per_step']['total'] >= 0
        assert x['host_syncs_per_step'] == sum(x['sync_ops_per_step']['by_op'].values())
        assert sm['loader_over_step'][m] == pytest.approx(
            res['loader']['img_per_s'] / x['img_per_s'])
    # the CIM steps read almost nothing back (the clip's norm): masks in one
    # copy, masked-only generator, and fused AdamW, whose step counts stay tensors
    for m in ('cim-respix', 'cim-revdet', 'cim-resnet50'):
        assert res['steps'][m]['host_syncs_per_step'] <= 2, res['steps'][m]['sync_ops_per_step']
    big = res['large_batch']
    assert {m: big[m]['batch_size'] for m in LARGE_BATCH_METHODS} == {
        m: 8 for m in LARGE_BATCH_METHODS}
    assert sm['large_batch_cim_respix_over_beit'] == pytest.approx(
        big['cim-respix']['step_s'] / big['beit']['step_s'])


def test_results_of_a_failed_stage_are_named():
    res = dict(settings=dict(target_ratio=1.5, target_mfu=0.4), steps={}, loader={})
    sm = R.summarise(res)
    assert sm['cim_respix_over_beit'] is None and all(v is None for v in sm['targets'].values())
    res['summary'] = sm
    assert 'steps.cim-respix.step_s' in R.missing_fields(res)


def test_out_of_memory_halves_the_batch(monkeypatch):
    import torch

    from benchmarks.gpu_check import steps
    from benchmarks.gpu_check.context import CheckContext
    from benchmarks.gpu_check.settings import toy_settings
    tried = []

    def fake_time_at(ctx, method, bs, *args):
        tried.append(bs)
        if bs > 2:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory')
        return dict(step_s=1.)

    monkeypatch.setattr(steps, '_time_at', fake_time_at)
    s = toy_settings(batch_size=8)
    ctx = CheckContext(settings=s, device=torch.device('cpu'), tmp='', log=lambda m: None,
                       batch_size=8)
    out = steps.time_method(ctx, 'mae')
    assert tried == [8, 4, 2] and out['batch_size'] == ctx.batch_size == 2
    assert 'halved from 8 to 2' in out['note']
    ctx.batch_size = 8
    s.min_batch = 4  # 2 is below the floor: the error is raised
    with pytest.raises(torch.cuda.OutOfMemoryError):
        steps.time_method(ctx, 'mae')


def test_a_stage_past_its_limit_is_recorded_and_the_run_goes_on():
    import time

    import torch

    from benchmarks.gpu_check.check import _run_stage
    from benchmarks.gpu_check.context import CheckContext
    from benchmarks.gpu_check.settings import toy_settings
    ctx = CheckContext(settings=toy_settings(), device=torch.device('cpu'), tmp='',
                       log=lambda m: None)
    res: dict = dict(steps={})
    slow, ok = dict(ok=False), dict(ok=False)
    t0 = time.perf_counter()
    _run_stage('decode', lambda: time.sleep(5), 0.3, slow, res, ctx, lambda m: None)
    assert time.perf_counter() - t0 < 2
    assert not slow['ok'] and slow['error'].startswith('StageTimeout')
    _run_stage('matmul', lambda: dict(tflops=1.), 5, ok, res, ctx, lambda m: None)
    assert ok['ok'] and res['matmul'] == dict(tflops=1.)


def test_synthetic_batch_trains_when_the_loader_fails(tmp_path):
    """The steps' fallback batch has the loader batch's form: a CIM step runs on it."""
    import torch

    from benchmarks.gpu_check.assets import write_official_dalle
    from benchmarks.gpu_check.context import CheckContext
    from benchmarks.gpu_check.models import build_gpu_scale, synthetic_batch
    from benchmarks.gpu_check.settings import TOY_DALLE, toy_settings
    from benchmarks.gpu_check.steps import time_method
    write_official_dalle(str(tmp_path), TOY_DALLE)
    scale = build_gpu_scale(str(tmp_path), 2, toy=True)
    batch = synthetic_batch(scale, 2)
    assert batch['inputs'].shape == (2, 3, 64, 64) and batch['inputs'].dtype == torch.uint8
    assert int(batch['data_samples'][0].mask.sum()) == scale.beit_mask['num_masking_patches']
    s = toy_settings(batch_size=2)
    s.timed_steps = 1
    ctx = CheckContext(settings=s, device=torch.device('cpu'), tmp=str(tmp_path),
                       log=lambda m: None, scale=scale, batch=batch, batch_size=2,
                       compile_traced=True)  # the dry run traces the compile path
    out = time_method(ctx, 'cim-respix', count=False)
    assert out['step_s'] > 0 and set(out['losses']) >= {'loss_gen', 'loss_enh'}


def test_pack_deps_for_a_bare_gpu_machine(tmp_path):
    """``--pack-deps``: Python files only, the stand-ins import and answer."""
    import importlib.util

    from benchmarks.gpu_check.deps import DISTRIBUTIONS, pack
    got = pack(str(tmp_path))
    assert set(got) == set(DISTRIBUTIONS) and got['mmengine'] and got['DALL-E'] == '0.1'
    files = [p for p in (tmp_path / 'site').rglob('*') if p.is_file()]
    assert not [p for p in files if p.suffix in ('.so', '.pyc')]
    site = tmp_path / 'site'
    for pkg in ('mmengine', 'mmcv', 'mmpretrain', 'dall_e'):
        assert (site / pkg / '__init__.py').is_file()
    assert (site / 'mmpretrain' / '.mim' / 'configs' / '_base_' / 'default_runtime.py').is_file()
    shim_file = tmp_path / 'compat' / 'pkg_resources' / 'pkg_resources' / '__init__.py'
    spec = importlib.util.spec_from_file_location('pkg_resources_shim', shim_file)
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    assert shim.get_distribution('mmengine').version == got['mmengine']
    with pytest.raises(shim.DistributionNotFound):
        shim.get_distribution('no-such-distribution')
    assert (tmp_path / 'compat' / 'distutils' / 'distutils' / 'errors.py').is_file()


def test_dry_run_counts_recompiles_and_graph_breaks(dry_run):
    """Every step reports dynamo's counts; the traced compile path (CIM-ResPix,
    backend eager) compiles its blocks in the first step and never again."""
    res, md, _ = dry_run
    for m in METHODS:
        dyn = res['steps'][m]['dynamo']
        assert dyn['recompiles'] == 0 and dyn['graph_breaks'] == 0, (m, dyn)
    assert res['steps']['cim-respix']['dynamo']['frames_first_step'] >= 2
    assert res['regressions'] == [] and 'REGRESSION' not in md
    assert 'recompiles / graph breaks' in md


def test_dry_run_times_each_gpu_switch_on_and_off(dry_run):
    from benchmarks.gpu_check.fast_path import GPU_SWITCHES
    res, md, _ = dry_run
    sw = res['switches']['cim-respix']
    assert set(sw) == set(GPU_SWITCHES)
    shipped = res['steps']['cim-respix']['step_s']
    assert {k: v['shipped'] for k, v in sw.items()} == dict(
        compile_blocks='on', compile_tokenizer='off', cudnn_benchmark='on',
        flex_attention='off')
    for name, v in sw.items():
        assert (v['step_on_s'] if v['shipped'] == 'on' else v['step_off_s']) == shipped
        assert v['flipped']['step_s'] > 0 and v['on_over_off'] > 0
    # the tokenizer's compile, switched on, is traced too: one graph each, no recompile
    tok = sw['compile_tokenizer']['flipped']
    assert {'tokenizer.encoder.forward', 'tokenizer.decoder.forward_features'} <= set(
        tok['compiled'])
    assert tok['dynamo']['frames_first_step'] >= 4  # the blocks' graphs and the tokenizer's
    assert tok['dynamo']['recompiles'] == 0 and tok['dynamo']['graph_breaks'] == 0
    assert sw['compile_blocks']['flipped']['compile_status'].startswith('off')
    assert '## GPU switches on and off' in md


def test_dry_run_trains_and_traces_the_flex_switch_on_its_cpu_stand_in(dry_run):
    """FlexAttention, shipped off, is flipped on in both backbones and trained
    through the recipe's compiled blocks (traced whole: no graph break, no
    recompile) on its reference kernel; the counting modes, which FlexAttention's
    eager call refuses, are left out of that step and say so."""
    res, md, _ = dry_run
    flex = res['switches']['cim-respix']['flex_attention']
    assert flex['shipped'] == 'off' and flex['step_off_s'] == res['steps']['cim-respix']['step_s']
    on = flex['flipped']
    assert on['attn_impl'] == 'flex' and res['steps']['cim-respix']['switches']['attn_impl'] == 'sdpa'
    assert {'backbone.layers.0', 'generator.backbone.layers.0'} <= set(on['compiled'])
    assert on['dynamo']['frames_first_step'] >= 2
    assert on['dynamo']['recompiles'] == 0 and on['dynamo']['graph_breaks'] == 0
    assert on['host_syncs_per_step'] is None  # not counted, see below
    assert 'reference kernel on the CPU' in on['stand_in'] and 'flex_attention (flipped step' in md


def test_the_flex_stand_in_lifts_the_cpu_backward_check_inside_its_scope_only():
    import torch
    import torch.nn.attention.flex_attention as torch_flex

    from benchmarks.gpu_check.fast_path import cpu_stand_in

    def train_step() -> torch.Tensor:
        q = torch.randn(1, 2, 8, 4, requires_grad=True)
        torch_flex.flex_attention(q, q, q).sum().backward()
        return q.grad

    with cpu_stand_in('flex_attention', on_cuda=False) as note:
        assert 'reference kernel' in note and train_step().abs().sum() > 0
    with pytest.raises(Exception, match='(?i)cpu|device'):
        train_step()
    for name, on_cuda in (('flex_attention', True), ('compile_blocks', False)):
        with cpu_stand_in(name, on_cuda) as note:
            assert note is None
            with pytest.raises(Exception, match='(?i)cpu|device'):
                train_step()


def test_dry_run_times_the_enhancer_compile_on_and_off(dry_run):
    """The feature-map recipes ship ``compile_enhancer`` off; the check times
    each with its enhancer's stages compiled (traced whole: no graph break, no
    recompile) against the step as shipped."""
    res, md, _ = dry_run
    rows = res['enhancer_compile']
    assert set(rows) == {'cim-resnet50', 'cim-convnext-t', 'cim-swin-t'}
    for m, sws in rows.items():
        v = sws['compile_enhancer']
        assert v['shipped'] == 'off' and v['step_off_s'] == res['steps'][m]['step_s']
        flipped = v['flipped']
        assert flipped['step_s'] == v['step_on_s'] > 0
        assert any(n.startswith('backbone.') for n in flipped['compiled']), flipped
        assert flipped['dynamo']['recompiles'] == 0 and flipped['dynamo']['graph_breaks'] == 0
        # as shipped, only the generator's layers compile
        status = res['steps'][m]['switches']['compile']
        assert 'generator.backbone.layers' in status, status
        assert 'backbone.stages' not in status and 'backbone.layer1' not in status, status
    assert '| CIM-ResPix ConvNeXt-T | compile_enhancer | off |' in md
    assert '| CIM-ResPix Swin-T | compile_enhancer | off |' in md


def test_dry_run_records_the_project_commit(dry_run):
    import subprocess as sp
    res, _, _ = dry_run
    head = sp.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'],
                  capture_output=True, text=True).stdout.strip()
    assert res['device']['commit'].split('+')[0] == head


def test_commit_without_git_comes_from_the_packed_deps(tmp_path, monkeypatch):
    from benchmarks.gpu_check import check
    from benchmarks.gpu_check.deps import read_commit, write_commit
    line = write_commit(str(tmp_path))
    assert line and read_commit(str(tmp_path)) == line
    monkeypatch.setattr(check, '_run', lambda cmd: None)  # a copy of the tree without .git
    monkeypatch.setenv('CIM_GPU_DEPS', str(tmp_path))
    assert check.project_commit() == f'{line} (recorded by --pack-deps)'
    monkeypatch.setenv('CIM_GPU_DEPS', str(tmp_path / 'none'))
    assert check.project_commit() == 'unknown'


def _step(step_s: float, bs: int = 128, recompiles: int = 0, breaks: int = 0) -> dict:
    return dict(step_s=step_s, batch_size=bs, dynamo=dict(
        recompiles=recompiles, graph_breaks=breaks, steps_after_first=12,
        reasons={'Data-dependent branching': breaks} if breaks else {}))


def test_regressions_slower_than_the_device_row_or_recompiling():
    from benchmarks.gpu_check.regressions import find_regressions
    ref = {'NVIDIA H200': dict(steps_s={'cim-respix@128': 0.14, 'cim-respix@256': 0.28})}
    res = dict(dry_run=False, device=dict(name='NVIDIA H200'),
               steps={'cim-respix': _step(0.15), 'beit': _step(0.5)},  # beit: no row
               large_batch={'cim-respix': _step(0.81, bs=256)})
    lines = find_regressions(res, ref, tolerance=0.10)
    assert len(lines) == 1 and lines[0].startswith('cim-respix (large batch): 0.8100 s/step')
    res['steps']['cim-respix'] = _step(0.16, recompiles=7)  # +14 %, and recompiling
    lines = find_regressions(res, ref, tolerance=0.10)
    assert len(lines) == 3 and any('7 frames compiled again' in x for x in lines)
    res['steps']['cim-respix'] = _step(0.10, breaks=2)
    assert any('2 graph breaks' in x and 'Data-dependent' in x
               for x in find_regressions(res, ref))
    # another card, or a dry run: no step row to hold against, the counts still count
    other = dict(res, device=dict(name='NVIDIA H100 80GB HBM3'))
    assert [x for x in find_regressions(other, ref) if 's/step' in x] == []
    dry = dict(res, dry_run=True, device=dict(name='NVIDIA H200'))
    assert [x for x in find_regressions(dry, ref) if 's/step' in x] == []


def test_the_shipped_reference_has_the_measured_h200_rows():
    from benchmarks.gpu_check.regressions import load_reference
    rows = load_reference()['NVIDIA H200']['steps_s']
    assert rows['cim-respix@128'] == 0.1399 and rows['beit@128'] == 0.1082


def test_a_regression_is_refused_in_results_and_exit_status(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location('gpu_check_tool', ROOT / 'tools' / 'gpu_check.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    import benchmarks.gpu_check.check as check
    res = dict(status='complete', regressions=['cim-respix: 0.8111 s/step ...'])
    monkeypatch.setattr(check, 'run_check', lambda *a, **k: res)
    assert tool.main(['--dry-run', '--out', str(tmp_path)]) == 3
    res['regressions'] = []
    assert tool.main(['--dry-run', '--out', str(tmp_path)]) == 0
    md = R.markdown(dict(settings=dict(dry_run=False, arch='x', img_size=224, peak_tflops=1,
                                       peak_note='', flop_ratio_expected=1.43, target_ratio=1.5,
                                       target_mfu=0.4, large_batch=256),
                         regressions=['cim-respix: slower'], status='REGRESSION (1)'))
    assert '## REGRESSION' in md and '- cim-respix: slower' in md


def test_pack_deps_takes_mmcv_lite_for_mmcv(monkeypatch):
    """A light venv has mmcv as the ``mmcv-lite`` distribution: packed all the same."""
    import importlib.metadata as md

    from benchmarks.gpu_check import deps
    real = md.distribution

    def only_lite(name):
        if name == 'mmcv':
            raise md.PackageNotFoundError(name)
        return real('mmcv' if name == 'mmcv-lite' else name)

    monkeypatch.setattr(deps.md, 'distribution', only_lite)
    assert deps._distribution('mmcv').metadata['Name'] == real('mmcv').metadata['Name']
    with pytest.raises(md.PackageNotFoundError):
        deps._distribution('no-such-distribution')
