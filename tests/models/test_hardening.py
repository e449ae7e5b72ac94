"""Silent mistakes fail loudly: tiny, CPU only."""
from __future__ import annotations

import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import make_batch, tiny_vit_cim_cfg
from mmengine.config import Config
from mmpretrain.registry import MODELS

from cim_mm.models.data_preprocessors import CIMDataPreprocessor
from cim_mm.models.heads import sliding_window_normalize
from cim_mm.utils.errors import UserError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_VQ = dict(type='VQTokenizer', vocab_size=16, downsample=2, embed_dims=8,
               hidden_channels=16, num_res_blocks=1)


# ------------------------------------------------ 2: VQ tokenizer without weights
def test_frozen_vq_tokenizer_without_weights_is_refused():
    with pytest.raises(UserError, match='allow_random_init') as err:
        MODELS.build(dict(TINY_VQ, frozen=True))
    assert '\n' not in str(err.value)
    tok = MODELS.build(dict(TINY_VQ, frozen=True, allow_random_init=True))
    assert not any(p.requires_grad for p in tok.parameters())
    MODELS.build(dict(TINY_VQ))  # not frozen: the tokenizer's own training run


def test_cim_refuses_a_random_vq_tokenizer():
    """CIM freezes its tokenizer itself: ``frozen=False`` is no way around."""
    cfg = tiny_vit_cim_cfg()
    cfg['tokenizer'] = dict(TINY_VQ)
    with pytest.raises(UserError, match='model.tokenizer.checkpoint'):
        MODELS.build(cfg)
    cfg['tokenizer'] = dict(TINY_VQ, allow_random_init=True)
    assert MODELS.build(cfg).tokenizer.vocab_size == 16


def test_vq_tokenizer_trained_in_process_can_be_frozen():
    tok = MODELS.build(dict(TINY_VQ))
    tok.train()
    tok(torch.rand(2, 3, 8, 8), mode='loss')  # fits the codebook to data
    tok.freeze()
    assert not any(p.requires_grad for p in tok.parameters())


# --------------------------------------------------- 3: vocabulary mismatch
def test_vocab_mismatch_fails_at_build_time():
    cfg = tiny_vit_cim_cfg()
    cfg['generator']['vocab_size'] = 32  # the toy tokenizer has 16 codes
    with pytest.raises(UserError, match='vocab_size') as err:
        MODELS.build(cfg)
    assert 'generator.vocab_size=16' in str(err.value)


def test_vocab_mismatch_fails_in_check_config():
    from cim_mm.utils.config_check import check_config
    cfg = Config(dict(model=tiny_vit_cim_cfg()))
    check_config(cfg)  # consistent
    cfg.model.generator.vocab_size = 32
    with pytest.raises(UserError, match='vocab_size'):
        check_config(cfg)
    # the generator's default (8192, the DALL-E codebook) is compared too
    cfg.model.generator.pop('vocab_size')
    with pytest.raises(UserError, match='8192'):
        check_config(cfg)


# ---------------------------------------------------- 4: data preprocessor
@pytest.mark.parametrize('dp', [None, dict(mean=[127.5] * 3, std=[127.5] * 3,
                                           tokenizer_img_size=8)])
def test_cim_always_gets_the_cim_data_preprocessor(dp):
    cfg = tiny_vit_cim_cfg()
    cfg['data_preprocessor'] = dp
    if dp is None:  # the default view size is 112: fit the tiny generator to it
        cfg['data_preprocessor'] = None
        cfg['tokenizer']['downsample'] = 28
        cfg['generator']['backbone'].update(img_size=112, patch_size=28)
    model = MODELS.build(cfg)
    assert isinstance(model.data_preprocessor, CIMDataPreprocessor)
    # a batch of B >= 3 images is never mistaken for [img, tok_img, mask]
    out = model.data_preprocessor(make_batch(batch_size=4), True)
    assert len(out['inputs']) == 3 and out['inputs'][2].dtype == torch.bool


def test_cim_refuses_another_data_preprocessor():
    cfg = tiny_vit_cim_cfg()
    cfg['data_preprocessor'] = dict(type='SelfSupDataPreprocessor', mean=[0.] * 3,
                                    std=[1.] * 3)
    with pytest.raises(UserError, match='CIMDataPreprocessor'):
        MODELS.build(cfg)


