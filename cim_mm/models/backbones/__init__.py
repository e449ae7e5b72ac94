from .beit_drop_path import BEIT_SINGLE_DROP_PATH  # noqa: F401
