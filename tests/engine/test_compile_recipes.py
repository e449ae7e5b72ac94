"""Every shipped recipe's compiled regions: no graph break, no recompile after step 1.

Each pre-training recipe in ``configs/cim/`` (``*_in1k.py``) is built at the GPU
check's toy sizes with every switch and rate as written (drop path 0.1, layer
scale, SDPA, bf16 tokenizer, ...); its ``CompileBlocksHook`` compiles what the
recipe says (backend ``aot_eager``: dynamo's graphs and AOT autograd, no code
generation); a few training steps run under a bf16 CPU autocast, as
``AmpOptimWrapper`` runs them on a GPU. Dynamo's counters must show no graph
break and no frame compiled after the first step. The tokenizer runs on its
CUDA branch (low precision without an outer autocast, see
``DALLETokenizer.run_dtype``), so the precision context the GPU takes is the
one compiled around.
"""
from __future__ import annotations

import glob
import json
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmpretrain.registry import HOOKS, MODELS
from torch._dynamo.backends.debugging import aot_eager

from benchmarks.gpu_check.models import TOY_IMG, TOY_MASK, synthetic_batch, toy_recipe_model
from cim_mm.engine.dynamo_counts import dynamo_counts
from cim_mm.engine.optim_wrappers.amp_fallback import amp_to_plain
from cim_mm.models.tokenizers import dalle

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STEPS = 3


def _hook_cfg(cfg: Config) -> dict | None:
    hooks = [dict(h) for h in cfg.get('custom_hooks', [])
             if str(h.get('type', '')).endswith('CompileBlocksHook')]
    return hooks[0] if hooks else None


def _distinct_recipes() -> list[str]:
    """The shipped recipes, one per distinct (model, compile hook): the 800-epoch
    schedules share their 300-epoch model."""
    seen, out = set(), []
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'cim', '*_in1k.py'))):
        cfg = Config.fromfile(path)
        key = json.dumps([cfg.model.to_dict(), _hook_cfg(cfg)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(osp.relpath(path, ROOT))
    return out


RECIPES = _distinct_recipes()


def test_every_gpu_recipe_has_the_compile_hook_with_the_tokenizer_off():
    assert len(RECIPES) >= 6, RECIPES  # ViT-S/B and ResNet-50, ResPix and RevDet
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'cim', '*_in1k.py'))):
        hook = _hook_cfg(Config.fromfile(path))
        assert hook is not None, path
        built = HOOKS.build(hook)
        assert not built.compile_tokenizer and not any('tokenizer' in m for m in built.methods)


@pytest.fixture
def cuda_branch(monkeypatch):
    """The tokenizer takes its CUDA branch on the CPU: low precision always."""
    monkeypatch.setattr(dalle, 'LOW_PRECISION_DEVICES', ('cuda', 'cpu'))


def _build(recipe: str):
    cfg = Config.fromfile(osp.join(ROOT, recipe))
    model_cfg = toy_recipe_model(cfg.model.to_dict())
    model_cfg['tokenizer'].update(encoder_path=None, decoder_path=None, allow_random_init=True)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    wrapper = cfg.optim_wrapper.to_dict()
    amp_to_plain(wrapper, accelerator=False)
    return model, build_optim_wrapper(model, wrapper), _hook_cfg(cfg)


def _compile_and_train(model, optim, hook_cfg: dict, **compile_kwargs) -> tuple:
    """The recipe's hook (its ``before_train``), then ``STEPS`` bf16 steps;
    the dynamo counts of the first step and of the steps after it."""
    torch._dynamo.reset()
    hook = HOOKS.build(dict(hook_cfg, cuda_only=False, backend='aot_eager', **compile_kwargs))
    hook.before_train(SimpleNamespace(model=model))
    assert hook.compiled
    start = dynamo_counts()
    counts = []
    for i in range(STEPS):
        data = synthetic_batch(SimpleNamespace(img_size=TOY_IMG, patch_size=16,
                                               beit_mask=TOY_MASK), n=2, seed=i)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model.train_step(data, optim)
        assert all(torch.isfinite(v).all() for v in losses.values()), losses
        counts.append(dynamo_counts())
    return hook, counts[0] - start, counts[-1] - counts[0]


@pytest.mark.parametrize('recipe', RECIPES, ids=[osp.basename(r)[:-3] for r in RECIPES])
def test_recipe_compiles_without_breaks_or_recompiles(recipe, cuda_branch):
    model, optim, hook_cfg = _build(recipe)
    hook, first, later = _compile_and_train(model, optim, hook_cfg)
    assert first.frames >= 1, 'nothing was compiled'
    assert first.graph_breaks == 0, first.reasons
    assert later.frames == 0, f'{later.frames} frames compiled after the first step'
    assert later.graph_breaks == 0, later.reasons


