"""The one AMP -> float32 fallback used by tools/train.py and the benchmarks."""
from __future__ import annotations

import pytest

import cim_mm  # noqa: F401  (registers PerModuleClipOptimWrapper)
from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain


@pytest.mark.parametrize('amp, plain', [('AmpOptimWrapper', 'OptimWrapper'),
                                        ('PerModuleClipAmpOptimWrapper',
                                         'PerModuleClipOptimWrapper')])
def test_amp_wrapper_becomes_its_plain_counterpart_without_accelerator(amp, plain):
    cfg = dict(type=amp, dtype='bfloat16', loss_scale='dynamic',
               optimizer=dict(type='AdamW', lr=1e-3), clip_grad=dict(max_norm=3.0))
    assert amp_to_plain(cfg, accelerator=False) == f'{amp} -> {plain}'
    assert cfg == dict(type=plain, optimizer=dict(type='AdamW', lr=1e-3),
                       clip_grad=dict(max_norm=3.0))


def test_kept_with_an_accelerator_and_for_plain_wrappers():
    cfg = dict(type='AmpOptimWrapper', dtype='bfloat16')
    assert amp_to_plain(cfg, accelerator=True) is None
    assert cfg == dict(type='AmpOptimWrapper', dtype='bfloat16')
    plain = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    assert amp_to_plain(dict(plain), accelerator=False) is None
