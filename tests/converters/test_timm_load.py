"""The timm file loads into the timm models docs/downstream.md names, with the
arguments it names: only the classifier head is missing, nothing is unexpected.

The converter writes a mean-pooled model's keys: ``fc_norm`` (new by design, at
LayerNorm's initial 1 / 0) and no final ``norm``. timm's ViT pools the class
token by default (``global_pool='token'``: ``norm``, no ``fc_norm``), so it is
built with ``global_pool='avg'``; timm's ``Beit`` pools the mean by default.
"""
from __future__ import annotations

import importlib.util
import os.path as osp

import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from cim_mm.utils import atomic_torch_save, safe_load
from helpers import REPO_ROOT, tiny_vit_cim_cfg

HEAD = ['head.weight', 'head.bias']
#: the tiny enhancer's dims, passed to timm beside the arguments the docs name
TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.)
#: the paper recipes' enhancer layout (configs/cim/cim-*_vit-*_in1k.py), in miniature
PAPER_LAYOUT = dict(type='BEiTViT', use_abs_pos_emb=False, use_rel_pos_bias=False,
                    use_shared_rel_pos_bias=True, layer_scale_init_value=0.1)


def convert_to_timm(backbone: dict, tmp_path) -> dict:
    """A tiny CIM checkpoint with this enhancer, saved as mmengine saves it and
    converted by ``tools/model_converters/cim_to_downstream.py --target timm``."""
    cfg = tiny_vit_cim_cfg()
    cfg['backbone'].update(backbone)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    src, dst = str(tmp_path / 'iter_3.pth'), str(tmp_path / 'timm.pth')
    atomic_torch_save({'state_dict': model.state_dict(),
                       'meta': dict(cfg=Config(dict(model=cfg)).pretty_text, iter=3)}, src)
    spec = importlib.util.spec_from_file_location(
        'cim_to_downstream', osp.join(REPO_ROOT, 'tools', 'model_converters',
                                      'cim_to_downstream.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([src, dst, '--target', 'timm']) == 0
    sd = safe_load(dst)
    enhancer = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
                if k.startswith('backbone.')}
    assert torch.equal(sd['blocks.1.mlp.fc2.weight'], enhancer['layers.1.ffn.layers.1.weight'])
    return sd


def test_plain_vit_loads_into_timm_vit_with_global_pool_avg(tmp_path):
    sd = convert_to_timm({}, tmp_path)
    assert 'fc_norm.weight' in sd and 'norm.weight' not in sd
    vit = timm.models.vision_transformer.VisionTransformer
    res = vit(**TINY, global_pool='avg', num_classes=3).load_state_dict(sd, strict=False)
    assert res.missing_keys == HEAD and res.unexpected_keys == []
    vit(**TINY, global_pool='avg', num_classes=0).load_state_dict(sd, strict=True)
    # timm's default, the class token: the keys of another pooling
    res = vit(**TINY, num_classes=3).load_state_dict(sd, strict=False)
    assert res.unexpected_keys == ['fc_norm.weight', 'fc_norm.bias']
    assert set(res.missing_keys) == {'norm.weight', 'norm.bias', *HEAD}


@pytest.mark.parametrize('num_classes', [3, 0])
def test_paper_layout_loads_into_timm_beit_base(num_classes, tmp_path):
    """``beit_base_patch16_224`` with the shared relative position table is the
    paper ViT-B/16 recipe's layout (no absolute position embedding, layer scale,
    q/v biases): its named defaults are used here, only the dims are the tiny ones."""
    sd = convert_to_timm(PAPER_LAYOUT, tmp_path)
    model = timm.create_model('beit_base_patch16_224', pretrained=False,
                              use_rel_pos_bias=False, use_shared_rel_pos_bias=True,
                              num_classes=num_classes, **TINY)
    if num_classes:
        res = model.load_state_dict(sd, strict=False)
        assert res.missing_keys == HEAD and res.unexpected_keys == []
    else:
        model.load_state_dict(sd, strict=True)
    # the tensors the enhancer trained are the ones timm uses
    torch.testing.assert_close(model.rel_pos_bias.relative_position_bias_table,
                               sd['rel_pos_bias.relative_position_bias_table'])


def test_resnet_loads_into_timm_resnet_of_its_depth():
    from cim_mm.converters import build_target, convert_state_dict
    torch.manual_seed(0)
    sd = MODELS.build(dict(type='ResNet', depth=18)).state_dict()
    out, rep = convert_state_dict(sd, build_target('timm', sd)[0])
    assert rep.ok, rep.format()
    res = timm.create_model('resnet18', pretrained=False, num_classes=3).load_state_dict(
        out, strict=False)
    assert res.missing_keys == ['fc.weight', 'fc.bias'] and res.unexpected_keys == []
    timm.create_model('resnet18', pretrained=False, num_classes=0).load_state_dict(
        out, strict=True)
