"""A warm group's rank that ends on SIGTERM, and says so.

Ray's workers end on SIGTERM by a Python handler, and Python runs handlers in the main
thread only. A warm group's rank is a threaded actor (pool.py): its main thread waits in
Ray's C++ task loop for good, so a SIGTERM (a `kill`, a memory watchdog) was ignored and
the rank trained on. The signal's C-level handler still writes its number to Python's
wakeup fd at once (as node_stop.py uses): a thread then writes where the trial was into
the rank's crash file (output.write_end) and ends the process, as SIGTERM would have.

Ray ends a worker itself with a SIGTERM too, when its owner died or its job ended
(`ray.shutdown`): the raylet sends it, then closes its connection to the worker (13 ms
later, measured with Ray 2.60), and the worker exits at once. That end of the experiment is
no crash: the rank's empty crash files are removed at the SIGTERM, and written only if no
hangup follows within RAY_HANGUP_S. A rank busy in C code that holds the GIL exits at the
hangup before this thread runs: the driver removes the empty files it leaves
(watch.sweep_rank_crashes).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time

from hpoc.runtime import at_stop, output

# How long a SIGTERM waits for the raylet's hangup before it is taken for a `kill`'s: a
# `kill` ends a rank that much later; a slower raylet (a loaded node) still leaves a file.
RAY_HANGUP_S = 2.0
_HANGUP = select.POLLHUP | select.POLLRDHUP | select.POLLERR | select.POLLNVAL

_forked: list[bool] = []  # register_at_fork's hooks cannot be removed: once per process


def heed_sigterm(raylet_socket: str | None = None) -> bool:
    """From now on SIGTERM ends this process; call from its main thread (an actor's
    `__init__`). `raylet_socket`: the path of the raylet's socket this worker is connected
    to, whose hangup tells Ray's own SIGTERM (without it, every SIGTERM is a kill's). False
    where it cannot (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    raylet = connection_to(raylet_socket) if raylet_socket else None
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    if not _forked:  # a forked child's SIGTERM (DataLoader workers end so) is its own
        os.register_at_fork(after_in_child=_forget)
        _forked.append(True)
    threading.Thread(target=_watch, args=(read_fd, raylet), name="hpoc-sigterm", daemon=True).start()
    return True


def connection_to(path: str) -> socket.socket | None:
    """A copy of this process's Unix socket connected to `path`, or None. (The copy keeps
    the connection open while the process lives: Ray's worker keeps it as long.)"""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            conn = socket.socket(fileno=os.dup(int(name)))
        except (OSError, ValueError):
            continue
        try:
            if conn.family == socket.AF_UNIX and conn.getpeername() == path:
                return conn
        except OSError:
            pass
        conn.close()  # a copy kept would hold another of Ray's connections open
    return None


def _forget() -> None:
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _hung_up(conn: socket.socket, timeout: float) -> bool:
    """Whether the peer of `conn` closes it within `timeout` seconds (or had)."""
    poll = select.poll()
    poll.register(conn, select.POLLRDHUP)  # not POLLIN: the raylet's messages wake nothing
    return any(events & _HANGUP for _, events in poll.poll(timeout * 1000))


def _watch(read_fd: int, raylet: socket.socket | None) -> None:
    while signal.SIGTERM not in os.read(read_fd, 64):
        pass
    start = time.monotonic()
    # now: Ray's worker exits right at the hangup
    aside = output.set_aside_rank_crashes() if raylet is not None and output.recording() else None
    at_stop.run(RAY_HANGUP_S)  # the trial's last sends (its metrics), within the hangup's wait
    if aside is not None:
        if _hung_up(raylet, max(0.0, start + RAY_HANGUP_S - time.monotonic())):
            output._real_exit(128 + signal.SIGTERM)  # Ray ends this worker: no crash of the trial's
        output.put_back(aside)
    from hpoc.runtime.crash import SIGTERM_HEADER

    with contextlib.suppress(Exception):
        output.write_end(SIGTERM_HEADER)
    output._real_exit(128 + signal.SIGTERM)
