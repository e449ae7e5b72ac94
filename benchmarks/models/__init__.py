"""Models that exist only for the benchmark: the peers' adapters, MEC, the CIM ablation variant.

Importing this package registers them in mmpretrain's ``MODELS``.
"""
from . import adapters  # noqa: F401
from .mec import MEC, MECHead  # noqa: F401
from .cim_ablation import CIMAblation  # noqa: F401
