"""The DALL-E dVAE (OpenAI, 2021) as a frozen CIM tokenizer.

A re-implementation of ``dall_e.Encoder`` / ``dall_e.Decoder`` (pip package
``dall-e==0.1``) whose ``state_dict`` keys are exactly the reference ones
(``blocks.input.w``, ``blocks.group_1.block_1.res_path.conv_1.w``, ...), plus a
loader for OpenAI's official weight files that never unpickles code.

Weight files
------------
* Official: https://cdn.openai.com/dall-e/encoder.pkl and
  https://cdn.openai.com/dall-e/decoder.pkl (linked by the BEiT README). They
  are ``torch.save(module)`` of the whole modules, i.e. pickles of
  ``dall_e.*`` / ``torch.nn.*`` classes. :func:`load_dalle_state_dict` reads
  them with ``torch.load(weights_only=True)`` and maps those classes to inert
  stubs that only record their ``__dict__``; any other global is refused with
  :class:`~cim_mm.utils.CheckpointSecurityError`. Files in torch's legacy
  (pre-zip) format, which the weights-only unpickler cannot read, go through
  torch's legacy loader with an allow-list unpickler mapping to the same stubs.
* Converted: ``tools/model_converters/dalle_to_state_dict.py`` writes one
  plain-tensor file ``{'encoder': state_dict, 'decoder': state_dict}``; point
  both ``encoder_path`` and ``decoder_path`` at it. A file holding a single
  flat state dict is accepted too.
"""
from __future__ import annotations

import functools
import math
import os.path as osp
import pickle
import types
import warnings
import zipfile
from collections import OrderedDict
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from cim_mm.utils.cli import one_line
from cim_mm.utils.errors import UserError
from cim_mm.utils.safe_checkpoint import is_truncated, refusal

from .base import BaseTokenizer, unmap_pixels
from .dalle_lowres import decode_features_lowres

__all__ = [
    'DALLEEncoder', 'DALLEDecoder', 'DALLETokenizer', 'load_dalle_state_dict'
]

#: device types where a low-precision ``decode_dtype`` applies without an outer
#: autocast (when the device has the dtype); elsewhere only inside one
LOW_PRECISION_DEVICES: tuple[str, ...] = ('cuda', )


