"""cim_mm: Corrupted Image Modeling (CIM, ICLR 2023) as an OpenMMLab plugin.

Importing this package (``custom_imports = dict(imports=['cim_mm'])``) only
registers the CIM components in mmpretrain's registries; it needs no
mmsegmentation. The seg side registers in mmseg's through :mod:`cim_mm.seg`
(the ``seg`` extra). The fixes for the pinned stack are applied explicitly:
see :mod:`cim_mm.compat`.
"""
from . import datasets, engine, models  # noqa: F401

__version__ = '0.1.0'
