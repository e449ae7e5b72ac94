"""Fixes for the pinned stack (torch 2.14, numpy 2.x, mmengine 0.10.7).

Each fix is found by running the stack, and each has a test in
``tests/test_compat.py``.
"""
from __future__ import annotations

from .safe_checkpoint import install_checkpoint_safety


def install_compat() -> None:
    """Install every compatibility fix. Idempotent."""
    install_checkpoint_safety()
