"""Shared fixtures (CPU only, tiny shapes, no downloads); helpers live in helpers.py."""
from __future__ import annotations

import os

import pytest

from cim_mm.compat import apply_all
from cim_mm.utils.warning_filters import THIRD_PARTY_WARNINGS
from helpers import make_batch, write_fashion_mnist

# the suite runs with the fixes for the pinned stack, as the project's tools do
apply_all()


def pytest_configure(config) -> None:
    """The third-party deprecations our tools filter are filtered in tests too."""
    for message, category in THIRD_PARTY_WARNINGS:
        config.addinivalue_line('filterwarnings', f'ignore:{message}:{category.__name__}')

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')


@pytest.fixture(scope='session')
def fake_fashion_mnist(tmp_path_factory) -> str:
    """A session-wide tiny fake Fashion-MNIST folder (see ``write_fashion_mnist``)."""
    return write_fashion_mnist(str(tmp_path_factory.mktemp('fashion_mnist')))


@pytest.fixture
def toy_batch() -> dict:
    return make_batch()


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the session's torch thread count.

    ``tools/train.py``'s ``main()`` (called in-process by some tests) sets the
    thread count; a later test comparing an in-process run with a subprocess
    would then compare different float reduction orders.
    """
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _mmpretrain_default_scope():
    """Each test starts in mmpretrain's scope.

    mmengine's Runner (and mmseg tests) leave their own default scope current, and
    a later ``MODELS.build`` would then resolve e.g. ``ResNet`` in mmseg's registry.
    """
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope('mmpretrain')
    yield
    # leave no stale scope either
    current = DefaultScope.get_current_instance()
    if current is not None and current.scope_name != 'mmpretrain':
        init_default_scope('mmpretrain')


@pytest.fixture(autouse=True)
def _mmengine_loggers_forgotten():
    """Loggers made during a test die with it.

    mmengine keeps every ``MMLogger`` by name and a Runner names its logger
    ``<config name>_<timestamp to the second>``: two tests that train the same
    config file name within one second would share a logger whose stream
    handler still writes to the first test's (closed) captured stderr, and
    every later log line prints a ``--- Logging error ---`` traceback.
    The Runner's visualizer is kept by the same name (and would write into the
    first test's work dir), so new visualizers are forgotten too.
    """
    from mmengine.logging import MMLogger
    from mmengine.visualization import Visualizer

    def visualizer_classes(cls: type = Visualizer) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__()
                        for c in visualizer_classes(sub)]

    before = {cls: set(cls._instance_dict)
              for cls in [MMLogger] + visualizer_classes()}
    yield
    for cls in [MMLogger] + visualizer_classes():
        for name in list(cls._instance_dict):
            if name in before.get(cls, ()):
                continue
            instance = cls._instance_dict.pop(name)
            if isinstance(instance, MMLogger):
                for handler in list(instance.handlers):
                    handler.close()
                    instance.removeHandler(handler)
