"""The one exception type that user-facing code turns into a one-line message, and the wrapper
every command line uses to do so (also: SIGTERM like Ctrl-C, a closed stdout pipe stays quiet,
and user text shown safely on a terminal)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import unicodedata
from typing import Callable


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix, on one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread so that every ``finally`` (temporary files,
    ffmpeg processes) runs exactly as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


# SIGTERM (kill, a job scheduler) and SIGHUP (the terminal closed) stop a run like Ctrl-C does.
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


_received: list[int] = []  # terminating signals seen during the current run_cli job


def _raise_terminated(signum, frame):
    _received.append(signum)
    raise Terminated(signum)


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe to show on a terminal: control characters (ANSI escapes, carriage returns,
    newlines) as ``\\x1b``-style escapes, and at most ``limit`` characters (the rest is counted)."""
    text = str(text)
    shown = "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else ascii(ch)[1:-1]
                    for ch in text[:limit])
    return shown + (f"... ({len(text)} characters)" if len(text) > limit else "")


def _silence_stdout() -> None:
    """The reader of our stdout went away (``| head -1``): send the rest to /dev/null, so neither
    later prints nor the flush at exit raise BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _QuietPipe:
    """A stdout that turns BrokenPipeError into silence: the run goes on and finishes its files."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _silence_stdout()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            _silence_stdout()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def run_cli(job: Callable[[], object], *, interrupted: str) -> int:
    """Run a command line's ``job``: a :class:`UserError` becomes ``error: <message>`` on stderr and
    exit code 2 (never a traceback); Ctrl-C prints ``interrupted: <interrupted>`` and exit code 130,
    SIGTERM the same with exit code 143 (128 + 15), SIGHUP with 129. A closed stdout (``| head -1``) is ignored."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in TERMINATING_SIGNALS:
            previous[signum] = signal.signal(signum, _raise_terminated)
    stdout = sys.stdout
    if not isinstance(stdout, _QuietPipe):
        sys.stdout = _QuietPipe(stdout)
    _received.clear()
    try:
        job()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Terminated as stop:
        name = "terminated" if stop.signum == signal.SIGTERM else "hung up"
        print(f"interrupted ({name}): {interrupted}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except Exception:
        if not _received:
            raise
        # The signal's exception surfaced inside C code (matplotlib's renderer, say), which turned it
        # into another error: the run was still stopped by the signal.
        name = "terminated" if _received[0] == signal.SIGTERM else "hung up"
        print(f"interrupted ({name}): {interrupted}", file=sys.stderr)
        return 128 + _received[0]
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
