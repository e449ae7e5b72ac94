"""The geometry rules of CIM, in one place: which sizes must agree, and what to change.

CIM ties four grids together: the tokenizer's token grid
(``tokenizer_img_size / tokenizer.downsample``), the generator's patch grid, the
enhancer's patch grid and the mask grid of ``BEiTMaskGenerator``; ResPix also
needs ``head.patch_size x grid = image size``, and the generator's
``vocab_size`` must be the tokenizer's. A mismatch otherwise shows up as a shape
error deep inside a forward pass, an ``IndexError`` / device-side assert in
decode, or not at all (a padded ViT silently changes its grid).

:class:`Geometry` holds the sizes, each ``None`` when unknown (that rule is
skipped); :func:`check_geometry` applies every rule and raises a one-line
:class:`UserError`. :mod:`.config_check` fills a :class:`Geometry` from a built
model or from a config.

What no build-time check sees is the batch: :func:`batch_sizes` gives the mask
grid and image size a built model fixes, and :meth:`BatchSizes.check` compares
a batch with them (two tuple comparisons, no host sync).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import UserError

Pair = tuple[int, int]


def pair(x: Any) -> Optional[Pair]:
    """``4 -> (4, 4)``, ``[4, 6] -> (4, 6)``, anything else -> None."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, int):
        return (x, x)
    try:
        x = tuple(int(v) for v in x)
    except (TypeError, ValueError):
        return None
    return x if len(x) == 2 else None


def fmt(p: Pair) -> str:
    return f'{p[0]}x{p[1]}'


@dataclass
class Geometry:
    """The sizes of one CIM model (and its train pipeline); None = unknown.

    ``where`` prefixes the option names in messages (``'model.'`` for a config).
    ``gen_size`` is the generator's input size when it sees the tokenizer view
    (else None, and only ``gen_grid`` is compared with the token grid).
    ``masks``: ``(input_size, num_masking_patches)`` of every ``BEiTMaskGenerator``;
    ``images``: the output size of every train pipeline.
    """
    where: str = ''
    gen_vocab: Optional[int] = None
    tok_vocab: Optional[int] = None
    tok_size: Optional[Pair] = None
    down: Optional[int] = None
    gen_size: Optional[Pair] = None
    gen_patch: Optional[Pair] = None
    gen_grid: Optional[Pair] = None
    enh_size: Optional[Pair] = None
    enh_size_key: str = 'backbone.img_size'  # the option enh_size comes from
    enh_patch: Optional[Pair] = None
    with_neck: bool = False
    neck_out: Optional[Pair] = None
    head_patch: Optional[int] = None
    head_in: Optional[int] = None
    embed_dims: Optional[int] = None
    masks: list[tuple[Pair, Optional[int]]] = field(default_factory=list)
    images: list[Pair] = field(default_factory=list)


def _vocab(g: Geometry) -> None:
    """A larger generator vocabulary samples ids the decoder cannot look up, a
    smaller one cannot score the tokenizer's ids."""
    w = g.where
    if isinstance(g.gen_vocab, int) and isinstance(g.tok_vocab, int) \
            and g.gen_vocab != g.tok_vocab:
        raise UserError(
            f'{w}generator.vocab_size {g.gen_vocab} != {w}tokenizer.vocab_size '
            f"{g.tok_vocab}: the generator predicts the tokenizer's codes, set "
            f'{w}generator.vocab_size={g.tok_vocab}')


