"""Geometry checks: wrong sizes fail at build time with one line saying what to change.

CIM ties four grids together: the tokenizer's token grid
(``tokenizer_img_size / tokenizer.downsample``), the generator's patch grid, the
enhancer's patch grid and the mask grid of ``BEiTMaskGenerator``; ResPix also
needs ``head.patch_size x grid = image size``. A mismatch otherwise shows up
as a shape error deep inside a forward pass (or not at all: a padded ViT
silently changes its grid). The generator's ``vocab_size`` must also be the
tokenizer's: otherwise the first step fails inside decode (an ``IndexError``, a
device-side assert on CUDA) or the cross-entropy.

- :func:`check_model_geometry` runs on a built CIM (``CIM.__init__``);
- :func:`check_config` runs on a config before anything is built
  (``tools/train.py``): the pipeline's mask generator and image size.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator, Optional

from .errors import UserError

__all__ = ['check_config', 'check_model_geometry']

Pair = tuple[int, int]


def _pair(x: Any) -> Optional[Pair]:
    if x is None:
        return None
    if isinstance(x, int):
        return (x, x)
    x = tuple(int(v) for v in x)
    return x if len(x) == 2 else None


def _fmt(p: Pair) -> str:
    return f'{p[0]}x{p[1]}'


# ------------------------------------------------------------ built modules
def _patch_embed_geometry(module: Any) -> tuple[Optional[Pair], Optional[Pair]]:
    """(input size, patch size) of an mmpretrain ViT-like backbone, else Nones."""
    pe = getattr(module, 'patch_embed', None)
    proj = getattr(pe, 'projection', None)
    size = _pair(getattr(pe, 'init_input_size', None))
    if size is None or proj is None or not hasattr(proj, 'kernel_size'):
        return None, None
    kernel, stride = _pair(proj.kernel_size), _pair(proj.stride)
    if kernel != stride:  # overlapping patches: the grid is not size / patch
        return None, None
    return size, kernel


def _check_vocab(gen_vocab: Any, tok_vocab: Any, where: str = '') -> None:
    """The generator's classes must be the tokenizer's codes: a larger vocabulary
    samples ids the decoder cannot look up (IndexError, a device-side assert on
    CUDA), a smaller one cannot score the tokenizer's ids (cross-entropy)."""
    if isinstance(gen_vocab, int) and isinstance(tok_vocab, int) and gen_vocab != tok_vocab:
        raise UserError(
            f'{where}generator.vocab_size {gen_vocab} != {where}tokenizer.vocab_size '
            f'{tok_vocab}: the generator predicts the tokenizer\'s codes, set '
            f'{where}generator.vocab_size={tok_vocab}')


