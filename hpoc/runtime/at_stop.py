"""What a process does as it stops: its last sends (tracking's metrics still waiting for the
server), before a SIGTERM's exit.

One place the stop paths share. A Ray worker's own SIGTERM handler ends the process by
SystemExit, which runs atexit's handlers (registered here); a warm group's rank ends by
os._exit (rank_term), which runs none, and calls `run` itself first. Each hook is given the
time left of STOP_S, shared: inside the 2 s a rank's SIGTERM already waits (RAY_HANGUP_S),
and a hook must return by then whatever its server does (the process exits anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from typing import Callable

STOP_S = 2.0
_hooks: list[Callable[[float], None]] = []
_lock = threading.Lock()
_atexit: list[bool] = []  # registered with atexit (once per process)


def register(hook: Callable[[float], None]) -> None:
    """hook(seconds) runs once as the process stops; it returns within those seconds."""
    with _lock:
        if not _atexit:
            atexit.register(run)
            _atexit.append(True)
        if hook not in _hooks:
            _hooks.append(hook)


def run(timeout_s: float = STOP_S) -> None:
    """Run the hooks (each once per process), within `timeout_s` together; never raises."""
    with _lock:
        hooks, _hooks[:] = list(_hooks), []
    deadline = time.monotonic() + timeout_s
    for hook in hooks:
        with contextlib.suppress(Exception):
            hook(max(0.0, deadline - time.monotonic()))
