"""Downstream for ConvNeXt and Swin enhancers: mmpretrain classifiers, mmseg UperNet.

CPU only, no downloads. The enhancers the shipped pre-training configs build
(random weights: no tensor may pass by luck) are converted into every shipped
downstream config of their family, checked key by key and shape by shape, and
loaded back through each config's own loading path; the renames (none) are
checked by forward equivalence: the converted backbone computes what the
enhancer did, at every level both output.
"""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cim_mm.converters import (ConversionError, build_target, convert_checkpoint,
                               convert_state_dict, registry_target)
from cim_mm.utils import atomic_torch_save, safe_load
from mmpretrain.registry import MODELS as PRE_MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CIM_DIR = osp.join(ROOT, 'configs', 'cim')
BENCH = osp.join(CIM_DIR, 'benchmarks')

# pre-training config -> the downstream configs its enhancer must go into
SHIPPED = {
    'cim-respix_convnext-tiny_8xb256-amp-coslr-300e_in1k.py': [
        'convnext-tiny_cim-pre_8xb256-coslr-300e_in1k.py',
        'convnext-tiny_cim-pre_8xb2048-linear-coslr-90e_in1k.py',
        'upernet_convnext-tiny_cim-pre_8xb2-amp-160k_ade20k-512x512.py',
    ],
    'cim-respix_swin-tiny_8xb256-amp-coslr-300e_in1k.py': [
        'swin-tiny-w7_cim-pre_8xb256-coslr-100e_in1k.py',
        'swin-tiny_cim-pre_8xb2048-linear-coslr-90e_in1k.py',
        'upernet_swin-tiny_cim-pre_8xb2-160k_ade20k-512x512.py',
    ],
    'cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py': [
        'convnext-w64_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py',
        'convnext-w64_cim-pre_1xb256-linear-700it_fashion-mnist-32px.py',
        'upernet_convnext-w64_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py',
    ],
    'cim-revdet_swin-w64_1xb64-500it_fashion-mnist-32px.py': [
        'swin-w64_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py',
        'swin-w64_cim-pre_1xb256-linear-700it_fashion-mnist-32px.py',
        'upernet_swin-w64_cim-pre_1xb8-400it_fashion-mnist-scenes-64x64.py',
    ],
}
DEMO = {  # the demo enhancers, as their configs build them
    'convnext': 'cim-respix_convnext-w64_1xb64-500it_fashion-mnist-32px.py',
    'swin': 'cim-respix_swin-w64_1xb64-500it_fashion-mnist-32px.py',
}


def _randomised_enhancer(pre: str) -> tuple[torch.nn.Module, Config]:
    cfg = Config.fromfile(osp.join(CIM_DIR, pre))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        enhancer = PRE_MODELS.build(cfg.model.backbone.to_dict())
    with torch.no_grad():
        for p in enhancer.parameters():  # no zero / unit tensor may pass by luck
            p.normal_(std=0.02)
    enhancer.eval()  # (ConvNeXt's / Swin's train() return None)
    return enhancer, cfg


def _cim_checkpoint(pre: str, folder) -> tuple[str, dict]:
    """A CIM checkpoint as the Runner writes it: the enhancer, a neck, a generator
    key (dropped on purpose) and the config text in meta."""
    enhancer, cfg = _randomised_enhancer(pre)
    sd = {'backbone.' + k: v for k, v in enhancer.state_dict().items()}
    sd['neck.lateral_convs.0.weight'] = torch.zeros(2, 2)
    sd['generator.head.weight'] = torch.zeros(2, 2)
    src = str(folder / f'{osp.splitext(pre)[0]}.pth')
    atomic_torch_save({'state_dict': sd, 'meta': dict(cfg=cfg.pretty_text, epoch=1)}, src)
    return src, sd


@pytest.mark.parametrize('pre', list(SHIPPED), ids=lambda p: p.split('_')[1])
def test_enhancer_converts_into_every_shipped_config_of_its_family(pre, tmp_path):
    import mmseg.models  # noqa: F401
    src, sd = _cim_checkpoint(pre, tmp_path)
    enhancer_keys = {k[len('backbone.'):] for k in sd if k.startswith('backbone.')}
    for target in SHIPPED[pre]:
        dst = str(tmp_path / target.replace('.py', '.pth'))
        rep = convert_checkpoint(src, dst, target=None, target_config=osp.join(BENCH, target),
                                 log=None)
        assert rep.ok and rep.verified and not rep.verify_failures, (target, rep.format())
        assert rep.dropped_components == {'generator': 1, 'tokenizer': 0, 'head': 0, 'neck': 1,
                                          'data_preprocessor': 0}
        # every decision is about an output norm: nothing else differs
        assert all(k.startswith('norm') for k, _ in rep.new_by_design + rep.dropped_by_design)
        out = safe_load(dst)['state_dict']
        prefix = 'backbone.' if rep.prefix else ''
        got = {k[len(prefix):] for k in out}
        assert got == (enhancer_keys - {k for k, _ in rep.dropped_by_design}), target
        for k, v in out.items():  # copied as is
            assert torch.equal(v, sd['backbone.' + k[len(prefix):]]), (target, k)
        norms = sorted(k for k in got if k.startswith('norm'))
        if 'upernet' in target:  # all stages: the enhancer's two norms loaded, the others new
            assert {k for k in enhancer_keys if k.startswith('norm')} <= got
            assert rep.new_by_design and not rep.dropped_by_design
        else:  # the last stage only: its norm loaded, the neck's other input dropped
            assert len(norms) == 2 and len(rep.dropped_by_design) == 2, target


