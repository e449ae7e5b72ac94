"""Reading OpenAI's official DALL-E weight files without running pickled code.

Official: https://cdn.openai.com/dall-e/encoder.pkl and
https://cdn.openai.com/dall-e/decoder.pkl (linked by the BEiT README). They are
``torch.save(module)`` of the whole modules, i.e. pickles of ``dall_e.*`` /
``torch.nn.*`` classes. :func:`load_dalle_state_dict` reads them with
``torch.load(weights_only=True)`` and maps those classes to inert stubs that
only record their ``__dict__``; any other global is refused with
:class:`~cim_mm.utils.CheckpointSecurityError`. Files in torch's legacy
(pre-zip) format, which the weights-only unpickler cannot read, go through
torch's legacy loader with an allow-list unpickler mapping to the same stubs.

Converted: ``tools/model_converters/dalle_to_state_dict.py`` writes one
plain-tensor file ``{'encoder': state_dict, 'decoder': state_dict}``; a file
holding a single flat state dict is accepted too.
"""
from __future__ import annotations

import os.path as osp
import pickle
import types
import warnings
import zipfile
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from cim_mm.utils.cli import one_line
from cim_mm.utils.errors import UserError
from cim_mm.utils.safe_checkpoint import is_truncated, refusal

__all__ = ['DALLE_URLS', 'load_dalle_state_dict']

DALLE_URLS = {
    'encoder': 'https://cdn.openai.com/dall-e/encoder.pkl',
    'decoder': 'https://cdn.openai.com/dall-e/decoder.pkl',
}


class _PickledModule:
    """Inert stand-in for a pickled ``nn.Module``.

    The weights-only unpickler creates it with ``cls.__new__(cls)`` (NEWOBJ) and
    fills ``__dict__`` from the pickled module state (BUILD); it has no
    ``__setstate__``, ``__init__`` side effects or methods that run on load.
    """
    pickled_name = ''
    dump_patches = False  # read by torch's legacy loader (source-change check)

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE form: ignore
        pass


# Every global a ``torch.save(dall_e.Encoder/Decoder)`` pickle names, besides
# what torch's weights-only unpickler already allows (OrderedDict, set,
# torch.device, storages, _rebuild_tensor_v2, _rebuild_parameter).
_MODULE_GLOBALS = (
    'dall_e.encoder.Encoder',
    'dall_e.encoder.EncoderBlock',
    'dall_e.decoder.Decoder',
    'dall_e.decoder.DecoderBlock',
    'dall_e.utils.Conv2d',
    'torch.nn.modules.container.Sequential',
    'torch.nn.modules.activation.ReLU',
    'torch.nn.modules.pooling.MaxPool2d',
    'torch.nn.modules.upsampling.Upsample',
    'torch.nn.modules.linear.Identity',
)
# One stub subclass per name, so the loaded tree remembers what it was.
_STUBS: dict[str, type] = {
    name: type(name.rsplit('.', 1)[1], (_PickledModule, ),
               {'pickled_name': name})
    for name in _MODULE_GLOBALS
}
_SAFE_GLOBALS: list[tuple[type, str]] = [(cls, name) for name, cls in _STUBS.items()]


def _module_state_dict(mod: _PickledModule, prefix: str = '') -> dict[str, torch.Tensor]:
    """Flatten a stub tree like ``nn.Module.state_dict`` (params + persistent buffers)."""
    out: dict[str, torch.Tensor] = {}
    state = mod.__dict__
    non_persistent = state.get('_non_persistent_buffers_set') or set()
    for kind in ('_parameters', '_buffers'):
        for name, t in (state.get(kind) or {}).items():
            if t is None or (kind == '_buffers' and name in non_persistent):
                continue
            if not isinstance(t, torch.Tensor):
                raise UserError(f'{prefix}{name} is a {type(t).__name__}, not a tensor')
            out[prefix + name] = t.detach()
    for name, child in (state.get('_modules') or {}).items():
        if child is None:
            continue
        if not isinstance(child, _PickledModule):
            raise UserError(f'{prefix}{name} is a {type(child).__name__}, not a module')
        out.update(_module_state_dict(child, f'{prefix}{name}.'))
    return out


# Globals a legacy (pre-zip, torch < 1.6 style) ``torch.save(module)`` names
# besides the module classes and storage types.
_LEGACY_GLOBALS: dict[str, Any] = {
    'collections.OrderedDict': OrderedDict,
    'builtins.set': set,
    'torch.device': torch.device,
    'torch.Size': torch.Size,
    'torch.nn.parameter.Parameter': nn.Parameter,
    'torch._utils._rebuild_tensor': torch._utils._rebuild_tensor,
    'torch._utils._rebuild_tensor_v2': torch._utils._rebuild_tensor_v2,
    'torch._utils._rebuild_parameter': torch._utils._rebuild_parameter,
}


