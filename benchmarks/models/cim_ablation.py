"""CIM with the three ablation options of the benchmark (``--ablate``).

:class:`cim_mm.models.CIM` is the paper's four steps; this subclass adds what
the ablation table varies beyond config values:

- ``generator_input``: what the generator sees, ``'tokenizer'`` (the paper /
  BEiT: the tokenizer view) or ``'enhancer'`` (the normalised enhancer view;
  the generator's patch grid must then be the enhancer's);
- ``enhancer_input``: what the enhancer sees, ``'decode'`` (the paper: the
  whole decoded token map) or ``'paste'`` (the original image with only the
  replaced patches pasted in from the decode);
- ``generator_warmup``: a fraction of training (mmengine's ``MessageHub``
  ``iter / max_iters``) during which only the generator trains: no decode, no
  enhancer, ``loss_enh = 0``. Ours, not the paper's. Under DDP the skipped
  enhancer needs ``model_wrapper_cfg=dict(find_unused_parameters=True)``.

With the defaults it computes exactly what :class:`CIM` computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from cim_mm.models import CIM
from cim_mm.utils.errors import UserError
from cim_mm.utils.geometry import Geometry


def check_ablation_options(generator_input: str, enhancer_input: str,
                           generator_warmup: float) -> None:
    """Raise a one-line :class:`UserError` for an ablation option out of range."""
    if generator_input not in ('tokenizer', 'enhancer'):
        raise UserError("model.generator_input must be 'tokenizer' or 'enhancer', "
                        f'got {generator_input!r}')
    if enhancer_input not in ('decode', 'paste'):
        raise UserError("model.enhancer_input must be 'decode' or 'paste', "
                        f'got {enhancer_input!r}')
    if not 0.0 <= float(generator_warmup) < 1.0:
        raise UserError('model.generator_warmup is a fraction of training in [0, 1), '
                        f'got {generator_warmup!r}')


@MODELS.register_module()
class CIMAblation(CIM):
    """:class:`CIM` plus ``generator_input`` / ``enhancer_input`` /
    ``generator_warmup`` (see the module docstring); every other argument is CIM's."""

    def __init__(self, *args, generator_input: str = 'tokenizer',
                 enhancer_input: str = 'decode', generator_warmup: float = 0.0,
                 **kwargs) -> None:
        check_ablation_options(generator_input, enhancer_input, generator_warmup)
        # plain values, set before CIM.__init__: its build-time check calls
        # self.geometry(), which reads generator_input
        self.generator_input = generator_input
        self.enhancer_input = enhancer_input
        self.generator_warmup = float(generator_warmup)
        super().__init__(*args, **kwargs)

    def geometry(self) -> Geometry:
        """CIM's sizes; with ``generator_input='enhancer'`` the generator sees
        the enhancer view, so only its patch grid (not its input size / patch
        size) is held to the token grid."""
        g = super().geometry()
        if self.generator_input == 'enhancer':
            g.gen_size = g.gen_patch = None
        return g

    def generator_warming_up(self) -> bool:
        """True while training and ``iter < generator_warmup * max_iters``."""
        if self.generator_warmup <= 0 or not self.training:
            return False
        hub = MessageHub.get_current_instance()
        it, total = hub.get_info('iter'), hub.get_info('max_iters')
        return it is not None and bool(total) and it < self.generator_warmup * total

    def loss(self, inputs: list[torch.Tensor], data_samples: list[DataSample],
             **kwargs) -> dict[str, torch.Tensor]:
        """CIM's steps with the ablation options applied."""
        img, tok_img, mask = self.unpack(inputs)
        ids = self.encode(tok_img)  # [B, h, w]
        gen_img = img if self.generator_input == 'enhancer' else tok_img
        logits = self.generator(gen_img, mask)  # [B, L, V]
        loss_gen = self.generator.loss(logits, ids, mask)
        if self.generator_warming_up():  # the generator alone: no decode, no enhancer
            return dict(loss_gen=loss_gen * self.loss_weights['gen'],
                        loss_enh=loss_gen.new_zeros(()))
        corrupted, _, replaced = self.corrupt(logits, ids, mask, img.shape[-2:])
        if self.enhancer_input == 'paste':  # original image, replaced patches decoded
            rep = F.interpolate(replaced[:, None].float(), size=img.shape[-2:],
                                mode='nearest').bool()  # [B, 1, H, W]
            corrupted = torch.where(rep, corrupted, img)  # [B, 3, H, W]
        feats = self.patch_features(corrupted)  # [B, L, C]
        enh = self.head.loss(feats, original=img, replaced=replaced)
        return self.weighted_losses(loss_gen, enh, replaced)
