from .frozen_summary_constructor import FrozenSummaryOptimWrapperConstructor  # noqa: F401
from .per_module_clip import (CIM_NETWORKS, PerModuleClipAmpOptimWrapper,  # noqa: F401
                              PerModuleClipOptimWrapper)
