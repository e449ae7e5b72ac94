"""The scenes the seg track trains and scores on, made once.

``data/fashion_mnist_scenes`` (64 px, the seg configs' size) is written by
``tools/dataset_converters/fashion_mnist_scenes.py`` from the Fashion-MNIST idx
files (``tools/prepare_fashion_mnist.sh``) when absent; another ``size`` (small
tests) gets its own folder and item scales shrunk with the canvas. The scenes'
identity (their item records) goes into every run's settings, so other scenes
rerun the runs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import os.path as osp
import shutil
import sys
from types import ModuleType

from cim_mm.utils.errors import UserError

from .paths import REPO_ROOT

CONVERTER = osp.join(REPO_ROOT, 'tools', 'dataset_converters', 'fashion_mnist_scenes.py')
#: the seg configs' canvas side and the converter's default item scales at it
CONFIG_SIZE = 64
CONFIG_SCALE = (0.75, 1.5)
RECORDS = ('scenes_training.json', 'scenes_validation.json')


def default_root(size: int) -> str:
    name = 'fashion_mnist_scenes' if size == CONFIG_SIZE else f'fashion_mnist_scenes_{size}px'
    return osp.join(REPO_ROOT, 'data', name)


def _converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location('fashion_mnist_scenes', CONVERTER)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


def scenes_id(root: str) -> str:
    """12 hex digits of SHA-256 over the scenes' item records (what was drawn)."""
    h = hashlib.sha256()
    for name in RECORDS:
        with open(osp.join(root, name), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def canvas_of(root: str) -> int:
    with open(osp.join(root, RECORDS[0])) as f:
        return int(json.load(f)['canvas'])


def ensure_scenes(root: str, fashion_mnist: str, size: int, num_train: int, num_val: int,
                  log=print) -> str:
    """``root`` with scenes of ``size`` px, written there first if absent
    (atomically: a half-written folder is never taken for scenes)."""
    if all(osp.isfile(osp.join(root, r)) for r in RECORDS):
        if canvas_of(root) != size:
            raise UserError(f'{root} holds {canvas_of(root)} px scenes, not {size} px: pass '
                            '--scene-size to match or another --scenes-root')
        return root
    tool = _converter()
    f = size / CONFIG_SIZE
    args = tool.parse_args([fashion_mnist, root, '--size', str(size), '--num-train',
                            str(num_train), '--num-val', str(num_val), '--scale',
                            str(CONFIG_SCALE[0] * f), str(CONFIG_SCALE[1] * f)])
    tool.check_args(args)
    data = {split: tool.load_split(fashion_mnist, split) for split in tool.SPLITS}
    log(f'scenes: {root} absent: writing {num_train} training + {num_val} validation '
        f'scenes of {size} px from {fashion_mnist}')
    partial = root.rstrip('/') + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    for split, num in (('train', num_train), ('test', num_val)):
        images, labels = data[split]
        tool.write_split(partial, split, images, labels, num, args.seed, size,
                         tuple(args.items), tuple(args.scale), args.threshold, args.tint)
    if osp.isdir(root):  # an earlier, unfinished folder
        shutil.rmtree(root)
    os.replace(partial, root)
    return root
