"""Pictures of one CIM step: what was masked, corrupted, replaced, recovered.

:func:`draw_cim_step` runs a CIM model (eval mode, no grad) on a few images and
returns one ``[H, W, 3]`` uint8 RGB grid, one row per image, columns:

- ``original``: the enhancer view, de-normalised with the data preprocessor's
  mean/std;
- ``mask``: the original with the masked patches (given to the generator)
  blended with red (visible over black as over white);
- ``corrupted``: the generator-corrupted image the enhancer sees;
- ``replaced``: white where the sampled token differs from the tokenizer's
  (the RevDet label), black where it was kept;
- ResPix: ``target (norm)`` (the sliding-window-normalised original, the
  regression target), ``pred (norm)`` (the head output in the same space) and
  ``pred+orig stats`` (the prediction de-normalised with the *original's*
  window mean/std, as MAE's pictures add the original's patch statistics back:
  it borrows the original's local brightness and contrast, so even a noisy
  prediction looks like the original there; judge the model on the two
  normalised columns);
- RevDet: ``P(replaced)``, ``sigmoid(logits)`` per patch, upsampled to the
  image (same white = replaced scale as ``replaced``).

A title line (e.g. the checkpoint and iteration) heads the grid and a legend
line closes it. Used by :class:`~cim_mm.engine.hooks.CIMVisualizationHook` during
training and by ``tools/visualization/vis_cim.py`` on a checkpoint.
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cim_mm.models.heads import (ResPixHead, RevDetHead, sliding_window_stats,
                                 unpatchify)
from cim_mm.utils.errors import UserError

__all__ = ['cim_step_outputs', 'draw_cim_step', 'slice_data_batch', 'RECOVERED_TITLE',
           'LEGEND']

#: what the colours of the mask / replaced / P(replaced) columns mean
LEGEND = ('mask: red = masked (the generator predicts these tokens)',
          'replaced, P(replaced): white = token replaced, black = kept')
#: share of pure red blended into a masked patch of the ``mask`` column
MASK_ALPHA = 0.55

#: title of the ResPix column that adds the original's window mean/std back to
#: the prediction: not a reconstruction by the model alone
RECOVERED_TITLE = 'pred+orig stats'


def slice_data_batch(data_batch: dict, num: int) -> dict:
    """The first ``num`` samples of a collated batch, detached and on the CPU.

    ``inputs`` may be a batched tensor ``[B, ...]`` (``default_collate``), a list
    of per-sample tensors (``pseudo_collate``) or a list of batched views.
    """
    def cut(x):
        return x[:num].detach().cpu().clone()

    inputs = data_batch['inputs']
    if torch.is_tensor(inputs):
        inputs = cut(inputs)
    elif len(inputs) and torch.is_tensor(inputs[0]) and inputs[0].dim() == 4:
        inputs = [cut(x) for x in inputs]  # a list of batched views
    else:
        inputs = [x.detach().cpu().clone() for x in inputs[:num]]
    out = dict(inputs=inputs)
    samples = data_batch.get('data_samples')
    if samples is not None:
        out['data_samples'] = [s.clone() if hasattr(s, 'clone') else s
                               for s in samples[:num]]
    return out


@torch.no_grad()
def cim_step_outputs(model, data_batch: dict) -> dict[str, torch.Tensor]:
    """Run one CIM step for display (the model's mode is left unchanged).

    Returns a dict of ``[B, 3, H, W]`` float images in 0..255, RGB-ordered as
    the enhancer sees them (``original``, ``corrupted``, ...), the ``[B, h, w]``
    bool ``mask`` / ``replaced`` maps and the head's output
    (``respix_pred``/``respix_target`` in normalised units, or
    ``revdet_prob [B, h, w]``).
    """
    was_training = model.training
    model.eval()
    try:
        data = model.data_preprocessor(data_batch, training=False)
        inputs = data['inputs']
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 3:
            raise UserError(
                'draw_cim_step needs masks in the batch: the pipeline must have '
                'BEiTMaskGenerator before PackInputs.')
        img, tok_img, mask = inputs[0], inputs[1], inputs[2].bool()
        ids = model.tokenizer.encode(tok_img)  # [B, h, w]
        logits = model.generator(tok_img, mask)  # [B, L, V]
        corrupted, _, replaced = model.corrupt(logits, ids, mask, img.shape[-2:])
        feats = model.patch_features(corrupted)  # [B, L, C]
        def to255(x: torch.Tensor) -> torch.Tensor:
            return model.data_preprocessor.denormalize(x).clamp(0, 255)

        out = dict(original=to255(img), corrupted=to255(corrupted), mask=mask,
                   replaced=replaced)
        grid = tuple(mask.shape[-2:])
        head = model.head
        if isinstance(head, ResPixHead):
            p = head.patch_size
            pred = unpatchify(head(feats).float(), p, grid, head.out_channels)
            target = unpatchify(head.target(img), p, grid, head.out_channels)
            w_mean, w_std = sliding_window_stats(img, head.window_size, head.eps)
            out.update(respix_target=target, respix_pred=pred,
                       recovered=to255(pred * w_std + w_mean))
        elif isinstance(head, RevDetHead):
            out['revdet_prob'] = torch.sigmoid(head(feats).float()).view(-1, *grid)
        return out
    finally:
        model.train(was_training)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] float 0..255 -> [H, W, 3] uint8."""
    return x.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def _normalised_to_uint8(x: torch.Tensor, span: float = 2.5) -> np.ndarray:
    """[3, H, W] in normalised units (~N(0, 1)) -> uint8, -span..span -> 0..255."""
    return _to_uint8((x.float() / span + 1) * 127.5)


def _grid_map(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[h, w] float -> [3, H, W] float 0..1 (nearest, one block per patch)."""
    m = F.interpolate(m.float()[None, None], size=size, mode='nearest')[0]
    return m.expand(3, -1, -1)


def _put_title(canvas: np.ndarray, text: str, x: int, width: int, height: int,
               y: int = 0, centre: bool = True) -> None:
    """Write ``text`` in the band ``[y, y + height)`` from ``x`` (centred over
    ``width`` if ``centre``); the font shrinks until it fits the width."""
    scale = 0.4 if width >= 80 else 0.3
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while tw > width - 2 and scale > 0.25:
        scale -= 0.05
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    left = x + max(0, (width - tw) // 2) if centre else x
    cv2.putText(canvas, text, (left, y + (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_cim_step(model, data_batch: dict, num_images: Optional[int] = 8,
                  channel_order: str = 'auto', min_panel: int = 96,
                  pad: int = 2, titles: bool = True,
                  title: Optional[str] = None, legend: bool = True) -> np.ndarray:
    """Draw one CIM step for the first ``num_images`` images of a batch.

    Args:
        model: a :class:`~cim_mm.models.CIM` (not a DDP wrapper).
        data_batch: a collated batch as the dataloader gives it
            (``inputs`` uint8 ``[B, 3, H, W]``, ``data_samples`` with masks).
        num_images: at most this many rows (``None``: the whole batch).
        channel_order: ``'rgb'``/``'bgr'`` order of the enhancer input;
            ``'auto'``: ``'rgb'`` if the data preprocessor converts to RGB
            (``to_rgb=True``), else ``'bgr'`` (mmcv's loaders give BGR).
        min_panel: panels smaller than this are upscaled (nearest) by an integer
            factor so that small images (32 px) stay readable.
        pad: pixels between panels.
        titles: a header row naming the columns.
        title: a line above everything (e.g. ``'iter_500.pth, iteration 500'``).
        legend: lines below the grid saying what the colours mean (:data:`LEGEND`).
    Returns:
        ``[H_grid, W_grid, 3]`` uint8 RGB image.
    """
    if num_images is not None:
        data_batch = slice_data_batch(data_batch, num_images)
    out = cim_step_outputs(model, data_batch)
    if channel_order == 'auto':
        to_rgb = getattr(model.data_preprocessor, 'converts_to_rgb', False)
        channel_order = 'rgb' if to_rgb else 'bgr'
    flip = channel_order == 'bgr'

    orig = out['original']
    B, _, H, W = orig.shape
    size = (H, W)
    columns: list[tuple[str, list[np.ndarray]]] = []

    def add(name: str, imgs: list[np.ndarray]) -> None:
        columns.append((name, [im[..., ::-1] if flip else im for im in imgs]))

    add('original', [_to_uint8(orig[i]) for i in range(B)])
    masked = []
    for i in range(B):
        m = _grid_map(out['mask'][i], size).to(orig.device)
        tint = orig.new_tensor([255., 0., 0.])[:, None, None]  # [3, 1, 1] pure red
        if flip:
            tint = tint.flip(0)
        masked.append(_to_uint8(orig[i] * (1 - MASK_ALPHA * m) + MASK_ALPHA * m * tint))
    add('mask', masked)
    add('corrupted', [_to_uint8(out['corrupted'][i]) for i in range(B)])
    columns.append(('replaced', [_to_uint8(255 * _grid_map(out['replaced'][i], size))
                                 for i in range(B)]))
    if 'respix_pred' in out:
        add('target (norm)', [_normalised_to_uint8(out['respix_target'][i])
                              for i in range(B)])
        add('pred (norm)', [_normalised_to_uint8(out['respix_pred'][i])
                            for i in range(B)])
        add(RECOVERED_TITLE, [_to_uint8(out['recovered'][i]) for i in range(B)])
    if 'revdet_prob' in out:
        columns.append(('P(replaced)', [
            _to_uint8(255 * _grid_map(out['revdet_prob'][i], size)) for i in range(B)]))

    scale = max(1, math.ceil(min_panel / max(H, W)))
    ph, pw = H * scale, W * scale
    line = 16  # height of one text line
    top = line if title else 0
    header = top + (line if titles else 0)
    footer = line * len(LEGEND) if legend else 0
    ncol = len(columns)
    width = ncol * (pw + pad) + pad
    canvas = np.full((header + B * (ph + pad) + pad + footer, width, 3), 40, dtype=np.uint8)
    if title:
        _put_title(canvas, title, pad, width - 2 * pad, line, centre=False)
    for c, (name, imgs) in enumerate(columns):
        x = pad + c * (pw + pad)
        if titles:
            _put_title(canvas, name, x, pw, line, y=top)
        for r, im in enumerate(imgs):
            if scale > 1:
                im = np.repeat(np.repeat(im, scale, axis=0), scale, axis=1)
            y = header + pad + r * (ph + pad)
            canvas[y:y + ph, x:x + pw] = im
    if legend:
        for k, text in enumerate(LEGEND):
            _put_title(canvas, text, pad, width - 2 * pad, line,
                       y=canvas.shape[0] - footer + k * line, centre=False)
    return canvas
