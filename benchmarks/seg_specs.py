"""The rows and modes of the seg track: which pre-trained backbone goes into which
shipped mmseg config.

Rows: per pre-training track (``vit`` / ``resnet`` / ``convnext`` / ``swin``)
the methods whose ``backbone.pth`` the seg track fine-tunes (random init: no
weights). The ConvNeXt and Swin tracks bring CIM's two variants and random init
only, fine-tuned only (UperNet): at this budget the seg track has not separated
pre-training from random init on the ViT rows, so their CPU hours go where a
difference can show. Modes:

* ``finetune`` -- UperNet, the whole backbone trained with the config's
  layer-wise lr decay (ViT) or SGD (ResNet);
* ``frozen`` -- the backbone frozen, a linear (1x1 conv) head on its last
  features.

The configs are the shipped ones (``configs/cim/benchmarks/*scenes-64x64.py``),
with one exception: BEiT v1's backbone (mmpretrain ``BEiTViT``: layer scale, a
shared relative position bias, no absolute position embedding). For UperNet the
shipped config's mmseg ``MAE`` holds it exactly (the converter copies the shared
table into each block's table, keeps layer scale and writes a zero absolute
position embedding), so BEiT uses the ViT config as it is. For the frozen probe
mmseg's ``VisionTransformer`` has no relative position bias, so BEiT uses
mmpretrain's own ``BEiTViT`` inside the mmseg config (per-block tables: frozen
with the blocks), ``configs/benchmarks_peers/fcn_beit-tiny-p4_*.py``: the
simplest exact choice (mmseg's ``BEiT`` / ``MAE`` have no freezing option).
"""
from __future__ import annotations

from .specs_resnet import RESNET_LABELS

#: pre-training track -> its methods in the seg table, in table order
SEG_METHODS: dict[str, tuple[str, ...]] = {
    'vit': ('cim-respix', 'cim-revdet', 'mae', 'beit', 'simmim', 'maskfeat', 'croco',
            'random'),
    'resnet': ('cim-respix', 'cim-revdet', 'spark', 'densecl', 'simclr', 'random'),
    'convnext': ('cim-respix', 'cim-revdet', 'random'),
    'swin': ('cim-respix', 'cim-revdet', 'random'),
}
SEG_TRACKS = tuple(SEG_METHODS)
#: the rows of ``--from-track``'s default: the two tracks with both modes
DEFAULT_SEG_TRACKS = ('vit', 'resnet')
TRACK_LABELS = {'vit': 'ViT', 'resnet': 'ResNet-18', 'convnext': 'ConvNeXt',
                'swin': 'Swin'}
#: the section title of a track in the seg report
TRACK_TITLES = {'vit': 'ViT (tiny, patch 4)', 'resnet': 'ResNet-18 (w32)',
                'convnext': 'ConvNeXt (w64, three stages)', 'swin': 'Swin (w64, three stages)'}
MODES = ('finetune', 'frozen')
MODE_LABELS = {'finetune': 'UperNet, fine-tuned', 'frozen': 'frozen backbone, linear head'}

_BENCH = 'configs/cim/benchmarks/'
_SUFFIX = '_1xb8-400it_fashion-mnist-scenes-64x64.py'
#: (track, mode) -> the shipped seg config
SEG_CONFIGS: dict[tuple[str, str], str] = {
    ('vit', 'finetune'): _BENCH + 'upernet_vit-tiny-p4_cim-pre' + _SUFFIX,
    ('vit', 'frozen'): _BENCH + 'fcn_vit-tiny-p4_cim-pre-frozen' + _SUFFIX,
    ('resnet', 'finetune'): _BENCH + 'upernet_r18-w32_cim-pre' + _SUFFIX,
    ('resnet', 'frozen'): _BENCH + 'fcn_r18-w32_cim-pre-frozen' + _SUFFIX,
    ('convnext', 'finetune'): _BENCH + 'upernet_convnext-w64_cim-pre' + _SUFFIX,
    ('swin', 'finetune'): _BENCH + 'upernet_swin-w64_cim-pre' + _SUFFIX,
}
#: (track, mode, method) -> a config that replaces the track's for that method
METHOD_CONFIGS: dict[tuple[str, str, str], str] = {
    ('vit', 'frozen', 'beit'):
        'configs/benchmarks_peers/fcn_beit-tiny-p4_beit-pre-frozen' + _SUFFIX,
}


def has_mode(track: str, mode: str) -> bool:
    """Whether the track's rows run in ``mode`` (a shipped config exists)."""
    return (track, mode) in SEG_CONFIGS


def parse_seg_tracks(text: str) -> list[str]:
    """``--from-track``: 'vit,resnet' -> those tracks in table order; 'all': every
    track with seg rows."""
    if text.strip() == 'all':
        return list(SEG_TRACKS)
    wanted = [t.strip() for t in text.split(',') if t.strip()]
    unknown = [t for t in wanted if t not in SEG_TRACKS]
    if not wanted or unknown:
        raise ValueError(f'--from-track {text}: choose from {", ".join(SEG_TRACKS)} '
                         '(comma-separated) or all')
    return [t for t in SEG_TRACKS if t in wanted]


def seg_config(track: str, mode: str, method: str) -> str:
    """The mmseg config (repository-relative) of one row and mode."""
    if (track, mode) not in SEG_CONFIGS:
        raise ValueError(f'no seg config for track {track!r}, mode {mode!r}')
    return METHOD_CONFIGS.get((track, mode, method), SEG_CONFIGS[track, mode])


def row_name(track: str, method: str) -> str:
    """A row's id in the seg table: ``vit/cim-respix``."""
    return f'{track}/{method}'


def row_label(track: str, method: str) -> str:
    return f'{TRACK_LABELS[track]}: {RESNET_LABELS.get(method, method)}'


def parse_seg_methods(text: str | None, tracks: list[str]) -> dict[str, list[str]]:
    """'cim-respix,random' -> per track its rows among those, in table order
    (a name needs to be a row of one of ``tracks``); None / 'all': every row."""
    if not text or text == 'all':
        return {t: list(SEG_METHODS[t]) for t in tracks}
    wanted = [m.strip().lower() for m in text.split(',') if m.strip()]
    known = {m for t in tracks for m in SEG_METHODS[t]}
    unknown = [m for m in wanted if m not in known]
    if unknown:
        rows = '; '.join(f'{t}: {", ".join(SEG_METHODS[t])}' for t in tracks)
        raise ValueError(f'unknown method(s) {", ".join(unknown)} for the seg track; its '
                         f'rows are {rows}')
    return {t: [m for m in SEG_METHODS[t] if m in wanted] for t in tracks}
