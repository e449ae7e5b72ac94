"""The one exception type for a user's mistake (bad path, config value, file).

``tools/*.py`` print a :class:`UserError` as one line and exit 1; every other
exception is a bug and keeps its traceback. It subclasses ``ValueError`` so code
that already catches ``ValueError`` keeps working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message says what to do about it."""
