"""A warm group's rank that ends on SIGTERM, and says so.

Ray's workers end on SIGTERM by a Python handler, and Python runs handlers in the main
thread only. A warm group's rank is a threaded actor (pool.py): its main thread waits in
Ray's C++ task loop for good, so a SIGTERM (a `kill`, a memory watchdog) was ignored and
the rank trained on. The signal's C-level handler still writes its number to Python's
wakeup fd at once (as node_stop.py uses): a thread then writes where the trial was into
the rank's crash file (output.write_end) and ends the process, as SIGTERM would have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from hpoc.runtime import output

_forked: list[bool] = []  # register_at_fork's hooks cannot be removed: once per process


def heed_sigterm() -> bool:
    """From now on SIGTERM ends this process; call from its main thread (an actor's
    `__init__`). False where it cannot (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if not _forked:  # a forked child's SIGTERM (DataLoader workers end so) is its own
        os.register_at_fork(after_in_child=_forget)
        _forked.append(True)
    threading.Thread(target=_watch, args=(read_fd,), name="hpoc-sigterm", daemon=True).start()
    return True


def _forget() -> None:
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _watch(read_fd: int) -> None:
    while signal.SIGTERM not in os.read(read_fd, 64):
        pass
    from hpoc.runtime.crash import SIGTERM_HEADER

    with contextlib.suppress(Exception):
        output.write_end(SIGTERM_HEADER)
    output._real_exit(128 + signal.SIGTERM)
