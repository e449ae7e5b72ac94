"""CroCo (cross-view completion), the dense peer of the benchmark: loss, gradients,
use of view 2, training, and its Fashion-MNIST config. CPU only, tiny shapes."""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import DefaultScope

import benchmarks.models  # noqa: F401  (registers CroCo in mmpretrain's MODELS)
from benchmarks.models import CroCo, CroCoDecoder
from mmpretrain.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'benchmarks_peers',
                  'croco_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py')
IMG, PATCH = 16, 4
L = (IMG // PATCH)**2  # 16 patches per view


def tiny_croco_cfg(view2: str = 'pair', mask_ratio: float = 0.75) -> dict:
    """16 px views, 4x4 patches, a 2-layer encoder and a 2-block decoder."""
    return dict(
        type='CroCo', view2=view2,
        backbone=dict(type='MAEViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                               feedforward_channels=64),
                      img_size=IMG, patch_size=PATCH, mask_ratio=mask_ratio),
        neck=dict(type='CroCoDecoder', num_patches=L, patch_size=PATCH, in_chans=3,
                  embed_dim=32, decoder_embed_dim=16, decoder_depth=2,
                  decoder_num_heads=2, mlp_ratio=2.0),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=PATCH,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))


def build(**kw) -> CroCo:
    torch.manual_seed(0)
    model = MODELS.build(tiny_croco_cfg(**kw))
    model.init_weights()
    return model


def views(seed: int = 0, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two related views ``[B, 3, 16, 16]``: view 2 = view 1 shifted by a patch."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.randn(batch, 3, 5, 5, generator=g), size=(IMG + PATCH,) * 2,
                         mode='bilinear', align_corners=False)  # smooth images
    return base[..., :IMG, :IMG].contiguous(), base[..., PATCH:, PATCH:].contiguous()


def patchify(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, L, p * p * 3]``, rows of patches, each (row, col, channel)."""
    B, C, H, W = x.shape
    h, w = H // PATCH, W // PATCH
    x = x.reshape(B, C, h, PATCH, w, PATCH).permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, p, C]
    return x.reshape(B, h * w, PATCH * PATCH * C)


def test_registered_without_force():
    assert MODELS.get('CroCo') is CroCo and MODELS.get('CroCoDecoder') is CroCoDecoder
    with pytest.raises(KeyError):  # force=False: a second class of that name is refused
        MODELS.register_module(name='CroCo', module=type('Other', (CroCo,), {}))


def test_loss_is_masked_per_patch_normalised_mse():
    model = build()
    x1, x2 = views()
    torch.manual_seed(1)
    loss = model.loss([x1, x2], None)['loss']
    torch.manual_seed(1)  # the same random mask
    pred, mask = model.reconstruct(x1, x2)  # [B, L, 48], [B, L]
    assert pred.shape == (3, L, PATCH * PATCH * 3) and mask.shape == (3, L)
    # 75 % masked, 1 = masked: MAEViT keeps int(16 * 0.25) = 4 patches
    assert torch.equal(mask.sum(1), torch.full((3,), 12.0))
    target = patchify(x1)
    mean = target.mean(-1, keepdim=True)
    std = (target.var(-1, keepdim=True) + 1e-6).sqrt()  # MAE: unbiased variance + 1e-6
    per_patch = ((pred - (target - mean) / std)**2).mean(-1)  # [B, L]
    want = (per_patch * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, want)
    # the visible patches do not count
    assert not torch.allclose(want, per_patch.mean())


def _encoder_grads(model: CroCo, detach_view2: bool) -> dict[str, torch.Tensor]:
    """Encoder gradients of one loss, view 2's encoder output detached or not."""
    model.zero_grad()
    calls = []

    def hook(module, args, out):
        calls.append(out)
        if detach_view2 and len(calls) == 2:  # the second pass is view 2's
            return tuple(o.detach() for o in out)
        return None

    handle = model.backbone.register_forward_hook(hook)
    try:
        x1, x2 = views()
        torch.manual_seed(1)
        model.loss([x1, x2], None)['loss'].backward()
    finally:
        handle.remove()
    assert len(calls) == 2  # one encoder, called once per view
    return {n: p.grad.clone() for n, p in model.backbone.named_parameters()
            if p.grad is not None}


