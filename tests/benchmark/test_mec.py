"""MEC (Maximum Entropy Coding): the loss against a direct log-det, gradients,
a few training steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import cim_mm  # noqa: F401
from benchmarks.models.mec import MEC, mec_loss, mec_trace_series


def _z(m: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=1)


def test_series_equals_logdet_symmetric_and_cross():
    for m, d in ((6, 4), (4, 7)):  # both the d x d and the m x m path
        z = _z(m, d, 0)
        lam = 0.9 / torch.linalg.matrix_norm(z.t() @ z, ord=2).item()
        direct = torch.linalg.slogdet(torch.eye(d, dtype=torch.float64) + lam * z.t() @ z)
        assert direct.sign > 0
        series = mec_trace_series(z, z, lam, order=400)
        assert torch.allclose(series, direct.logabsdet, atol=1e-8), (series, direct)
        # order 4 is the truncation the paper uses: close, not equal
        s4 = mec_trace_series(z, z, lam * 0.3, order=4)
        ref = torch.linalg.slogdet(torch.eye(d, dtype=torch.float64)
                                   + lam * 0.3 * z.t() @ z).logabsdet
        assert abs(float(s4 - ref)) < 0.05 * abs(float(ref))
        # two different views: log det(I + lam Z1^T Z2)
        z1, z2 = _z(m, d, 1), _z(m, d, 2)
        lam2 = 0.5 / torch.linalg.matrix_norm(z1.t() @ z2, ord=2).item()
        direct = torch.linalg.slogdet(torch.eye(d, dtype=torch.float64) + lam2 * z1.t() @ z2)
        assert direct.sign > 0
        assert torch.allclose(mec_trace_series(z1, z2, lam2, order=200), direct.logabsdet,
                              atol=1e-8)


def test_mec_loss_scaling():
    m, d, eps_sq = 8, 5, 100.
    z1, z2 = 3 * _z(m, d, 3), 0.5 * _z(m, d, 4)  # the loss normalises the rows
    lam, mu = d / (m * eps_sq), (m + d) / 2
    ref = -mu * torch.linalg.slogdet(torch.eye(d, dtype=torch.float64)
                                     + lam * F.normalize(z1, dim=1).t()
                                     @ F.normalize(z2, dim=1)).logabsdet
    got = mec_loss(z1.double(), z2.double(), eps_sq=eps_sq, order=60)
    assert torch.allclose(got.double(), ref, rtol=1e-5)


def _tiny_mec() -> MEC:
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('max_iters', 100)
    model = MEC(
        backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                      out_indices=(3, ), zero_init_residual=False),
        neck=dict(type='NonLinearNeck', in_channels=64, hid_channels=32, out_channels=32,
                  num_layers=2, with_avg_pool=True, norm_cfg=dict(type='BN1d')),
        head=dict(type='MECHead', eps_sq=4., predictor=dict(
            type='NonLinearNeck', in_channels=32, hid_channels=16, out_channels=32,
            with_avg_pool=False, with_last_bn=False, norm_cfg=dict(type='BN1d'))),
        data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[127.5] * 3,
                               std=[127.5] * 3))
    model.init_weights()
    return model


def test_mec_gradients_reach_the_online_branch_only_and_steps_lower_the_loss():
    torch.manual_seed(0)
    model = _tiny_mec()
    online = dict(model.backbone.named_parameters())
    target = dict(model.target_net.module[0].named_parameters())
    for k, v in online.items():  # the target starts as a copy of the online encoder
        assert torch.equal(v, target[k]), k
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(16, 3, 16, 16, generator=g)
    x2 = x1 + 0.3 * torch.randn(16, 3, 16, 16, generator=g)
    loss = model.loss([x1, x2], [])['loss']
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.backbone.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in model.head.predictor.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.target_net.parameters())

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = model.loss([x1, x2], [])['loss']
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0]), losses
