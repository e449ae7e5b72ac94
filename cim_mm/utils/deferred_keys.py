"""Metainfo keys of the device-decode loader: what a worker draws and records
(``cim_mm.datasets.device_decode``) and the data preprocessor applies on the
device (``cim_mm.models.device_augment``)."""

BYTES_KEY = 'img_bytes'  # the encoded JPEG, uint8 [N]
CROP_KEY = 'crop_box'  # (top, left, height, width) on the full image
JITTER_KEY = 'jitter_params'  # (order [4], brightness, contrast, saturation)
FLIP_KEY = 'flip'  # horizontal flip after the crop
OUT_KEY = 'img_shape'  # (H, W) of the crop after the resize
GREY_KEY = 'jitter_grey_mean'  # the whole image's grey mean: the contrast jitter's pivot
