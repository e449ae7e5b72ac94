"""Pack the pure-Python dependencies a bare GPU machine lacks.

The lent GPU machines have their own Python with torch, torchvision, numpy,
OpenCV, SciPy, matplotlib, rich, PyYAML, einops, requests, attrs ... but not
the OpenMMLab stack, and no package registry is reachable from them. The
project's ``.venv`` (several GB) cannot travel with the working tree (64 MiB),
so ``tools/gpu_check.sh --pack-deps`` copies, from the environment that runs
it, the *Python files* of the distributions below (no compiled extension, no
``__pycache__``) into ``DEST/site`` (~11 MB), plus a minimal ``pkg_resources``
in ``DEST/compat`` for machines whose setuptools (>= 81) has none (mmengine
0.10.7 resolves ``mmpretrain::`` config bases with it). On the GPU machine,
``tools/gpu_check.sh`` puts ``DEST/site`` (and ``DEST/compat`` when needed) on
``PYTHONPATH``.

mmcv goes without its compiled ops (``mmcv._ext``, built for this machine's
torch): nothing the check runs imports ``mmcv.ops`` (mmsegmentation does, and
is not needed).

    python -m benchmarks.gpu_check.deps DEST
"""
from __future__ import annotations

import importlib.metadata as md
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Optional

# distributions (as pip names them) the check imports that the GPU image lacks
DISTRIBUTIONS = ('mmengine', 'mmcv', 'mmpretrain', 'addict', 'yapf', 'termcolor',
                 'mat4py', 'model-index', 'ordered-set', 'platformdirs',
                 'importlib_metadata', 'lazy-importer', 'DALL-E')

# Minimal stand-ins, each put on the path only where ``import NAME`` fails:
# mmengine 0.10.7 resolves ``mmpretrain::`` config bases with pkg_resources
# (gone from setuptools >= 81) and its Runner's collect_env imports distutils
# (gone from Python >= 3.12 unless setuptools' hook provides it).
SHIMS: dict[str, dict[str, str]] = {
    'pkg_resources': {'__init__.py': '''"""Minimal pkg_resources (tools/gpu_check.sh): what
mmengine 0.10.7 uses (get_distribution, DistributionNotFound), over importlib.metadata."""
import importlib.metadata as _md


class DistributionNotFound(Exception):
    pass


class _Distribution:
    def __init__(self, dist):
        self.project_name = dist.metadata['Name']
        self.version = dist.version
        self.location = str(dist.locate_file(''))


def get_distribution(name):
    try:
        return _Distribution(_md.distribution(str(name)))
    except _md.PackageNotFoundError:
        raise DistributionNotFound(name) from None
'''},
    'distutils': {
        '__init__.py': '"""Minimal distutils (tools/gpu_check.sh): collect_env."""\n',
        'errors.py': 'class DistutilsPlatformError(Exception):\n    pass\n',
        'ccompiler.py': ('from .errors import DistutilsPlatformError\n\n\n'
                         'def new_compiler(*args, **kwargs):\n'
                         '    raise DistutilsPlatformError("no compiler in this shim")\n'),
    },
}


def _keep(rel: str) -> bool:
    parts = rel.split('/')
    return not (rel.startswith('..') or '__pycache__' in parts or rel.endswith(
        ('.pyc', '.so', '.pyd')) or parts[0] in ('yapftests', 'tests'))


# a distribution that may be installed under another name (mmcv without its
# compiled ops is the ``mmcv-lite`` distribution: the same ``mmcv`` package)
ALIASES = {'mmcv': ('mmcv', 'mmcv-lite')}


def _distribution(name: str) -> md.Distribution:
    for candidate in ALIASES.get(name, (name, )):
        try:
            return md.distribution(candidate)
        except md.PackageNotFoundError:
            continue
    raise md.PackageNotFoundError(name)


def pack(dest: str) -> dict:
    """Copy the Python files of :data:`DISTRIBUTIONS` to ``dest/site``.

    Returns ``{distribution: version}``.
    """
    site = osp.join(dest, 'site')
    if osp.isdir(site):
        shutil.rmtree(site)
    versions = {}
    for name in DISTRIBUTIONS:
        dist = _distribution(name)
        versions[name] = dist.version
        for f in dist.files or ():
            rel = str(f).replace(os.sep, '/')
            src = str(dist.locate_file(f))
            if not _keep(rel) or not osp.isfile(src):
                continue
            dst = osp.join(site, rel)
            os.makedirs(osp.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    compat = osp.join(dest, 'compat')
    if osp.isdir(compat):
        shutil.rmtree(compat)
    for name, files in SHIMS.items():  # compat/NAME/NAME/...: one path entry each
        folder = osp.join(compat, name, name)
        os.makedirs(folder)
        for fname, text in files.items():
            with open(osp.join(folder, fname), 'w') as f:
                f.write(text)
    with open(osp.join(dest, 'VERSIONS.txt'), 'w') as f:
        f.write(f'# packed from Python {sys.version.split()[0]} ({sys.executable})\n')
        f.writelines(f'{k}=={v}\n' for k, v in versions.items())
    write_commit(dest)
    return versions


COMMIT_FILE = 'COMMIT.txt'


def write_commit(dest: str) -> Optional[str]:
    """Record the project's commit in ``dest`` (a copy of the tree sent to a GPU
    machine has no ``.git``): ``<short hash>[+dirty] <date>``; None outside git."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(['git', '-C', root, *args], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    head = git('rev-parse', '--short', 'HEAD')
    path = osp.join(dest, COMMIT_FILE)
    if not head:
        if osp.exists(path):
            os.remove(path)
        return None
    dirty = git('status', '--porcelain', '--untracked-files=no')
    line = f"{head}{'+dirty' if dirty else ''} packed {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
    with open(path, 'w') as f:
        f.write(line + '\n')
    return line


def read_commit(dest: str) -> Optional[str]:
    """What :func:`write_commit` recorded in ``dest`` (None when nothing)."""
    path = osp.join(dest, COMMIT_FILE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python -m benchmarks.gpu_check.deps DEST')
    got = pack(sys.argv[1])
    size = sum(osp.getsize(osp.join(d, f)) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
    print(f'packed {len(got)} distributions into {sys.argv[1]} ({size / 2**20:.1f} MiB): '
          + ', '.join(f'{k} {v}' for k, v in got.items()))
