from .transforms import GrayToRGB  # noqa: F401
