"""Importing this module applies :func:`cim_mm.compat.apply_all`.

It exists for configs: ``custom_imports = dict(imports=['cim_mm', 'cim_mm.compat.enable'])``.
"""
from . import apply_all

apply_all()