def check_model_geometry(model: Any) -> None:
    """Raise :class:`UserError` (one line) if the grids of a built CIM disagree.

    Checks what can be known before a forward pass: the generator's vocabulary
    against the tokenizer's, tokenizer view / tokenizer downsample, generator
    input and patch size, a ViT enhancer's input and patch size, a per-patch
    neck's ``out_size``, ResPix ``patch_size`` and the head's ``in_channels``.
    Unknown pieces (a custom tokenizer without ``downsample``, a CNN enhancer
    without a fixed grid) are skipped; ``CIM.loss`` checks the rest on the
    first batch.
    """
    tok = model.tokenizer
    gen_head = getattr(model.generator, 'head', None)
    _check_vocab(getattr(model.generator, 'vocab_size', None),
                 getattr(tok, 'vocab_size', None))
    _check_vocab(getattr(gen_head, 'out_features', None), getattr(tok, 'vocab_size', None))
    dp = model.data_preprocessor
    down = getattr(tok, 'downsample', None)
    tok_size = _pair(getattr(dp, 'tokenizer_img_size', None))
    grid: Optional[Pair] = None
    if isinstance(down, int) and tok_size is not None:
        if tok_size[0] % down or tok_size[1] % down:
            raise UserError(
                f'data_preprocessor.tokenizer_img_size {_fmt(tok_size)} is not divisible '
                f'by the tokenizer downsample {down}: set tokenizer_img_size to token '
                f'grid x {down} (e.g. {tok_size[0] // down * down or down})')
        grid = (tok_size[0] // down, tok_size[1] // down)

    # generator: sees the tokenizer view, one patch per token
    gen_size, gen_patch = _patch_embed_geometry(getattr(model.generator, 'backbone', None))
    if getattr(model, 'generator_input', 'tokenizer') == 'enhancer':
        gen_size = None  # it sees the enhancer view: only its grid must be the token grid
    if gen_size is not None:
        if gen_size[0] % gen_patch[0] or gen_size[1] % gen_patch[1]:
            raise UserError(
                f'generator.backbone.patch_size {gen_patch[0]} does not divide its '
                f'img_size {_fmt(gen_size)}: set generator.backbone.img_size to '
                'data_preprocessor.tokenizer_img_size and patch_size to the tokenizer '
                'downsample')
        if tok_size is not None and gen_size != tok_size:
            raise UserError(
                f'generator.backbone.img_size {_fmt(gen_size)} != '
                f'data_preprocessor.tokenizer_img_size {_fmt(tok_size)}: the generator '
                f'sees the tokenizer view, set generator.backbone.img_size={tok_size[0]}')
        if isinstance(down, int) and gen_patch != (down, down):
            raise UserError(
                f'generator.backbone.patch_size {gen_patch[0]} != tokenizer downsample '
                f'{down}: one generator patch must be one token, set '
                f'generator.backbone.patch_size={down}')
    elif grid is not None and hasattr(model.generator, 'patch_resolution'):
        gen_grid = _pair(model.generator.patch_resolution)
        if gen_grid is not None and gen_grid != grid:
            raise UserError(
                f'generator grid {_fmt(gen_grid)} != token grid {_fmt(grid)} '
                '(tokenizer_img_size / tokenizer downsample): set the generator '
                'img_size / patch_size to match')

    # enhancer
    enh_size, enh_patch = _patch_embed_geometry(model.backbone)
    enh_grid: Optional[Pair] = None
    if enh_size is not None:
        if enh_size[0] % enh_patch[0] or enh_size[1] % enh_patch[1]:
            raise UserError(
                f'backbone patch_size {enh_patch[0]} does not divide backbone img_size '
                f'{_fmt(enh_size)} (the ViT would pad and change its grid): use an '
                f'img_size that is a multiple of {enh_patch[0]}')
        enh_grid = (enh_size[0] // enh_patch[0], enh_size[1] // enh_patch[1])
        if grid is not None and not model.with_neck and enh_grid != grid:
            raise UserError(
                f'enhancer patch grid {_fmt(enh_grid)} (backbone img_size '
                f'{_fmt(enh_size)} / patch_size {enh_patch[0]}) != token grid '
                f'{_fmt(grid)} (tokenizer_img_size {_fmt(tok_size)} / downsample {down}): '
                'one enhancer patch must be one token, set backbone.patch_size to '
                f'img_size / {grid[0]} or change tokenizer_img_size')
    if model.with_neck and grid is not None:
        out_size = _pair(getattr(model.neck, 'out_size', None))
        if out_size is not None and out_size != grid:
            raise UserError(
                f'neck.out_size {_fmt(out_size)} != token grid {_fmt(grid)} '
                f'(tokenizer_img_size / downsample): set neck.out_size=({grid[0]}, '
                f'{grid[1]})')

    # head
    head = model.head
    patch = getattr(head, 'patch_size', None)
    if isinstance(patch, int) and enh_size is not None and grid is not None:
        if (patch * grid[0], patch * grid[1]) != enh_size:
            raise UserError(
                f'head.patch_size {patch} x token grid {_fmt(grid)} != image size '
                f'{_fmt(enh_size)}: ResPix regresses one patch per token, set '
                f'head.patch_size={enh_size[0] // grid[0]}')
    layer = getattr(head, 'decoder', None) or getattr(head, 'classifier', None)
    in_features = getattr(layer, 'in_features', None)
    embed_dims = getattr(model.backbone, 'embed_dims', None)
    if (not model.with_neck and isinstance(in_features, int)
            and isinstance(embed_dims, int) and in_features != embed_dims):
        raise UserError(
            f'head.in_channels {in_features} != backbone embed_dims {embed_dims}: '
            f'set head.in_channels={embed_dims}')


# ------------------------------------------------------------------ configs
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        return cfg.get(key, default)
    except AttributeError:
        return default


def _default(registry: Any, type_name: Any, arg: str) -> Any:
    """A class's default for ``arg`` (class attribute first), or None."""
    if not isinstance(type_name, str):
        return None
    try:
        cls = registry.get(type_name)
    except Exception:  # pragma: no cover - unknown scope
        cls = None
    if cls is None:
        return None
    value = getattr(cls, arg, None)
    if isinstance(value, (int, tuple, list)):
        return value
    try:
        param = inspect.signature(cls).parameters.get(arg)
    except (TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def _pipelines(dataset_cfg: Any) -> Iterator[list]:
    if dataset_cfg is None:
        return
    pipe = _get(dataset_cfg, 'pipeline')
    if isinstance(pipe, (list, tuple)):
        yield list(pipe)
    inner = _get(dataset_cfg, 'dataset')
    if inner is not None:
        yield from _pipelines(inner)
    for d in _get(dataset_cfg, 'datasets', None) or []:
        yield from _pipelines(d)


def _output_size(pipeline: list) -> Optional[Pair]:
    """Square output size of the last resizing/cropping transform, if known."""
    size = None
    for t in pipeline:
        typ = str(_get(t, 'type', '')).split('.')[-1]
        if typ in ('Resize', 'RandomResizedCrop', 'ResizeEdge'):
            s = _get(t, 'scale')
            if typ == 'ResizeEdge':
                s = None
            size = _pair(s) if isinstance(s, (int, list, tuple)) else None
        elif typ in ('CenterCrop', 'RandomCrop'):
            s = _get(t, 'crop_size')
            size = _pair(s) if isinstance(s, (int, list, tuple)) else None
    if size is not None and size[0] != size[1]:
        return None  # (w, h) vs (h, w) conventions differ: only check squares
    return size


def check_config(cfg: Any) -> None:
    """Raise :class:`UserError` (one line) for a CIM config whose grids or
    vocabularies disagree.

    Checks the generator's ``vocab_size`` against the tokenizer's (class
    defaults where a config leaves them out), every ``BEiTMaskGenerator`` of
    the train pipeline (mask not larger than its grid, mask grid = token grid)
    and the pipeline's output size against a ViT enhancer's ``img_size`` and
    ResPix ``patch_size x grid``.
    Model-internal sizes are checked when the model is built
    (:func:`check_model_geometry`). Configs of other models pass unchanged.
    """
    from mmpretrain.registry import MODELS

    model = _get(cfg, 'model') or {}
    is_cim = str(_get(model, 'type', '')).split('.')[-1] == 'CIM'

    grid = tok_size = down = None
    enh_size = enh_patch = None
    if is_cim:
        dp = _get(model, 'data_preprocessor') or {}
        tok_size = _pair(_get(dp, 'tokenizer_img_size',
                              _default(MODELS, 'CIMDataPreprocessor', 'tokenizer_img_size')))
        tok = _get(model, 'tokenizer') or {}
        gen = _get(model, 'generator') or {}
        _check_vocab(
            _get(gen, 'vocab_size', _default(MODELS, _get(gen, 'type'), 'vocab_size')),
            _get(tok, 'vocab_size', _default(MODELS, _get(tok, 'type'), 'vocab_size')),
            where='model.')
        down = _get(tok, 'downsample', _default(MODELS, _get(tok, 'type'), 'downsample'))
        if isinstance(down, int) and tok_size is not None:
            if tok_size[0] % down or tok_size[1] % down:
                raise UserError(
                    f'model.data_preprocessor.tokenizer_img_size {_fmt(tok_size)} is not '
                    f'divisible by the tokenizer downsample {down}: set it to token grid '
                    f'x {down}')
            grid = (tok_size[0] // down, tok_size[1] // down)
        bb = _get(model, 'backbone') or {}
        if _get(bb, 'type') is not None and _default(MODELS, _get(bb, 'type'),
                                                     'patch_size') is not None:
            enh_size = _pair(_get(bb, 'img_size', _default(MODELS, bb['type'], 'img_size')))
            enh_patch = _pair(_get(bb, 'patch_size',
                                   _default(MODELS, bb['type'], 'patch_size')))
            if enh_size is not None and enh_patch is not None and (
                    enh_size[0] % enh_patch[0] or enh_size[1] % enh_patch[1]):
                raise UserError(
                    f'model.backbone.patch_size {enh_patch[0]} does not divide '
                    f'model.backbone.img_size {_fmt(enh_size)}: use an img_size that is '
                    f'a multiple of {enh_patch[0]}')

    loader = _get(cfg, 'train_dataloader')
    for pipeline in _pipelines(_get(loader, 'dataset')):
        for t in pipeline:
            if str(_get(t, 'type', '')).split('.')[-1] != 'BEiTMaskGenerator':
                continue
            mask_grid = _pair(_get(t, 'input_size'))
            n = _get(t, 'num_masking_patches')
            if mask_grid is None:
                continue
            cells = mask_grid[0] * mask_grid[1]
            if isinstance(n, int) and n > cells:
                raise UserError(
                    f'BEiTMaskGenerator num_masking_patches={n} is larger than its '
                    f'{_fmt(mask_grid)} grid ({cells} patches): use at most {cells} '
                    f'(BEiT masks ~40%: {round(0.4 * cells)})')
            if grid is not None and mask_grid != grid:
                raise UserError(
                    f'BEiTMaskGenerator input_size {_fmt(mask_grid)} != token grid '
                    f'{_fmt(grid)} (tokenizer_img_size {_fmt(tok_size)} / downsample '
                    f'{down}): set input_size=({grid[0]}, {grid[1]})')
        if not is_cim:
            continue
        out = _output_size(pipeline)
        if out is None:
            continue
        if enh_size is not None and out != enh_size:
            raise UserError(
                f'the train pipeline makes {_fmt(out)} images but model.backbone.img_size '
                f'is {_fmt(enh_size)}: make them equal')
        head = _get(model, 'head') or {}
        patch = _get(head, 'patch_size')
        if (str(_get(head, 'type', '')).split('.')[-1] == 'ResPixHead'
                and isinstance(patch, int) and grid is not None
                and (patch * grid[0], patch * grid[1]) != out):
            raise UserError(
                f'model.head.patch_size {patch} x token grid {_fmt(grid)} != the '
                f'{_fmt(out)} images of the train pipeline: set head.patch_size='
                f'{out[0] // grid[0]} or change the image size')
