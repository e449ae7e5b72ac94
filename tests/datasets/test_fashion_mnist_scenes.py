"""Fashion-MNIST scenes: the converter, the mmseg dataset and the small seg track configs.

CPU only, tiny data written here (fake idx files), no downloads.
"""
from __future__ import annotations

import copy
import json
import os
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers import load_tool, write_fashion_mnist, write_idx_split
from cim_mm.converters import convert_checkpoint
from cim_mm.seg import FashionMNISTScenesDataset
from cim_mm.utils import atomic_torch_save, safe_load
from mmpretrain.registry import MODELS as PRE_MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH = osp.join(ROOT, 'configs', 'cim', 'benchmarks')
SEG_CONFIGS = {
    'vit': 'upernet_vit-tiny-p4_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py',
    'vit-frozen': 'fcn_vit-tiny-p4_cim-pre-frozen_1xb8-400it_fashion-mnist-scenes-64x64.py',
    'r18': 'upernet_r18-w32_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py',
}
DEMOS = {  # pre-training config whose enhancer each seg config takes
    'vit': 'cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'vit-frozen': 'cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py',
    'r18': 'cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
}


def _tool():
    return load_tool('dataset_converters', 'fashion_mnist_scenes.py')

tool = _tool()


def run_tool(*argv) -> int:
    try:
        return tool.main([str(a) for a in argv])
    except SystemExit as e:  # one-line user errors exit 1
        return e.code


def _read_label(path: str) -> np.ndarray:
    """A label PNG as mmseg's LoadAnnotations reads it: ``[H, W]`` uint8."""
    with open(path, 'rb') as f:
        return mmcv.imfrombytes(f.read(), flag='unchanged', backend='pillow')


def _split_files(out: str, split: str) -> list[str]:
    return sorted(os.listdir(osp.join(out, 'annotations', split)))


# ------------------------------------------------------------------ rendering
def _block(value: int, lo: int = 4, hi: int = 20) -> np.ndarray:
    """A 28x28 item: a square of ``value`` at rows/cols lo..hi-1, 0 elsewhere."""
    img = np.zeros((28, 28), np.uint8)
    img[lo:hi, lo:hi] = value
    return img


def test_render_matches_pasted_items():
    """The label map is what pasting the items by hand gives: class + 1 where an
    item's intensity is above the threshold, the later item on top, 0 elsewhere."""
    images = np.stack([_block(200), _block(100), _block(20)])  # [3, 28, 28]
    faint = images[2].copy()
    Item = tool.Item
    items = [
        Item(index=0, label=3, top=2, left=2, size=28, tint=(1.0, 1.0, 1.0)),
        Item(index=1, label=7, top=10, left=12, size=28, tint=(0.5, 1.0, 0.25)),
        # intensity 20 <= threshold 32: covers nothing, changes nothing
        Item(index=2, label=9, top=0, left=0, size=28, tint=(1.0, 1.0, 1.0)),
    ]
    img, label = tool.render_scene(items, images, canvas=48, threshold=32)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert label.shape == (48, 48) and label.dtype == np.uint8

    want = np.zeros((48, 48), np.uint8)
    want[2 + 4:2 + 20, 2 + 4:2 + 20] = 3 + 1  # item 0's square
    want[10 + 4:10 + 20, 12 + 4:12 + 20] = 7 + 1  # item 1's square, over item 0
    np.testing.assert_array_equal(label, want)
    # pixels: item 1's tinted intensity where it is on top, item 0's gray elsewhere
    np.testing.assert_array_equal(img[15, 20], [50, 100, 25])
    np.testing.assert_array_equal(img[7, 7], [200, 200, 200])
    assert not img[label == 0].any()  # black background
    assert faint.max() == 20  # (the faint item really had content)


def test_render_resized_item():
    """A scaled item lands in its box: a 2x item's square covers its 2x box."""
    images = _block(255)[None]  # [1, 28, 28]
    items = [tool.Item(index=0, label=0, top=3, left=5, size=56, tint=(1.0, 1.0, 1.0))]
    _, label = tool.render_scene(items, images, canvas=64, threshold=32)
    # the square (rows/cols 4..19 at 28 px) is rows/cols 8..39 at 56 px, +- 1 px of blur
    inner = label[3 + 9:3 + 39, 5 + 9:5 + 39]
    assert (inner == 1).all()
    outside = np.ones_like(label, bool)
    outside[3 + 7:3 + 41, 5 + 7:5 + 41] = False
    assert not label[outside].any()


