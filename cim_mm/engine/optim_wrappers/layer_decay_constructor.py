"""mmpretrain's layer-wise lr decay constructor with merged param groups.

``LearningRateDecayOptimWrapperConstructor`` makes one param group per tensor
(each with its layer's lr scale) and logs them per layer at DEBUG level. This
subclass builds and logs the same groups, then, with
``paramwise_cfg.merge_groups=True``, merges those of equal hyper-parameters
(one per layer and weight decay) and batches Adam / AdamW
(``merged_groups.py``)::

    optim_wrapper = dict(
        constructor='MergedLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.65, merge_groups=True, custom_keys=...))
"""
from __future__ import annotations

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .merged_groups import MergeGroupsMixin

__all__ = ['MergedLayerDecayOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedLayerDecayOptimWrapperConstructor(MergeGroupsMixin,
                                              LearningRateDecayOptimWrapperConstructor):
    """``LearningRateDecayOptimWrapperConstructor`` + ``paramwise_cfg.merge_groups``."""
