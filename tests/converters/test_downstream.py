"""Downstream: CIM checkpoints -> mmpretrain classifiers, mmseg UperNet, timm.

CPU only, tiny shapes, no downloads: a tiny CIM (ViT enhancer) is trained for a
few steps and saved like mmengine saves it; the converter's output is loaded by
an mmpretrain classifier and an mmseg UperNet trained on a tiny ADE20K-layout
dataset and evaluated with mmseg's IoUMetric. Every rename is checked by
forward equivalence (the converted backbone computes what the enhancer did).
"""
from __future__ import annotations

import copy
import logging
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers import make_batch, tiny_vit_cim_cfg
from cim_mm.converters import (ConversionError, build_target, convert_checkpoint,
                               convert_state_dict, registry_target)
from cim_mm.utils import atomic_torch_save, safe_load
from mmpretrain.registry import MODELS as PRE_MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH = osp.join(ROOT, 'configs', 'cim', 'benchmarks')
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def _cli():
    spec = importlib.util.spec_from_file_location(
        'cim_to_downstream', osp.join(ROOT, 'tools', 'model_converters',
                                      'cim_to_downstream.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def run_cli(*argv) -> int:
    try:
        return _cli()(list(map(str, argv)))
    except SystemExit as e:  # one-line user errors exit 1
        return e.code


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope='module')
def cim_ckpt(tmp_path_factory):
    """A tiny CIM (4-layer ViT enhancer) trained 3 steps, saved as mmengine
    saves it (state_dict + meta with the config text)."""
    torch.manual_seed(0)
    cfg = tiny_vit_cim_cfg()
    cfg['backbone']['arch']['num_layers'] = 4
    model = PRE_MODELS.build(cfg)
    model.init_weights()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = copy.deepcopy(model.backbone.state_dict())
    for step in range(3):
        data = model.data_preprocessor(make_batch(seed=step), True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(before['layers.0.attn.qkv.weight'],
                           model.backbone.state_dict()['layers.0.attn.qkv.weight'])
    path = str(tmp_path_factory.mktemp('cim') / 'iter_3.pth')
    meta = dict(cfg=Config(dict(model=cfg)).pretty_text, iter=3, seed=0)
    atomic_torch_save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return path, model.state_dict()


def _enhancer(sd: dict) -> dict:
    return {k[9:]: v for k, v in sd.items() if k.startswith('backbone.')}


def _write_cfg(cfg: Config, path) -> str:
    cfg.dump(str(path))
    return str(path)


# ------------------------------------------------------- mmpretrain classifier
def _classifier_cfg(**backbone) -> dict:
    bb = dict(type='VisionTransformer', arch=TINY_ARCH, img_size=16, patch_size=4,
              drop_path_rate=0.1, out_type='avg_featmap', final_norm=False,
              init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.'))
    bb.update(backbone)
    return dict(
        default_scope='mmpretrain',
        model=dict(type='ImageClassifier',
                   data_preprocessor=dict(num_classes=3, mean=[127.5] * 3,
                                          std=[127.5] * 3),
                   backbone=bb,
                   head=dict(type='LinearClsHead', num_classes=3, in_channels=32)))


def test_classifier_target(cim_ckpt, tmp_path):
    src, cim_sd = cim_ckpt
    cfg_path = _write_cfg(Config(_classifier_cfg()), tmp_path / 'cls_cfg.py')
    out = tmp_path / 'cls.pth'
    assert run_cli(src, out, '--target-config', cfg_path) == 0
    ckpt = safe_load(str(out))
    conv = ckpt['state_dict']
    assert all(k.startswith('backbone.') for k in conv)
    info = ckpt['meta']['cim_mm_conversion']
    assert info['ok'] and info['dropped_components']['generator'] > 0
    assert 'tokenizer' in info['dropped_components']  # reported even when 0
    assert info['dropped_components']['head'] > 0
    assert info['new_by_design'] == ['ln2.weight', 'ln2.bias']
    assert info['dropped_by_design'] == ['ln1.weight', 'ln1.bias']

    cfg = _classifier_cfg()
    cfg['model']['backbone']['init_cfg']['checkpoint'] = str(out)
    model = PRE_MODELS.build(cfg['model'])
    model.init_weights()
    got = model.state_dict()
    enh = _enhancer(cim_sd)
    for k, v in conv.items():  # tensor by tensor: file == model == enhancer
        assert torch.equal(got[k], v), k
        if not k.startswith('backbone.ln2.'):  # the fresh pooling norm (below)
            assert torch.equal(enh[k[9:]], v), k
    # the pooling norm is written at LayerNorm's initial values (fresh, as designed),
    # so the loader sees every backbone key: only the classifier head is left out
    assert torch.equal(conv['backbone.ln2.weight'], torch.ones(32))
    assert torch.equal(conv['backbone.ln2.bias'], torch.zeros(32))
    assert set(got) - set(conv) == {'head.fc.weight', 'head.fc.bias'}

    # load_from (whole-model, non-strict) gives the same tensors
    from mmengine.runner import load_checkpoint
    fresh = PRE_MODELS.build(_classifier_cfg(init_cfg=None)['model'])
    from mmengine.logging import MMLogger
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    MMLogger.get_current_instance().addHandler(handler)
    try:
        load_checkpoint(fresh, str(out), map_location='cpu')
    finally:
        MMLogger.get_current_instance().removeHandler(handler)
    assert not [m for m in logged if 'missing keys' in m and 'ln2' in m], logged
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in conv.items())

    # the fine-tuning config's optimizer (layer-wise lr decay) builds on it
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    ft = Config.fromfile(osp.join(BENCH, 'vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, ft.optim_wrapper)
    lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
    assert len(lrs) == TINY_ARCH['num_layers'] + 2  # embeddings, 4 layers, head
    data = model.data_preprocessor(dict(
        inputs=torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8),
        data_samples=[__import__('mmpretrain').structures.DataSample().set_gt_label(i)
                      for i in (0, 2)]), True)
    loss = model(**data, mode='loss')['loss']
    wrapper.update_params(loss)
    assert torch.isfinite(loss)


def test_classifier_target_rejects_mismatch(cim_ckpt, tmp_path):
    src, cim_sd = cim_ckpt
    # (a) a checkpoint with a missing enhancer key
    bad = dict(cim_sd)
    del bad['backbone.layers.1.attn.qkv.weight']
    bad_path = tmp_path / 'bad.pth'
    atomic_torch_save({'state_dict': bad, 'meta': {}}, str(bad_path))
    out = tmp_path / 'out.pth'
    cfg_path = _write_cfg(Config(_classifier_cfg()), tmp_path / 'cls_cfg.py')
    assert run_cli(bad_path, out, '--target-config', cfg_path) == 1
    assert not out.exists()  # nothing written on a mismatch
    with pytest.raises(ConversionError, match='1 missing.*--allow-mismatch writes what matched'):
        convert_checkpoint(str(bad_path), str(out), target_config=cfg_path, log=None)
    # ... written with --allow-mismatch, and the report says what is missing
    rep = convert_checkpoint(str(bad_path), str(out), target_config=cfg_path,
                             allow_mismatch=True, log=None)
    assert rep.missing == ['layers.1.attn.qkv.weight'] and out.exists()
    # (b) a shape mismatch: the target config is wider than the enhancer
    wide = _classifier_cfg(arch=dict(TINY_ARCH, embed_dims=48, feedforward_channels=96))
    wide_path = _write_cfg(Config(wide), tmp_path / 'wide.py')
    assert run_cli(src, tmp_path / 'w.pth', '--target-config', wide_path) == 1
    with pytest.raises(ConversionError, match='not one tensor matched') as err:
        convert_checkpoint(src, str(tmp_path / 'w.pth'), target_config=wide_path, log=None)
    assert '--allow-mismatch writes' not in str(err.value)  # it would write nothing useful
    # (c) a config whose init_cfg would silently load nothing (no prefix)
    noprefix = _classifier_cfg(init_cfg=dict(type='Pretrained', checkpoint=''))
    np_path = _write_cfg(Config(noprefix), tmp_path / 'noprefix.py')
    with pytest.raises(ConversionError, match='does not load'):
        convert_checkpoint(src, str(tmp_path / 'np.pth'), target_config=np_path, log=None)
    # (d) not a CIM checkpoint; (e) unknown head count (no meta, no rel-pos table)
    atomic_torch_save({'state_dict': {'layers.0.w': torch.zeros(1)}}, str(bad_path))
    assert run_cli(bad_path, out, '--target', 'mmpretrain') == 1
    atomic_torch_save({'state_dict': cim_sd}, str(bad_path))
    with pytest.raises(ConversionError, match='attention heads'):
        convert_checkpoint(str(bad_path), str(out), target='mmpretrain', log=None)
    assert run_cli(bad_path, out, '--target', 'mmpretrain', '--num-heads', 2) == 0



# ------------------------------------------- architecture facts no shape shows
def _with_meta(cim_sd: dict, path, **arch) -> str:
    """The fixture's weights, saved with a config whose enhancer has ``arch``."""
    cfg = tiny_vit_cim_cfg()
    cfg['backbone']['arch'].update({'num_layers': 4, **arch})
    atomic_torch_save({'state_dict': cim_sd, 'meta': dict(cfg=Config(dict(
        model=cfg)).pretty_text)}, str(path))
    return str(path)


def test_head_count_mismatch_is_refused(cim_ckpt, tmp_path, capsys):
    """A 4-head enhancer into a 2-head VisionTransformer: every tensor fits (the
    head count is in no shape), but the checkpoint's meta says 4: refused."""
    _, cim_sd = cim_ckpt
    src = _with_meta(cim_sd, tmp_path / 'heads4.pth', num_heads=4)
    two = _write_cfg(Config(_classifier_cfg()), tmp_path / 'heads2.py')
    out = tmp_path / 'out.pth'
    capsys.readouterr()
    assert run_cli(src, out, '--target-config', two) == 1
    assert not out.exists()
    printed = capsys.readouterr()
    assert 'ARCH MISMATCH     : 1  num_heads source 4 (checkpoint meta.cfg) target 2' \
        in printed.out and 'RESULT: MISMATCH' in printed.out
    err = printed.err.strip().splitlines()
    assert len(err) == 1 and 'num_heads 4 in the source' in err[0] and '2 in the target' \
        in err[0], err
    rep = convert_checkpoint(src, str(out), target_config=two, allow_mismatch=True,
                             log=None)
    assert rep.arch_mismatch == [('num_heads', 4, 2, 'checkpoint meta.cfg')]
    assert not rep.ok and not rep.missing and not rep.shape_mismatch
    assert safe_load(str(out))['meta']['cim_mm_conversion']['arch_mismatch'] == [
        'num_heads: source 4, target 2']
    # the matching target converts
    four = _write_cfg(Config(_classifier_cfg(arch=dict(TINY_ARCH, num_heads=4))),
                      tmp_path / 'heads4.py')
    assert run_cli(src, out, '--target-config', four) == 0
    # no meta: --num-heads is the source's head count, checked the same way
    atomic_torch_save({'state_dict': cim_sd}, str(tmp_path / 'nometa.pth'))
    assert run_cli(tmp_path / 'nometa.pth', out, '--target-config', two,
                   '--num-heads', 4) == 1
    assert run_cli(tmp_path / 'nometa.pth', out, '--target-config', two,
                   '--num-heads', 2) == 0


def test_activation_and_meta_that_does_not_fit_the_weights(cim_ckpt, tmp_path):
    src, cim_sd = cim_ckpt
    relu = _write_cfg(Config(_classifier_cfg(layer_cfgs=dict(act_cfg=dict(type='ReLU')))),
                      tmp_path / 'relu.py')
    rep = convert_checkpoint(src, str(tmp_path / 'o.pth'), target_config=relu,
                             allow_mismatch=True, log=None)
    assert rep.arch_mismatch == [('activation', 'GELU', 'ReLU', 'checkpoint meta.cfg')]
    # a meta config that does not describe the weights (8 layers) is not trusted:
    # noted, and the weights' own facts (4 blocks, no head count) are checked
    bad = _with_meta(cim_sd, tmp_path / 'bad_meta.pth', num_layers=8, num_heads=4)
    cls = _write_cfg(Config(_classifier_cfg()), tmp_path / 'cls.py')
    rep = convert_checkpoint(bad, str(tmp_path / 'o.pth'), target_config=cls, log=None)
    assert rep.ok and any('does not describe its weights' in n for n in rep.notes)


def test_resnet_stride_placement_is_checked(tmp_path):
    """A pytorch-style bottleneck ResNet into a caffe-style one (the stride on
    conv1 instead of conv2): the same shapes, another function."""
    small = dict(type='ResNet', depth=50, base_channels=4, stem_channels=8)
    torch.manual_seed(0)
    enh = PRE_MODELS.build(small)
    sd = {'backbone.' + k: v for k, v in enh.state_dict().items()}
    src = str(tmp_path / 'r50.pth')
    meta = dict(cfg=Config(dict(model=dict(type='CIM', backbone=small))).pretty_text)
    atomic_torch_save({'state_dict': sd, 'meta': meta}, src)
    for style, ok in (('pytorch', True), ('caffe', False)):
        cfg = _classifier_cfg()
        cfg['model']['backbone'] = dict(small, style=style, init_cfg=dict(
            type='Pretrained', checkpoint='', prefix='backbone.'))
        cfg['model']['head'] = dict(type='LinearClsHead', num_classes=3, in_channels=128)
        path = _write_cfg(Config(cfg), tmp_path / f'{style}.py')
        rep = convert_checkpoint(src, str(tmp_path / f'{style}.pth'), target_config=path,
                                 allow_mismatch=True, log=None)
        assert rep.ok == ok and not rep.missing and not rep.shape_mismatch, rep.format()
        assert rep.arch_mismatch == ([] if ok else [
            ('stride_in', 'conv2', 'conv1', 'checkpoint meta.cfg')])

# -------------------------------------------------------- mmseg UperNet ADE20K
def _make_ade20k(root, n_train=4, n_val=2, size=32, k=4):
    """ADE20K layout: images/{training,validation}/*.jpg, annotations/*.png with
    values 0..k (0 = "other", ignored with reduce_zero_label=True)."""
    import mmcv
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, (k + 1, 3))
    for split, n in (('training', n_train), ('validation', n_val)):
        for i in range(n):
            ann = np.zeros((size, size), np.uint8)
            h = size // 2
            ann[:h, :h], ann[:h, h:], ann[h:, :h], ann[h:, h:] = rng.permutation(k) + 1
            ann[:2] = 0  # a strip of "other"
            img = colors[ann] + rng.integers(-20, 20, (size, size, 3))
            mmcv.imwrite(np.clip(img, 0, 255).astype(np.uint8),
                         osp.join(root, 'images', split, f'ADE_{split}_{i:04d}.jpg'))
            mmcv.imwrite(ann, osp.join(root, 'annotations', split,
                                       f'ADE_{split}_{i:04d}.png'))
    return ('wall', 'building', 'sky', 'floor')[:k]


def _tiny_upernet_cfg(data_root, classes, work_dir) -> Config:
    """The real ADE20K UperNet ViT config, shrunk (backbone, heads, data)."""
    cfg = Config.fromfile(osp.join(BENCH, 'upernet_vit-base-p16_cim-pre_8xb2-160k_'
                                   'ade20k-512x512.py'))
    k = len(classes)
    norm = dict(type='BN', requires_grad=True)
    pipe_train = [dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
    pipe_test = [dict(type='LoadImageFromFile'),
                 dict(type='LoadAnnotations', reduce_zero_label=True),
                 dict(type='PackSegInputs')]
    ds = dict(data_root=data_root, metainfo=dict(classes=classes))
    cfg.merge_from_dict(dict(
        work_dir=str(work_dir),
        model=dict(
            data_preprocessor=dict(size=(32, 32)),
            backbone=dict(img_size=(32, 32), patch_size=4, embed_dims=32, num_layers=4,
                          num_heads=2, mlp_ratio=2, drop_path_rate=0.0,
                          out_indices=[0, 1, 2, 3]),
            neck=dict(embed_dim=32, norm_cfg=norm),
            decode_head=dict(in_channels=[32] * 4, channels=16, num_classes=k,
                             norm_cfg=norm),
            auxiliary_head=dict(in_channels=32, channels=16, num_classes=k,
                                norm_cfg=norm),
            test_cfg=dict(mode='whole')),
        optim_wrapper=dict(paramwise_cfg=dict(num_layers=4)),
        train_dataloader=dict(batch_size=2, num_workers=0, persistent_workers=False,
                              dataset=dict(**ds, pipeline=pipe_train)),
        val_dataloader=dict(num_workers=0, persistent_workers=False,
                            dataset=dict(**ds, pipeline=pipe_test)),
        test_dataloader=dict(num_workers=0, persistent_workers=False,
                             dataset=dict(**ds, pipeline=pipe_test)),
        train_cfg=dict(max_iters=4, val_interval=4),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                              begin=0, end=4)],
        default_hooks=dict(logger=dict(interval=1), visualization=dict(draw=False),
                           checkpoint=dict(interval=1000, save_last=False)),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
    ))
    return cfg


def test_mmseg_upernet_ade20k(cim_ckpt, tmp_path):
    import mmseg.models  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmseg.registry import MODELS as SEG_MODELS

    src, cim_sd = cim_ckpt
    data_root = str(tmp_path / 'ADEChallengeData2016')
    classes = _make_ade20k(data_root)
    cfg = _tiny_upernet_cfg(data_root, classes, tmp_path / 'work')
    # json: a .py dump of this (big, inherited) config spends ~10 s in yapf
    cfg_path = _write_cfg(cfg, tmp_path / 'upernet_tiny.json')

    out = tmp_path / 'seg.pth'
    assert run_cli(src, out, '--target-config', cfg_path) == 0
    ckpt = safe_load(str(out))
    conv = ckpt['state_dict']
    info = ckpt['meta']['cim_mm_conversion']
    assert info['ok'] and info['prefix'] == '' and 'pos_embed' in info['resized']
    assert not any(k.startswith('backbone.') for k in conv)

    cfg.model.backbone.init_cfg.checkpoint = str(out)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model)
    model.init_weights()
    got = model.backbone.state_dict()
    assert set(got) == set(conv)  # nothing missing: loaded, synthesised or derived
    for k, v in conv.items():
        assert torch.equal(got[k], v), k
    enh = _enhancer(cim_sd)
    for k in ('layers.3.attn.qkv.weight', 'layers.0.ffn.layers.1.bias', 'cls_token',
              'patch_embed.projection.weight'):
        assert torch.equal(got[k], enh[k]), k
    assert bool((got['layers.2.gamma_1'] == 1).all())

    scopes_before = set(DefaultScope._instance_dict)
    try:
        # Runner.from_cfg(cfg) without its yapf config dumps (~20 s on 2 cores);
        # the model initialises from the converted file the same way
        runner = Runner(
            model=cfg.model, work_dir=cfg.work_dir, default_scope='mmseg',
            train_dataloader=cfg.train_dataloader, val_dataloader=cfg.val_dataloader,
            train_cfg=cfg.train_cfg, val_cfg=cfg.val_cfg, val_evaluator=cfg.val_evaluator,
            optim_wrapper=cfg.optim_wrapper, param_scheduler=cfg.param_scheduler,
            default_hooks=cfg.default_hooks, env_cfg=cfg.env_cfg,
            log_processor=cfg.log_processor, visualizer=cfg.visualizer)
        runner.train()  # 4 iterations (AdamW, layer decay), then IoUMetric
        metrics = runner.val_loop.run()
    finally:  # the Runner leaves default_scope='mmseg' current: undo that
        for name in set(DefaultScope._instance_dict) - scopes_before:
            DefaultScope._instance_dict.pop(name)
    assert 'mIoU' in metrics and 0.0 <= metrics['mIoU'] <= 100.0
    # layer-wise decay from the real config's (class-name restricted) constructor
    scales = {g['lr_scale'] for g in runner.optim_wrapper.optimizer.param_groups}
    assert len(scales) == 4 + 2  # embeddings, 4 layers, heads


