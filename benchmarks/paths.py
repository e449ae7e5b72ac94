"""Where the checkout is: the benchmark runs the repository's own tools and configs,
and keeps what its runs measured beside it."""
from __future__ import annotations

import os.path as osp

#: the repository root (this folder's parent)
REPO_ROOT: str = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: the run sets (relative to the repository root): one folder per set, each the work
#: dir of the command that made it (its ``results.md`` names that command)
RESULTS_DIR: str = 'benchmarks/results'

#: the default work dir of each track of ``tools/benchmark.py`` (relative to the
#: repository root); ``vit_gpu``: the ViT track at ``--scale gpu``
DEFAULT_WORK_DIRS: dict[str, str] = {
    name: f'{RESULTS_DIR}/{name}'
    for name in ('vit', 'resnet', 'convnext', 'swin', 'ablation', 'seg', 'vit_gpu')}


def default_work_dir(name: str) -> str:
    """The absolute default work dir of track ``name`` (a key of ``DEFAULT_WORK_DIRS``)."""
    return osp.join(REPO_ROOT, DEFAULT_WORK_DIRS[name])
