"""The ``attn_impl`` switch of SDPABEiTAttention / SDPABEiTViT / SDPABEiTPretrainViT:
'flex' and 'cudnn' compute what 'sdpa' computes, forward and every gradient.

On the CPU, torch's public ``flex_attention`` refuses a backward (its Triton
backward is CUDA's); the ``flex_backward_on_cpu`` fixture lifts that check only,
so the same call runs FlexAttention's reference implementation, which
differentiates the ``score_mod`` and its captured bias as the GPU kernel does.
'cudnn' runs on CUDA only; ``cudnn_on_cpu`` lets its whole path (checks, bias
layout, the one-backend context) run on the CPU with the math backend in
place of cuDNN.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.attention.flex_attention as torch_flex
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.models.utils import BEiTAttention
from mmpretrain.registry import MODELS
from torch.nn.attention import SDPBackend

import cim_mm.models.backbones.attention_kernels as kernels
from cim_mm.engine.dynamo_counts import dynamo_counts
from cim_mm.engine.hooks import compile_blocks
from cim_mm.models.backbones import ATTN_IMPLS, SDPABEiTAttention, use_sdpa_attention
from cim_mm.models.backbones.attention_kernels import check_attn_impl, cudnn_bias

WINDOW = (3, 4)  # a non-square grid: N = 1 + 12 tokens, as the recipes' cls token + grid
N = 1 + WINDOW[0] * WINDOW[1]
C, HEADS = 16, 2
TINY_ARCH = dict(embed_dims=C, num_layers=2, num_heads=HEADS, feedforward_channels=32)
RECIPE_MODEL = 'configs/_base_/models/cim_vit-base-p16.py'


@pytest.fixture
def flex_backward_on_cpu(monkeypatch):
    monkeypatch.setattr(torch_flex, '_validate_device', lambda *tensors: None)


@pytest.fixture
def cudnn_on_cpu(monkeypatch):
    monkeypatch.setattr(kernels, 'CUDNN_DEVICE', 'cpu')
    monkeypatch.setattr(kernels, 'CUDNN_BACKEND', SDPBackend.MATH)


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-zero values everywhere (q/v biases and tables start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def _run(module: nn.Module, inputs: tuple) -> tuple[torch.Tensor, dict]:
    """Forward and a random backward (fp32 seeds); the output and every
    gradient (parameters and float inputs) by name."""
    inputs = tuple(t.detach().clone().requires_grad_(t.is_floating_point())
                   if isinstance(t, torch.Tensor) else t for t in inputs)
    out = module(*inputs)
    out = out[-1] if isinstance(out, tuple) else out
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out.dtype)
    out.backward(grad)
    grads = {f'param:{n}': p.grad for n, p in module.named_parameters() if p.requires_grad}
    grads.update({f'input:{i}': t.grad for i, t in enumerate(inputs)
                  if isinstance(t, torch.Tensor) and t.requires_grad})
    return out.detach(), grads


def _assert_close(a: torch.Tensor, b: torch.Tensor, rel: float, name: str = '') -> None:
    """Relative error by norm (bf16 rounding is relative)."""
    err = ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()
    assert err <= rel, f'{name}: relative error {err:.2e} > {rel:.0e}'


def _assert_same(ref: nn.Module, other: nn.Module, inputs: tuple, rel: float) -> None:
    out_r, grads_r = _run(ref, inputs)
    out_o, grads_o = _run(other, inputs)
    assert out_o.dtype == out_r.dtype
    _assert_close(out_o, out_r, rel, 'output')
    assert grads_o.keys() == grads_r.keys()
    for name, g in grads_r.items():
        assert g is not None and g.abs().sum() > 0, name  # every parameter takes part
        _assert_close(grads_o[name], g, rel, name)


def _layer_pair(impl: str, bias='qv_bias', own_table: bool = True,
                dtype: torch.dtype = torch.float64) -> tuple[nn.Module, nn.Module]:
    ref = BEiTAttention(C, HEADS, window_size=WINDOW, use_rel_pos_bias=own_table, bias=bias)
    _randomise(ref)
    ref = ref.to(dtype)
    other = copy.deepcopy(ref)
    use_sdpa_attention(ref)
    use_sdpa_attention(other, impl)
    assert (ref.attn_impl, other.attn_impl) == ('sdpa', impl)
    return ref, other


def _inputs(shared: bool, dtype: torch.dtype = torch.float64) -> tuple:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, N, C, generator=g, dtype=dtype)  # [B, N, C]
    rel = torch.randn(HEADS, N, N, generator=g, dtype=dtype) if shared else None
    return x, rel


# --- the default --------------------------------------------------------------


def test_the_default_is_sdpa_and_computes_exactly_the_inline_attention():
    layer = BEiTAttention(C, HEADS, window_size=WINDOW, use_rel_pos_bias=True, bias='qv_bias')
    _randomise(layer)
    use_sdpa_attention(layer)
    assert layer.attn_impl == SDPABEiTAttention.attn_impl == 'sdpa'
    x, rel = _inputs(shared=True, dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x, rel)
        # the same steps written out: qkv, the bias as a [1, nH, N, N] mask, SDPA
        qkv_bias = torch.cat((layer.q_bias, torch.zeros_like(layer.v_bias), layer.v_bias))
        qkv = F.linear(x, layer.qkv.weight, qkv_bias).reshape(3, N, 3, HEADS, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = (layer.own_position_bias() + rel).to(q.dtype).unsqueeze(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=layer.scale)
        expected = layer.proj(y.transpose(1, 2).reshape(3, N, C))
    assert torch.equal(out, expected)


def test_unknown_or_unavailable_impl_is_a_one_line_error(monkeypatch):
    assert ATTN_IMPLS == ('sdpa', 'flex', 'cudnn')
    with pytest.raises(ValueError, match=r"attn_impl='fast' is not one of .*'flex'"):
        check_attn_impl('fast')
    with pytest.raises(ValueError, match='attn_impl'):
        MODELS.build(dict(type='SDPABEiTViT', arch=TINY_ARCH, img_size=16, patch_size=4,
                          attn_impl='fused'))
    layer = BEiTAttention(C, HEADS, window_size=None, use_rel_pos_bias=False)
    with pytest.raises(ValueError, match='attn_impl'):
        use_sdpa_attention(layer, 'flash')
    assert type(layer) is BEiTAttention  # nothing switched
    monkeypatch.setattr(kernels, '_flex_attention', None)  # a torch without FlexAttention
    with pytest.raises(RuntimeError, match=r"attn_impl='flex' needs .*flex_attention"):
        check_attn_impl('flex')


# --- flex -----------------------------------------------------------------------


@pytest.mark.parametrize('bias', ['qv_bias', False])
@pytest.mark.parametrize('own_table,shared', [(True, False), (False, True), (True, True),
                                              (False, False)])
def test_flex_layer_forward_and_every_gradient_match_sdpa(flex_backward_on_cpu, bias,
                                                          own_table, shared):
    ref, flex = _layer_pair('flex', bias, own_table)
    _assert_same(ref, flex, _inputs(shared), rel=1e-10)
    assert flex.state_dict().keys() == ref.state_dict().keys()


def test_flex_layer_under_bf16_autocast_stays_close(flex_backward_on_cpu):
    ref, flex = _layer_pair('flex', dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _assert_same(ref, flex, _inputs(shared=True, dtype=torch.float32), rel=0.03)


def test_flex_without_the_cpu_backward_lift_runs_forward_only():
    """Why the fixture exists: torch's CPU FlexAttention has no backward, and
    its forward (no gradient) is the model's own call, unpatched."""
    ref, flex = _layer_pair('flex')
    x, rel = _inputs(shared=True)
    with torch.no_grad():
        torch.testing.assert_close(flex(x, rel), ref(x, rel), atol=1e-10, rtol=0)
    with pytest.raises(NotImplementedError, match='backward on CPU'):
        flex(x, rel)


