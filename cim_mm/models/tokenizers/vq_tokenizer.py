"""A small trainable discrete tokenizer (VQ-VAE with an EMA codebook).

It has the interface of the frozen DALL-E dVAE (:class:`BaseTokenizer`), so CIM
runs end to end offline on small images (e.g. Fashion-MNIST at 32 px):

* ``encode(img)``: ``img`` is :func:`map_pixels` of a [0, 1] image,
  ``[B, 3, H, W]`` -> ids ``[B, H/s, W/s]`` (int64 in ``[0, vocab_size)``);
* ``decode(ids)``: ids -> image in [0, 1], ``[B, 3, h*s, w*s]``.

It is also an mmengine :class:`BaseModel`, so ``tools/train_tokenizer.py`` (or
``tools/train.py``) trains it with the mmengine Runner. **Training input
convention**: the data preprocessor gives [0, 1] images (``mean=0, std=255``);
in ``loss`` mode the model applies :func:`map_pixels` itself before encoding
and compares the decoded image with the [0, 1] image. Loss:
``loss_rec`` (MSE on [0, 1] pixels) + ``loss_commit`` (``beta * ||z - sg(q)||^2``).
The codebook is not trained by gradients: it follows the encoder outputs with an
exponential moving average (``decay``), starts from encoder outputs of the
first batch, and codes that go unused are restarted from random encoder
outputs of the current batch, which keeps codebook usage high. Encoder
gradients pass the quantiser with the straight-through estimator.
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, Iterable, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from cim_mm.utils import safe_load
from cim_mm.utils.errors import UserError

from .base import BaseTokenizer, map_pixels

__all__ = ['VQTokenizer', 'EMAVectorQuantizer', 'evaluate_psnr']


class ResBlock(nn.Module):
    """VQ-VAE residual block: ``x + conv1x1(relu(conv3x3(relu(x))))``."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, mid_channels, 3, padding=1),
            nn.ReLU(), nn.Conv2d(mid_channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _level_channels(hidden_channels: int, num_down: int) -> List[int]:
    """Channels after each stride-2 conv (1/2, 1/4, ... resolution):
    ``hidden_channels`` at the lowest resolution, halved per level above it
    (at least 16). ``[hidden_channels]`` when ``num_down == 0``."""
    if num_down == 0:
        return [hidden_channels]
    return [
        max(16, hidden_channels // 2**(num_down - i))
        for i in range(1, num_down + 1)
    ]


class Encoder(nn.Module):
    """``log2(downsample)`` 4x4 stride-2 convs (the first straight from the
    image, so no conv runs at full resolution), residual blocks, 1x1 conv to
    ``embed_dims``."""

    def __init__(self, in_channels: int, hidden_channels: int, embed_dims: int,
                 num_down: int, num_res_blocks: int) -> None:
        super().__init__()
        chs = _level_channels(hidden_channels, num_down)
        layers: List[nn.Module] = []
        if num_down == 0:
            layers.append(nn.Conv2d(in_channels, chs[0], 3, padding=1))
        c_in = in_channels
        for i in range(num_down):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Conv2d(c_in, chs[i], 4, 2, 1))
            c_in = chs[i]
        layers += [
            ResBlock(chs[-1], max(chs[-1] // 2, 16))
            for _ in range(num_res_blocks)
        ]
        layers += [nn.ReLU(), nn.Conv2d(chs[-1], embed_dims, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: 3x3 conv from ``embed_dims``, residual
    blocks, then per level nearest 2x upsampling + 3x3 conv (the last one to
    the image channels); sigmoid output in [0, 1]."""

    def __init__(self, out_channels: int, hidden_channels: int,
                 embed_dims: int, num_up: int, num_res_blocks: int) -> None:
        super().__init__()
        chs = _level_channels(hidden_channels, num_up)[::-1]
        layers: List[nn.Module] = [nn.Conv2d(embed_dims, chs[0], 3, padding=1)]
        layers += [
            ResBlock(chs[0], max(chs[0] // 2, 16)) for _ in range(num_res_blocks)
        ]
        for i in range(num_up):
            c_out = chs[i + 1] if i + 1 < num_up else out_channels
            layers += [
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode='nearest'),
                nn.Conv2d(chs[i], c_out, 3, padding=1)
            ]
        if num_up == 0:
            layers += [nn.ReLU(), nn.Conv2d(chs[0], out_channels, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(q))


class EMAVectorQuantizer(nn.Module):
    """Vector quantiser whose codebook follows an EMA of the assigned encoder
    outputs (VQ-VAE-2 / "Neural Discrete Representation Learning" appendix).

    Args:
        vocab_size: number of codes.
        embed_dims: code dimension.
        decay: EMA decay of counts and sums.
        l2_norm: l2-normalise encoder outputs and codes (cosine-similarity
            look-up, as in ViT-VQGAN); otherwise plain Euclidean look-up.
        dead_code_threshold: a code whose EMA count (assignments per step)
            falls below this is restarted from a random encoder output of the
            batch. ``0`` disables restarts.
        eps: Laplace smoothing of the counts.
    """

    def __init__(self, vocab_size: int, embed_dims: int, decay: float = 0.99,
                 l2_norm: bool = False, dead_code_threshold: float = 1.0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed_dims = embed_dims
        self.decay = decay
        self.l2_norm = l2_norm
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        embed = torch.randn(vocab_size, embed_dims)
        if l2_norm:
            embed = F.normalize(embed, dim=-1)
        self.register_buffer('embed', embed)
        self.register_buffer('embed_avg', embed.clone())
        self.register_buffer('cluster_size', torch.ones(vocab_size))
        self.register_buffer('initted', torch.tensor(False))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) if self.l2_norm else x

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[...]`` -> code vectors ``[..., D]``."""
        return F.embedding(ids, self.embed)

    def assign(self, flat: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` (already normalised if ``l2_norm``) -> ids ``[N]``."""
        embed = self.embed
        if self.l2_norm:
            return (flat @ embed.t()).argmax(dim=-1)
        dist2 = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed.t() +
                 embed.pow(2).sum(1)[None])
        return dist2.argmin(dim=-1)

    @torch.no_grad()
    def _random_rows(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.randint(0, flat.shape[0], (n, ), device=flat.device)
        rows = flat[idx].clone()
        dist.broadcast(rows, src=0)  # no-op unless distributed
        return rows

    @torch.no_grad()
    def _data_init(self, flat: torch.Tensor) -> None:
        rows = self._random_rows(flat, self.vocab_size)
        self.embed.copy_(rows)
        self.embed_avg.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        """EMA codebook update from encoder outputs ``flat`` [N, D] and their
        ids [N], then dead-code restarts."""
        onehot = F.one_hot(ids, self.vocab_size).type(flat.dtype)
        counts = onehot.sum(0)
        sums = onehot.t() @ flat
        dist.all_reduce(counts, op='sum')  # no-ops unless distributed
        dist.all_reduce(sums, op='sum')
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (
            n + self.vocab_size * self.eps) * n
        self.embed.copy_(self._norm(self.embed_avg / smoothed[:, None]))
        if self.dead_code_threshold > 0:
            dead = self.cluster_size < self.dead_code_threshold
            num_dead = int(dead.sum())  # one host sync; training only
            if num_dead:
                rows = self._random_rows(flat, num_dead)
                self.embed[dead] = rows
                self.embed_avg[dead] = rows * self.dead_code_threshold
                self.cluster_size[dead] = self.dead_code_threshold

    def forward(self, z: torch.Tensor, update: bool = False):
        """``z`` [B, D, h, w] -> (straight-through quantised [B, D, h, w],
        ids [B, h, w], commitment MSE ``||z - sg(q)||^2``)."""
        B, D, h, w = z.shape
        z = z.permute(0, 2, 3, 1)
        z = self._norm(z)
        flat = z.reshape(-1, D)
        if update and not bool(self.initted):
            self._data_init(flat.detach().float())
        ids = self.assign(flat.detach())
        if update:
            self.ema_update(flat.detach().float(), ids)
        q = self.codes(ids).view(B, h, w, D)
        commit = F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        return q.permute(0, 3, 1, 2).contiguous(), ids.view(B, h, w), commit


@MODELS.register_module()
class VQTokenizer(BaseModel, BaseTokenizer):
    """Trainable VQ-VAE tokenizer with the DALL-E tokenizer interface.

    The defaults are the architecture of
    ``configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py`` (except
    ``vocab_size``/``downsample``, which configs always give), so a CIM config
    only needs ``vocab_size``, ``downsample``, ``checkpoint`` and ``frozen``.

    Args:
        vocab_size: number of codes.
        downsample: 1, 2, 4 or 8 (``log2`` stride-2 convs).
        embed_dims: code dimension.
        hidden_channels: channels at the lowest resolution (halved per level
            above it, at least 16).
        num_res_blocks: residual blocks in encoder and decoder.
        beta: commitment loss weight.
        decay: EMA decay of the codebook.
        l2_norm: cosine-similarity codebook (see :class:`EMAVectorQuantizer`).
        dead_code_threshold: EMA count under which a code is restarted.
        rec_loss: ``'mse'`` or ``'l1'`` on [0, 1] pixels.
        checkpoint: weights to load (a plain state dict or an mmengine
            checkpoint with ``state_dict``; keys may carry a prefix such as
            ``tokenizer.``), loaded with ``cim_mm.utils.safe_load``.
        frozen: call :meth:`freeze` after loading; stays in eval mode.
        allow_random_init: let :meth:`freeze` (``frozen=True``, or CIM, which
            freezes its tokenizer) keep random weights when no ``checkpoint``
            is given and the codebook was never fitted to data (tests, FLOP
            counts); otherwise that is refused, as ``DALLETokenizer`` does:
            frozen random weights make meaningless tokens.
        data_preprocessor: for training; must give [0, 1] images
            (``mean=0, std=255``).
    """

    def __init__(self,
                 vocab_size: int = 512,
                 downsample: int = 4,
                 embed_dims: int = 32,
                 hidden_channels: int = 32,
                 num_res_blocks: int = 1,
                 in_channels: int = 3,
                 beta: float = 0.25,
                 decay: float = 0.99,
                 l2_norm: bool = True,
                 dead_code_threshold: float = 1.0,
                 rec_loss: str = 'mse',
                 checkpoint: Optional[str] = None,
                 frozen: bool = False,
                 allow_random_init: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='SelfSupDataPreprocessor', mean=[0.] * in_channels,
                std=[255.] * in_channels, to_rgb=False)
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if downsample not in (1, 2, 4, 8):
            raise UserError(f'VQTokenizer downsample must be 1, 2, 4 or 8, got {downsample}')
        if rec_loss not in ('mse', 'l1'):
            raise UserError(f"VQTokenizer rec_loss must be 'mse' or 'l1', got {rec_loss!r}")
        self.vocab_size = vocab_size
        self.downsample = downsample
        self.embed_dims = embed_dims
        self.beta = beta
        self.rec_loss = rec_loss
        self.checkpoint = checkpoint
        self.allow_random_init = allow_random_init
        num_down = int(math.log2(downsample))
        self.encoder = Encoder(in_channels, hidden_channels, embed_dims,
                               num_down, num_res_blocks)
        self.quantizer = EMAVectorQuantizer(vocab_size, embed_dims, decay,
                                            l2_norm, dead_code_threshold)
        self.decoder = Decoder(in_channels, hidden_channels, embed_dims,
                               num_down, num_res_blocks)
        self._frozen = False
        if checkpoint is not None:
            self.load_tokenizer_checkpoint(checkpoint)
            self._is_init = True  # keep loaded weights through init_weights()
        if frozen:
            self.freeze()

    # ------------------------------------------------------------ weights
    def tokenizer_state_dict(self) -> Dict[str, torch.Tensor]:
        """The weights only (no data preprocessor), for export."""
        return {
            k: v.detach().cpu().clone()
            for k, v in self.state_dict().items()
            if not k.startswith('data_preprocessor.')
        }

    def load_tokenizer_checkpoint(self, path: str) -> None:
        if not osp.isfile(osp.expanduser(path)):
            raise FileNotFoundError(
                f'VQTokenizer weights not found: model.tokenizer.checkpoint='
                f"'{path}' does not exist; train them first with "
                '`python tools/train_tokenizer.py '
                'configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py` '
                '(it writes tokenizer.pth) or fix the path.')
        ckpt = safe_load(path, map_location='cpu')
        if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
            ckpt = ckpt['state_dict']
        try:
            self.load_state_dict(self._strip_prefix(ckpt, path), strict=True)
        except RuntimeError as err:
            detail = ' '.join(str(err).split())
            if len(detail) > 300:
                detail = detail[:300] + '...'
            raise UserError(
                f'{path} does not fit this VQTokenizer: build it with the '
                'architecture it was trained with (vocab_size, downsample, '
                'embed_dims, hidden_channels, num_res_blocks; see the .json '
                f'next to it). {detail}') from None

    def _strip_prefix(self, state: Dict[str, torch.Tensor],
                      path: str) -> Dict[str, torch.Tensor]:
        own = [
            k for k in self.state_dict() if not k.startswith('data_preprocessor.')
        ]
        anchor = own[0]
        prefixes = sorted({k[:-len(anchor)]
                           for k in state if k.endswith(anchor)}, key=len)
        if not prefixes:
            raise UserError(f'{path} holds no VQTokenizer weights (no key ending in '
                            f'{anchor!r}): pass the tokenizer.pth of tools/train_tokenizer.py')
        p = prefixes[0]
        out = {
            k[len(p):]: v
            for k, v in state.items()
            if k.startswith(p) and not k[len(p):].startswith('data_preprocessor.')
        }
        missing = [k for k in own if k not in out]
        if missing:
            raise UserError(f'{path} (prefix {p!r}) lacks VQTokenizer weights '
                            f'{missing[:5]}: pass the tokenizer.pth of '
                            'tools/train_tokenizer.py')
        out.update({
            k: v
            for k, v in self.state_dict().items()
            if k.startswith('data_preprocessor.')
        })
        return out

    def freeze(self) -> None:
        """Eval mode, no gradients; refuses random weights (see
        ``allow_random_init``): a codebook never fitted to data and no
        ``checkpoint`` means the weights are the random initialisation."""
        if (self.checkpoint is None and not self.allow_random_init
                and not bool(self.quantizer.initted)):
            raise UserError(
                'the frozen VQTokenizer has no weights (model.tokenizer.checkpoint=None): '
                'train them with `python tools/train_tokenizer.py '
                'configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py` and set '
                'model.tokenizer.checkpoint to its tokenizer.pth, or set '
                'model.tokenizer.allow_random_init=True for a smoke test')
        self._frozen = True
        super().freeze()

    def train(self, mode: bool = True):
        return super().train(mode and not self._frozen)

    # ------------------------------------------------------------ tokenizer
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] mapped pixels -> [B, H/s, W/s] int64 ids."""
        z = self.encoder(img)
        _, ids, _ = self.quantizer(z, update=False)
        return ids

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, h, w] ids -> [B, 3, h*s, w*s] image in [0, 1]."""
        q = self.quantizer.codes(ids).permute(0, 3, 1, 2).contiguous()
        return self.decoder(q)

    def reconstruct(self, x01: torch.Tensor, update: bool = False):
        """[0, 1] image -> (reconstruction in [0, 1], ids, commitment MSE)."""
        z = self.encoder(map_pixels(x01))
        q, ids, commit = self.quantizer(z, update=update)
        return self.decoder(q), ids, commit

    # ------------------------------------------------------------ mmengine
    @staticmethod
    def _unpack(inputs) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return inputs

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``inputs``: [B, 3, H, W] images in [0, 1] (data preprocessor with
        ``mean=0, std=255``).

        * ``loss``: ``dict(loss_rec, loss_commit)``; updates the EMA codebook
          when in training mode and not frozen.
        * ``tensor``: reconstruction in [0, 1].
        * ``predict``: list of data samples with ``recon`` [3, H, W] and
          ``token_ids`` [h, w] fields.
        """
        x = self._unpack(inputs)
        if mode == 'loss':
            update = self.training and not self._frozen
            rec, _, commit = self.reconstruct(x, update=update)
            if self.rec_loss == 'mse':
                loss_rec = F.mse_loss(rec, x)
            else:
                loss_rec = F.l1_loss(rec, x)
            return dict(loss_rec=loss_rec, loss_commit=self.beta * commit)
        if mode == 'tensor':
            return self.reconstruct(x)[0]
        if mode == 'predict':
            rec, ids, _ = self.reconstruct(x)
            if data_samples is None:
                data_samples = [DataSample() for _ in range(x.shape[0])]
            for ds, r, i in zip(data_samples, rec, ids):
                ds.set_field(r, 'recon', field_type='data')
                ds.set_field(i, 'token_ids', field_type='data')
            return data_samples
        raise RuntimeError(f'Invalid mode "{mode}".')


@torch.no_grad()
def evaluate_psnr(tokenizer: BaseTokenizer,
                  dataloader: Iterable,
                  max_batches: Optional[int] = None) -> Dict[str, float]:
    """Reconstruction quality of ``decode(encode(map_pixels(x)))``.

    ``dataloader`` yields either [0, 1] image tensors ``[B, 3, H, W]`` or
    mmengine batches (``dict(inputs=..., data_samples=...)``), which go through
    ``tokenizer.data_preprocessor`` (must give [0, 1] images).

    Returns:
        ``psnr``: ``10 * log10(1 / mse)`` in dB, with ``mse`` the mean squared
        error over all pixels of all images, on [0, 1] pixels;
        ``mse``; ``codebook_usage``: fraction of codes used at least once;
        ``codes_used``; ``perplexity`` of the code histogram; ``num_images``.
    """
    was_training = tokenizer.training
    tokenizer.eval()
    device = next(tokenizer.parameters()).device
    sq_err = torch.zeros((), dtype=torch.float64, device=device)
    num_px = 0
    num_img = 0
    hist = torch.zeros(tokenizer.vocab_size, dtype=torch.float64, device=device)
    try:
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            if isinstance(batch, dict):
                x = tokenizer.data_preprocessor(batch, False)['inputs']
                if isinstance(x, (list, tuple)):
                    x = x[0]
            else:
                x = batch
            x = x.to(device).float()
            ids = tokenizer.encode(map_pixels(x))
            rec = tokenizer.decode(ids).clamp(0, 1)
            sq_err += (rec.double() - x.double()).pow(2).sum()
            num_px += x.numel()
            num_img += x.shape[0]
            hist += torch.bincount(
                ids.flatten(), minlength=tokenizer.vocab_size).double()
    finally:
        tokenizer.train(was_training)
    mse = (sq_err / max(num_px, 1)).item()
    p = hist / hist.sum().clamp(min=1)
    perplexity = torch.exp(-(p * p.clamp(min=1e-12).log()).sum()).item()
    used = int((hist > 0).sum())
    return dict(
        psnr=10 * math.log10(1.0 / max(mse, 1e-12)),
        mse=mse,
        codebook_usage=used / tokenizer.vocab_size,
        codes_used=used,
        perplexity=perplexity,
        num_images=num_img)