def test_mmseg_target_rejects_mismatch(cim_ckpt, tmp_path):
    src, cim_sd = cim_ckpt
    enh = _enhancer(cim_sd)
    import mmseg.models  # noqa: F401
    # a ViT with absolute position embeddings does not fit mmseg's BEiT
    tgt = registry_target('mmseg', dict(type='BEiT', img_size=16, patch_size=4,
                                        embed_dims=32, num_layers=4, num_heads=2,
                                        mlp_ratio=2), 'test')
    _, rep = convert_state_dict(enh, tgt)
    assert not rep.ok and rep.unexpected == ['pos_embed']
    # mmseg's VisionTransformer without patch bias (its default) is a mismatch
    tgt = registry_target('mmseg', dict(type='VisionTransformer', img_size=16,
                                        patch_size=4, embed_dims=32, num_layers=4,
                                        num_heads=2, mlp_ratio=2), 'test')
    _, rep = convert_state_dict(enh, tgt)
    assert rep.unexpected == ['patch_embed.projection.bias']
    # a missing key through the CLI (mmseg target)
    bad = {k: v for k, v in cim_sd.items() if k != 'backbone.layers.2.ln2.bias'}
    atomic_torch_save({'state_dict': bad, 'meta': {'cfg': ''}}, str(tmp_path / 'b.pth'))
    assert run_cli(tmp_path / 'b.pth', tmp_path / 'o.pth', '--target', 'mmseg',
                   '--num-heads', 2) == 1
    assert not (tmp_path / 'o.pth').exists()


