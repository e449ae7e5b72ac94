"""The CIM ablation variant (generator input, enhancer input, warm-up) and temperature 0."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from cim_mm.models.generators.beit_generator import gumbel_max_sample
import benchmarks.models  # noqa: F401  (registers CIMAblation)
from helpers import make_batch, tiny_vit_cim_cfg


def _build(**kw):
    cfg = tiny_vit_cim_cfg('revdet')
    cfg.update(kw, type='CIMAblation')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _spy(model, name: str) -> list:
    """Record the first positional argument of ``model.<name>``."""
    seen = []
    fn = getattr(model, name)

    def wrapped(x, *a, **k):
        seen.append(x)
        return fn(x, *a, **k)
    setattr(model, name, wrapped)
    return seen


def test_enhancer_input_paste_keeps_unreplaced_patches_original():
    model = _build(enhancer_input='paste')
    data = model.data_preprocessor(make_batch(smooth=True, mask_ratio=0.6), True)
    img = data['inputs'][0]
    outs = []
    corrupt = model.corrupt

    def corrupt_spy(*a, **k):
        out = corrupt(*a, **k)
        outs.append(out)
        return out
    model.corrupt = corrupt_spy
    enh_in = _spy(model, 'patch_features')
    model.loss(data['inputs'], data['data_samples'])
    decoded, _, replaced = outs[0]
    assert 0 < replaced.float().mean() < 1
    rep = F.interpolate(replaced[:, None].float(), size=img.shape[-2:],
                        mode='nearest').bool().expand_as(img)  # [B, 3, H, W]
    x = enh_in[0]
    assert torch.equal(x[~rep], img[~rep])  # unreplaced: the original pixels
    assert torch.equal(x[rep], decoded[rep])  # replaced: the decode
    assert not torch.equal(decoded[~rep], img[~rep])  # the default would differ there

    default = _build()
    enh_in = _spy(default, 'patch_features')
    default.loss(data['inputs'], data['data_samples'])
    assert not torch.equal(enh_in[0][~rep], img[~rep])  # whole decode by default


def test_generator_input_enhancer_view():
    cfg_gen = tiny_vit_cim_cfg('revdet')['generator']
    cfg_gen['backbone'].update(img_size=16, patch_size=4)  # the enhancer's grid
    model = _build(generator_input='enhancer', generator=cfg_gen)
    seen = []
    forward = model.generator.forward

    def gen_spy(img, mask):
        seen.append(img)
        return forward(img, mask)
    model.generator.forward = gen_spy
    data = model.data_preprocessor(make_batch(), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.equal(seen[0], data['inputs'][0])  # the normalised enhancer view
    assert torch.isfinite(losses['loss_gen'])
    with pytest.raises(ValueError, match='generator_input'):
        _build(generator_input='pixels')
    with pytest.raises(ValueError, match='enhancer_input'):
        _build(enhancer_input='nope')


def test_ablation_geometry_refuses_what_it_refused():
    """The generator's sizes against the token grid (4x4), per generator_input."""
    enh_gen = tiny_vit_cim_cfg('revdet')['generator']
    enh_gen['backbone'].update(img_size=16, patch_size=4)  # the enhancer view, 4x4
    with pytest.raises(ValueError, match=r'generator.backbone.img_size 16x16 != '
                       r'.*tokenizer_img_size 8x8') as err:
        _build(generator=enh_gen)  # the tokenizer view (the default) at 16 px
    assert '\n' not in str(err.value)
    fine_gen = tiny_vit_cim_cfg('revdet')['generator']
    fine_gen['backbone'].update(img_size=16, patch_size=2)  # 8x8 on the enhancer view
    with pytest.raises(ValueError, match=r'generator grid 8x8 != token grid 4x4'):
        _build(generator_input='enhancer', generator=fine_gen)
    model = _build(generator_input='enhancer', generator=enh_gen)
    assert model.geometry().gen_size is None and model.geometry().gen_grid == (4, 4)
    assert _build().geometry().gen_size == (8, 8)  # CIM's: the tokenizer view