def test_flex_refuses_attention_dropout_in_training_only(flex_backward_on_cpu):
    layer = BEiTAttention(C, HEADS, window_size=WINDOW, use_rel_pos_bias=True,
                          attn_drop_rate=0.1)
    use_sdpa_attention(layer, 'flex')
    x, _ = _inputs(shared=False, dtype=torch.float32)
    with pytest.raises(ValueError, match="'flex' has no attention drop-out.*attn_drop_rate=0"):
        layer(x)
    layer.eval()
    assert layer(x).shape == (3, N, C)


def test_compiled_flex_layers_have_no_graph_break_and_match_sdpa(flex_backward_on_cpu):
    """The backbone's layers compiled in place as ``CompileBlocksHook`` compiles
    them, training under bf16 autocast: no graph break, no recompile."""
    cfg = dict(arch=TINY_ARCH, img_size=(12, 16), patch_size=4, layer_scale_init_value=0.1,
               drop_path_rate=0.1, use_rel_pos_bias=False, use_shared_rel_pos_bias=True)
    ref = MODELS.build(dict(cfg, type='SDPABEiTViT'))
    _randomise(ref)
    flex = MODELS.build(dict(cfg, type='SDPABEiTViT', attn_impl='flex'))
    flex.load_state_dict(ref.state_dict(), strict=True)
    ref.eval(), flex.eval()  # no drop path draws: the same function
    img = torch.randn(2, 3, 12, 16)
    torch._dynamo.reset()
    assert compile_blocks(flex, modules=('layers', ), methods=(), backend='aot_eager') == [
        'layers.0', 'layers.1']
    start = dynamo_counts()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _assert_same(ref, flex, (img, ), rel=0.03)
        first = dynamo_counts() - start
        flex.train()
        _run(flex, (img, ))  # training: drop path on, compiled once more at most
        mid = dynamo_counts()
        _run(flex, (img, ))
    assert first.frames >= 1 and first.graph_breaks == 0, first.reasons
    later = dynamo_counts() - mid
    torch._dynamo.reset()  # no cached code traced with the CPU backward lifted
    assert later.frames == 0 and later.graph_breaks == 0, later.reasons


