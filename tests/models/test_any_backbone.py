"""CIM with any feature-map backbone: ConvNeXt, Swin, and a family no code knows.

CPU only, tiny shapes, no downloads. The shipped Fashion-MNIST configs are built
as they are (an untrained VQ tokenizer instead of the trained file); a third
mmpretrain family (MobileNetV2, EfficientNet) is made a CIM enhancer through
its config alone. The neck's build-time grid check is asked to refuse what
cannot work, each time in one line naming the setting to change.
"""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS

from helpers import make_batch, tiny_vit_cim_cfg
from cim_mm.utils.errors import UserError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'cim')
FAMILY_CFGS = {
    'convnext': 'cim-{}_convnext-w64_1xb64-500it_fashion-mnist-32px.py',
    'swin': 'cim-{}_swin-w64_1xb64-500it_fashion-mnist-32px.py',
}


def _model_cfg(family: str, head: str = 'respix', toy_tokenizer: bool = False) -> dict:
    """The shipped config's model, with an untrained VQ tokenizer (or the
    parameter-free ToyTokenizer of the same grid and vocabulary: fast, and its
    tokens follow the image, so replaced ones can be told apart)."""
    cfg = Config.fromfile(osp.join(CFG_DIR, FAMILY_CFGS[family].format(head)))
    model = cfg.model.to_dict()
    if toy_tokenizer:
        model['tokenizer'] = dict(type='ToyTokenizer', vocab_size=model['tokenizer'][
            'vocab_size'], downsample=model['tokenizer']['downsample'])
    else:
        model['tokenizer'].update(checkpoint=None, allow_random_init=True)
    return model


def _build(cfg: dict):
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model.train()


def _train(model, steps: int, img_size: int = 32, grid: int = 8, batch_size: int = 8,
           lr: float = 5e-4):
    """``steps`` AdamW steps on one fixed batch -> (enhancer, generator) losses."""
    optim = OptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr))
    batch = make_batch(batch_size=batch_size, img_size=img_size, grid=grid, mask_ratio=0.4,
                       smooth=True)
    enh, gen = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, above all on a busy CPU
    try:
        for _ in range(steps):
            log = model.train_step(copy.copy(batch), optim)
            enh.append(log['loss_enh'].item())
            gen.append(log['loss_gen'].item())
    finally:
        torch.set_num_threads(threads)
    return enh, gen


def _one_line_error(cfg: dict, match: str) -> str:
    with pytest.raises(UserError, match=match) as err:
        MODELS.build(cfg)
    msg = str(err.value)
    assert '\n' not in msg, msg
    return msg


# ------------------------------------------------------------ the two families
@pytest.mark.parametrize('family', list(FAMILY_CFGS))
def test_family_config_levels_land_on_the_grid(family):
    model = _build(_model_cfg(family))
    assert type(model.neck).__name__ == 'CNNPatchNeck'
    with torch.no_grad():
        s1, s2 = model.backbone(torch.randn(2, 3, 32, 32))
        feats = model.patch_features(torch.randn(2, 3, 32, 32))
    assert s1.shape == (2, 128, 8, 8) and s2.shape == (2, 256, 4, 4)
    assert feats.shape == (2, 64, 128)  # [B, 8x8 tokens, neck channels]


