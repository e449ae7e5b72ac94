"""Print a user's mistake as one line at the command line; a bug keeps its traceback."""
from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Iterator

from .errors import UserError
from .safe_checkpoint import CheckpointSecurityError


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "bad input", never a bug.

    * :class:`UserError`: raised by our own checks, with what to do;
    * a file the user named that is not there / not readable / refused:
      ``FileNotFoundError``, ``NotADirectoryError``, ``IsADirectoryError``,
      ``PermissionError``, :class:`CheckpointSecurityError`; ``ImageLoadError``
      (an undecodable image in the user's data) is a :class:`UserError`;
    * ``FloatingPointError``: only ``NonFiniteLossHook`` raises it (a diverged
      run, with what to try); torch never does, numpy only under
      ``np.seterr(all='raise')``, which nothing here sets.

    Everything else (``ValueError``, ``KeyError``, ``RuntimeError``...) is a bug
    and keeps its traceback.
    """
    return (UserError, CheckpointSecurityError, FileNotFoundError,
            NotADirectoryError, IsADirectoryError, PermissionError, FloatingPointError)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a DataLoader worker's re-raise keeps
    only the original message's last line)."""
    msg = str(err).strip().strip('"').splitlines()
    if any('Original Traceback' in m for m in msg):  # re-raised from a DataLoader worker
        msg = [m for m in msg if m.strip()][-1:]
        # the worker's last line is 'pkg.ErrorType: message': keep the message
        msg = [re.sub(r'^[A-Za-z_][\w.]*(Error|Exception): ', '', m.strip()) for m in msg]
    return ' '.join(m.strip() for m in msg) if msg else type(err).__name__


@contextlib.contextmanager
def user_errors_as_one_line(prog: str) -> Iterator[None]:
    """Print ``prog: error: <message>`` and exit 1 on a user error
    (:func:`user_error_types`); any other exception propagates with its traceback.

    Set ``CIM_MM_DEBUG=1`` to see the traceback of a user error too.
    """
    try:
        yield
    except user_error_types() as err:
        if os.environ.get('CIM_MM_DEBUG'):
            raise
        print(f'{prog}: error: {one_line(err)} (set CIM_MM_DEBUG=1 for the traceback)',
              file=sys.stderr)
        sys.exit(1)
