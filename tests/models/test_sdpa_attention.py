"""SDPABEiTAttention / SDPABEiTViT / SDPABEiTPretrainViT: mmpretrain's BEiT
attention computed by F.scaled_dot_product_attention, same function, same keys."""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.models.utils import BEiTAttention
from mmpretrain.registry import MODELS

from cim_mm.models.backbones import (SDPABEiTAttention, SDPABEiTPretrainViT, SDPABEiTViT,
                                     use_sdpa_attention)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WINDOW = (3, 4)  # a non-square grid: N = 1 + 12 tokens
N = 1 + WINDOW[0] * WINDOW[1]
C, HEADS = 16, 2
TINY_ARCH = dict(embed_dims=C, num_layers=2, num_heads=HEADS, feedforward_channels=32)


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-zero values everywhere (q/v biases and tables start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def _run(module: nn.Module, inputs: tuple, seed: int = 1) -> tuple[torch.Tensor, dict]:
    """Forward, a random backward; returns the output and every gradient
    (parameters and float inputs) by name."""
    inputs = tuple(t.detach().clone().requires_grad_(t.is_floating_point())
                   if isinstance(t, torch.Tensor) else t for t in inputs)
    torch.manual_seed(seed)  # the same drop-out draws for both implementations
    out = module(*inputs)
    out = out[-1] if isinstance(out, tuple) else out
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    out.backward(grad)
    grads = {f'param:{n}': p.grad for n, p in module.named_parameters()}
    grads.update({f'input:{i}': t.grad for i, t in enumerate(inputs)
                  if isinstance(t, torch.Tensor) and t.requires_grad})
    return out.detach(), grads


def _assert_same(plain: nn.Module, fast: nn.Module, inputs: tuple, atol: float) -> None:
    out_p, grads_p = _run(plain, inputs)
    out_f, grads_f = _run(fast, inputs)
    torch.testing.assert_close(out_f, out_p, atol=atol, rtol=0)
    assert grads_f.keys() == grads_p.keys()
    for name, g in grads_p.items():
        assert g is not None, name  # every parameter takes part
        torch.testing.assert_close(grads_f[name], g, atol=atol, rtol=0, msg=name)


def _attention(bias, own_table: bool, attn_drop: float = 0.0) -> BEiTAttention:
    layer = BEiTAttention(C, HEADS, window_size=WINDOW, use_rel_pos_bias=own_table,
                          bias=bias, attn_drop_rate=attn_drop)
    _randomise(layer)
    return layer.double()


@pytest.mark.parametrize('bias', ['qv_bias', True, False])
@pytest.mark.parametrize('own_table,shared', [(True, False), (False, True), (True, True),
                                              (False, False)])
def test_layer_forward_and_every_gradient_match_mmpretrain(bias, own_table, shared):
    plain = _attention(bias, own_table)
    fast = copy.deepcopy(plain)
    assert use_sdpa_attention(fast) == 1 and type(fast) is SDPABEiTAttention
    x = torch.randn(3, N, C, dtype=torch.float64)
    rel = torch.randn(HEADS, N, N, dtype=torch.float64) if shared else None
    _assert_same(plain, fast, (x, rel), atol=1e-10)
    if own_table:
        assert plain.relative_position_bias_table.grad.abs().sum() > 0
    if bias == 'qv_bias':
        assert fast.q_bias.grad.abs().sum() > 0 and fast.v_bias.grad.abs().sum() > 0
    assert fast.state_dict().keys() == plain.state_dict().keys()


def test_layer_attention_dropout_as_mmpretrain():
    plain = _attention('qv_bias', own_table=True, attn_drop=0.3)
    fast = copy.deepcopy(plain)
    use_sdpa_attention(fast)
    x = torch.randn(3, N, C, dtype=torch.float64)
    plain.train(), fast.train()
    # the same draws from the global generator: the same dropped weights
    _assert_same(plain, fast, (x, None), atol=1e-10)
    torch.manual_seed(1)
    dropped = fast(x)
    fast.eval(), plain.eval()
    kept = fast(x)
    assert not torch.allclose(dropped, kept)  # drop-out is applied in training
    torch.testing.assert_close(kept, plain(x), atol=1e-10, rtol=0)  # and not in eval


def test_layer_under_bf16_autocast_stays_close():
    plain = _attention('qv_bias', own_table=True).float()
    fast = copy.deepcopy(plain)
    use_sdpa_attention(fast)
    x = torch.randn(2, N, C)
    rel = torch.randn(HEADS, N, N)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out_f = fast(x, rel)
        out_p = plain(x, rel)
    assert out_f.dtype == out_p.dtype == torch.bfloat16
    torch.testing.assert_close(out_f.float(), out_p.float(), atol=0.05, rtol=0.05)


def test_other_attention_subclasses_are_left_alone():
    class Custom(BEiTAttention):
        pass

    model = nn.ModuleList([Custom(C, HEADS, window_size=None, use_rel_pos_bias=False),
                           BEiTAttention(C, HEADS, window_size=None, use_rel_pos_bias=False)])
    assert use_sdpa_attention(model) == 1
    assert type(model[0]) is Custom and type(model[1]) is SDPABEiTAttention


def _backbone_pair(plain_type: str, fast_type: str, **kw) -> tuple[nn.Module, nn.Module]:
    cfg = dict(arch=TINY_ARCH, img_size=(12, 16), patch_size=4, layer_scale_init_value=0.1,
               **kw)
    plain = MODELS.build(dict(cfg, type=plain_type))
    _randomise(plain)
    fast = MODELS.build(dict(cfg, type=fast_type))
    fast.load_state_dict(plain.state_dict(), strict=True)
    return plain.double(), fast.double()


@pytest.mark.parametrize('rel', ['per_layer', 'shared'])
def test_beit_vit_matches_mmpretrain(rel):
    plain, fast = _backbone_pair(
        'BEiTViT', 'SDPABEiTViT', out_type='featmap', final_norm=True,
        use_rel_pos_bias=rel == 'per_layer', use_shared_rel_pos_bias=rel == 'shared')
    assert all(type(layer.attn) is SDPABEiTAttention for layer in fast.layers)
    assert all(type(layer.attn) is BEiTAttention for layer in plain.layers)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    img = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    _assert_same(plain, fast, (img, ), atol=1e-9)
    table = ('layers.0.attn.relative_position_bias_table' if rel == 'per_layer'
             else 'rel_pos_bias.relative_position_bias_table')
    assert dict(fast.named_parameters())[table].grad.abs().sum() > 0


def test_beit_pretrain_vit_with_mask_matches_mmpretrain():
    plain, fast = _backbone_pair('BEiTPretrainViT', 'SDPABEiTPretrainViT')
    assert fast.state_dict().keys() == plain.state_dict().keys()
    img = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    mask = torch.rand(2, 3, 4) < 0.4  # [B, h, w]
    _assert_same(plain, fast, (img, mask), atol=1e-9)
    assert fast.mask_token.grad.abs().sum() > 0


def test_plain_checkpoint_loads_strictly_into_the_fast_backbone(tmp_path):
    cfg = dict(arch=TINY_ARCH, img_size=16, patch_size=4, use_rel_pos_bias=True)
    plain = MODELS.build(dict(cfg, type='BEiTViT'))
    _randomise(plain)
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict=plain.state_dict()), path)
    fast = MODELS.build(dict(cfg, type='SDPABEiTViT'))
    load_checkpoint(fast, path, map_location='cpu', strict=True)
    for k, v in plain.state_dict().items():
        assert torch.equal(fast.state_dict()[k], v), k
    back = MODELS.build(dict(cfg, type='BEiTViT'))  # and back again
    back.load_state_dict(fast.state_dict(), strict=True)
    assert isinstance(fast, SDPABEiTViT)