# ------------------------------------------------------------------ the tool
@pytest.fixture(scope='module')
def split_classes_data(tmp_path_factory) -> str:
    """Fake Fashion-MNIST whose training split has only classes 0-4 and test
    split only 5-9: a scene's labels tell which split its items came from."""
    root = str(tmp_path_factory.mktemp('fm_split_classes'))
    rng = np.random.default_rng(0)
    for prefix, classes, n in (('train', range(0, 5), 40), ('t10k', range(5, 10), 30)):
        labels = rng.choice(list(classes), n)  # [N]
        imgs = np.zeros((n, 28, 28), np.uint8)  # [N, 28, 28]
        imgs[:, 3:25, 3:25] = rng.integers(60, 256, (n, 22, 22))
        write_idx_split(root, prefix, imgs, labels)
    return root


@pytest.fixture(scope='module')
def scenes(split_classes_data, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp('scenes'))
    assert run_tool(split_classes_data, out, '--size', 32, '--num-train', 6, '--num-val', 5,
                    '--scale', 0.5, 1.0, '--items', 1, 4, '--seed', 3) == 0
    return out


def test_tool_layout_and_splits_are_disjoint(scenes):
    """ADE20K's layout; training scenes hold only training-split classes
    (labels 1-5), validation scenes only test-split ones (labels 6-10)."""
    for split, n, allowed in (('training', 6, set(range(0, 6))),
                              ('validation', 5, {0, *range(6, 11)})):
        names = _split_files(scenes, split)
        assert names == sorted(os.listdir(osp.join(scenes, 'images', split)))
        assert len(names) == n
        seen = set()
        for name in names:
            label = _read_label(osp.join(scenes, 'annotations', split, name))
            assert label.shape == (32, 32) and label.dtype == np.uint8
            seen |= set(np.unique(label).tolist())
            img = mmcv.imread(osp.join(scenes, 'images', split, name))
            assert img.shape == (32, 32, 3)
        assert seen <= allowed and len(seen - {0}) >= 2, (split, seen)


def test_tool_labels_match_recorded_items(scenes, split_classes_data):
    """Each written label map is the rendering of the items the tool recorded,
    taken from the recorded split (train for training, test for validation)."""
    for split, source in (('training', 'train'), ('validation', 'test')):
        images, labels = tool.load_split(split_classes_data, source)
        with open(osp.join(scenes, f'scenes_{split}.json')) as f:
            rec = json.load(f)
        assert len(rec['scenes']) == len(_split_files(scenes, split))
        for scene in rec['scenes']:
            assert scene['source_split'] == source
            items = [tool.Item(**dict(it, tint=tuple(it['tint']))) for it in scene['items']]
            assert 1 <= len(items) <= 4
            for it in items:
                assert labels[it.index] == it.label
                assert 14 <= it.size <= 28  # 28 px x U(0.5, 1.0)
                assert it.top + it.size <= 32 and it.left + it.size <= 32
            img, label = tool.render_scene(items, images, rec['canvas'], rec['threshold'])
            got = _read_label(osp.join(scenes, 'annotations', split, scene['file']))
            np.testing.assert_array_equal(got, label)
            rgb = mmcv.imread(osp.join(scenes, 'images', split, scene['file']),
                              channel_order='rgb')
            np.testing.assert_array_equal(rgb, img)


def _tree_bytes(out: str) -> dict[str, bytes]:
    files = {}
    for dirpath, _, names in os.walk(out):
        for n in names:
            p = osp.join(dirpath, n)
            with open(p, 'rb') as f:
                files[osp.relpath(p, out)] = f.read()
    return files


def test_tool_is_deterministic(tmp_path):
    src = write_fashion_mnist(str(tmp_path / 'fm'), n_train=50, n_test=30)
    args = ('--size', 32, '--num-train', 4, '--num-val', 3, '--scale', 0.5, 1.0)
    outs = {}
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        assert run_tool(src, tmp_path / name, *args, '--seed', seed, '--tint') == 0
        outs[name] = _tree_bytes(str(tmp_path / name))
    assert len(outs['a']) == 4 + 4 + 3 + 3 + 2
    assert outs['a'] == outs['b']
    assert outs['a'].keys() == outs['c'].keys()
    changed = [k for k in outs['a'] if k.endswith('.png') and outs['a'][k] != outs['c'][k]]
    assert len(changed) >= 10  # another seed: other scenes


