"""``tools/gpu_profile.py``: its optimizer rebuild keeps every tensor's update, and the
``--dry-run`` rehearsal writes a complete profile on the CPU."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location('gpu_profile_tool',
                                                  ROOT / 'tools' / 'gpu_profile.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _per_tensor_adamw(params: list[torch.nn.Parameter]) -> torch.optim.AdamW:
    """One group per tensor, as mmengine's constructor makes with paramwise_cfg:
    even tensors decay, odd ones do not."""
    groups = [dict(params=[p], weight_decay=0.05 if i % 2 == 0 else 0.0)
              for i, p in enumerate(params)]
    return torch.optim.AdamW(groups, lr=1e-2)


class _Wrapper:  # the one attribute rebuild_adamw touches on an mmengine OptimWrapper
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer


def test_merged_groups_keep_each_tensors_hyper_parameters():
    gp = _load()
    params = [torch.nn.Parameter(torch.randn(3, 2)) for _ in range(5)]
    merged = gp.merged_groups(_per_tensor_adamw(params))
    assert len(merged) == 2
    by_wd = {g['weight_decay']: [id(p) for p in g['params']] for g in merged}
    assert by_wd[0.05] == [id(params[i]) for i in (0, 2, 4)]
    assert by_wd[0.0] == [id(params[i]) for i in (1, 3)]


def test_rebuilt_optimizer_steps_like_the_per_tensor_one():
    gp = _load()
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(4)]
    new = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref = _per_tensor_adamw(ref)
    w = _Wrapper(_per_tensor_adamw(new))
    gp.rebuild_adamw(w, merge=True, fused=False)
    assert len(w.optimizer.param_groups) == 2
    for _ in range(3):
        grads = [torch.randn(4, 3) for _ in ref]
        for ps, opt in ((ref, opt_ref), (new, w.optimizer)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(ref, new):
        torch.testing.assert_close(a, b)
    assert not torch.equal(ref[0], ref[1])  # the decays differ, so the check can fail


def test_kernel_kinds_and_ranges():
    gp = _load()
    assert gp.kind_of('nvjet_sm90_tst_192x192_64x4_bias_TNN') == 'matmul'
    assert gp.kind_of('void at::native::multi_tensor_apply_kernel<Adam>') == 'optimizer'
    assert gp.kind_of('cudnn_generated_fort_native_sdpa_sm90_flash_bprop') == 'attention'
    assert gp.kind_of('vectorized_elementwise_kernel<8, CUDAFunctor_add>') == 'elementwise'
    assert gp.is_range('Optimizer.step#AdamW.step') and not gp.is_range('aten::mm')
    assert not gp.is_range('void direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}')


def test_dry_run_writes_a_profile(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'gpu_profile.py'), '--dry-run',
                           '--out', str(tmp_path), '--methods', 'cim-respix,beit', '--stack'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    res = json.loads((tmp_path / 'profile.json').read_text())
    assert res['dry_run'] is True and set(res['methods']) == {'cim-respix', 'beit'}
    for m, r in res['methods'].items():
        # the recipes merge their groups already (paramwise_cfg.merge_groups): nothing
        # is left to merge, and there are fewer groups than tensors
        assert r['param_tensors'] > r['param_groups'] == r['merged_groups'] >= 1, m
        assert r['step_s'] > 0 and r['top_cpu_ops'], m
        assert set(r['optimizer_variants_step_s']) == {'fused', 'merged+fused', 'merged+foreach'}
        assert all(isinstance(v, float) for v in r['optimizer_variants_step_s'].values()), r
        assert r['stacked_step_s']['merged+fused+channels_last'] > 0, r['stacked_step_s']
    assert '## cim-respix' in (tmp_path / 'profile.md').read_text()
