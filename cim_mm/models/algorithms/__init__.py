from .cim import CIM  # noqa: F401
