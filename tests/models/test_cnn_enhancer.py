"""CIM with a CNN (ResNet) enhancer: per-patch neck, training, downstream loading.

CPU only, tiny shapes, no downloads. The ResNet-50 recipes are built with a
randomly initialised DALL-E tokenizer (``allow_random_init=True``), never loading
weight files.
"""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from helpers import make_batch, tiny_resnet_cim_cfg
from cim_mm.models.necks import CNNPatchNeck
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'cim')
R50_CFGS = [
    'cim-respix_resnet50_8xb256-amp-coslr-300e_in1k.py',
    'cim-revdet_resnet50_8xb256-amp-coslr-300e_in1k.py',
]
DEMO_CFGS = [
    'cim-respix_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
    'cim-revdet_resnet18-w32_1xb64-500it_fashion-mnist-32px.py',
]


def _load_model_cfg(name: str, toy_tokenizer: bool = False) -> Config:
    """The model config of a recipe, with the tokenizer made file-free."""
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    model = cfg.model
    if toy_tokenizer:  # the ToyTokenizer of conftest (x8, like DALL-E): fast to build
        model.tokenizer = dict(type='ToyTokenizer', vocab_size=model.generator.vocab_size,
                               downsample=8)
    elif model.tokenizer.type == 'DALLETokenizer':
        model.tokenizer.allow_random_init = True  # no encoder.pkl / decoder.pkl
    else:
        model.tokenizer.checkpoint = None  # untrained VQ tokenizer
        model.tokenizer.allow_random_init = True
    return model


@pytest.fixture(scope='module')
def r50_cim():
    torch.manual_seed(0)
    model = MODELS.build(_load_model_cfg(R50_CFGS[0]))
    model.init_weights()
    return model.eval()


# ------------------------------------------------------------------ the neck
def test_neck_resnet50_224px_gives_14x14_grid(r50_cim):
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        c4, c5 = r50_cim.backbone(img)
        assert c4.shape == (1, 1024, 14, 14) and c5.shape == (1, 2048, 7, 7)
        out = r50_cim.neck((c4, c5))
        feats = r50_cim.patch_features(img)  # the path CIM.loss uses
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (1, 512, 14, 14)
    assert feats.shape == (1, 196, 512)
    assert torch.allclose(feats, out[0].flatten(2).transpose(1, 2))


@pytest.mark.parametrize('name', DEMO_CFGS)
def test_demo_enhancer_gives_8x8_grid(name):
    cfg = _load_model_cfg(name)
    backbone = MODELS.build(cfg.backbone)
    neck = MODELS.build(cfg.neck)
    with torch.no_grad():
        c4, c5 = backbone(torch.randn(2, 3, 32, 32))
        (out, ) = neck((c4, c5))
    assert c4.shape == (2, 128, 8, 8) and c5.shape == (2, 256, 4, 4)
    assert out.shape == (2, 128, 8, 8)


def test_neck_grid_options_and_validation():
    c4, c5 = torch.randn(2, 8, 14, 14), torch.randn(2, 16, 7, 7)
    # C5 only, x2 -> 14x14; a bare tensor is accepted
    neck = CNNPatchNeck(in_channels=16, out_channels=4, scale_factor=2)
    assert neck(c5)[0].shape == (2, 4, 14, 14)
    # pick C5 out of (C4, C5) with in_indices
    neck = CNNPatchNeck(in_channels=16, out_channels=4, in_indices=(1, ), out_size=14)
    assert neck((c4, c5))[0].shape == (2, 4, 14, 14)
    # a finer level is area-pooled to the grid
    neck = CNNPatchNeck(in_channels=(8, 16), out_channels=4, out_size=(7, 7), num_convs=0,
                        out_norm_cfg=None)
    assert neck((c4, c5))[0].shape == (2, 4, 7, 7)
    # no grid option: the last level's size
    assert CNNPatchNeck(16, 4)(c5)[0].shape == (2, 4, 7, 7)

    with pytest.raises(ValueError, match='either out_size or scale_factor'):
        CNNPatchNeck(16, 4, out_size=14, scale_factor=2)
    with pytest.raises(ValueError, match='out_size'):
        CNNPatchNeck(16, 4, out_size=(14, 0))
    with pytest.raises(ValueError, match='scale_factor'):
        CNNPatchNeck(16, 4, scale_factor=-1)
    with pytest.raises(ValueError, match='in_indices'):
        CNNPatchNeck((8, 16), 4, in_indices=(1, ))
    with pytest.raises(ValueError, match='not an integer grid'):
        CNNPatchNeck(16, 4, scale_factor=1.5)(c5)  # 7 * 1.5
    with pytest.raises(ValueError, match=r'output 0 has 16 channels.*in_channels=\(16, 16\)'):
        CNNPatchNeck((8, 16), 4, out_size=14)((c5, c5))
    with pytest.raises(ValueError, match=r'returns 1 outputs \(backbone.out_indices\)'):
        CNNPatchNeck((8, 16), 4, out_size=14)(c5)
    with pytest.raises(ValueError, match='not a 2-D feature map'):
        CNNPatchNeck(16, 4, out_size=14)(c5.mean((2, 3)))  # [B, C]: pooled
    # the forward pass applies the grid rules too: 7x7 -> 28x28 is x4 (at most x2)
    with pytest.raises(ValueError, match='4x coarser.*backbone.out_indices'):
        CNNPatchNeck(16, 4, out_size=28)(c5)
    with pytest.raises(ValueError, match='not an integer multiple'):
        CNNPatchNeck(8, 4, out_size=4)(c4)  # 14x14 onto 4x4
    assert CNNPatchNeck(16, 4, out_size=28, max_upsample=4)(c5)[0].shape == (2, 4, 28, 28)
    with pytest.raises(ValueError, match='out of range'):
        CNNPatchNeck(16, 4, in_indices=(2, ), out_size=14)((c4, c5))


