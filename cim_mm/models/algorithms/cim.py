"""CIM: Corrupted Image Modeling (Fang et al., ICLR 2023)."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from cim_mm.compat import ENABLE_ENTRY, missing
from cim_mm.utils.config_check import check_model_geometry, model_geometry
from cim_mm.utils.errors import UserError
from cim_mm.utils.geometry import BatchSizes, Geometry, batch_sizes

from ..data_preprocessors import CIMDataPreprocessor


@MODELS.register_module()
class CIM(BaseSelfSupervisor):
    """Corrupted Image Modeling with a ViT or CNN enhancer.

    One step (``h x w`` token grid = enhancer patch grid, ``L = h * w``):

    1. ``ids = tokenizer.encode(tok_view)`` ``[B, h, w]`` (frozen, no grad);
    2. ``logits = generator(tok_view, mask)`` ``[B, L, V]`` and
       ``loss_gen`` = masked cross-entropy against ``ids``;
    3. (no grad) ``sampled = sample(logits)`` at masked positions, ``ids``
       elsewhere; ``corrupted = tokenizer.decode(sampled)`` resized to the
       enhancer view and normalised like it; ``replaced = sampled != ids``;
    4. ``feats = backbone(corrupted)`` (+ ``neck``) -> ``[B, C, h, w]`` ->
       ``[B, L, C]``; ``loss_enh = head.loss(feats, original=img,
       replaced=replaced)`` (ResPix or RevDet).

    No gradient flows from ``loss_enh`` into the generator (the corrupted image
    is built under ``no_grad`` from a discrete sample) and ``loss_gen`` only
    reaches the generator. Both are returned, weighted by ``loss_weights``, so
    one optimizer step updates both networks.

    Args:
        backbone: the enhancer (mmpretrain ``VisionTransformer``/``BEiTViT`` with
            ``out_type='featmap'``, or ``ResNet`` with a per-patch neck).
        head: ``ResPixHead`` or ``RevDetHead``.
        tokenizer: a frozen tokenizer (``DALLETokenizer``, ``VQTokenizer``...).
        generator: ``BEiTGenerator``.
        neck: optional, maps the backbone's outputs to one ``[B, C, h, w]`` map.
        loss_weights: ``dict(gen=..., enh=...)``.
        save_tokenizer: keep the frozen tokenizer's weights in checkpoints.
            Default False: it is rebuilt from its own files (DALL-E: ~98 M
            parameters, ~390 MB per checkpoint saved for nothing); loading a
            checkpoint without them keeps the tokenizer as built.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 tokenizer: dict,
                 generator: dict,
                 neck: Optional[dict] = None,
                 loss_weights: Optional[dict] = None,
                 save_tokenizer: bool = False,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, list]] = None) -> None:
        if data_preprocessor is None:  # not mmpretrain's default: CIM needs 3 inputs
            data_preprocessor = dict(type='CIMDataPreprocessor')
        elif isinstance(data_preprocessor, dict):
            data_preprocessor = dict(data_preprocessor)
            data_preprocessor.setdefault('type', 'CIMDataPreprocessor')
        super().__init__(backbone=backbone, neck=neck, head=head,
                         pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(self.data_preprocessor, CIMDataPreprocessor):
            raise UserError(
                f'CIM needs a CIMDataPreprocessor (enhancer view, tokenizer view, mask), '
                f'got {type(self.data_preprocessor).__name__}: set '
                "model.data_preprocessor.type='CIMDataPreprocessor' (or leave type out)")
        self.tokenizer = tokenizer if isinstance(tokenizer, nn.Module) \
            else MODELS.build(tokenizer)
        self.tokenizer.freeze()
        self.generator = generator if isinstance(generator, nn.Module) \
            else MODELS.build(generator)
        weights = dict(gen=1.0, enh=1.0)
        weights.update(loss_weights or {})
        unknown = set(weights) - {'gen', 'enh'}
        if unknown:
            raise UserError(f'model.loss_weights accepts keys gen/enh, got {sorted(unknown)}')
        self.loss_weights = weights
        self.save_tokenizer = save_tokenizer
        self._register_state_dict_hook(CIM._drop_tokenizer_state)
        self._register_load_state_dict_pre_hook(self._fill_tokenizer_state)
        self._check_geometry()
        self._warn_if_compat_missing()

    def geometry(self) -> Geometry:
        """The sizes this model fixes before a forward pass (the generator sees
        the tokenizer view). A subclass that feeds a part another view adjusts
        them here; ``__init__`` checks what this returns."""
        return model_geometry(self)

    def _check_geometry(self) -> None:
        """One-line :class:`UserError` when the tokenizer / generator / enhancer /
        head grids or the vocabularies disagree (the rules of
        :mod:`cim_mm.utils.geometry`), or a feature-map enhancer cannot reach the
        token grid (:func:`cim_mm.utils.check_model_geometry`); keeps the sizes a
        batch must have."""
        check_model_geometry(self)
        self.batch_sizes: BatchSizes = batch_sizes(self.geometry())

    @staticmethod
    def _warn_if_compat_missing() -> None:
        """Say once, at build time, what to add when the stack's fixes are off:
        mmengine's ``--resume`` / ``load_from`` fail without them on torch >= 2.6."""
        fixes = missing()
        if fixes:
            print_log(f'cim_mm: the fixes for this stack are not applied ({", ".join(fixes)}): '
                      "mmengine's resume / load_from fail under torch's weights_only "
                      f"loading; add '{ENABLE_ENTRY}' to custom_imports",
                      logger='current', level=30)

    # ------------------------------------------------------------ checkpoints
    @staticmethod
    def _drop_tokenizer_state(module: 'CIM', state_dict: dict, prefix: str,
                              local_metadata: dict) -> None:
        if module.save_tokenizer:
            return
        for key in [k for k in state_dict if k.startswith(prefix + 'tokenizer.')]:
            del state_dict[key]

    def _fill_tokenizer_state(self, state_dict: dict, prefix: str, *args) -> None:
        """A checkpoint saved without the frozen tokenizer keeps the built one."""
        for key, value in self.tokenizer.state_dict().items():
            state_dict.setdefault(prefix + 'tokenizer.' + key, value)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> 'CIM':
        super().train(mode)
        self.tokenizer.eval()  # frozen: never in train mode
        return self

    def extract_feat(self, inputs: Union[torch.Tensor, list]) -> tuple:
        """Enhancer features of clean images (no corruption)."""
        img = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self.backbone(img)

    # -------------------------------------------------------------- corruption
    def _denormalized_to_enhancer(self, img01: torch.Tensor,
                                  size: tuple[int, int]) -> torch.Tensor:
        """[B, 3, h', w'] in [0, 1] -> [B, 3, H, W] normalised like the
        enhancer view."""
        if tuple(img01.shape[-2:]) != tuple(size):
            img01 = F.interpolate(img01.float(), size=size, mode='bilinear',
                                  align_corners=False)
        return self.data_preprocessor.normalize(img01.float() * 255.)

    @torch.no_grad()
    def corrupt(self, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample, decode and compare.

        Args:
            logits: generator logits ``[B, L, V]``.
            ids: tokenizer ids of the clean image ``[B, h, w]``.
            mask: ``[B, h, w]`` bool, 1 = masked.
            size: ``(H, W)`` of the enhancer view.
        Returns:
            ``corrupted [B, 3, H, W]`` (normalised like the enhancer view),
            ``sampled [B, h, w]`` ids, ``replaced [B, h, w]`` bool.
        """
        sampled = self.generator.sample(logits, ids, mask)  # [B, h, w]
        decoded = self.tokenizer.decode(sampled)  # [B, 3, h*s, w*s] in [0, 1]
        corrupted = self._denormalized_to_enhancer(decoded, size)  # [B, 3, H, W]
        replaced = sampled != ids  # [B, h, w]
        return corrupted, sampled, replaced

    def patch_features(self, corrupted: torch.Tensor) -> torch.Tensor:
        """Enhancer -> per-patch features ``[B, L, C]`` on the token grid."""
        feats = self.backbone(corrupted)
        if self.with_neck:
            feats = self.neck(feats)
        fmap = feats[-1] if isinstance(feats, (list, tuple)) else feats
        if fmap.dim() != 4:
            raise UserError(
                'the CIM enhancer must give a feature map [B, C, h, w]: use '
                "out_type='featmap' for ViT backbones or a per-patch neck for "
                f'CNNs; got shape {tuple(fmap.shape)}')
        return fmap.flatten(2).transpose(1, 2)  # [B, L, C]

    # ------------------------------------------------------------------- loss
    def loss(self, inputs: list[torch.Tensor], data_samples: list[DataSample],
             **kwargs) -> dict[str, torch.Tensor]:
        """inputs = [img [B,3,H,W], tok_img [B,3,H',W'], mask [B,h,w]] -> losses."""
        img, tok_img, mask = self.unpack(inputs)
        # 1. visual tokens of the clean image (frozen tokenizer)
        ids = self.encode(tok_img)  # [B, h, w]
        # 2. the generator predicts the masked tokens
        logits = self.generator(tok_img, mask)  # [B, L, V]
        loss_gen = self.generator.loss(logits, ids, mask)
        # 3. sample, decode: the corrupted image (no gradient to the generator)
        corrupted, _, replaced = self.corrupt(logits, ids, mask, img.shape[-2:])
        # 4. the enhancer recovers the pixels (ResPix) or finds the replaced tokens (RevDet)
        feats = self.patch_features(corrupted)  # [B, L, C]
        enh = self.head.loss(feats, original=img, replaced=replaced)
        return self.weighted_losses(loss_gen, enh, replaced)

    # --------------------------------------------------------------- helpers
    def unpack(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[img [B, 3, H, W], tok_img [B, 3, H', W'], mask [B, h, w]]`` from the
        data preprocessor, mask as bool. The batch is the one thing the
        build-time check cannot see: its masks and image size are compared with
        :attr:`batch_sizes` here (shape tuples only, no host sync); the grids of
        the model's own parts are not re-checked per step."""
        if len(inputs) < 3:
            raise UserError(
                'CIM needs a mask per image: add dict(type="BEiTMaskGenerator", ...) '
                'to the train pipeline before PackInputs.')
        img, tok_img, mask = inputs[0], inputs[1], inputs[2].bool()
        self.batch_sizes.check(img.shape[-2:], mask.shape[-2:])
        return img, tok_img, mask

    @torch.no_grad()
    def encode(self, tok_img: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids ``[B, h, w]`` of ``tok_img [B, 3, H', W']`` (frozen)."""
        return self.tokenizer.encode(tok_img)  # [B, h, w]

    def weighted_losses(self, loss_gen: torch.Tensor, enh: dict[str, torch.Tensor],
                        replaced: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_gen``, ``loss_enh`` weighted by ``loss_weights``; the head's other
        outputs as ``enh_*``; the replaced fraction (a statistic, no gradient)."""
        enh = dict(enh)
        losses = dict(loss_gen=loss_gen * self.loss_weights['gen'],
                      loss_enh=enh.pop('loss') * self.loss_weights['enh'])
        for k, v in enh.items():
            losses[f'enh_{k}'] = v
        losses['replaced_ratio'] = replaced.detach().float().mean()
        return losses
