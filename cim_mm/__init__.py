"""cim_mm: Corrupted Image Modeling (CIM, ICLR 2023) as an OpenMMLab plugin.

Importing this package (``custom_imports = dict(imports=['cim_mm'])``) registers
every CIM component in mmpretrain's registries and installs the checkpoint
safety layer (``weights_only=True`` loading with an allow-list, atomic saves).
"""
from .utils import install_compat

install_compat()

from . import datasets, engine, models  # noqa: E402,F401

__version__ = '0.1.0'