CASES = {
    # family -> (mmpretrain target, mmseg target): the enhancer's arguments, other outputs
    'convnext': (dict(out_indices=(2, ), gap_before_final_norm=False),
                 dict(type='mmpretrain.ConvNeXt', out_indices=(0, 1, 2))),
    'swin': (dict(out_indices=(2, )), None),
}


def _mmseg_swin() -> dict:
    return dict(type='SwinTransformer', pretrain_img_size=32, embed_dims=64,
                depths=[2, 2, 2], num_heads=[2, 4, 8], patch_size=2, strides=(2, 2, 2),
                window_size=4, use_abs_pos_embed=False, out_indices=(0, 1, 2))


@pytest.mark.parametrize('family', list(CASES))
@pytest.mark.parametrize('kind', ['mmpretrain', 'mmseg'])
def test_conversion_is_exact(family, kind):
    """The converted backbone computes the enhancer's function: equal outputs at
    every level both give (after the output norm both have), at two sizes."""
    import mmseg.models  # noqa: F401
    enhancer, cfg = _randomised_enhancer(DEMO[family])
    sd = enhancer.state_dict()
    pre_kw, seg_cfg = CASES[family]
    if kind == 'mmpretrain':
        tgt_cfg = dict(cfg.model.backbone.to_dict(), **pre_kw)
    else:
        tgt_cfg = dict(cfg.model.backbone.to_dict(), **seg_cfg) if seg_cfg else _mmseg_swin()
    target = registry_target(kind, tgt_cfg, 'test')
    assert target.family == 'featmap'
    out, rep = convert_state_dict(sd, target)
    assert rep.ok and not rep.missing and not rep.unexpected, rep.format()
    assert target.module.load_state_dict(out, strict=False).missing_keys == [
        k for k, _ in rep.new_by_design]
    module = target.module
    module.eval()
    src_levels = dict(zip(cfg.model.backbone.out_indices, range(9)))
    tgt_levels = tgt_cfg['out_indices']
    for size in (32, 64):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            ref, got = enhancer(x), module(x)
        compared = 0
        for j, stage in enumerate(tgt_levels):
            if stage in src_levels:
                torch.testing.assert_close(got[j], ref[src_levels[stage]], rtol=0, atol=0)
                compared += 1
        assert compared >= 1


def test_without_a_target_config_the_user_is_told_to_give_one(tmp_path):
    src, _ = _cim_checkpoint(DEMO['swin'], tmp_path)
    with pytest.raises(ConversionError, match='pass --target-config') as err:
        convert_checkpoint(src, str(tmp_path / 'out.pth'), target='mmpretrain', log=None)
    assert '\n' not in str(err.value)
    enhancer, _ = _randomised_enhancer(DEMO['convnext'])
    with pytest.raises(ConversionError, match='neither a ViT nor a ResNet'):
        build_target('mmseg', enhancer.state_dict())


def test_another_family_or_size_is_a_mismatch_and_nothing_is_written(tmp_path):
    import mmseg.models  # noqa: F401
    src, _ = _cim_checkpoint(DEMO['convnext'], tmp_path)
    for target, what in (('swin-w64_cim-pre_1xb64-ft-1000it_fashion-mnist-32px.py',
                          r'[1-9]\d* missing, [1-9]\d* unexpected'),  # another family
                         ('convnext-tiny_cim-pre_8xb256-coslr-300e_in1k.py',
                          'shape-mismatched')):  # the same family, other widths
        dst = tmp_path / 'out.pth'
        with pytest.raises(ConversionError, match=what):
            convert_checkpoint(src, str(dst), target=None,
                               target_config=osp.join(BENCH, target), log=None)
        assert not dst.exists()
    # a ViT target for a ConvNeXt enhancer: refused by layout, before any key
    enhancer, _ = _randomised_enhancer(DEMO['convnext'])
    vit = registry_target('mmpretrain', dict(type='VisionTransformer', arch=dict(
        embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64), img_size=32,
        patch_size=4), 'test')
    with pytest.raises(ConversionError, match='use a target of its own class'):
        convert_state_dict(enhancer.state_dict(), vit)


