"""Peers that exist only for the benchmark, registered in mmpretrain's MODELS
(``custom_imports=['cim_mm', 'benchmarks.models']``)."""
from .croco import CroCo  # noqa: F401
from .croco_decoder import CroCoDecoder, CrossDecoderBlock  # noqa: F401
