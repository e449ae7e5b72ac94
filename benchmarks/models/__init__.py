"""Models that exist only for the benchmark: the peers' adapters, MEC, CroCo, the CIM
ablation variant.

Importing this package registers them in mmpretrain's ``MODELS``
(``custom_imports=['cim_mm', 'benchmarks.models']``).
"""
from . import adapters  # noqa: F401
from .cim_ablation import CIMAblation  # noqa: F401
from .croco import CroCo  # noqa: F401
from .croco_decoder import CroCoDecoder, CrossDecoderBlock  # noqa: F401
from .mec import MEC, MECHead  # noqa: F401
