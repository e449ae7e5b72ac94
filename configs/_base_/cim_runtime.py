# Hooks every CIM pre-training recipe carries (docs/reliability.md,
# docs/visualization.md):
# * NonFiniteLossHook: stop at the first NaN/inf loss, naming the loss and the
#   iteration (before the checkpoint hook, so the broken weights are not saved);
# * RNGStateHook: keep the torch / numpy / python RNG states in the checkpoints,
#   so `tools/train.py CONFIG --resume` continues the same random streams;
# * CIMVisualizationHook: original / mask / corrupted / replaced / recovered for
#   8 fixed images every `interval` iterations and after the last (rank 0 only;
#   work_dir/vis/*.png and the visualizer's backends, e.g. TensorBoard);
# * SkippedImagesHook: the number of unreadable images skipped, each epoch (all ranks).
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
    dict(type='CIMVisualizationHook', interval=5000, num_images=8),
    dict(type='SkippedImagesHook'),  # unreadable images: log the count, stop above the limit
]
