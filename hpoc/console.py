"""Standard streams that any login node's environment can print to.

hpoc prints `→`, `×` and `…`, and the user's own names and values. Under a locale or a
`PYTHONIOENCODING` that cannot encode them (ASCII, Latin-1) Python's stdout raises
UnicodeEncodeError half-way through a command. So, before a command runs:

- a terminal keeps its encoding and shows what it cannot encode escaped (`\\u2192`);
- a pipe or file gets UTF-8: what hpoc writes there is data (a formatted spec, JSON, CSV)
  and its files are UTF-8 everywhere else;
- stderr already escapes (Python's default, `backslashreplace`);
- a closed stdout (`hpoc ... >&-`) is /dev/null, as `print` already treats it; so is a
  closed stderr (`2>&-`), where `print(file=sys.stderr)` would write errors into stdout's
  data and the run's progress lines would crash, and where a file opened later would get
  fd 2 and Ray's child processes would write their noise into it.
"""

from __future__ import annotations

import os
import sys

_SAMPLE = "→×…é"


def _encodes_all(encoding: str | None) -> bool:
    try:
        _SAMPLE.encode(encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _devnull_for_closed(fd: int) -> None:
    """Put /dev/null on `fd` (closed: Python made its stream None) and a stream over it."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
    stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    setattr(sys, "stderr" if fd == 2 else "stdout", stream)


def setup_streams() -> None:
    if sys.stderr is None:
        _devnull_for_closed(2)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives for the process
        return
    encoding = getattr(sys.stdout, "encoding", None)
    if _encodes_all(encoding) or not hasattr(sys.stdout, "reconfigure"):
        return
    try:
        tty = sys.stdout.isatty()
    except (OSError, ValueError):
        tty = False
    try:
        if tty:
            sys.stdout.reconfigure(errors="backslashreplace")
        else:
            sys.stdout.reconfigure(encoding="utf-8")
    except (OSError, ValueError, LookupError):  # an exotic stream: leave it as it is
        pass

