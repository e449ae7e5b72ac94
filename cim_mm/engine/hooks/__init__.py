
from .nonfinite_loss_hook import NonFiniteLossHook  # noqa: F401
from .rng_state_hook import RNGStateHook  # noqa: F401
from .visualization_hook import CIMVisualizationHook  # noqa: F401
from .skipped_images_hook import SkippedImagesHook  # noqa: F401
from .compile_blocks_hook import CompileBlocksHook, compile_blocks  # noqa: F401
from .channels_last_hook import ChannelsLastHook, to_channels_last  # noqa: F401
