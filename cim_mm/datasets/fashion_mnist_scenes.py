"""Fashion-MNIST scenes (``tools/dataset_converters/fashion_mnist_scenes.py``)
as an mmseg dataset: ADE20K's folder layout, 11 classes with background.

Imported (and so registered) by :mod:`cim_mm.seg` only: it needs mmseg."""
from __future__ import annotations

from typing import Any

from mmpretrain.datasets.categories import FASHIONMNIST_CATEGORITES
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class FashionMNISTScenesDataset(BaseSegDataset):
    """Scenes of pasted Fashion-MNIST items, labelled per pixel.

    Layout (ADE20K's)::

        data_root/images/{training,validation}/*.png       # [H, W, 3] uint8
        data_root/annotations/{training,validation}/*.png  # [H, W] uint8, 0..10

    Label ``k + 1`` is Fashion-MNIST class ``k``; 0 is the background, a class
    of its own (scored), hence ``reduce_zero_label=False``.
    """
    METAINFO = dict(
        classes=('background', *FASHIONMNIST_CATEGORITES),
        # background black, then matplotlib's tab10 colours (one per item class)
        palette=[[0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44],
                 [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194],
                 [127, 127, 127], [188, 189, 34], [23, 190, 207]])

    def __init__(self, img_suffix: str = '.png', seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False, **kwargs: Any) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