def test_tool_user_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / 'out'
    assert run_tool(tmp_path / 'nothing', out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'prepare_fashion_mnist.sh' in err

    src = write_fashion_mnist(str(tmp_path / 'fm'), n_train=10, n_test=10)
    os.remove(osp.join(src, 't10k-labels-idx1-ubyte'))
    assert run_tool(src, out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 't10k-labels-idx1-ubyte is missing' in err

    with open(osp.join(src, 't10k-labels-idx1-ubyte'), 'wb') as f:
        f.write(b'not an idx file')
    assert run_tool(src, out) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'not Fashion-MNIST idx files' in err

    assert run_tool(src, out, '--size', 32, '--scale', 0.5, 2.0) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'larger than the 32 px canvas' in err
    assert not out.exists()  # nothing written on a user error


# ------------------------------------------------------------ the mmseg dataset
def test_dataset_through_mmseg_pipeline(scenes):
    import mmseg.datasets  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = _build_scenes(DATASETS, scenes)
    assert isinstance(ds, FashionMNISTScenesDataset) and len(ds) == 5
    classes = ds.metainfo['classes']
    assert len(classes) == 11 and classes[0] == 'background' and classes[1] == 'T-shirt/top'
    assert len(ds.metainfo['palette']) == 11 and ds.metainfo['reduce_zero_label'] is False
    for i in range(len(ds)):
        sample = ds[i]
        assert tuple(sample['inputs'].shape) == (3, 32, 32)
        assert sample['inputs'].dtype == torch.uint8
        seg = sample['data_samples'].gt_sem_seg.data  # [1, H, W]
        assert tuple(seg.shape) == (1, 32, 32)
        name = osp.basename(sample['data_samples'].seg_map_path)
        want = _read_label(osp.join(scenes, 'annotations', 'validation', name))
        np.testing.assert_array_equal(seg[0].numpy(), want)  # no label shift


def _build_scenes(DATASETS, scenes: str):
    return DATASETS.build(dict(
        type='FashionMNISTScenesDataset', data_root=scenes,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=False),
                  dict(type='PackSegInputs')]))