def test_config_check_treats_the_ablation_as_cim():
    from mmengine.config import Config

    from cim_mm.utils.config_check import check_config
    model = dict(tiny_vit_cim_cfg('revdet'), type='CIMAblation', enhancer_input='paste')
    cfg = Config(dict(model=model, train_dataloader=dict(dataset=dict(
        type='CustomDataset', pipeline=[dict(type='RandomResizedCrop', scale=20)]))))
    with pytest.raises(ValueError, match='makes 20x20 images but model.backbone.img_size'):
        check_config(cfg)  # an image-size rule: only checked for CIM configs


def test_temperature_zero_is_argmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 7, generator=g)
    assert torch.equal(gumbel_max_sample(logits, 0.0), logits.argmax(-1))
    model = _build()
    model.generator.temperature = 0.0
    ids = torch.randint(0, 16, (3, 4, 4), generator=g)
    mask = torch.rand(3, 4, 4, generator=g) < 0.5
    logits = torch.randn(3, 16, 16, generator=g)
    sampled = model.generator.sample(logits, ids, mask)
    arg = logits.argmax(-1).view(3, 4, 4)
    assert torch.equal(sampled[mask], arg[mask]) and torch.equal(sampled[~mask], ids[~mask])
    # and it is deterministic (no Gumbel noise)
    assert torch.equal(model.generator.sample(logits, ids, mask), sampled)


@pytest.fixture
def progress():
    """A MessageHub of this test's own as the current one; ``progress(it, total)``."""
    from unittest import mock

    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('cim_warmup_progress')

    def set_progress(it: int, total: int) -> None:
        hub.update_info('iter', it)
        hub.update_info('max_iters', total)
    with mock.patch.object(MessageHub, 'get_current_instance', return_value=hub):
        yield set_progress


def test_generator_warmup_trains_the_generator_alone_then_both(progress):
    _set_progress = progress
    model = _build(generator_warmup=0.25)
    data = model.data_preprocessor(make_batch(smooth=True, mask_ratio=0.5), True)
    decodes = _spy(model.tokenizer, 'decode')
    _set_progress(24, 100)  # 24 < 0.25 * 100: warming up
    losses = model.loss(data['inputs'], data['data_samples'])
    assert decodes == [] and losses['loss_enh'].item() == 0.0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    gen_grads = [p.grad for p in model.generator.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in gen_grads)
    enh = [*model.backbone.parameters(), *model.head.parameters()]
    assert all(p.grad is None for p in enh)  # the enhancer is not touched

    model.zero_grad(set_to_none=True)
    _set_progress(25, 100)  # past the warm-up: the default step
    torch.manual_seed(1)
    warm = model.loss(data['inputs'], data['data_samples'])
    default = _build()
    default.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    ref = default.loss(data['inputs'], data['data_samples'])
    assert len(decodes) == 1 and warm['loss_enh'].item() > 0
    for k in ref:
        torch.testing.assert_close(warm[k], ref[k])

    model.eval()  # never in eval mode, whatever the progress
    _set_progress(0, 100)
    assert not model.generator_warming_up()


def test_generator_warmup_is_off_without_progress_and_checked():
    from mmengine.logging import MessageHub
    model = _build(generator_warmup=0.5)
    hub = MessageHub.get_instance('cim_warmup_no_progress')  # a hub without iter/max_iters
    assert hub.get_info('iter') is None
    from unittest import mock
    with mock.patch.object(MessageHub, 'get_current_instance', return_value=hub):
        assert not model.generator_warming_up()
    with pytest.raises(ValueError, match='generator_warmup'):
        _build(generator_warmup=1.0)


@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_ablation_variant_with_defaults_is_cim(head):
    """CIMAblation's defaults give CIM's losses, bit for bit (same weights, same RNG)."""
    data = make_batch(smooth=True, mask_ratio=0.5)
    losses = {}
    for typ in ('CIM', 'CIMAblation'):
        cfg = tiny_vit_cim_cfg(head)
        cfg['type'] = typ
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.init_weights()
        batch = model.data_preprocessor(data, True)
        torch.manual_seed(1)
        losses[typ] = model.loss(batch['inputs'], batch['data_samples'])
    assert losses['CIM'].keys() == losses['CIMAblation'].keys()
    for k, v in losses['CIM'].items():
        assert torch.equal(v, losses['CIMAblation'][k]), k


def test_cim_itself_has_no_ablation_options():
    cfg = tiny_vit_cim_cfg('revdet')
    with pytest.raises(TypeError, match='generator_input'):
        MODELS.build(dict(cfg, generator_input='enhancer'))