# --- cudnn ----------------------------------------------------------------------


@pytest.mark.parametrize('dtype,row', [(torch.bfloat16, 16), (torch.float16, 16),
                                       (torch.float32, 16), (torch.float64, 14)])
def test_cudnn_bias_is_the_bias_in_the_query_dtype_with_aligned_rows(dtype, row):
    bias = torch.randn(HEADS, N, N, dtype=torch.float64)
    out = cudnn_bias(bias, dtype)
    assert out.shape == (1, HEADS, N, N) and out.dtype == dtype
    assert out.stride() == (HEADS * N * row, N * row, row, 1)  # row starts every 16 bytes
    assert torch.equal(out[0], bias.to(dtype))
    assert cudnn_bias(None, dtype) is None


def test_cudnn_refuses_what_it_cannot_run_in_one_line():
    _, layer = _layer_pair('cudnn', dtype=torch.float32)
    x, rel = _inputs(shared=True, dtype=torch.float32)
    with pytest.raises(RuntimeError, match='gives the relative position bias no gradient'):
        layer(x, rel)  # a learnable table in training
    layer.relative_position_bias_table.requires_grad_(False)
    with pytest.raises(RuntimeError, match='needs fp16 / bf16 inputs'):
        layer(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="'cudnn' runs on cuda only, got cpu"):
            layer(x)