# --------------------------------------------------------------------- configs
def _demo_enhancer_ckpt(which: str, path: str) -> dict:
    """A CIM checkpoint holding the demo's enhancer with random weights (and its
    config in meta, as mmengine saves it); returns its backbone state dict."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'cim', DEMOS[which]))
    torch.manual_seed(0)
    with torch.no_grad():
        enhancer = PRE_MODELS.build(cfg.model.backbone.to_dict())
        for p in enhancer.parameters():  # no zero / unit tensor may pass by luck
            p.normal_(std=0.02)
    sd = {'backbone.' + k: v for k, v in enhancer.state_dict().items()}
    sd['head.proj.weight'] = torch.zeros(2, 2)  # dropped on purpose
    atomic_torch_save({'state_dict': sd, 'meta': dict(cfg=cfg.pretty_text, iter=500)}, path)
    return {k[9:]: v for k, v in sd.items() if k.startswith('backbone.')}


@pytest.mark.parametrize('which', list(SEG_CONFIGS))
def test_demo_enhancer_converts_into_seg_config(which, tmp_path):
    """The demo enhancer goes into each seg config with nothing missing, and the
    config's own backbone loads it (the converter's verify); the frozen probe
    then trains its head only."""
    import mmseg.models  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG_MODELS
    src = str(tmp_path / 'iter_500.pth')
    enh = _demo_enhancer_ckpt(which, src)
    cfg_path = osp.join(BENCH, SEG_CONFIGS[which])
    dst = str(tmp_path / 'seg.pth')
    rep = convert_checkpoint(src, dst, target=None, target_config=cfg_path, log=None)
    assert rep.ok and not rep.verify_failures, rep.format()
    assert not rep.missing and not rep.unexpected and not rep.shape_mismatch
    out = safe_load(dst)['state_dict']
    if which == 'r18':
        assert set(out) == set(enh)
    elif which == 'vit':
        assert 'pos_embed' in [r[0] for r in rep.resized]  # 8x8 grid (32 px) -> 16x16 (64 px)
        assert out['pos_embed'].shape[1] == 1 + 16 * 16

    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg.checkpoint = dst
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model)
    model.init_weights()
    key = 'layer1.0.conv1.weight' if which == 'r18' else 'layers.2.ffn.layers.1.weight'
    torch.testing.assert_close(model.backbone.state_dict()[key], enh[key])
    if which == 'vit-frozen':
        assert not any(p.requires_grad for p in model.backbone.parameters())
        x = torch.randn(2, 3, 64, 64)
        model.decode_head(model.extract_feat(x))[0].sum().backward()
        assert all(p.grad is None for p in model.backbone.parameters())
        assert all(p.grad is not None for p in model.decode_head.parameters())


@pytest.fixture(scope='module')
def scenes64(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('fm64'))
    src = write_fashion_mnist(osp.join(root, 'fm'), n_train=40, n_test=30)
    out = osp.join(root, 'scenes')
    assert run_tool(src, out, '--num-train', 4, '--num-val', 4) == 0
    return out


def test_vit_upernet_config_trains_and_scores(scenes64, tmp_path):
    """The ViT UperNet config, backbone and heads shrunk, trains 3 iterations
    with its own pipeline, layer-decay AdamW and schedule on a tiny 64 px
    scene set, and IoUMetric gives mIoU / mAcc."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(BENCH, SEG_CONFIGS['vit']))
    norm = dict(type='BN', requires_grad=True)
    loader = dict(batch_size=2, dataset=dict(data_root=scenes64))
    cfg.merge_from_dict(dict(
        work_dir=str(tmp_path / 'work'),
        model=dict(
            backbone=dict(embed_dims=32, num_heads=2, mlp_ratio=2, init_cfg=None),
            neck=dict(in_channels=[32] * 4, out_channels=32),
            decode_head=dict(in_channels=[32] * 4, channels=16, norm_cfg=norm),
            auxiliary_head=dict(in_channels=32, channels=16, norm_cfg=norm)),
        train_dataloader=loader, val_dataloader=copy.deepcopy(loader),
        train_cfg=dict(max_iters=3, val_interval=3),
        default_hooks=dict(logger=dict(interval=1), visualization=dict(draw=False),
                           checkpoint=dict(interval=1000, save_last=False)),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
    ))
    scopes_before = set(DefaultScope._instance_dict)
    try:
        # Runner.from_cfg(cfg) without its yapf config dump (slow on 2 cores)
        runner = Runner(
            model=cfg.model, work_dir=cfg.work_dir, default_scope='mmseg',
            train_dataloader=cfg.train_dataloader, val_dataloader=cfg.val_dataloader,
            train_cfg=cfg.train_cfg, val_cfg=cfg.val_cfg, val_evaluator=cfg.val_evaluator,
            optim_wrapper=cfg.optim_wrapper, param_scheduler=cfg.param_scheduler,
            default_hooks=cfg.default_hooks, env_cfg=cfg.env_cfg,
            log_processor=cfg.log_processor, visualizer=cfg.visualizer,
            randomness=cfg.randomness)
        before = copy.deepcopy(runner.model.backbone.state_dict())
        runner.train()
        metrics = runner.val_loop.run()
    finally:  # the Runner leaves default_scope='mmseg' current: undo that
        for name in set(DefaultScope._instance_dict) - scopes_before:
            DefaultScope._instance_dict.pop(name)
    assert runner.iter == 3
    after = runner.model.backbone.state_dict()
    assert not torch.equal(before['layers.5.attn.qkv.weight'], after['layers.5.attn.qkv.weight'])
    for k in ('mIoU', 'mAcc', 'aAcc'):
        assert 0.0 <= metrics[k] <= 100.0, metrics
    # 6 layers + embeddings + heads, each its own lr scale (layer decay 0.75)
    scales = sorted({g['lr_scale'] for g in runner.optim_wrapper.optimizer.param_groups})
    assert len(scales) == 6 + 2 and scales[-1] == 1.0
    np.testing.assert_allclose(scales[-2] / scales[-1], 0.75)