# ------------------------------------------------------------- the recipes
@pytest.mark.parametrize('name', R50_CFGS[1:] + DEMO_CFGS)
def test_recipe_builds(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports.imports == ['cim_mm', 'cim_mm.compat.enable']
    # the ResPix R50 recipe is built with its (random) DALL-E tokenizer by r50_cim
    model = MODELS.build(_load_model_cfg(name, toy_tokenizer='resnet50' in name))
    assert type(model).__name__ == 'CIM'
    assert type(model.neck).__name__ == 'CNNPatchNeck'
    expected_head = 'ResPixHead' if 'respix' in name else 'RevDetHead'
    assert type(model.head).__name__ == expected_head


def test_r50_recipe(r50_cim):
    cfg = Config.fromfile(osp.join(CFG_DIR, R50_CFGS[0]))
    assert type(r50_cim.tokenizer).__name__ == 'DALLETokenizer'
    assert r50_cim.generator.patch_resolution == (14, 14)
    mask_gen = [t for t in cfg.train_dataloader.dataset.pipeline
                if t.type == 'BEiTMaskGenerator'][0]
    assert tuple(mask_gen.input_size) == (14, 14) == tuple(cfg.model.neck.out_size)
    assert cfg.model.data_preprocessor.tokenizer_img_size == 112
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 3


def test_r50_recipe_data_path(tmp_path):
    """ImageNet layout (train/ + meta/train.txt) -> pipeline -> CIM inputs."""
    import numpy as np
    from mmengine.dataset import default_collate
    from PIL import Image

    from mmpretrain.registry import DATASETS
    lines = []
    for c, cls in enumerate(['n01440764', 'n01443537']):
        (tmp_path / 'train' / cls).mkdir(parents=True)
        img = (np.random.RandomState(c).rand(150, 190, 3) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / 'train' / cls / 'a.JPEG')
        lines.append(f'{cls}/a.JPEG {c}')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')

    cfg = Config.fromfile(osp.join(CFG_DIR, R50_CFGS[0]))
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 2
    batch = default_collate([dataset[0], dataset[1]])
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    img, tok, mask = preprocessor(batch, training=True)['inputs']
    assert img.shape == (2, 3, 224, 224) and tok.shape == (2, 3, 112, 112)
    assert mask.shape == (2, 14, 14) and mask.dtype == torch.bool
    assert all(16 <= n <= 75 for n in mask.flatten(1).sum(1).tolist())  # blockwise, 75 max


# ------------------------------------------------------------------ training
@pytest.mark.parametrize('head', ['respix', 'revdet'])
def test_tiny_resnet_cim_lowers_both_losses(head):
    torch.manual_seed(0)
    model = MODELS.build(tiny_resnet_cim_cfg(head))
    model.init_weights()
    model.train()
    optim = OptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-3))
    batch = make_batch(batch_size=8, img_size=16, grid=4, mask_ratio=0.5)  # fixed
    tok_before = copy.deepcopy(model.tokenizer.state_dict())
    gen, enh = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, above all on a busy CPU
    try:
        for _ in range(40):
            log = model.train_step(copy.copy(batch), optim)
            gen.append(log['loss_gen'].item())
            enh.append(log['loss_enh'].item())
    finally:
        torch.set_num_threads(threads)
    first = lambda v: sum(v[:5]) / 5  # noqa: E731
    last = lambda v: sum(v[-5:]) / 5  # noqa: E731
    assert last(gen) < 0.9 * first(gen), gen
    assert last(enh) < 0.95 * first(enh), enh
    for k, v in model.tokenizer.state_dict().items():  # frozen
        assert torch.equal(v, tok_before[k])