def test_tokenizer_compile_switch_is_one_graph_each_and_equal_to_eager(cuda_branch):
    """``compile_tokenizer=True``: encoder and decoder compile whole
    (``fullgraph``), under the precision context the eager methods open."""
    recipe = RECIPES[0]
    model, optim, hook_cfg = _build(recipe)
    tok = model.tokenizer
    img = torch.rand(2, 3, 32, 32) * 0.8 + 0.1  # [B, 3, H, W] mapped-pixel range
    ids = torch.randint(0, tok.vocab_size, (2, 4, 4))  # [B, h, w]
    ref_logits, ref_img = tok.encode_logits(img), tok.decode(ids)
    keys = list(model.state_dict())
    hook, first, later = _compile_and_train(model, optim, dict(hook_cfg, compile_tokenizer=True),
                                            fullgraph=True)
    assert {'tokenizer.encoder.forward', 'tokenizer.decoder.forward_features'} <= set(
        hook.compiled)
    assert first.graph_breaks == 0 and later.frames == 0 and later.graph_breaks == 0
    torch.testing.assert_close(tok.encode_logits(img), ref_logits, rtol=0, atol=0)
    torch.testing.assert_close(tok.decode(ids), ref_img, rtol=0, atol=0)
    assert list(model.state_dict()) == keys  # no '_orig_mod.'


ENHANCER_RECIPES = [r for r in RECIPES
                    if (_hook_cfg(Config.fromfile(osp.join(ROOT, r))) or {}).get(
                        'enhancer_modules') and 'respix' in r]


def test_feature_map_recipes_ship_the_enhancer_compile_off():
    """A GPU switch ships off until a GPU run shows that it pays."""
    assert len(ENHANCER_RECIPES) == 3, ENHANCER_RECIPES  # ResNet-50, ConvNeXt-T, Swin-T
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'cim', '*_in1k.py'))):
        hook = HOOKS.build(_hook_cfg(Config.fromfile(path)))
        assert not hook.compile_enhancer, path
        assert not set(hook.enhancer_modules) & set(hook.modules), path


def _first_step(model, optim, data: dict) -> tuple[dict, dict]:
    """The losses of one training step and the enhancer's gradients it made."""
    torch.manual_seed(1)
    losses = model.train_step(data, optim)
    grads = {n: p.grad.clone() for n, p in model.backbone.named_parameters()
             if p.grad is not None}
    return losses, grads


@pytest.mark.parametrize('recipe', ENHANCER_RECIPES,
                         ids=[osp.basename(r)[:-3] for r in ENHANCER_RECIPES])
def test_enhancer_compile_switch_traces_whole_and_equals_eager(recipe, monkeypatch):
    """``compile_enhancer=True`` (ResNet-50, ConvNeXt-T, Swin-T): the enhancer's
    stages compile without a graph break or a recompile, each to graphs with no
    symbolic size, and a step gives the losses and enhancer gradients of the
    eager step (fp32, same weights, same draws)."""
    data = synthetic_batch(SimpleNamespace(img_size=TOY_IMG, patch_size=16,
                                           beit_mask=TOY_MASK), n=2, seed=0)
    # zero_grad keeps the gradients of the step for the comparison
    monkeypatch.setattr(OptimWrapper, 'zero_grad', lambda self, **kw: None)
    eager_model, eager_optim, hook_cfg = _build(recipe)
    want_losses, want_grads = _first_step(eager_model, eager_optim, data)
    model, optim, _ = _build(recipe)
    torch._dynamo.reset()
    symbolic: list[int] = []  # per graph: inputs with a symbolic size

    def backend(gm, example_inputs):
        symbolic.append(sum(isinstance(x, torch.Tensor) and any(
            isinstance(d, torch.SymInt) for d in x.shape) for x in example_inputs))
        return aot_eager(gm, example_inputs)

    hook = HOOKS.build(dict(hook_cfg, compile_enhancer=True, cuda_only=False, backend=backend))
    hook.before_train(SimpleNamespace(model=model))
    assert any(n.startswith('backbone.') for n in hook.compiled), hook.compiled
    start = dynamo_counts()
    losses, grads = _first_step(model, optim, data)
    first = dynamo_counts() - start
    assert first.frames >= 1 and first.graph_breaks == 0, first.reasons
    assert len(symbolic) == first.frames and not any(symbolic), symbolic
    for k, v in want_losses.items():
        torch.testing.assert_close(losses[k], v, rtol=1e-4, atol=1e-5)
    assert grads.keys() == want_grads.keys() and grads
    for n, g in grads.items():
        torch.testing.assert_close(g, want_grads[n], rtol=1e-3, atol=1e-5, msg=n)
    mid = dynamo_counts()
    model.train_step(synthetic_batch(SimpleNamespace(img_size=TOY_IMG, patch_size=16,
                                                     beit_mask=TOY_MASK), n=2, seed=1), optim)
    later = dynamo_counts() - mid
    assert later.frames == 0 and later.graph_breaks == 0, later.reasons


def test_the_counters_see_a_break_and_a_recompile():
    """The guard itself: a data-dependent branch and a per-call guard failure
    show in the counts this test file relies on."""
    import numpy as np
    torch._dynamo.reset()
    start = dynamo_counts()

    def branchy(x: torch.Tensor, p) -> torch.Tensor:
        return x if p == 0. else x * 2

    f = torch.compile(branchy, backend='eager')
    f(torch.ones(2), np.float64(0.1))
    c = dynamo_counts() - start
    assert c.graph_breaks >= 1 and any('branch' in r.lower() for r in c.reasons)

    g = torch.compile(lambda x, k: x + k, backend='eager', dynamic=False)
    g(torch.ones(2), 1)
    mid = dynamo_counts()
    g(torch.ones(2), 2)  # a new constant: compiled again
    assert (dynamo_counts() - mid).frames == 1
