"""benchmarks/results/: the tracks and tools write there by default, git keeps what they
report and leaves out the rest, and the kept runs rebuild their tables."""
from __future__ import annotations

import json
import os
import os.path as osp

import pytest
from helpers import REPO_ROOT, load_tool

from benchmarks import seg_runner
from benchmarks.io import read_json
from benchmarks.paths import DEFAULT_WORK_DIRS, RESULTS_DIR
from cim_mm.utils.errors import UserError

RESULTS = osp.join(REPO_ROOT, RESULTS_DIR)
#: the sets whose runs were not kept, only their tables
TABLES_ONLY = {'seg_iters120', 'seg_iters480', 'seg_croco_control'}


def _benchmark():
    return load_tool('benchmark.py')


def kept_names() -> set[str]:
    """The file names ``benchmarks/results/.gitignore`` keeps. Its shape is checked:
    ignore all (``*``), re-include folders (``!*/``), then only ``!<name>`` lines, so
    a file is kept exactly when its name is one of those."""
    lines = [ln.strip() for ln in open(osp.join(RESULTS, '.gitignore'))
             if ln.strip() and not ln.startswith('#')]
    assert lines[:2] == ['*', '!*/'], lines[:2]
    rest = lines[2:]
    assert all(ln.startswith('!') and '/' not in ln and '*' not in ln for ln in rest), rest
    return {ln[1:] for ln in rest}


@pytest.mark.parametrize('argv, folder', [
    ([], 'vit'), (['--track', 'resnet'], 'resnet'), (['--track', 'convnext'], 'convnext'),
    (['--track', 'swin'], 'swin'), (['--ablate', 'all'], 'ablation'),
    (['--scale', 'gpu'], 'vit_gpu')])
def test_tracks_write_into_their_results_folder_by_default(argv, folder):
    tool = _benchmark()
    opts = tool.options(tool.parse_args(argv), argv)
    assert opts['work_dir'] == osp.join(RESULTS, folder)
    # an explicit --work-dir still wins
    opts = tool.options(tool.parse_args(argv + ['--work-dir', 'w']), argv)
    assert opts['work_dir'] == 'w'


def test_seg_track_and_suite_defaults(monkeypatch):
    tool = _benchmark()
    opts = tool.seg_options(tool.parse_args(['--track', 'seg']))
    assert opts['work_dir'] == osp.join(RESULTS, 'seg')
    assert opts['tracks'] == ['vit', 'resnet']
    assert opts['pretrained_dirs'] == {t: osp.join(RESULTS, t)
                                       for t in ('vit', 'resnet', 'convnext', 'swin')}
    from benchmarks import runner
    seen: list = []
    monkeypatch.setattr(runner, 'run_benchmark', lambda o: seen.append(o['work_dir']) or 0)
    monkeypatch.setattr(runner, 'rough_plan', lambda o: (0, 0.))
    monkeypatch.setattr(tool, '_check_data_root', lambda o: None)
    assert tool.main(['--suite']) == 0
    assert seen == [osp.join(RESULTS, t) for t in ('vit', 'resnet', 'ablation')]
    assert set(DEFAULT_WORK_DIRS) == {'vit', 'resnet', 'convnext', 'swin', 'ablation', 'seg',
                                      'vit_gpu'}


def test_tools_write_their_figures_there_by_default():
    before_after = load_tool('cpu_before_after.py').parse_args(['HEAD'])
    croco = load_tool('visualization', 'croco_stereo.py').parse_args([])
    probe = load_tool('analysis', 'seg_feature_probe.py').parse_args(['--methods', 'mae'])
    outs = [before_after.results, croco.out, osp.splitext(croco.out)[0] + '.json', probe.out]
    assert outs == [osp.join(RESULTS, p) for p in (
        'speed/cpu_before_after.json', 'croco_stereo/croco_stereo.png',
        'croco_stereo/croco_stereo.json', 'seg/feature_probe.json')]
    assert {osp.basename(p) for p in outs} <= kept_names()
    assert before_after.out.startswith(osp.join(REPO_ROOT, 'work_dirs'))  # its scratch
    assert probe.pretrained_dir == osp.join(RESULTS, 'vit')  # the ViT track's default


def test_gitignore_keeps_every_report_file_and_no_scratch(tmp_path):
    """What the reports write (rebuilt here from the kept ViT and seg tables) and each
    run's result.json are kept; checkpoints, logs and settings are not."""
    from benchmarks.report import write_report
    from benchmarks.seg_report import write_seg_report
    vit = read_json(osp.join(RESULTS, 'vit', 'results.json'))
    write_report(vit['methods'], str(tmp_path / 'vit'), vit['meta'], vit.get('flops'))
    seg = read_json(osp.join(RESULTS, 'seg', 'results.json'))
    write_seg_report(seg['runs'], str(tmp_path / 'seg'), seg['meta'])
    written = {f for _, _, files in os.walk(tmp_path) for f in files}
    assert {'results.md', 'results.json', 'results.csv', 'results_seeds.csv', 'quality.png',
            'seg.png'} <= written
    kept = kept_names()
    assert written | {'result.json', 'flops.json', 'README.md'} <= kept
    assert not kept & {'backbone.pth', 'backbone_seg.pth', 'worker.log', 'settings.json',
                       'failed.json', 'seg_config.py', 'last_checkpoint', 'scalars.json'}


def test_every_results_folder_is_a_work_dir_its_report_reads():
    """Each kept run is where its command's report looks for it: a track's runs at
    ``<run>/result.json``, the seg track's at ``<track>/<mode>/<run>/result.json``."""
    from benchmarks.runner import run_name
    for folder in sorted(os.listdir(RESULTS)):
        data = read_json(osp.join(RESULTS, folder, 'results.json'))
        if data is None:
            continue
        seg = 'modes' in data['meta']
        rows = data['runs'] if seg else data['methods']
        found = 0
        for r in rows:
            if r.get('status') != 'ok':
                continue
            run = run_name(r['method'], r.get('seed', 0))
            parts = (r['track'], r['mode'], run) if seg else (run, )
            path = osp.join(RESULTS, folder, *parts, 'result.json')
            found += osp.isfile(path)
        ok = sum(r.get('status') == 'ok' for r in rows)
        assert ok > 0 and found == (0 if folder in TABLES_ONLY else ok), (folder, found, ok)


def test_kept_result_without_weights_stops_the_seg_track_in_one_line(tmp_path):
    """A kept pre-training result has no backbone.pth: the track command would count it
    done, so --pretrain-missing would not make it; the seg track asks for a work dir."""
    run = tmp_path / 'vit' / 'mae'
    run.mkdir(parents=True)
    (run / 'result.json').write_text(json.dumps(dict(status='ok', method='mae')))
    opts = dict(pretrained_dirs={'vit': str(tmp_path / 'vit')}, pretrain_missing=True)
    calls: list = []
    with pytest.raises(UserError, match='no backbone.pth') as err:
        seg_runner.ensure_pretraining(opts, [('vit', 'mae', 0, 'finetune')], calls.append)
    assert '--pretrained-dir vit=' in str(err.value) and calls == []
    (run / 'backbone.pth').write_bytes(b'')
    seg_runner.ensure_pretraining(opts, [('vit', 'mae', 0, 'finetune')], calls.append)
    assert calls == []  # nothing missing any more
