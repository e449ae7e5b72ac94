"""Third-party deprecation warnings that say nothing to a cim_mm user.

Each is a dependency talking about its own dependencies, printed on every
command; a warning that is still printed is then one worth reading. The
project's tools and the test configuration call :func:`filter_third_party_warnings`;
importing :mod:`cim_mm` filters nothing.
"""
from __future__ import annotations

import logging
import re
import warnings

#: (message regex, category): what each one is, in the comment beside it
THIRD_PARTY_WARNINGS: list[tuple[str, type[Warning]]] = [
    # mmengine 0.10 imports setuptools' pkg_resources (setuptools < 81 warns)
    (r'pkg_resources is deprecated', UserWarning),
    # mmpretrain's BEiT relative position index calls torch.meshgrid without indexing=
    (r'torch\.meshgrid. in an upcoming release', UserWarning),
    # mmengine's Runner asks its Visualizer singleton for an instance by name twice
    (r'.*instance named of .* has been created, the method `get_instance`', UserWarning),
    # mmpretrain's MNIST / Fashion-MNIST labels under numpy 2 (np.array(copy=False) API)
    (r"__array__ implementation doesn't accept a copy keyword", DeprecationWarning),
    # mmpretrain's MNIST / Fashion-MNIST reader turns a read-only numpy buffer into a tensor
    (r'The given NumPy array is not writable', UserWarning),
    # mmcv's adjust_brightness / adjust_contrast with the pillow backend (beta unused)
    (r"Only use 'alpha' for pillow backend", UserWarning),
    # mmseg's own deprecation notices about its API (losses, loading, hooks, optimizers)
    (r'Default ``avg_non_ignore`` is False', UserWarning),
    (r'``build_loss`` would be deprecated soon', UserWarning),
    (r'`reduce_zero_label` will be deprecated', UserWarning),
    (r'The draw is False, it means that the hook for visualization', UserWarning),
    (r'DeprecationWarning. Original LayerDecayOptimizerConstructor of BEiT', UserWarning),
    (r'DeprecationWarning. Layer_decay_rate will be deleted', UserWarning),
]


def filter_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` (message and category must both match)."""
    for message, category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


#: mmengine's own log lines about its deprecated internals (its CheckpointHook
#: builds a FileClient on a HardDiskBackend whatever the config says)
THIRD_PARTY_LOG_LINES: list[str] = [
    r'"FileClient" will be deprecated in future',
    r'"HardDiskBackend" is the alias of "LocalBackend"',
]


class ThirdPartyLogFilter(logging.Filter):
    """Drops the records of :data:`THIRD_PARTY_LOG_LINES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(re.search(p, msg) for p in THIRD_PARTY_LOG_LINES)


def filter_third_party_logs(logger: logging.Logger) -> None:
    """Add :class:`ThirdPartyLogFilter` to ``logger`` (e.g. a Runner's), once."""
    if not any(isinstance(f, ThirdPartyLogFilter) for f in logger.filters):
        logger.addFilter(ThirdPartyLogFilter())
