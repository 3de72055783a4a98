"""The one exception type that user-facing code turns into a one-line message, and the wrapper
every command line uses to do so."""

from __future__ import annotations

import sys
from typing import Callable


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix, on one line."""


def run_cli(job: Callable[[], object], *, interrupted: str) -> int:
    """Run a command line's ``job``: a :class:`UserError` becomes ``error: <message>`` on stderr and
    exit code 2 (never a traceback); Ctrl-C prints ``interrupted: <interrupted>`` and exit code 130."""
    try:
        job()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    return 0