@functools.lru_cache(maxsize=None)
def device_has_dtype(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``device_type`` computes in ``dtype`` (asked once per process)."""
    if device_type == 'cuda' and dtype == torch.bfloat16:
        return torch.cuda.is_bf16_supported()
    return True


DALLE_URLS = {
    'encoder': 'https://cdn.openai.com/dall-e/encoder.pkl',
    'decoder': 'https://cdn.openai.com/dall-e/decoder.pkl',
}


# --------------------------------------------------------------------------- #
# Architecture (mirrors dall_e/{utils,encoder,decoder}.py)
# --------------------------------------------------------------------------- #
class Conv2d(nn.Module):
    """``dall_e.utils.Conv2d``: params ``w`` [out, in, k, k], ``b`` [out], 'same' padding.

    ``fp32=True`` runs it in float32 even under autocast, like the reference's
    ``use_float16=False`` layers (encoder output, decoder input).
    """

    def __init__(self, n_in: int, n_out: int, kw: int, fp32: bool = False) -> None:
        super().__init__()
        assert kw % 2 == 1, 'kernel width must be odd'
        # dall_e's default init; real weights are loaded over it.
        self.w = nn.Parameter(
            torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw**2))
        self.b = nn.Parameter(torch.zeros(n_out))
        self.padding = (kw - 1) // 2
        self.fp32 = fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H, W]."""
        if self.fp32:
            with torch.autocast(x.device.type, enabled=False):
                return F.conv2d(x.float(), self.w, self.b, padding=self.padding)
        return F.conv2d(x, self.w, self.b, padding=self.padding)


class ResBlock(nn.Module):
    """``dall_e.{Encoder,Decoder}Block``: ``id_path(x) + res_path(x) / n_layers**2``.

    ``kernels`` are the widths of ``conv_1..conv_4``: (3, 3, 3, 1) in the
    encoder, (1, 3, 3, 3) in the decoder. Hidden width is ``n_out // 4``.
    """

    def __init__(self, n_in: int, n_out: int, n_layers: int,
                 kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        n_hid = n_out // 4
        self.post_gain = 1 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [n_in, n_hid, n_hid, n_hid, n_out]
        layers: list[tuple[str, nn.Module]] = []
        for i, kw in enumerate(kernels):
            layers += [(f'relu_{i + 1}', nn.ReLU()),
                       (f'conv_{i + 1}', Conv2d(widths[i], widths[i + 1], kw))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_in, H, W] -> [B, n_out, H, W]."""
        return self.id_path(x) + self.post_gain * self.res_path(x)


def _group(blocks: list[ResBlock], last: nn.Module | None,
           last_name: str) -> nn.Sequential:
    mods: list[tuple[str, nn.Module]] = [
        (f'block_{i + 1}', b) for i, b in enumerate(blocks)
    ]
    if last is not None:
        mods.append((last_name, last))
    return nn.Sequential(OrderedDict(mods))


class DALLEEncoder(nn.Module):
    """``dall_e.Encoder``: mapped image [B, 3, H, W] -> logits [B, vocab, H/8, W/8].

    Widths per group: n_hid, 2 n_hid, 4 n_hid, 8 n_hid; a 2x2 max-pool ends
    groups 1-3.
    """

    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2,
                 vocab_size: int = 8192, group_count: int = 4,
                 input_channels: int = 3) -> None:
        super().__init__()
        assert group_count == 4, 'the DALL-E layout has exactly 4 groups'
        n_layers = group_count * n_blk_per_group
        width = [n_hid, 1 * n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid]  # [0]: stem, [g]: group g

        groups: list[tuple[str, nn.Module]] = []
        for g in range(1, 5):
            blocks = [
                ResBlock(width[g - 1] if i == 0 else width[g], width[g], n_layers,
                         (3, 3, 3, 1)) for i in range(n_blk_per_group)
            ]
            pool = nn.MaxPool2d(kernel_size=2) if g < 4 else None
            groups.append((f'group_{g}', _group(blocks, pool, 'pool')))
        self.blocks = nn.Sequential(OrderedDict([
            ('input', Conv2d(input_channels, n_hid, 7)),
            *groups,
            ('output', nn.Sequential(OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', Conv2d(8 * n_hid, vocab_size, 1, fp32=True)),
            ]))),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, vocab, H/8, W/8] (float32 logits)."""
        return self.blocks(x)


class DALLEDecoder(nn.Module):
    """``dall_e.Decoder``: one-hot ids [B, vocab, h, w] -> stats [B, 6, 8h, 8w].

    Widths per group: 8 n_hid, 4 n_hid, 2 n_hid, n_hid; a nearest x2 upsample
    ends groups 1-3. The 6 output channels are logit-Laplace statistics
    (3 means, 3 log-scales). Use :meth:`embed` + :meth:`forward_features` to
    skip the dense one-hot input; ``lowres_1x1``: see :meth:`forward_features`.
    """

    def __init__(self, n_init: int = 128, n_hid: int = 256,
                 n_blk_per_group: int = 2, vocab_size: int = 8192,
                 group_count: int = 4, output_channels: int = 3,
                 lowres_1x1: bool = False) -> None:
        super().__init__()
        self.lowres_1x1 = lowres_1x1
        assert group_count == 4, 'the DALL-E layout has exactly 4 groups'
        n_layers = group_count * n_blk_per_group
        width = [n_init, 8 * n_hid, 4 * n_hid, 2 * n_hid, 1 * n_hid]  # [0]: stem, [g]: group g

        groups: list[tuple[str, nn.Module]] = []
        for g in range(1, 5):
            blocks = [
                ResBlock(width[g - 1] if i == 0 else width[g], width[g], n_layers,
                         (1, 3, 3, 3)) for i in range(n_blk_per_group)
            ]
            up = nn.Upsample(scale_factor=2, mode='nearest') if g < 4 else None
            groups.append((f'group_{g}', _group(blocks, up, 'upsample')))
        self.blocks = nn.Sequential(OrderedDict([
            ('input', Conv2d(vocab_size, n_init, 1, fp32=True)),
            *groups,
            ('output', nn.Sequential(OrderedDict([
                ('relu', nn.ReLU()),
                ('conv', Conv2d(n_hid, 2 * output_channels, 1)),
            ]))),
        ]))

    def embed(self, ids: torch.Tensor,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """ids [B, h, w] -> [B, n_init, h, w] (float32).

        Equal to ``blocks.input`` applied to the one-hot map, as a table lookup.
        ``torch.channels_last`` keeps the lookup's own layout (no copy).
        """
        conv = self.blocks.input
        table = conv.w[:, :, 0, 0].t()  # [vocab, n_init]
        x = F.embedding(ids, table) + conv.b  # [B, h, w, n_init]
        return x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)

    def forward_features(self, x: torch.Tensor,
                         out_channels: int | None = None) -> torch.Tensor:
        """[B, n_init, h, w] (output of the input conv) -> [B, out_channels, 8h, 8w].

        ``out_channels``: the first that many statistics (None: all 6). With
        ``lowres_1x1`` the 1x1 convolutions run before each upsampling
        (:mod:`.dalle_lowres`; equal up to float rounding).
        """
        if self.lowres_1x1:
            return decode_features_lowres(self, x, out_channels)
        for name, module in self.blocks.named_children():
            if name != 'input':
                x = module(x)
        return x if out_channels is None else x[:, :out_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference path: one-hot [B, vocab, h, w] -> [B, 6, 8h, 8w]."""
        return self.blocks(x)


# --------------------------------------------------------------------------- #
# Safe loading of the official pickled modules
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# The tokenizer
# --------------------------------------------------------------------------- #
@MODELS.register_module()
class DALLETokenizer(BaseTokenizer):
    """Frozen DALL-E dVAE: ``encode`` image -> ids, ``decode`` ids -> image.

    Shape contract (``downsample = 8``):
        ``encode(img [B, 3, H, W]) -> ids [B, H/8, W/8]`` int64 (argmax of the logits),
        ``encode_logits(img) -> [B, vocab, H/8, W/8]`` float32,
        ``decode(ids [B, h, w]) -> img [B, 3, 8h, 8w]`` float32 in [0, 1]
        (``unmap_pixels(sigmoid(stats[:, :3]))``).
    ``img`` is in the tokenizer space (``map_pixels`` of a [0, 1] image).

    Args:
        encoder_path: official ``encoder.pkl`` or a converted file (see
            ``tools/model_converters/dalle_to_state_dict.py``).
        decoder_path: official ``decoder.pkl`` or the same converted file.
        vocab_size, n_hid, n_blk_per_group, group_count, n_init: architecture;
            the defaults are the official model's.
        decode_dtype: ``'bfloat16'`` / ``'float16'`` runs encoder and decoder
            under autocast in that dtype (the encoder's last and the decoder's
            first layer stay float32, like the reference): on CUDA always (if
            the GPU has the dtype), on CPU only inside an outer CPU autocast
            (``AmpOptimWrapper`` / ``torch.autocast('cpu')``), elsewhere float32.
            None or ``'float32'``: full precision, also inside an outer
            autocast (it is switched off in the tokenizer).
        channels_last: weights and activations in NHWC (what cuDNN's fast
            convolutions use: no layout conversion around each one).
        lowres_1x1: the decoder's 1x1 convolutions after an upsampling run
            before it, and only the 3 used output channels are computed
            (:mod:`.dalle_lowres`; exact up to float rounding).
        allow_random_init: build without weights (tests, FLOP counts).
        init_cfg: mmengine init config (unused: weights come from the paths).
    """

    downsample = 8

    def __init__(self,
                 encoder_path: str | None = None,
                 decoder_path: str | None = None,
                 vocab_size: int = 8192,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 group_count: int = 4,
                 n_init: int = 128,
                 decode_dtype: str | None = None,
                 channels_last: bool = True,
                 lowres_1x1: bool = True,
                 allow_random_init: bool = False,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.vocab_size = vocab_size
        dtypes = {None: None, 'float32': None, 'bfloat16': torch.bfloat16,
                  'float16': torch.float16}
        if decode_dtype not in dtypes:
            raise UserError(f'decode_dtype must be one of {list(dtypes)}, got {decode_dtype!r}')
        self.amp_dtype: torch.dtype | None = dtypes[decode_dtype]

        self.encoder = DALLEEncoder(n_hid, n_blk_per_group, vocab_size, group_count)
        self.decoder = DALLEDecoder(n_init, n_hid, n_blk_per_group, vocab_size,
                                    group_count)
        for part, path in (('encoder', encoder_path), ('decoder', decoder_path)):
            if path is None or not osp.isfile(osp.expanduser(path)):
                if allow_random_init:
                    continue
                raise FileNotFoundError(
                    f'DALL-E {part} weights not found (model.tokenizer.{part}_path='
                    f'{path!r}); download {DALLE_URLS[part]} (linked by the BEiT '
                    f'README) and set model.tokenizer.{part}_path to it.')
            getattr(self, part).load_state_dict(load_dalle_state_dict(path, part))
        self.freeze()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.decoder.lowres_1x1 = lowres_1x1
        self.to(memory_format=self.memory_format)

    def train(self, mode: bool = True) -> 'DALLETokenizer':
        """Always stays in eval mode: the tokenizer is frozen."""
        return super().train(False)

    @property
    def lowres_1x1(self) -> bool:
        return self.decoder.lowres_1x1

    def run_dtype(self, device_type: str) -> torch.dtype | None:
        """The low-precision dtype the tokenizer runs in on ``device_type``
        (None: float32), whatever autocast is open outside.

        ``decode_dtype`` bf16 / fp16: always on the devices of
        :data:`LOW_PRECISION_DEVICES` that have the dtype (CUDA); on CPU only
        inside an outer CPU autocast (bf16 convolutions are slow on most CPUs);
        float32 otherwise. ``decode_dtype`` None / float32: float32.
        """
        dtype = self.amp_dtype
        if dtype is None:
            return None
        if device_type in LOW_PRECISION_DEVICES:
            return dtype if device_has_dtype(device_type, dtype) else None
        if device_type == 'cpu' and torch.is_autocast_enabled('cpu'):
            return dtype
        return None

    def _autocast(self, device: torch.device) -> ContextManager:
        """The precision context of :meth:`run_dtype` for ``device``: autocast in
        that dtype, or autocast off (an outer bf16 autocast, as in
        ``AmpOptimWrapper``, does not reach a float32 tokenizer).

        Entered by the eager methods around the encoder / decoder compute, so
        a compiled ``encoder.forward`` / ``decoder.forward_features`` holds no
        context object of its own.
        """
        dev = device.type
        dtype = self.run_dtype(dev)
        if dtype is not None:
            return torch.autocast(dev, dtype=dtype)
        if torch.amp.is_autocast_available(dev):
            return torch.autocast(dev, enabled=False)
        return nullcontext()

    @torch.no_grad()
    def encode_logits(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, vocab, H/8, W/8] float32 logits."""
        if img.dim() != 4 or img.shape[-2] % 8 or img.shape[-1] % 8:
            raise ValueError(f'expected [B, 3, H, W] with H, W divisible by 8, '
                             f'got {tuple(img.shape)}')
        x = img.float().contiguous(memory_format=self.memory_format)  # [B, 3, H, W]
        with self._autocast(img.device):
            return self.encoder(x)

    @torch.no_grad()
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, H/8, W/8] int64 ids."""
        return self.encode_logits(img).argmax(dim=1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, h, w] ids -> [B, 3, 8h, 8w] float32 image in [0, 1]."""
        # The input 1x1 conv on a one-hot map is a table lookup: no dense
        # [B, vocab, h, w] tensor is ever built.
        x = self.decoder.embed(ids.long(), self.memory_format)  # [B, n_init, h, w] float32
        with self._autocast(ids.device):
            stats = self.decoder.forward_features(x, 3)  # [B, 3, 8h, 8w]
        img = unmap_pixels(torch.sigmoid(stats.float()))  # [B, 3, 8h, 8w]
        return img.contiguous()
