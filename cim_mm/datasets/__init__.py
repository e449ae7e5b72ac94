# mmseg's side (fashion_mnist_scenes.py) is registered by cim_mm.seg only: it needs mmseg.
from .transforms import GrayToRGB  # noqa: F401
from .safe_loading import ImageLoadError, SafeLoadImageFromFile  # noqa: F401
from .bad_files import BadFileTally  # noqa: F401
from .image_folder import IMG_EXTENSIONS, UnlabeledImageFolder  # noqa: F401
from .cropped_color_jitter import CroppedColorJitter, RecordGreyMean  # noqa: F401
from .device_decode import (DeferredColorJitter, DeferredRandomFlip,  # noqa: F401
                            DeferredRandomResizedCrop, LoadJPEGBytes, PackJPEGInputs)
