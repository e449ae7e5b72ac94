"""What every method of the benchmark is made of: its spec and the pipeline pieces the tracks share."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

from mmengine.config import Config

from .scales import Scale

# mean / std of DALL-E's map_pixels, 0..255 scale: (x/255 * 0.8 + 0.1)
MAP_PIXELS_MEAN = [-31.875] * 3
MAP_PIXELS_STD = [318.75] * 3


@dataclass
class MethodSpec:
    name: str
    label: str
    model: Optional[dict]  # None: no pre-training (random init)
    pipeline: list  # train pipeline (after loading the image)
    eval_backbone: dict  # plain backbone the pre-trained weights load into
    needs_tokenizer: bool = False
    is_cim: bool = False
    notes: list = field(default_factory=list)
    # dotted options of the optimizer wrapper (ablations), e.g. {'clip_grad.max_norm': 1}
    optim_options: dict = field(default_factory=dict)
    # eval backbone key prefixes that keep their initialisation for every method
    # (the output norms of the ConvNeXt / Swin tracks: not every peer trains them)
    eval_fresh: tuple = ()


def pack(scale: Scale, *extra: dict) -> list:
    return copy.deepcopy(scale.base_pipeline) + [copy.deepcopy(e) for e in extra] + [
        dict(type='PackInputs')]


def preproc(scale: Scale, **kw) -> dict:
    d = dict(type='SelfSupDataPreprocessor', mean=scale.mean, std=scale.std,
             to_rgb=scale.to_rgb)
    d.update(kw)
    return d


def mask_options(scale: Scale) -> dict:
    m = dict(scale.beit_mask)
    m.pop('type', None)
    return m


def contrastive_views(scale: Scale) -> list:
    s = scale.img_size
    view = [
        dict(type='RandomResizedCrop', scale=s, crop_ratio_range=(0.2, 1.0),
             interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomApply', prob=0.8, transforms=[
            # Fashion-MNIST is gray: saturation / hue would be no-ops (and mmcv's
            # adjust_hue overflows for negative hues with numpy 2)
            dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.,
                 hue=0.)]),
        dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
             channel_weights=(0.114, 0.587, 0.2989)),
    ]
    head = [t for t in scale.base_pipeline if t['type'] == 'GrayToRGB']
    return copy.deepcopy(head) + [dict(type='MultiView', num_views=2, transforms=[view]),
                                  dict(type='PackInputs')]


def merge_options(cfg: dict, options: dict[str, Any]) -> dict:
    """A copy of ``cfg`` with dotted ``options`` (``{'head.window_size': 3}``) merged
    in, by mmengine's own ``Config.merge_from_dict``."""
    merged = Config(copy.deepcopy(cfg))
    merged.merge_from_dict(options)
    return merged.to_dict()
