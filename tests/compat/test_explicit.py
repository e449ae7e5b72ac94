"""The fixes are applied explicitly: a bare ``import cim_mm`` changes nothing."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO_ROOT

# every function or attribute one of the fixes replaces, as `module:attribute.path`
PATCHED = [
    'mmengine.runner.checkpoint:save_checkpoint',
    'mmengine.runner.runner:save_checkpoint',
    'mmengine.runner.runner:Runner.save_checkpoint',
    'mmengine.dist.utils:_init_dist_pytorch',
    'mmengine.dist.utils:_init_dist_slurm',
    'mmengine.dist.utils:_init_dist_mpi',
    'mmengine.model:MMDistributedDataParallel.__init__',
    'mmengine.model:MMDistributedDataParallel._passing_sync_batchnorm_handle',
    'torch.nn:SyncBatchNorm.forward',
    'scipy.interpolate:interp2d',
]

SCRIPT = '''
import importlib, json, sys
names = json.loads(sys.argv[1])

def snapshot():
    out = {}
    for name in names:
        mod, _, path = name.partition(':')
        obj = importlib.import_module(mod)
        for part in path.split('.'):
            obj = getattr(obj, part)
        out[name] = id(obj)
    from mmengine.runner.checkpoint import CheckpointLoader
    out['local loader'] = id(CheckpointLoader._schemes[''])
    return out

before = snapshot()
import cim_mm, cim_mm.models, cim_mm.datasets, cim_mm.engine, cim_mm.converters
import cim_mm.compat  # importing the fixes is not applying them
after_import = snapshot()
import cim_mm.compat.enable
after_enable = snapshot()
print(json.dumps(dict(import_changed=[k for k in before if before[k] != after_import[k]],
                      enable_changed=[k for k in before if before[k] != after_enable[k]],
                      missing=cim_mm.compat.missing())))
'''


def _run() -> dict:
    out = subprocess.run([sys.executable, '-c', SCRIPT, json.dumps(PATCHED)], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bare_import_patches_nothing_and_enable_patches_what_is_needed():
    from cim_mm import compat
    res = _run()
    assert res['import_changed'] == []
    assert res['missing'] == []
    expected = set()
    if compat.checkpoint.needed():
        expected |= {PATCHED[0], PATCHED[1], PATCHED[2], 'local loader'}
    if compat.dist.needed():
        expected |= set(PATCHED[3:9])
    if compat.interp2d.needed():
        expected.add(PATCHED[9])
    assert expected, 'this stack needs at least one fix (torch >= 2.6)'
    assert set(res['enable_changed']) == expected


def test_version_guard():
    from cim_mm.compat.versions import version_at_least
    assert version_at_least('2.14.1+cu130', '2.6')
    assert not version_at_least('2.5.1', '2.6')
    assert version_at_least('0.10.7', '0.10') and not version_at_least('0.10.7', '0.11')


def test_interp2d_shim_is_scoped():
    """The converter's scoped shim leaves SciPy as it found it."""
    import scipy.interpolate

    from cim_mm.compat.interp2d import shim_installed
    before = scipy.interpolate.interp2d
    with shim_installed():
        inside = scipy.interpolate.interp2d
        inside([0., 1., 2., 3.], [0., 1., 2., 3.], [[float(i + j) for i in range(4)]
                                                    for j in range(4)], kind='cubic')
    assert scipy.interpolate.interp2d is before
    assert getattr(inside, '_cim_mm_shim', False) or inside is before


def test_cim_built_without_the_fixes_names_the_entry_to_add():
    script = ('import sys; sys.path.insert(0, "tests"); import helpers; '
              'from mmpretrain.registry import MODELS; '
              'MODELS.build(helpers.tiny_vit_cim_cfg())')
    out = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if 'custom_imports' in ln]
    assert len(lines) == 1 and "'cim_mm.compat.enable'" in lines[0]
