from .frozen_summary_constructor import FrozenSummaryOptimWrapperConstructor  # noqa: F401
from .layer_decay_constructor import MergedLayerDecayOptimWrapperConstructor  # noqa: F401
from .merged_groups import (MergeGroupsMixin, adam_implementation,  # noqa: F401
                            fused_adam_devices, merge_param_groups)
from .per_module_clip import (CIM_NETWORKS, PerModuleClipAmpOptimWrapper,  # noqa: F401
                              PerModuleClipOptimWrapper)
