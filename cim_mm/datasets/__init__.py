from .transforms import GrayToRGB  # noqa: F401
from .safe_loading import ImageLoadError, SafeLoadImageFromFile  # noqa: F401
