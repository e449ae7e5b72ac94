
from .patch_neck import CNNPatchNeck  # noqa: F401
