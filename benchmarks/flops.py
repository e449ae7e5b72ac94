"""Per-image FLOPs with ``torch.utils.flop_counter.FlopCounterMode``.

Counted on CPU with batch 1 and random weights (FLOPs do not depend on the
weights): the DALL-E dVAE encoder at 112 px and decoder 14x14 -> 112 px
(``DALLETokenizer(allow_random_init=True)``, the decoder's one-hot input conv
is a table look-up and counts 0), a ViT-B/16 forward and forward+backward at
224 px, and one whole training step (forward + backward) of CIM-ResPix and of
BEiT v1 at ViT-B/16 -- their ratio is what the corruption path costs.
FlopCounterMode counts a multiply-add as 2 FLOPs.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch

# Reference figures (GFLOPs per image, DESIGN.md "Where the compute goes").
TARGETS = dict(dalle_encoder_112=52., dalle_decoder_14_to_112=59., vit_b16_fwd_bwd_224=101.)


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _train_step_flops(model, data: dict) -> int:
    def step():
        d = model.data_preprocessor(data, True)
        losses = model._run_forward(d, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    return count_flops(step)


def _one_image_batch(img_size: int, grid: int, num_mask: int, views: int = 1) -> dict:
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, img_size, img_size), generator=g, dtype=torch.uint8)
    mask = torch.zeros(grid * grid, dtype=torch.bool)
    mask[torch.randperm(grid * grid, generator=g)[:num_mask]] = True
    ds = DataSample()
    ds.set_mask(mask.view(grid, grid))
    inputs = img if views == 1 else [img] * views
    return dict(inputs=inputs, data_samples=[ds])


def flops_report(arch: str = 'vit-b', log: Optional[Callable[[str], None]] = None) -> dict:
    """GFLOPs per image; see the module doc. Takes ~10-60 s on a CPU."""
    from mmpretrain.models import VisionTransformer
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import cim_mm  # noqa: F401
    from cim_mm.models.tokenizers.dalle import DALLETokenizer

    from . import models  # noqa: F401
    from .scales import build_scale
    from .specs import build_spec
    register_all_modules(init_default_scope=True)
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    out: dict = {}
    with torch.no_grad():
        tok = DALLETokenizer(allow_random_init=True)
        x = torch.rand(1, 3, 112, 112) * 0.8 + 0.1
        out['dalle_encoder_112'] = count_flops(lambda: tok.encode(x)) / 1e9
        ids = torch.randint(0, 8192, (1, 14, 14))
        out['dalle_decoder_14_to_112'] = count_flops(lambda: tok.decode(ids)) / 1e9
    log(f'flops | DALL-E encoder {out["dalle_encoder_112"]:.1f}, decoder '
        f'{out["dalle_decoder_14_to_112"]:.1f} GFLOPs')
    vit = VisionTransformer(arch='b', img_size=224, patch_size=16)
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out['vit_b16_fwd_224'] = count_flops(lambda: vit(img)) / 1e9
    out['vit_b16_fwd_bwd_224'] = count_flops(lambda: vit(img)[-1].sum().backward()) / 1e9
    log(f'flops | ViT-B/16 fwd {out["vit_b16_fwd_224"]:.1f}, fwd+bwd '
        f'{out["vit_b16_fwd_bwd_224"]:.1f} GFLOPs')
    del vit

    scale = build_scale('gpu', arch=arch)
    num_mask = int(scale.beit_mask.get('num_masking_patches', 75))
    for name in ('cim-respix', 'beit'):
        spec = build_spec(name, scale)
        model = MODELS.build(spec.model)
        model.init_weights()
        model.train()
        views = 2 if name == 'beit' else 1
        data = _one_image_batch(scale.img_size, scale.grid, num_mask, views)
        key = name.replace('-', '_') + '_step'
        out[key] = _train_step_flops(model, data) / 1e9
        log(f'flops | {spec.label} training step {out[key]:.1f} GFLOPs/image')
        del model
    out['cim_over_beit'] = out['cim_respix_step'] / out['beit_step']
    out['arch'] = {'vit-b': 'ViT-B/16', 'vit-s': 'ViT-S/16'}[arch]
    out['mask_patches'] = num_mask
    out['targets'] = dict(TARGETS)
    out['seconds'] = round(time.perf_counter() - t0, 1)
    return out