def test_cudnn_path_on_the_cpu_matches_sdpa_with_frozen_tables(cudnn_on_cpu):
    """Every gradient but the bias's (cuDNN gives the bias none)."""
    ref, layer = _layer_pair('cudnn', dtype=torch.float32)
    for m in (ref, layer):
        m.relative_position_bias_table.requires_grad_(False)
    x, rel = _inputs(shared=True, dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _assert_same(ref, layer, (x, None), rel=0.03)
    layer.relative_position_bias_table.requires_grad_(True)  # learnable, used without grad
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        _assert_close(layer(x, rel), ref(x, rel), 0.03)


# --- backbones ------------------------------------------------------------------


def _backbone_pair(type_: str, impl: str, **kw) -> tuple[nn.Module, nn.Module]:
    cfg = dict(arch=TINY_ARCH, img_size=(12, 16), patch_size=4, layer_scale_init_value=0.1,
               **kw)
    ref = MODELS.build(dict(cfg, type=type_))
    _randomise(ref)
    other = MODELS.build(dict(cfg, type=type_, attn_impl=impl))
    other.load_state_dict(ref.state_dict(), strict=True)
    assert all(layer.attn.attn_impl == impl for layer in other.layers)
    assert list(other.state_dict()) == list(ref.state_dict())
    return ref.double(), other.double()


@pytest.mark.parametrize('rel', ['per_layer', 'shared'])
def test_beit_vit_with_flex_matches_sdpa(flex_backward_on_cpu, rel):
    ref, flex = _backbone_pair('SDPABEiTViT', 'flex', out_type='featmap', final_norm=True,
                               use_rel_pos_bias=rel == 'per_layer',
                               use_shared_rel_pos_bias=rel == 'shared')
    img = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    _assert_same(ref, flex, (img, ), rel=1e-9)
    table = ('layers.0.attn.relative_position_bias_table' if rel == 'per_layer'
             else 'rel_pos_bias.relative_position_bias_table')
    assert dict(flex.named_parameters())[table].grad.abs().sum() > 0


def test_beit_pretrain_vit_with_flex_and_a_mask_matches_sdpa(flex_backward_on_cpu):
    ref, flex = _backbone_pair('SDPABEiTPretrainViT', 'flex')
    img = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    mask = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(4)) < 0.4  # [B, h, w]
    _assert_same(ref, flex, (img, mask), rel=1e-9)


@pytest.mark.parametrize('type_', ['SDPABEiTViT', 'SDPABEiTPretrainViT'])
def test_every_impl_gives_the_backbone_the_same_outputs(cudnn_on_cpu, type_):
    """Built with each ``attn_impl`` from the same weights and evaluated (no
    gradient: 'flex' as shipped, 'cudnn' with learnable tables) like the
    'sdpa' backbone: in fp32, and under bf16 autocast ('cudnn' runs only there)."""
    img = torch.randn(2, 3, 12, 16)
    mask = (None, ) if type_ == 'SDPABEiTPretrainViT' else ()
    for impl in ATTN_IMPLS:
        ref, other = _backbone_pair(type_, impl)
        ref, other = ref.float(), other.float()
        with torch.no_grad():
            if impl != 'cudnn':
                _assert_close(other(img, *mask)[-1], ref(img, *mask)[-1], 1e-5, impl)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                _assert_close(other(img, *mask)[-1], ref(img, *mask)[-1], 2e-3, impl)


def test_recipe_ships_sdpa_and_the_key_paths_switch_both_backbones():
    """The switch is off in the ViT-B recipe; ``model.backbone.attn_impl`` and
    ``model.generator.backbone.attn_impl`` turn it on (e.g. ``--cfg-options``)."""
    cfg = Config.fromfile(RECIPE_MODEL)
    assert cfg.model.backbone.get('attn_impl', 'sdpa') == 'sdpa'
    assert cfg.model.generator.backbone.get('attn_impl', 'sdpa') == 'sdpa'
    cfg.merge_from_dict({'model.backbone.attn_impl': 'flex',
                         'model.generator.backbone.attn_impl': 'flex'})
    for backbone in (cfg.model.generator.backbone,
                     dict(cfg.model.backbone, arch=TINY_ARCH, img_size=32)):
        built = MODELS.build(backbone)
        assert {layer.attn.attn_impl for layer in built.layers} == {'flex'}
