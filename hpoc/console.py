"""Standard streams that any login node's environment can print to.

hpoc prints `→`, `×` and `…`, and the user's own names and values. Under a locale or a
`PYTHONIOENCODING` that cannot encode them (ASCII, Latin-1) Python's stdout raises
UnicodeEncodeError half-way through a command. So, before a command runs:

- a terminal keeps its encoding and shows what it cannot encode escaped (`\\u2192`);
- a pipe or file gets UTF-8: what hpoc writes there is data (a formatted spec, JSON, CSV)
  and its files are UTF-8 everywhere else;
- stderr already escapes (Python's default, `backslashreplace`);
- a closed stdout (`hpoc ... >&-`) is /dev/null, as `print` already treats it.
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


def setup_streams() -> None:
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

