from .cim import CIM  # noqa: F401
from .mec import MEC, MECHead  # noqa: F401