def test_layer_depth_for_layer_decay_is_mmpretrain_s():
    plain = MODELS.build(dict(type='BEiTPretrainViT', arch=TINY_ARCH, img_size=16,
                              patch_size=4))
    fast = SDPABEiTPretrainViT(arch=TINY_ARCH, img_size=16, patch_size=4)
    names = [n for n, _ in plain.named_parameters()]
    assert [fast.get_layer_depth(n) for n in names] == [plain.get_layer_depth(n)
                                                        for n in names]


def _backbone_types(cfg: dict) -> dict[str, str]:
    model = cfg['model']
    out = {'backbone': model['backbone']['type']}
    if 'generator' in model:
        out['generator'] = model['generator']['backbone'].get('type', 'BEiTPretrainViT')
    return out


SHIPPED = {
    'cim/cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py': ('SDPABEiTViT', True),
    'cim/cim-revdet_vit-base-p16_8xb256-amp-coslr-800e_in1k.py': ('SDPABEiTViT', True),
    'cim/cim-respix_vit-small-p16_8xb256-amp-coslr-300e_in1k.py': ('SDPABEiTViT', True),
    'cim/cim-revdet_vit-small-p16_8xb256-amp-coslr-800e_in1k.py': ('SDPABEiTViT', True),
    'cim/cim-respix_resnet50_8xb256-amp-coslr-300e_in1k.py': ('ResNet', True),
    'cim/cim-revdet_resnet50_8xb256-amp-coslr-300e_in1k.py': ('ResNet', True),
    'cim/benchmarks/vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py': ('SDPABEiTViT', None),
    'cim/benchmarks/vit-small-p16_cim-pre_8xb128-coslr-100e_in1k.py': ('SDPABEiTViT', None),
    'cim/benchmarks/vit-base-p16_cim-pre_8xb2048-linear-coslr-90e_in1k.py':
        ('SDPABEiTViT', None),
}


@pytest.mark.parametrize('path', sorted(SHIPPED))
def test_shipped_recipes_use_fused_attention(path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', path)).to_dict()
    enhancer, generator = SHIPPED[path]
    types = _backbone_types(cfg)
    assert types['backbone'] == enhancer
    if generator:
        assert types['generator'] == 'SDPABEiTPretrainViT'
