"""The segmentation side of cim_mm: registers its mmseg parts in mmseg's registries.

Seg configs import it with ``custom_imports = dict(imports=['cim_mm', ...,
'cim_mm.seg'])``. It needs the ``seg`` extra (mmsegmentation on mmcv 2.1.0 with
compiled ops); without it, importing this module fails with one line saying
what to install. ``import cim_mm`` never imports it: pre-training needs no mmseg.
"""
from .utils.seg_extra import require_seg_stack

require_seg_stack('cim_mm.seg')

from .datasets.fashion_mnist_scenes import FashionMNISTScenesDataset  # noqa: E402,F401

__all__ = ['FashionMNISTScenesDataset']
