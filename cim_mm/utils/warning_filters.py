"""Third-party deprecation warnings that say nothing to a cim_mm user.

Each is a dependency talking about its own dependencies, printed on every
command; a warning that is still printed is then one worth reading. The
project's tools and the test configuration call :func:`filter_third_party_warnings`;
importing :mod:`cim_mm` filters nothing.
"""
from __future__ import annotations

import warnings

#: (message regex, category): what each one is, in the comment beside it
THIRD_PARTY_WARNINGS: list[tuple[str, type[Warning]]] = [
    # mmengine 0.10 imports setuptools' pkg_resources (setuptools < 81 warns)
    (r'pkg_resources is deprecated', UserWarning),
    # mmpretrain's BEiT relative position index calls torch.meshgrid without indexing=
    (r'torch\.meshgrid. in an upcoming release', UserWarning),
    # mmengine's Runner asks its Visualizer singleton for an instance by name twice
    (r'.*instance named of .* has been created, the method `get_instance`', UserWarning),
]


def filter_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` (message and category must both match)."""
    for message, category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)