def test_swin_head_counts_are_compared_with_the_checkpoint_config(tmp_path):
    """Swin's head count is in its relative tables' shapes, and the architecture
    check reads it from meta.cfg too: another head count is refused."""
    src, _ = _cim_checkpoint(DEMO['swin'], tmp_path)
    cfg = Config.fromfile(osp.join(BENCH, 'swin-w64_cim-pre_1xb64-ft-1000it_fashion-mnist-'
                                   '32px.py'))
    cfg.model.backbone.arch = dict(embed_dims=64, depths=[2, 2, 2], num_heads=[4, 8, 16])
    path = str(tmp_path / 'heads.py')
    cfg.dump(path)
    with pytest.raises(ConversionError, match='num_heads'):
        convert_checkpoint(src, str(tmp_path / 'out.pth'), target=None, target_config=path,
                           log=None)


CLS_CONFIGS = [c for cs in SHIPPED.values() for c in cs if not c.startswith('upernet')]
SEG_CONFIGS = [c for cs in SHIPPED.values() for c in cs if c.startswith('upernet')]


def _fresh_model_cfg(cfg: Config) -> dict:
    model = cfg.model.to_dict()
    model['backbone'].pop('init_cfg', None)  # no converted file here: random weights
    return model


@pytest.mark.parametrize('name', CLS_CONFIGS, ids=lambda n: n.split('_cim')[0] + n[-12:-3])
def test_classification_config_builds_its_optimizer_and_trains_a_step(name):
    """The shipped mmpretrain configs as mmpretrain runs them: the classifier, its
    own optimizer constructor (layer-wise decay where it has one), one step."""
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain
    cfg = Config.fromfile(osp.join(BENCH, name))
    model_cfg = _fresh_model_cfg(cfg)
    model_cfg.pop('train_cfg', None)  # mixup / cutmix need their hooks' batch sizes
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        model = PRE_MODELS.build(model_cfg)
        model.init_weights()
        wrapper = cfg.optim_wrapper.to_dict()
        amp_to_plain(wrapper, accelerator=False)
        optim = build_optim_wrapper(model, wrapper)
    size = 224 if 'in1k' in name else 32
    n = 4
    data = dict(inputs=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8),
                data_samples=[DataSample().set_gt_label(i % 10) for i in range(n)])
    model.train()
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    log = model.train_step(data, optim)
    assert torch.isfinite(log['loss'])
    if 'linear' in name:  # a linear probe: nothing in the backbone moved
        for k, v in model.backbone.state_dict().items():
            assert torch.equal(v, frozen[k]), k
    else:
        assert any(not torch.equal(v, frozen[k])
                   for k, v in model.backbone.state_dict().items())


@pytest.mark.parametrize('name', SEG_CONFIGS, ids=lambda n: n.split('_cim')[0] + n[-12:-3])
def test_segmentation_config_builds_its_optimizer(name):
    import mmseg.models  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS as SEG_MODELS

    from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain
    cfg = Config.fromfile(osp.join(BENCH, name))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(_fresh_model_cfg(cfg))
        wrapper = cfg.optim_wrapper.to_dict()
        amp_to_plain(wrapper, accelerator=False)
        optim = build_optim_wrapper(model, wrapper)
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    in_groups = sum(p.numel() for g in optim.optimizer.param_groups for p in g['params'])
    assert in_groups >= n_backbone  # the backbone trains (with the heads)
    size = 64 if 'scenes' in name else 512
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, size, size))
    assert [f.shape[1] for f in feats] == list(cfg.model.decode_head.in_channels)


def test_a_config_describes_only_the_weights_it_builds():
    """``describes``: the same keys and shapes, nothing more or less; a ConvNeXt
    with another stage's output norm, or a config that does not build, does not
    describe the weights (the converter then takes no facts from it)."""
    from cim_mm.converters.architecture import describes
    cfg = dict(type='ConvNeXt', arch=dict(depths=[1, 1], channels=[8, 16]), out_indices=(1, ))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        state = PRE_MODELS.build(dict(cfg)).state_dict()
    assert describes(cfg, state)
    assert not describes(dict(cfg, out_indices=(0, 1)), state)  # norm0 too
    assert not describes(cfg, {k: v for k, v in state.items() if not k.startswith('norm1.')})
    wider = dict(cfg, arch=dict(depths=[1, 1], channels=[8, 32]))
    assert not describes(wider, state)
    assert not describes(dict(cfg, type='NoSuchBackbone'), state)
