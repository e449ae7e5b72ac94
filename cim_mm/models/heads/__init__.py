from .respix_head import ResPixHead  # noqa: F401
from .revdet_head import RevDetHead  # noqa: F401
from .sliding_window import (patchify, sliding_window_normalize,  # noqa: F401
                             sliding_window_stats, unpatchify)