# ------------------------------------------------------- downstream loading
def _backbone_state(cim) -> dict:
    return {k: v for k, v in cim.state_dict().items() if k.startswith('backbone.')}


def _resnet_args(cim_backbone_cfg: dict) -> dict:
    """The enhancer's arguments, minus its pre-training outputs / norm."""
    args = {k: v for k, v in cim_backbone_cfg.items()
            if k not in ('out_indices', 'norm_cfg', 'zero_init_residual')}
    return args


def test_r50_enhancer_loads_into_mmpretrain_classifier(r50_cim):
    bb = _resnet_args(Config.fromfile(osp.join(CFG_DIR, R50_CFGS[0])).model.backbone)
    clf = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(bb, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)))
    state = _backbone_state(r50_cim)
    clf_bb_keys = {k for k in clf.state_dict() if k.startswith('backbone.')}
    assert set(state) == clf_bb_keys
    res = clf.load_state_dict(state, strict=False)
    assert not res.unexpected_keys
    assert all(k.startswith('head.') for k in res.missing_keys), res.missing_keys
    for k, v in state.items():
        assert torch.equal(clf.state_dict()[k], v)


def test_r50_enhancer_loads_into_mmseg_encoder_decoder(r50_cim, tmp_path):
    import mmseg.models  # noqa: F401  (registers EncoderDecoder, ResNet, heads)
    from mmengine.registry import DefaultScope

    # a CIM checkpoint as the Runner writes it; mmseg reads it with prefix='backbone.'
    # (generator and tokenizer weights left out of the file to keep the test fast)
    ckpt = str(tmp_path / 'cim_r50.pth')
    saved = {k: v for k, v in r50_cim.state_dict().items()
             if k.startswith(('backbone.', 'neck.', 'head.'))}
    torch.save(dict(state_dict=saved, meta=dict(epoch=300)), ckpt)
    with DefaultScope.overwrite_default_scope('mmseg'):
        seg, fresh = _build_seg(ckpt)
    state = _backbone_state(r50_cim)
    seg_bb_keys = {k for k in seg.state_dict() if k.startswith('backbone.')}
    assert set(state) == seg_bb_keys  # no missing, no unexpected backbone key
    res = seg.load_state_dict(state, strict=False)
    assert not res.unexpected_keys
    assert all(k.startswith('decode_head.') for k in res.missing_keys)

    fresh.init_weights()  # mmseg's own pretrained path
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state['backbone.' + k]), k


def _build_seg(ckpt: str):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG_MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return _build_seg_in_scope(SEG_MODELS, ckpt)


def _build_seg_in_scope(SEG_MODELS, ckpt: str):
    seg = SEG_MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
        backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                      style='pytorch', norm_cfg=dict(type='BN', requires_grad=True),
                      init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                                    prefix='backbone.')),
        decode_head=dict(type='FCNHead', in_channels=2048, in_index=3, channels=16,
                         num_convs=1, num_classes=150, norm_cfg=dict(type='BN')),
    ))
    fresh = SEG_MODELS.build(dict(type='ResNet', depth=50, init_cfg=dict(
        type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    return seg, fresh


def test_tiny_enhancer_keys_match_downstream_resnet18():
    cim = MODELS.build(tiny_resnet_cim_cfg('respix'))
    bb = _resnet_args(tiny_resnet_cim_cfg()['backbone'])
    clf = MODELS.build(dict(type='ImageClassifier', backbone=bb,
                            neck=dict(type='GlobalAveragePooling'),
                            head=dict(type='LinearClsHead', num_classes=10,
                                      in_channels=64)))
    clf.backbone.load_state_dict(
        {k[len('backbone.'):]: v for k, v in _backbone_state(cim).items()}, strict=True)