def token_grid(g: Geometry) -> Optional[Pair]:
    """``tokenizer_img_size / downsample``, checked to divide; None if unknown."""
    if not isinstance(g.down, int) or g.tok_size is None:
        return None
    if g.tok_size[0] % g.down or g.tok_size[1] % g.down:
        raise UserError(
            f'{g.where}data_preprocessor.tokenizer_img_size {fmt(g.tok_size)} is not '
            f'divisible by the tokenizer downsample {g.down}: set tokenizer_img_size to '
            f'token grid x {g.down} (e.g. {g.tok_size[0] // g.down * g.down or g.down})')
    return (g.tok_size[0] // g.down, g.tok_size[1] // g.down)


def _generator(g: Geometry, grid: Optional[Pair]) -> None:
    """The generator sees the tokenizer view, one patch per token."""
    w = g.where
    if g.gen_size is not None and g.gen_patch is not None:
        size, patch = g.gen_size, g.gen_patch
        if size[0] % patch[0] or size[1] % patch[1]:
            raise UserError(
                f'{w}generator.backbone.patch_size {patch[0]} does not divide its img_size '
                f'{fmt(size)}: set {w}generator.backbone.img_size to '
                'data_preprocessor.tokenizer_img_size and patch_size to the tokenizer '
                'downsample')
        if g.tok_size is not None and size != g.tok_size:
            raise UserError(
                f'{w}generator.backbone.img_size {fmt(size)} != '
                f'{w}data_preprocessor.tokenizer_img_size {fmt(g.tok_size)}: the generator '
                f'sees the tokenizer view, set generator.backbone.img_size={g.tok_size[0]}')
        if isinstance(g.down, int) and patch != (g.down, g.down):
            raise UserError(
                f'{w}generator.backbone.patch_size {patch[0]} != tokenizer downsample '
                f'{g.down}: one generator patch must be one token, set '
                f'{w}generator.backbone.patch_size={g.down}')
    elif grid is not None and g.gen_grid is not None and g.gen_grid != grid:
        raise UserError(
            f'generator grid {fmt(g.gen_grid)} != token grid {fmt(grid)} '
            '(tokenizer_img_size / tokenizer downsample): set the generator '
            'img_size / patch_size to match')


def _enhancer(g: Geometry, grid: Optional[Pair]) -> None:
    """One enhancer patch per token (a ViT), or a neck that makes the token grid."""
    w = g.where
    if g.enh_size is not None and g.enh_patch is not None:
        size, patch = g.enh_size, g.enh_patch
        if size[0] % patch[0] or size[1] % patch[1]:
            raise UserError(
                f'{w}backbone.patch_size {patch[0]} does not divide {w}backbone img_size '
                f'{fmt(size)} (the ViT would pad and change its grid): use an img_size '
                f'that is a multiple of {patch[0]}')
        enh_grid = (size[0] // patch[0], size[1] // patch[1])
        if grid is not None and not g.with_neck and enh_grid != grid:
            raise UserError(
                f'enhancer patch grid {fmt(enh_grid)} ({w}backbone img_size {fmt(size)} / '
                f'patch_size {patch[0]}) != token grid {fmt(grid)} (tokenizer_img_size '
                f'{fmt(g.tok_size)} / downsample {g.down}): one enhancer patch must be one '
                f'token, set backbone.patch_size to img_size / {grid[0]} or change '
                'tokenizer_img_size')
    if g.with_neck and grid is not None and g.neck_out is not None and g.neck_out != grid:
        raise UserError(
            f'{w}neck.out_size {fmt(g.neck_out)} != token grid {fmt(grid)} '
            f'(tokenizer_img_size / downsample): set neck.out_size=({grid[0]}, {grid[1]})')


def _images(g: Geometry, grid: Optional[Pair]) -> None:
    """The pipeline's images are the enhancer's input; ResPix regresses one
    ``patch_size`` square per token."""
    w = g.where
    for out in g.images:
        if g.enh_size is not None and out != g.enh_size:
            raise UserError(
                f'the train pipeline makes {fmt(out)} images but {w}{g.enh_size_key} '
                f'is {fmt(g.enh_size)}: make them equal')
    sizes = ([g.enh_size] if g.enh_size is not None else []) + g.images
    if isinstance(g.head_patch, int) and grid is not None:
        for size in sizes:
            if (g.head_patch * grid[0], g.head_patch * grid[1]) != size:
                raise UserError(
                    f'{w}head.patch_size {g.head_patch} x token grid {fmt(grid)} != image '
                    f'size {fmt(size)}: ResPix regresses one patch per token, set '
                    f'{w}head.patch_size={size[0] // grid[0]}')


def _head_width(g: Geometry) -> None:
    if (not g.with_neck and isinstance(g.head_in, int) and isinstance(g.embed_dims, int)
            and g.head_in != g.embed_dims):
        raise UserError(
            f'{g.where}head.in_channels {g.head_in} != backbone embed_dims {g.embed_dims}: '
            f'set {g.where}head.in_channels={g.embed_dims}')


def _masks(g: Geometry, grid: Optional[Pair]) -> None:
    for mask_grid, n in g.masks:
        cells = mask_grid[0] * mask_grid[1]
        if isinstance(n, int) and n > cells:
            raise UserError(
                f'BEiTMaskGenerator num_masking_patches={n} is larger than its '
                f'{fmt(mask_grid)} grid ({cells} patches): use at most {cells} '
                f'(BEiT masks ~40%: {round(0.4 * cells)})')
        if grid is not None and mask_grid != grid:
            raise UserError(
                f'BEiTMaskGenerator input_size {fmt(mask_grid)} != token grid '
                f'{fmt(grid)} (tokenizer_img_size {fmt(g.tok_size)} / downsample '
                f'{g.down}): set input_size=({grid[0]}, {grid[1]})')


def check_geometry(g: Geometry) -> None:
    """Raise a one-line :class:`UserError` for the first rule ``g`` breaks."""
    _vocab(g)
    grid = token_grid(g)
    _generator(g, grid)
    _enhancer(g, grid)
    _masks(g, grid)
    _images(g, grid)
    _head_width(g)


@dataclass(frozen=True)
class BatchSizes:
    """The sizes a batch must have for a checked model; None = not fixed by it.

    ``mask_grid``: the token grid (``tokenizer_img_size / downsample``);
    ``image_size``: the enhancer's input size when its grid follows the image
    (a fixed-patch ViT without a neck: another size changes its patch grid).
    """
    mask_grid: Optional[Pair] = None
    image_size: Optional[Pair] = None

    def check(self, image: Pair, mask: Pair) -> None:
        """Raise a one-line :class:`UserError` if a batch of ``[B, 3, *image]``
        images with ``[B, *mask]`` masks does not fit."""
        if self.mask_grid is not None and tuple(mask) != self.mask_grid:
            raise UserError(
                f"the batch's masks are {fmt(tuple(mask))} but the token grid is "
                f'{fmt(self.mask_grid)} (tokenizer_img_size / downsample): set '
                f'BEiTMaskGenerator input_size=({self.mask_grid[0]}, {self.mask_grid[1]})')
        if self.image_size is not None and tuple(image) != self.image_size:
            raise UserError(
                f"the batch's images are {fmt(tuple(image))} but backbone.img_size is "
                f'{fmt(self.image_size)} (one enhancer patch per token): make the train '
                f'pipeline output {fmt(self.image_size)} images')


def batch_sizes(g: Geometry) -> BatchSizes:
    """The :class:`BatchSizes` of a model whose geometry ``g`` passed
    :func:`check_geometry`."""
    fixed_grid = g.enh_size is not None and g.enh_patch is not None and not g.with_neck
    return BatchSizes(mask_grid=token_grid(g), image_size=g.enh_size if fixed_grid else None)