# --------------------------------------------- every rename, checked by forward
def _randomised(cfg: dict):
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        m = PRE_MODELS.build(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    m.eval()
    return m


_VIT = dict(type='VisionTransformer', arch=TINY_ARCH, img_size=16, patch_size=4,
            out_type='raw', final_norm=False, out_indices=(0, 1, 2, 3))
_BEIT = dict(_VIT, type='BEiTViT', use_abs_pos_emb=False, use_rel_pos_bias=True)
_SEG_COMMON = dict(img_size=(16, 16), patch_size=4, embed_dims=32, num_layers=4,
                   num_heads=2, mlp_ratio=2, out_indices=(0, 1, 2, 3),
                   norm_cfg=dict(type='LN', eps=1e-6))

EQUIV_CASES = {
    'vit->mmseg MAE': (_VIT, 'mmseg', dict(type='MAE', **_SEG_COMMON)),
    'vit+ls->mmseg ViT (fold)': (dict(_VIT, layer_scale_init_value=0.1), 'mmseg',
                                 dict(type='VisionTransformer', patch_bias=True,
                                      final_norm=False, **_SEG_COMMON)),
    'vit->mmpretrain BEiTViT (k bias)': (
        _VIT, 'mmpretrain', dict(_VIT, type='BEiTViT', use_abs_pos_emb=True,
                                 use_rel_pos_bias=False)),
    'vit->timm': (_VIT, 'timm', None),
    'beit->mmseg BEiT': (_BEIT, 'mmseg', dict(type='BEiT', **_SEG_COMMON)),
    'beit(shared,abs)->mmseg MAE': (
        dict(_BEIT, use_abs_pos_emb=True, use_rel_pos_bias=False,
             use_shared_rel_pos_bias=True), 'mmseg', dict(type='MAE', **_SEG_COMMON)),
    'beit->timm': (_BEIT, 'timm', None),
}


@pytest.mark.parametrize('case', list(EQUIV_CASES))
def test_vit_conversion_is_exact(case):
    import mmseg.models  # noqa: F401
    src_cfg, kind, tgt_cfg = EQUIV_CASES[case]
    torch.manual_seed(0)
    src = _randomised(src_cfg)
    sd = src.state_dict()
    tgt = (build_target(kind, sd, num_heads=2)[0] if tgt_cfg is None
           else registry_target(kind, tgt_cfg, 'test'))
    out, rep = convert_state_dict(sd, tgt)
    assert rep.ok, rep.format()
    m = tgt.module
    res = m.load_state_dict(out, strict=False)
    assert not res.unexpected_keys
    assert set(res.missing_keys) <= {'ln2.weight', 'ln2.bias', 'fc_norm.weight',
                                     'fc_norm.bias'}
    m.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = [o[:, 1:] for o in src(x)]  # patch tokens of blocks 1..4
        if kind == 'timm':
            got = [m.forward_features(x)[:, 1:]]  # its final norm is Identity
        elif kind == 'mmseg':
            got = [f.flatten(2).transpose(1, 2) for f in m(x)]
        else:
            got = [o[:, 1:] for o in m(x)]
    for g, r in zip(got, ref[-len(got):]):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('typ', ['ResNet', 'ResNetV1c'])
def test_resnet_conversion_is_exact(typ):
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS as SEG_MODELS
    torch.manual_seed(0)
    src = _randomised(dict(type=typ, depth=18, out_indices=(0, 1, 2, 3)))
    sd = src.state_dict()
    tgt, _ = build_target('mmseg', sd)
    out, rep = convert_state_dict(sd, tgt)
    assert rep.ok and not rep.synthesized, rep.format()
    # the renames equal the positional alignment of the two state dicts
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        seg_sd = SEG_MODELS.build(dict(type=typ, depth=18)).state_dict()
    assert list(seg_sd) == list(out)
    assert all(torch.equal(out[ks], sd[kp]) for ks, kp in zip(seg_sd, sd))
    m = tgt.module
    m.load_state_dict(out, strict=True)
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for g, r in zip(m(x), src(x)):
            torch.testing.assert_close(g, r)
    if typ == 'ResNet':  # a plain stem can not fill mmseg's deep-stem ResNetV1c
        v1c = registry_target('mmseg', dict(type='ResNetV1c', depth=18), 'test')
        _, rep = convert_state_dict(sd, v1c)
        assert not rep.ok and 'conv1.weight' in rep.unexpected


# --------------------------------------------------------- relative positions
def test_rel_pos_resize_matches_mmseg_and_scipy():
    """The converter's resize of a BEiT table (16 px -> 32 px) equals mmseg's
    own (through the interp2d shim), which equals a direct spline fit."""
    import mmseg.models  # noqa: F401
    from scipy.interpolate import RectBivariateSpline

    from cim_mm.compat.interp2d import Interp2dShim
    from cim_mm.compat.interp2d import apply as install_scipy_interp2d_shim
    assert install_scipy_interp2d_shim() or True
    import scipy.interpolate
    torch.manual_seed(0)
    src = _randomised(_BEIT)
    sd = src.state_dict()
    tgt = registry_target('mmseg', dict(type='BEiT', **dict(_SEG_COMMON, img_size=(32, 32))),
                          'test')
    out, rep = convert_state_dict(sd, tgt)
    assert rep.ok and len(rep.resized) == 4
    key = 'layers.1.attn.relative_position_bias_table'
    assert out[key].shape == (15 * 15 + 3, 2)
    mine = tgt.module.resize_rel_pos_embed({key: sd[key].clone()})[key]
    torch.testing.assert_close(out[key], mine)

    # direct: the not-a-knot bicubic spline through the geometric grid
    table = sd[key][:-3]
    src_size, dst_size = 7, 15
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q ** (src_size // 2)) / (1.0 - q) > dst_size // 2:
            right = q
        else:
            left = q
    dis = np.cumsum([1.0] + [q ** (i + 1) for i in range(src_size // 2 - 1)])
    x = np.concatenate([-dis[::-1], [0.0], dis])
    t = np.arange(-(dst_size // 2), dst_size // 2 + 0.1, 1.0)
    for h in range(2):
        z = table[:, h].view(src_size, src_size).double().numpy()
        direct = RectBivariateSpline(x, x, z.T, kx=3, ky=3, s=0)(t, t).T
        np.testing.assert_allclose(out[key][:-3, h].view(dst_size, dst_size).double()
                                   .numpy(), direct, atol=1e-5)
    if getattr(scipy.interpolate.interp2d, '_cim_mm_shim', False):
        assert scipy.interpolate.interp2d is Interp2dShim


def test_interp2d_shim_matches_rect_bivariate_spline():
    from scipy.interpolate import RectBivariateSpline

    from cim_mm.compat.interp2d import Interp2dShim, spline_interp_matrix
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-8, 8, 9))
    y = np.sort(rng.uniform(-5, 5, 6))
    z = rng.normal(size=(6, 9))
    xq, yq = np.linspace(-9, 9, 13), np.linspace(-5, 6, 7)  # incl. outside: clipped
    for kind, k in (('cubic', 3), ('linear', 1)):
        direct = RectBivariateSpline(x, y, z.T, kx=k, ky=k, s=0)(xq, yq).T
        np.testing.assert_allclose(Interp2dShim(x, y, z, kind=kind)(xq, yq), direct,
                                   atol=1e-10)
    # fewer than 4 points: the interpolating polynomial
    a = spline_interp_matrix([0., 1., 3.], [2.])
    np.testing.assert_allclose(a.numpy() @ np.array([0., 1., 9.]), [4.])
    with pytest.raises(NotImplementedError):
        Interp2dShim(x, y, z, kind='quintic')


# ------------------------------------------------------------------- configs
def test_benchmark_configs():
    import glob
    files = sorted(glob.glob(osp.join(BENCH, '*.py')))
    assert len(files) >= 10
    for f in files:
        cfg = Config.fromfile(f)
        bb, name = cfg.model.backbone, osp.basename(f)
        init = bb.init_cfg
        assert init.type == 'Pretrained' and init.checkpoint, name
        if cfg.get('default_scope') == 'mmseg':
            assert cfg.model.pretrained is None, name
            if str(bb.type).startswith('mmpretrain.'):  # mmpretrain's names, 'backbone.'
                assert init.prefix == 'backbone.', name
            else:
                assert 'prefix' not in init, name  # mmseg's own backbones ignore prefix
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
                assert cfg[loader].collate_fn.type == 'pseudo_collate', name
            if bb.type in ('MAE', 'BEiT'):
                assert cfg.optim_wrapper.constructor == 'LayerDecayOptimizerConstructor'
        else:
            assert init.prefix == 'backbone.', name
            if 'vit-small' in name:  # mmpretrain's 'small' is NOT ViT-S/16
                from mmpretrain.models.backbones import VisionTransformer
                assert VisionTransformer.arch_zoo[bb.arch]['embed_dims'] == 384
            if 'linear' not in name and bb.type in ('VisionTransformer', 'BEiTViT',
                                                    'SDPABEiTViT'):
                assert cfg.optim_wrapper.constructor in (
                    'LearningRateDecayOptimWrapperConstructor',
                    'MergedLayerDecayOptimWrapperConstructor'), name


PAPER_VIT = {
    # pre-training config -> the downstream configs its enhancer must go into
    'cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py': [
        'vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py',
        'vit-base-p16_cim-pre_8xb2048-linear-coslr-90e_in1k.py',
        'upernet_vit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py',
        'upernet_beit-base-p16_cim-pre_8xb2-160k_ade20k-512x512.py',
    ],
    'cim-revdet_vit-small-p16_8xb256-amp-coslr-300e_in1k.py': [
        'vit-small-p16_cim-pre_8xb128-coslr-100e_in1k.py',
    ],
}


@pytest.mark.parametrize('pre', list(PAPER_VIT), ids=lambda p: p.split('_8xb')[0])
def test_paper_vit_enhancer_converts_into_its_benchmark_configs(pre, tmp_path):
    """The enhancer the paper recipes actually build (BEiT layout: shared
    relative position table, no absolute position embedding, layer scale) goes
    into every ViT downstream config we ship with nothing missing or unexpected,
    and loads back through each config's own loading path (verify)."""
    import mmseg.models  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'cim', pre))
    torch.manual_seed(0)
    with torch.no_grad():
        enhancer = PRE_MODELS.build(cfg.model.backbone.to_dict())
        for p in enhancer.parameters():  # no zero / unit tensor may pass by luck
            p.normal_(std=0.02)
    sd = {'backbone.' + k: v for k, v in enhancer.state_dict().items()}
    sd['generator.head.weight'] = torch.zeros(2, 2)  # dropped on purpose
    src = str(tmp_path / 'epoch_300.pth')
    atomic_torch_save({'state_dict': sd, 'meta': dict(cfg=cfg.pretty_text, epoch=300)},
                      src)
    shared = sd['backbone.rel_pos_bias.relative_position_bias_table']
    for target in PAPER_VIT[pre]:
        dst = str(tmp_path / target.replace('.py', '.pth'))
        rep = convert_checkpoint(src, dst, target=None,
                                 target_config=osp.join(BENCH, target), log=None)
        assert rep.ok and not rep.verify_failures, (target, rep.format())
        assert not rep.missing and not rep.unexpected and not rep.shape_mismatch
        out = safe_load(dst)['state_dict']
        prefix = 'backbone.' if 'upernet' not in target else ''
        assert not any('generator' in k for k in out)
        # every block starts from the enhancer's shared table (resized at 512 px)
        tables = [v for k, v in out.items() if k.endswith('relative_position_bias_table')]
        assert len(tables) == len(enhancer.layers)
        if 'upernet' not in target:
            for t in tables:
                torch.testing.assert_close(t, shared)
        # every other tensor the target shares with the enhancer is copied as is
        common = [k for k in out if 'backbone.' + k[len(prefix):] in sd
                  and not k.endswith('relative_position_index')]
        assert len(common) >= 12 * len(enhancer.layers), target
        for k in common:
            torch.testing.assert_close(out[k], sd['backbone.' + k[len(prefix):]], msg=k)


@pytest.mark.parametrize('target', [
    'resnet50_cim-pre_8xb256-rsb-a2-300e_in1k.py',
    'resnet50_cim-pre_8xb32-linear-steplr-100e_in1k.py',
    'upernet_r50_cim-pre_4xb4-160k_ade20k-512x512.py',
])
def test_paper_r50_enhancer_converts_into_its_benchmark_configs(target, tmp_path):
    """The ResNet-50 enhancer of the paper recipe goes into each shipped ResNet-50
    downstream config with every backbone key loaded, tensor for tensor."""
    import mmseg.models  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'cim',
                                   'cim-respix_resnet50_8xb256-amp-coslr-300e_in1k.py'))
    torch.manual_seed(0)
    with torch.no_grad():
        enhancer = PRE_MODELS.build(cfg.model.backbone.to_dict())
        for p in enhancer.parameters():
            p.normal_(std=0.02)
    sd = {'backbone.' + k: v for k, v in enhancer.state_dict().items()}
    sd['neck.proj.weight'] = torch.zeros(2, 2)  # dropped on purpose
    src = str(tmp_path / 'epoch_300.pth')
    atomic_torch_save({'state_dict': sd, 'meta': dict(cfg=cfg.pretty_text, epoch=300)}, src)
    dst = str(tmp_path / 'out.pth')
    rep = convert_checkpoint(src, dst, target=None, target_config=osp.join(BENCH, target),
                             log=None)
    assert rep.ok and not rep.verify_failures, rep.format()
    out = safe_load(dst)['state_dict']
    prefix = '' if 'upernet' in target else 'backbone.'
    assert {k[len(prefix):] for k in out} == {k[9:] for k in sd if k.startswith('backbone.')}
    for k, v in out.items():
        torch.testing.assert_close(v, sd['backbone.' + k[len(prefix):]], msg=k)
