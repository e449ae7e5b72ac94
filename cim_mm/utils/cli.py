"""Turn expected user errors into one clear line at the command line."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from .safe_checkpoint import CheckpointSecurityError

#: errors that mean "bad input" (a path, a config value, a file), not a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, NotADirectoryError, PermissionError, ValueError, KeyError,
    CheckpointSecurityError, FloatingPointError)


@contextlib.contextmanager
def user_errors_as_one_line(prog: str) -> Iterator[None]:
    """Print ``prog: error: <message>`` and exit 1 on a user error.

    Set ``CIM_MM_DEBUG=1`` to see the full traceback instead.
    """
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get('CIM_MM_DEBUG'):
            raise
        msg = str(err).strip().strip('"').splitlines()
        if any('Original Traceback' in m for m in msg):  # re-raised from a DataLoader worker
            msg = [m for m in msg if m.strip()][-1:]
        line = ' '.join(m.strip() for m in msg) if msg else type(err).__name__
        print(f'{prog}: error: {line} (set CIM_MM_DEBUG=1 for the traceback)',
              file=sys.stderr)
        sys.exit(1)
