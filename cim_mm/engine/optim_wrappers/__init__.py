from .per_module_clip import (CIM_NETWORKS, PerModuleClipAmpOptimWrapper,  # noqa: F401
                              PerModuleClipOptimWrapper)