@pytest.mark.parametrize('family', list(FAMILY_CFGS))
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_family_trains_and_gradients_stop_at_the_tokenizer(family, head):
    model = _build(_model_cfg(family, head))
    tok_before = copy.deepcopy(model.tokenizer.state_dict())
    tok_params = list(model.tokenizer.parameters())
    # one step by hand: where do the gradients go?
    data = model.data_preprocessor(make_batch(batch_size=4, img_size=32, grid=8), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    for part in ('backbone', 'neck', 'head', 'generator'):
        params = list(getattr(model, part).named_parameters())
        no_grad = [n for n, p in params if p.grad is None or not p.grad.abs().sum() > 0]
        assert params and not no_grad, (part, no_grad[:5])
    assert tok_params and all(not p.requires_grad and p.grad is None for p in tok_params)
    # a few optimizer steps: the frozen tokenizer stays as it was
    _train(model, steps=2, batch_size=4)
    for k, v in model.tokenizer.state_dict().items():
        assert torch.equal(v, tok_before[k]), k


@pytest.mark.parametrize('family', list(FAMILY_CFGS))
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_family_losses_fall(family, head):
    model = _build(_model_cfg(family, head, toy_tokenizer=True))
    enh, gen = _train(model, steps=15)
    # RevDet starts near the entropy of the replaced share (~0.68 here): below it, it detects
    assert min(enh[-3:]) < 0.95 * enh[0], enh
    assert min(gen[-3:]) < gen[0], gen


def test_enhancer_loss_gives_no_gradient_to_the_generator():
    """The corruption is built under no_grad from a discrete sample: the
    enhancer's loss alone leaves the generator without gradients."""
    model = _build(_model_cfg('swin'))
    data = model.data_preprocessor(make_batch(batch_size=2, img_size=32, grid=8), True)
    model(**data, mode='loss')['loss_enh'].backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert any(p.grad is not None for p in model.backbone.parameters())


# ------------------------------------------------------- the build-time check
def test_a_level_that_cannot_reach_the_grid_is_refused_naming_out_indices():
    cfg = _model_cfg('convnext')
    # a fourth stage: 2x2 on 32 px, 4x coarser than the 8x8 grid
    cfg['backbone'].update(arch=dict(depths=[1, 1, 1, 1], channels=[64, 128, 256, 512]),
                           out_indices=(1, 2, 3))
    cfg['neck']['in_channels'] = (128, 256, 512)
    msg = _one_line_error(cfg, 'backbone.out_indices')
    assert 'backbone output 2 is 2x2 (stride 16 on 32x32 px)' in msg and '4x coarser' in msg
    cfg['backbone']['out_indices'] = (1, 2)  # the fix the message names
    cfg['neck']['in_channels'] = (128, 256)
    MODELS.build(cfg)


def test_wrong_in_channels_are_refused_with_the_values_to_set():
    cfg = _model_cfg('swin')
    cfg['neck']['in_channels'] = (96, 192)
    msg = _one_line_error(cfg, r'set neck\.in_channels=\(128, 256\)')
    assert 'backbone output 0 has 128 channels' in msg
    cfg['neck']['in_channels'] = (128, 256, 512)
    _one_line_error(cfg, r'returns 2 outputs \(backbone.out_indices\).*in_channels=\(128, 256\)')


def test_outputs_that_are_not_feature_maps_are_refused():
    cfg = _model_cfg('convnext')
    cfg['backbone']['gap_before_final_norm'] = True  # pooled [B, C] vectors
    _one_line_error(cfg, 'not a 2-D feature map.*gap_before_final_norm=False')


def test_an_image_size_the_strides_do_not_divide_is_refused():
    cfg = _model_cfg('convnext', 'revdet')  # RevDet: the image size is the neck's alone
    cfg['neck']['img_size'] = 36  # 18 -> 9 -> 4: 9x9 is no multiple of the 8x8 grid
    msg = _one_line_error(cfg, 'change the image size 36x36')
    assert 'backbone output 0 is 9x9' in msg


def test_a_scale_factor_that_misses_the_token_grid_is_refused():
    cfg = _model_cfg('swin')
    del cfg['neck']['out_size']
    cfg['neck']['scale_factor'] = 4  # 4x4 x 4 = 16x16, not 8x8
    _one_line_error(cfg, r'neck.scale_factor 4 makes a 16x16 grid.*neck.out_size=\(8, 8\)')
    cfg['neck']['scale_factor'] = 2
    assert MODELS.build(cfg).neck.scale_factor == 2


def test_the_respix_head_gives_the_image_size_when_the_neck_does_not():
    cfg = _model_cfg('convnext')
    del cfg['neck']['img_size']  # 4 px patches x 8x8 grid = 32 px: still checked
    cfg['backbone']['out_indices'] = (0, 1, 2)  # 16x16, 8x8, 4x4: all reach the grid
    cfg['neck']['in_channels'] = (64, 128)
    _one_line_error(cfg, r'set neck\.in_channels=\(64, 128, 256\)')


def test_the_config_check_sees_the_neck_image_size():
    """tools/train.py's config check: the pipeline's 32 px images against the
    neck's img_size, before anything is built."""
    from cim_mm.utils.config_check import check_config
    cfg = Config.fromfile(osp.join(CFG_DIR, FAMILY_CFGS['convnext'].format('revdet')))
    check_config(cfg)
    cfg.model.neck.img_size = 48
    with pytest.raises(UserError, match='makes 32x32 images but model.neck.img_size is '
                       '48x48'):
        check_config(cfg)


# -------------------------------------------- a family that no code here names
THIRD_FAMILIES = {
    # 64 px, 16 px patches (4x4 grid); the last two levels at 4x4 and 2x2, every layer used
    'MobileNetV2': (dict(type='MobileNetV2', widen_factor=0.5, out_indices=(4, 7)),
                    (48, 1280)),
    'EfficientNet': (dict(type='EfficientNet', arch='b0', out_indices=(4, 6)), (112, 1280)),
}


@pytest.mark.parametrize('name', list(THIRD_FAMILIES))
def test_a_third_family_is_an_enhancer_by_config_alone(name):
    backbone, channels = THIRD_FAMILIES[name]
    cfg = tiny_vit_cim_cfg('respix', img_size=64, patch=16, tok_down=2)
    cfg['backbone'] = dict(backbone)
    cfg['neck'] = dict(type='CNNPatchNeck', in_channels=channels, out_channels=32,
                       out_size=4, img_size=64)
    model = _build(cfg)
    enh, _ = _train(model, steps=8, img_size=64, grid=4, batch_size=4)
    assert min(enh[-3:]) < 0.95 * enh[0], enh
    bad = dict(cfg, neck=dict(cfg['neck'], out_size=None, scale_factor=8))
    _one_line_error(bad, r'neck.scale_factor 8 makes a 16x16 grid')