# --------------------------------------------------------- 5: ResPix targets
def _reference_normalize(img: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    """Two-pass float64 over the explicit window (clipped at the border)."""
    x = img.double()
    B, C, H, W = x.shape
    cols = F.unfold(x.reshape(B * C, 1, H, W), k, padding=k // 2)  # [BC, k*k, HW]
    valid = F.unfold(torch.ones(1, 1, H, W, dtype=torch.float64), k, padding=k // 2)
    n = valid.sum(1, keepdim=True)  # [1, 1, HW]
    mean = (cols * valid).sum(1, keepdim=True) / n  # [BC, 1, HW]
    var = (((cols - mean) * valid)**2).sum(1, keepdim=True) / n
    out = (x.reshape(B * C, 1, H * W) - mean) / torch.sqrt(var + eps)
    return out.reshape(B, C, H, W)


def _respix_inputs(size: int = 32) -> dict[str, torch.Tensor]:
    """Enhancer views (ImageNet mean/std) of 0..255 images."""
    def norm(u8: torch.Tensor) -> torch.Tensor:
        return ((u8 - 123.675) / 58.395).float()

    flat = torch.full((2, 3, size, size), 250.)
    banded = flat.clone()
    banded[..., size // 2:] += 1  # one grey level step
    banded[..., 5, :] -= 1
    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 3, 4, 4, generator=g) * 255
    photo = F.interpolate(low, size=size, mode='bicubic', align_corners=False)
    photo = (photo + 4 * torch.randn(2, 3, size, size, generator=g)).clamp(0, 255).round()
    return dict(flat=norm(flat), banded=norm(banded), photo=norm(photo))


@pytest.mark.parametrize('window', [5, 17])
@pytest.mark.parametrize('case', ['flat', 'banded', 'photo'])
def test_sliding_window_normalize_matches_float64(case, window):
    img = _respix_inputs()[case]
    out = sliding_window_normalize(img, window, eps=1e-6)
    ref = _reference_normalize(img, window, eps=1e-6)
    assert out.dtype == torch.float32
    # float32 rounding of exact statistics: max |error| 1.1e-7 (float32 pooling: 12.4)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)


# ------------------------------------------------------- 6: drop path once
class _ZeroAttn(nn.Module):
    def forward(self, x, rel_pos_bias=None):
        return torch.zeros_like(x)


def _ffn_drop_rate(layer: nn.Module, n: int = 20000) -> tuple[float, float]:
    """(fraction of samples whose FFN branch is zeroed, scale of the kept ones)."""
    layer.attn = _ZeroAttn()  # isolate the FFN branch: out - x = branch
    x = torch.randn(n, 1, layer.ffn.embed_dims)
    layer.eval()
    with torch.no_grad():
        plain = layer(x, None) - x  # [n, 1, C]
        layer.train()
        torch.manual_seed(0)
        branch = layer(x, None) - x
    dropped = branch.abs().amax(dim=(1, 2)) == 0  # [n]
    kept = ~dropped
    scale = (branch[kept].norm() / plain[kept].norm()).item()
    return dropped.float().mean().item(), scale


def _beit_layer(**kw) -> nn.Module:
    from mmpretrain.models.backbones.beit import BEiTTransformerEncoderLayer
    return BEiTTransformerEncoderLayer(
        embed_dims=8, num_heads=2, feedforward_channels=16, layer_scale_init_value=0.1,
        window_size=None, use_rel_pos_bias=False, drop_path_rate=0.1, **kw)


def test_mmpretrain_beit_layer_drops_the_ffn_branch_twice_and_the_switch_once():
    from cim_mm.models.backbones import BEIT_SINGLE_DROP_PATH
    rate, scale = _ffn_drop_rate(_beit_layer())
    assert rate == pytest.approx(1 - 0.9**2, abs=0.01)  # 0.19: ~9 points extra
    assert scale == pytest.approx(1 / 0.9**2, rel=1e-4)
    rate, scale = _ffn_drop_rate(_beit_layer(**BEIT_SINGLE_DROP_PATH))
    assert rate == pytest.approx(0.1, abs=0.01)  # the configured rate
    assert scale == pytest.approx(1 / 0.9, rel=1e-4)


def _beit_backbones(node, path=''):
    if isinstance(node, dict):
        if str(node.get('type', '')).split('.')[-1] in ('BEiTViT', 'SDPABEiTViT'):
            yield path, node
        for k, v in node.items():
            yield from _beit_backbones(v, f'{path}.{k}')


# every place a BEiTViT is configured: the pre-training enhancer (_base_ model, ViT-B
# and ViT-S recipes) and the mmpretrain fine-tune / linear-probe configs
BEIT_CFGS = [
    'configs/cim/cim-respix_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
    'configs/cim/cim-revdet_vit-small-p16_8xb256-amp-coslr-800e_in1k.py',
    'configs/cim/benchmarks/vit-base-p16_cim-pre_8xb128-coslr-100e_in1k.py',
    'configs/cim/benchmarks/vit-small-p16_cim-pre_8xb128-coslr-100e_in1k.py',
    'configs/cim/benchmarks/vit-base-p16_cim-pre_8xb2048-linear-coslr-90e_in1k.py',
]


@pytest.mark.parametrize('path', BEIT_CFGS, ids=[osp.basename(p) for p in BEIT_CFGS])
def test_beit_configs_drop_the_ffn_branch_once(path):
    cfg = Config.fromfile(osp.join(ROOT, path)).to_dict()
    found = list(_beit_backbones(cfg.get('model', {})))
    assert found, path
    for where, bb in found:
        tiny = dict(bb, arch=dict(embed_dims=8, num_layers=2, num_heads=2,
                                  feedforward_channels=16),
                    img_size=16, patch_size=8, init_cfg=None, drop_path_rate=0.1)
        tiny.pop('frozen_stages', None)
        model = MODELS.build(tiny)
        # the depth rule gives the last layer the full rate (0, ..., 0.1)
        rate, _ = _ffn_drop_rate(model.layers[-1], n=4000)
        assert rate == pytest.approx(0.1, abs=0.02), (where, rate)


# -------------------------------------------- 8: gradient clipping per network
class _TwoNets(nn.Module):
    """The module layout of CIM: generator vs enhancer (backbone/neck/head)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(6, 5)
        self.backbone = nn.Linear(4, 4)
        self.neck = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)
        self.tokenizer = nn.Linear(2, 2).requires_grad_(False)  # frozen


def _grads(model: nn.Module, gen_norm: float, enh_norm: float) -> None:
    g = torch.Generator().manual_seed(0)
    for name, target in (('generator', gen_norm), ('enhancer', enh_norm)):
        mods = [model.generator] if name == 'generator' else [
            model.backbone, model.neck, model.head]
        params = [p for m in mods for p in m.parameters()]
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        total = torch.norm(torch.stack([p.grad.norm() for p in params]))
        for p in params:
            p.grad.mul_(target / total)


def _norm(mods) -> float:
    return torch.norm(torch.stack([p.grad.norm() for m in mods for p in m.parameters()])).item()


def _wrapper(model: nn.Module, type_: str, **clip):
    from mmengine.optim import build_optim_wrapper
    return build_optim_wrapper(model, dict(
        type=type_, optimizer=dict(type='SGD', lr=0.0), clip_grad={'max_norm': 3.0, **clip}))


def test_per_network_clipping_clips_each_network_alone():
    model = _TwoNets()
    ow = _wrapper(model, 'PerModuleClipOptimWrapper')
    enh = [model.backbone, model.neck, model.head]
    _grads(model, gen_norm=30.0, enh_norm=2.0)
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with ow.optim_context(model):
        pass
    ow.step()
    assert _norm([model.generator]) == pytest.approx(3.0, rel=1e-5)  # clipped to its max
    for n, p in model.named_parameters():  # the enhancer (2.0 < 3.0) is untouched
        if not n.startswith('generator') and p.grad is not None:
            assert torch.equal(p.grad, before[n]), n
    # both over the limit: each ends at its own max
    _grads(model, gen_norm=30.0, enh_norm=13.0)
    ow.step()
    assert _norm([model.generator]) == pytest.approx(3.0, rel=1e-5)
    assert _norm(enh) == pytest.approx(3.0, rel=1e-5)
    logged = ow.message_hub.log_scalars
    assert logged['train/grad_norm_generator'].current() == pytest.approx(30.0, rel=1e-5)
    assert logged['train/grad_norm_enhancer'].current() == pytest.approx(13.0, rel=1e-5)


def test_per_network_max_norms_and_groups_from_the_config():
    model = _TwoNets()
    ow = _wrapper(model, 'PerModuleClipOptimWrapper',
                  max_norm=dict(generator=1.0, enhancer=5.0))
    with ow.optim_context(model):
        pass
    _grads(model, gen_norm=30.0, enh_norm=13.0)
    ow.step()
    assert _norm([model.generator]) == pytest.approx(1.0, rel=1e-5)
    assert _norm([model.backbone, model.neck, model.head]) == pytest.approx(5.0, rel=1e-5)
    # a trainable module in no group is a config mistake, named in one line
    ow = _wrapper(model, 'PerModuleClipOptimWrapper',
                  per_module=dict(generator=['generator'], enhancer=['backbone']))
    with pytest.raises(UserError, match='neck') as err:
        with ow.optim_context(model):
            pass
    assert '\n' not in str(err.value)


def test_shared_clipping_stays_the_default():
    model = _TwoNets()
    ow = _wrapper(model, 'OptimWrapper')
    _grads(model, gen_norm=30.0, enh_norm=2.0)
    ref = _TwoNets()
    ref.load_state_dict(model.state_dict())
    for p, q in zip(model.parameters(), ref.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    total = torch.nn.utils.clip_grad_norm_(
        [q for q in ref.parameters() if q.grad is not None], 3.0)
    ow.step()
    assert total.item() == pytest.approx(30.0667, rel=1e-4)
    for p, q in zip(model.parameters(), ref.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad)


def test_per_network_clipping_in_cim_train_step():
    """mmengine's train_step hands the model to ``optim_context``: the groups are
    found with no config beyond the wrapper type."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_vit_cim_cfg())
    model.init_weights()
    ow = _wrapper(model, 'PerModuleClipOptimWrapper', max_norm=1e-3)
    model.train_step(make_batch(), ow)
    logged = ow.message_hub.log_scalars
    gen = logged['train/grad_norm_generator'].current()
    enh = logged['train/grad_norm_enhancer'].current()
    assert gen > 1e-3 and enh > 1e-3
    assert logged['train/grad_norm'].current() == pytest.approx((gen**2 + enh**2)**0.5)


def test_per_network_clipping_amp_variant(monkeypatch):
    """The AMP wrapper runs the same clipping inside ``AmpOptimWrapper.step``
    (mmengine refuses the CPU: its device check is lifted here; the loss scaler
    disables itself without CUDA)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    from mmengine.optim import AmpOptimWrapper
    monkeypatch.setattr(amp_module, 'is_cuda_available', lambda: True)
    model = _TwoNets()
    from mmengine.optim import build_optim_wrapper
    ow = build_optim_wrapper(model, dict(
        type='PerModuleClipAmpOptimWrapper', dtype='bfloat16',
        optimizer=dict(type='SGD', lr=0.0), clip_grad=dict(max_norm=3.0)))
    assert isinstance(ow, AmpOptimWrapper)
    with ow.optim_context(model):
        pass
    _grads(model, gen_norm=30.0, enh_norm=13.0)
    ow.step()
    assert _norm([model.generator]) == pytest.approx(3.0, rel=1e-5)
    assert _norm([model.backbone, model.neck, model.head]) == pytest.approx(3.0, rel=1e-5)


def test_per_network_clipping_is_one_cfg_option_on_the_demo():
    """``--cfg-options optim_wrapper.type=PerModuleClipOptimWrapper``: every
    trainable parameter of the demo CIM falls in the generator or enhancer group."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py'))
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # shared clipping by default
    cfg.merge_from_dict({'optim_wrapper.type': 'PerModuleClipOptimWrapper'})
    cfg.model.tokenizer.update(checkpoint=None, allow_random_init=True)
    model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    with ow.optim_context(model):
        pass
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grouped = {g: sum(p.numel() for p in ps) for g, ps in ow._groups.items()}
    assert grouped['generator'] == sum(p.numel() for p in model.generator.parameters())
    assert grouped['generator'] + grouped['enhancer'] == trainable


# ------------------------------------------------------------ 9: the docs
def test_metafile_attributes_the_abstract_figures_to_no_objective():
    import yaml
    with open(osp.join(ROOT, 'configs/cim/metafile.yml')) as f:
        text = f.read()
    meta = yaml.safe_load(text)
    assert '83.3' in text and '80.6' in text  # still told, as the abstract's figures
    for m in meta['Models']:
        objective = m['Metadata']['Objective']
        for r in m.get('Results') or []:
            for metric in r['Metrics']:
                value = r['Metrics'][metric]
                assert value not in (83.3, 80.6) or objective.lower() in metric.lower(), (
                    m['Name'], metric)


def test_recovered_column_says_it_borrows_the_original_statistics():
    from cim_mm.visualization import RECOVERED_TITLE
    assert 'orig' in RECOVERED_TITLE and 'stats' in RECOVERED_TITLE
    text = open(osp.join(ROOT, 'configs/cim/benchmarks/'
                         'vit-base-p16_cim-pre_8xb2048-linear-coslr-90e_in1k.py')).read()
    assert 'frozen at identity' not in text and 'standardises' in text