class _LegacyUnpickler(pickle.Unpickler):
    """Allow-list unpickler for the legacy torch format.

    torch's weights-only unpickler refuses the legacy format's
    ``('module', cls, ...)`` persistent ids, so legacy files are read by
    torch's legacy loader with this unpickler: every global resolves to an
    inert stub or to one of :data:`_LEGACY_GLOBALS`; anything else is refused.
    (Storage types are resolved by torch's own wrapper before reaching here.)
    """

    def find_class(self, module: str, name: str) -> Any:
        module = 'builtins' if module == '__builtin__' else module
        full = f'{module}.{name}'
        found = _STUBS.get(full) or _LEGACY_GLOBALS.get(full)
        if found is None:
            raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full}')
        return found


def _legacy_load(file: Any, **kwargs: Any) -> Any:
    return _LegacyUnpickler(file, **kwargs).load()


# A pickle "module" for ``torch.load(pickle_module=...)``: torch calls its
# ``load`` (header records) and subclasses its ``Unpickler`` (main record).
_LEGACY_PICKLE = types.ModuleType('cim_mm_dalle_legacy_pickle')
_LEGACY_PICKLE.Unpickler = _LegacyUnpickler  # type: ignore[attr-defined]
_LEGACY_PICKLE.load = _legacy_load  # type: ignore[attr-defined]


def _torch_load(path: str) -> Any:
    """``torch.load`` that only materialises tensors, containers and stubs."""
    try:
        if zipfile.is_zipfile(path):  # torch >= 1.6 format
            with torch.serialization.safe_globals(_SAFE_GLOBALS):
                return torch.load(path, map_location='cpu', weights_only=True)
        # Legacy format: weights_only=False only because torch forbids a custom
        # pickle_module otherwise; _LegacyUnpickler is the allow-list.
        with warnings.catch_warnings():  # source-change checks on the stubs
            warnings.simplefilter('ignore')
            return torch.load(path, map_location='cpu', weights_only=False,
                              pickle_module=_LEGACY_PICKLE)
    except (EOFError, pickle.UnpicklingError, RuntimeError) as err:
        if is_truncated(path, err) or any(
                m in str(err) for m in ('invalid load key', 'truncated')):
            raise UserError(f'{path} is not a torch checkpoint (truncated or '
                            f'not a weight file?): {one_line(err)}') from None
        if isinstance(err, pickle.UnpicklingError) or any(
                m in str(err) for m in ('Weights only load failed', 'Unsupported')):
            raise refusal(path, err, allowed='tensors and DALL-E / torch.nn modules') from None
        raise


def load_dalle_state_dict(path: str, part: str | None = None) -> dict[str, torch.Tensor]:
    """Read DALL-E dVAE weights without running pickled code.

    Args:
        path: an official ``encoder.pkl`` / ``decoder.pkl`` (pickled module), a
            converted ``{'encoder': sd, 'decoder': sd}`` file, or a flat state dict.
        part: ``'encoder'`` or ``'decoder'``: selects the half of a converted
            file and checks that an official file holds that kind of module.

    Returns:
        ``{key: tensor}`` with the reference key names (``blocks.input.w``, ...), on CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointSecurityError: the file pickles any other global.
        ValueError: the file holds something that is not DALL-E weights.
    """
    if part not in (None, 'encoder', 'decoder'):
        raise UserError(f"part must be 'encoder', 'decoder' or None, got {part!r}")
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'DALL-E weight file {path} does not exist.')
    obj = _torch_load(path)
    if isinstance(obj, _PickledModule):  # official pickled module
        kind = obj.pickled_name
        expected = {'encoder': 'dall_e.encoder.Encoder',
                    'decoder': 'dall_e.decoder.Decoder'}
        if kind not in expected.values():
            raise UserError(f'{path} holds a pickled {kind}, not a DALL-E Encoder/Decoder.')
        if part is not None and kind != expected[part]:
            raise UserError(f'{path} holds a {kind}, but the {part} was expected.')
        return _module_state_dict(obj)

    if isinstance(obj, dict) and part is not None and part in obj:  # converted file
        obj = obj[part]
    if not (isinstance(obj, dict) and obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise UserError(f'{path} is neither a DALL-E pickled module nor a state dict '
                         f'(of the {part or "model"}).')
    return dict(obj)
