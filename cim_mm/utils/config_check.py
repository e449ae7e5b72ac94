"""Geometry checks of a built CIM and of a config, before anything runs.

Both read the sizes they can know into a :class:`~.geometry.Geometry` and apply
the one rule set, :func:`~.geometry.check_geometry`:

- :func:`model_geometry` reads a built CIM; ``CIM.geometry()`` returns it (a
  subclass that feeds a part another view adjusts it there) and
  ``CIM.__init__`` checks it (:func:`check_model_geometry`);
- :func:`check_config` on a config before anything is built (``tools/train.py``):
  the sizes the config names (class defaults where it leaves them out), the
  pipeline's mask generators and image size.

Unknown pieces (a custom tokenizer without ``downsample``, a CNN enhancer
without a fixed grid) are skipped. The batch itself is compared with the sizes
the built model fixes at the start of ``CIM.loss``
(:class:`~.geometry.BatchSizes`).
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator, Optional

from mmpretrain.registry import MODELS

from .geometry import Geometry, Pair, check_geometry, pair, token_grid

__all__ = ['check_config', 'check_model_geometry', 'model_geometry']


# ------------------------------------------------------------ built modules
def _patch_embed_geometry(module: Any) -> tuple[Optional[Pair], Optional[Pair]]:
    """(input size, patch size) of an mmpretrain ViT-like backbone, else Nones."""
    pe = getattr(module, 'patch_embed', None)
    proj = getattr(pe, 'projection', None)
    size = pair(getattr(pe, 'init_input_size', None))
    if size is None or proj is None or not hasattr(proj, 'kernel_size'):
        return None, None
    kernel, stride = pair(proj.kernel_size), pair(proj.stride)
    if kernel != stride:  # overlapping patches: the grid is not size / patch
        return None, None
    return size, kernel


def model_geometry(model: Any) -> Geometry:
    """The sizes a built CIM knows before a forward pass (its generator sees
    the tokenizer view)."""
    tok, gen, head = model.tokenizer, model.generator, model.head
    gen_size, gen_patch = _patch_embed_geometry(getattr(gen, 'backbone', None))
    enh_size, enh_patch = _patch_embed_geometry(model.backbone)
    size_key = 'backbone.img_size'
    if enh_size is None and model.with_neck:  # a feature-map enhancer: its neck's img_size
        enh_size, size_key = pair(getattr(model.neck, 'img_size', None)), 'neck.img_size'
    layer = getattr(head, 'decoder', None) or getattr(head, 'classifier', None)
    gen_head = getattr(gen, 'head', None)
    gen_vocab = getattr(gen, 'vocab_size', None)
    head_vocab = getattr(gen_head, 'out_features', None)
    if isinstance(head_vocab, int) and head_vocab != gen_vocab:
        gen_vocab = head_vocab  # the classifier is what decides the sampled ids
    return Geometry(
        gen_vocab=gen_vocab, tok_vocab=getattr(tok, 'vocab_size', None),
        tok_size=pair(getattr(model.data_preprocessor, 'tokenizer_img_size', None)),
        down=getattr(tok, 'downsample', None),
        gen_size=gen_size, gen_patch=gen_patch,
        gen_grid=pair(getattr(gen, 'patch_resolution', None)),
        enh_size=enh_size, enh_size_key=size_key, enh_patch=enh_patch,
        with_neck=bool(model.with_neck),
        neck_out=pair(getattr(model.neck, 'out_size', None)) if model.with_neck else None,
        head_patch=getattr(head, 'patch_size', None),
        head_in=getattr(layer, 'in_features', None),
        embed_dims=getattr(model.backbone, 'embed_dims', None))


def check_model_geometry(model: Any) -> None:
    """Raise :class:`UserError` (one line) if the grids of a built CIM (its
    ``geometry()``) disagree; a neck with ``check_backbone`` (:class:`CNNPatchNeck`)
    then probes the enhancer at the image size (its ``img_size``, else the ResPix
    head's ``patch_size`` x the token grid) against the token grid."""
    g = model.geometry()
    check_geometry(g)
    check = getattr(model.neck, 'check_backbone', None) if model.with_neck else None
    if callable(check):
        grid = token_grid(g)
        img = g.enh_size
        if img is None and isinstance(g.head_patch, int) and grid is not None:
            img = (g.head_patch * grid[0], g.head_patch * grid[1])
        check(model.backbone, grid, img)


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


def _is_cim(type_name: Any) -> bool:
    """Whether a model type is CIM or a subclass of it (looked up in the registry)."""
    if not isinstance(type_name, str):
        return False
    if type_name.split('.')[-1] == 'CIM':
        return True
    try:
        cim, cls = MODELS.get('CIM'), MODELS.get(type_name)
    except Exception:  # pragma: no cover - unknown scope
        return False
    return inspect.isclass(cls) and inspect.isclass(cim) and issubclass(cls, cim)


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
            size = pair(s) if isinstance(s, (int, list, tuple)) else None
        elif typ in ('CenterCrop', 'RandomCrop'):
            s = _get(t, 'crop_size')
            size = pair(s) if isinstance(s, (int, list, tuple)) else None
    if size is not None and size[0] != size[1]:
        return None  # (w, h) vs (h, w) conventions differ: only check squares
    return size


def config_geometry(cfg: Any) -> Optional[Geometry]:
    """The sizes a CIM config names (class defaults where it leaves them out) and
    its train pipelines; None for the config of another model (only its mask
    generators are checked)."""
    model = _get(cfg, 'model') or {}
    is_cim = _is_cim(_get(model, 'type'))
    g = Geometry(where='model.')
    if is_cim:
        dp = _get(model, 'data_preprocessor') or {}
        tok = _get(model, 'tokenizer') or {}
        gen = _get(model, 'generator') or {}
        g.tok_size = pair(_get(dp, 'tokenizer_img_size',
                               _default(MODELS, 'CIMDataPreprocessor', 'tokenizer_img_size')))
        g.gen_vocab = _get(gen, 'vocab_size', _default(MODELS, _get(gen, 'type'), 'vocab_size'))
        g.tok_vocab = _get(tok, 'vocab_size', _default(MODELS, _get(tok, 'type'), 'vocab_size'))
        g.down = _get(tok, 'downsample', _default(MODELS, _get(tok, 'type'), 'downsample'))
        bb = _get(model, 'backbone') or {}
        typ = _get(bb, 'type')
        if typ is not None and _default(MODELS, typ, 'patch_size') is not None:
            g.enh_size = pair(_get(bb, 'img_size', _default(MODELS, typ, 'img_size')))
            g.enh_patch = pair(_get(bb, 'patch_size', _default(MODELS, typ, 'patch_size')))
            g.with_neck = _get(model, 'neck') is not None
        neck = _get(model, 'neck')
        if neck is not None and g.enh_size is None:  # a feature-map enhancer + its neck
            g.with_neck = True
            g.enh_size, g.enh_size_key = pair(_get(neck, 'img_size')), 'neck.img_size'
            g.neck_out = pair(_get(neck, 'out_size'))
        head = _get(model, 'head') or {}
        if str(_get(head, 'type', '')).split('.')[-1] == 'ResPixHead':
            g.head_patch = _get(head, 'patch_size')
    loader = _get(cfg, 'train_dataloader')
    for pipeline in _pipelines(_get(loader, 'dataset')):
        for t in pipeline:
            if str(_get(t, 'type', '')).split('.')[-1] == 'BEiTMaskGenerator':
                mask_grid = pair(_get(t, 'input_size'))
                if mask_grid is not None:
                    g.masks.append((mask_grid, _get(t, 'num_masking_patches')))
        out = _output_size(pipeline) if is_cim else None
        if out is not None:
            g.images.append(out)
    return g


def check_config(cfg: Any) -> None:
    """Raise :class:`UserError` (one line) for a CIM config whose grids or
    vocabularies disagree (the mask generators of any config). Model-internal
    sizes are checked when the model is built (:func:`check_model_geometry`)."""
    check_geometry(config_geometry(cfg))