def test_encoder_gets_gradients_through_both_views():
    model = build()
    both = _encoder_grads(model, detach_view2=False)
    only_view1 = _encoder_grads(model, detach_view2=True)
    key = 'layers.0.attn.qkv.weight'
    assert both[key].abs().sum() > 0 and only_view1[key].abs().sum() > 0
    # the view-2 pass adds its own share to the same (shared) weights
    diff = (both[key] - only_view1[key]).abs().sum()
    assert diff > 1e-3 * both[key].abs().sum()
    # and so does the final norm, used by both passes
    assert not torch.allclose(both['ln1.weight'], only_view1['ln1.weight'])


def test_prediction_depends_on_view2():
    model = build().eval()
    x1, x2 = views()
    x2_other = views(seed=5)[1]  # another image's view
    with torch.no_grad():
        torch.manual_seed(1)
        pred, mask = model.reconstruct(x1, x2)
        torch.manual_seed(1)
        again, _ = model.reconstruct(x1, x2)
        torch.manual_seed(1)
        other, mask_other = model.reconstruct(x1, x2_other)
    assert torch.equal(mask, mask_other) and torch.equal(pred, again)
    masked = mask.bool()  # [B, L]
    assert (pred - other)[masked].abs().max() > 1e-3  # the masked patches read view 2


def test_other_image_control_rolls_view2():
    pair, control = build(), build(view2='other_image')
    control.load_state_dict(pair.state_dict())
    x1, x2 = views()
    torch.manual_seed(1)
    got = control.loss([x1, x2], None)['loss']
    torch.manual_seed(1)
    want = pair.loss([x1, x2.roll(1, dims=0)], None)['loss']  # view 2 of the previous image
    torch.testing.assert_close(got, want)
    torch.manual_seed(1)
    assert not torch.allclose(pair.loss([x1, x2], None)['loss'], got)
    with pytest.raises(ValueError, match='2 or more'):
        control.loss([x1[:1], x2[:1]], None)
    with pytest.raises(ValueError, match='view2'):
        build(view2='nonsense')


def test_a_few_steps_lower_the_loss():
    model = build(mask_ratio=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x1, x2 = views(batch=8)

    def fixed_mask_loss() -> float:
        with torch.no_grad():
            torch.manual_seed(123)
            return float(model.loss([x1, x2], None)['loss'])

    before = fixed_mask_loss()
    for step in range(30):
        torch.manual_seed(step)
        loss = model.loss([x1, x2], None)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_mask_loss()
    assert after < 0.8 * before, (before, after)


def test_fashion_mnist_config_takes_a_step(fake_fashion_mnist):
    """The 32 px config: its pipeline gives two 32 px crops per image, its model
    (the CIM demo's encoder size, 90 % masking) returns a finite loss with
    gradients in the encoder and the decoder."""
    cfg = Config.fromfile(CONFIG)
    assert cfg.model.backbone.mask_ratio == 0.9
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset.to_dict())
    ds_cfg['data_root'] = fake_fashion_mnist
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(ds_cfg)
        model = MODELS.build(cfg.model.to_dict())
    model.init_weights()
    batch = default_collate([ds[i] for i in range(4)])
    data = model.data_preprocessor(batch, True)
    x1, x2 = data['inputs']
    assert x1.shape == x2.shape == (4, 3, 32, 32) and not torch.equal(x1, x2)
    loss = model(**data, mode='loss')['loss']
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.neck.decoder_blocks[0].cross_attn.k.weight.grad.abs().sum() > 0


def test_benchmark_control_differs_from_croco_only_in_view2(fake_fashion_mnist):
    from benchmarks.scales import build_scale
    from benchmarks.specs import build_spec
    scale = build_scale('cpu-small', tokenizer_ckpt=None, data_root=fake_fashion_mnist)
    croco, control = build_spec('croco', scale), build_spec('croco-other', scale)
    assert croco.model['view2'] == 'pair' and control.model['view2'] == 'other_image'
    assert {**control.model, 'view2': 'pair'} == croco.model
    assert control.pipeline == croco.pipeline and control.eval_backbone == croco.eval_backbone
    assert control.label != croco.label and 'another image' in control.label
