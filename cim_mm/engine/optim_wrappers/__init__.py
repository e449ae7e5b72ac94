from .frozen_summary_constructor import FrozenSummaryOptimWrapperConstructor  # noqa: F401
from .layer_decay_constructor import MergedLayerDecayOptimWrapperConstructor  # noqa: F401
from .merged_groups import MergeGroupsMixin, adam_implementation, merge_param_groups  # noqa: F401
from .per_module_clip import (CIM_NETWORKS, PerModuleClipAmpOptimWrapper,  # noqa: F401
                              PerModuleClipOptimWrapper)
