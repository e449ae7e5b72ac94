"""Every CIM pre-training config builds through the registry (paper ones
without weights or data: the DALL-E tokenizer is built with random weights)."""
from __future__ import annotations

import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from helpers import offline_tokenizer

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/cim/*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p) for p in CONFIGS])
def test_config_builds(path):
    cfg = offline_tokenizer(Config.fromfile(path))
    # mmpretrain's ResNet, ConvNeXt and Swin call .item() at build
    if any(f in osp.basename(path) for f in ('resnet', 'convnext', 'swin')):
        model = MODELS.build(cfg.model)
    else:
        with torch.device('meta'):  # no memory, no init: only the structure is built
            model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'CIM'
    assert hasattr(model, 'generator') and hasattr(model, 'tokenizer')
    assert 'train_dataloader' in cfg and 'optim_wrapper' in cfg
    # every pre-training pipeline masks on the token grid
    names = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'BEiTMaskGenerator' in names and names[-1] == 'PackInputs'


def test_paper_configs_cover_the_recipes():
    names = {osp.basename(p) for p in CONFIGS}
    for obj in ('respix', 'revdet'):
        for arch in ('vit-small-p16', 'vit-base-p16'):
            for ep in (300, 800):
                assert f'cim-{obj}_{arch}_8xb256-amp-coslr-{ep}e_in1k.py' in names
        assert any(n.startswith(f'cim-{obj}_resnet50') for n in names)


ALL_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True))


def _datasets(node):
    """Every dict with a ``type`` ending in ``MNIST`` anywhere in a config."""
    if isinstance(node, dict):
        if str(node.get('type', '')).endswith('MNIST'):
            yield node
        for v in node.values():
            yield from _datasets(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _datasets(v)


@pytest.mark.parametrize('path', [p for p in ALL_CONFIGS if 'fashion' in p],
                         ids=lambda p: osp.basename(p))
def test_mnist_test_split_uses_test_mode(path):
    """mmpretrain's (Fashion)MNIST reads the test files only when
    ``test_mode=True``; ``split='test'`` alone silently evaluates on train."""
    cfg = Config.fromfile(path).to_dict()
    for ds in _datasets(cfg):
        assert (ds.get('split', 'train') == 'test') == bool(ds.get('test_mode', False)), ds


def test_metafile_lists_every_pretraining_config():
    import yaml
    with open(osp.join(ROOT, 'configs/cim/metafile.yml')) as f:
        meta = yaml.safe_load(f)
    listed = {m['Config'] for m in meta['Models']}
    on_disk = {osp.relpath(p, ROOT) for p in CONFIGS}
    assert listed == on_disk
    for m in meta['Models']:
        assert m['Name'] == osp.splitext(osp.basename(m['Config']))[0]


def test_readme_and_metafile_agree():
    """configs/cim/README.md (mmpretrain's per-algorithm form) lists the metafile's
    models, with their configs, none with a download the metafile does not have, and
    cites the metafile's paper; the paper's ImageNet figures stay out of its tables."""
    import re

    import yaml
    with open(osp.join(ROOT, 'configs/cim/metafile.yml')) as f:
        meta = yaml.safe_load(f)
    collection = meta['Collections'][0]
    text = open(osp.join(ROOT, 'configs/cim', collection['README'])).read()
    assert text.startswith('# CIM\n')
    assert f'[{collection["Paper"]["Title"]}]({collection["Paper"]["URL"]})' in text
    for section in ('## Abstract', '## How to use it?', '## Models and results', '## Citation'):
        assert section in text, section
    rows = {m.group(1): m.group(0) for m in re.finditer(r'^\| `([^`]+)` \|.*$', text, re.M)}
    assert set(rows) == {m['Name'] for m in meta['Models']}
    for m in meta['Models']:
        row = rows[m['Name']]
        assert f'[config]({osp.basename(m["Config"])})' in row, m['Name']
        assert m['Weights'] is None and row.rstrip(' |').endswith(('N/A', 'N/A (CPU demo)'))
        assert m['Metadata']['Objective'] in row
    table_rows = [ln for ln in text.splitlines() if ln.startswith('|')]
    paper = re.compile(r'(?<![\d.])(83\.3|80\.6)(?![\d])')
    assert paper.search(text) and not [ln for ln in table_rows if paper.search(ln)]


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(p) for p in CONFIGS])
def test_pretraining_configs_carry_the_reliability_hooks(path):
    """NaN stop, RNG states for an exact --resume and the corruption pictures are
    in every pre-training recipe, not only the demo (docs/reliability.md)."""
    cfg = Config.fromfile(path)
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert {'NonFiniteLossHook', 'RNGStateHook', 'CIMVisualizationHook'} <= set(hooks)
    assert cfg.default_hooks.checkpoint.get('save_last', True)
