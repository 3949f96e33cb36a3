"""A Ray node that stops on SIGTERM even while Ray's own handler cannot run.

`ray start` handles SIGTERM in Python, and Python runs a handler only between bytecodes of
the main thread. While the node starts, that thread waits in Ray's C++ GCS client, up to
40 s when the GCS has gone (scancel signals every process of the job at once, the GCS
too). SLURM's SIGKILL (KillWait, 30 s by default) then came first, to this node and to the
job script's teardown: the job directory, token included, stayed in the node's /tmp.

The signal's C-level handler still writes its number to Python's wakeup fd at once, so a
thread learns of it; if the node has not stopped `grace_for(KillWait)` later, the thread
kills the node's processes and ends it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from hpoc.runtime.procstat import stat_fields

GRACE_S = 10.0  # Ray's handler stops a node's processes in a second or two
KILL_WAIT_ENV = "HPOC_KILL_WAIT"  # SLURM's KillWait, asked by the job script (compiler/tables.py)
GRACE_RANGE = (1.0, 30.0)


def kill_wait_s(kill_wait: str | None) -> int | None:
    """KILL_WAIT_ENV's whole seconds (the job script writes scontrol's `30 sec` as `30`), or
    None when it is not set or not a number."""
    text = kill_wait or ""  # as the job script reads it: no blanks
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def grace_for(kill_wait: str | None) -> float:
    """Seconds Ray's own SIGTERM handler gets before the node kills its processes itself: a
    third of the site's KillWait, the time from SLURM's SIGTERM to its SIGKILL (5 s on some
    sites, 120 s on others), leaving the rest for removing the job directory here and on the
    batch node; GRACE_S (a third of SLURM's default 30 s) when it is not known."""
    seconds = kill_wait_s(kill_wait)
    if seconds is None:
        return GRACE_S
    return round(min(max(seconds / 3, GRACE_RANGE[0]), GRACE_RANGE[1]), 1)


class StopWaits(NamedTuple):
    """Whole seconds the job's teardown (job.sbatch's, `hpoc submit`'s) waits for each
    process to stop before it kills it."""

    driver_s: int      # the study driver's graceful stop
    head_down_s: int   # ... once Ray's head is gone (it then hangs in Tune's cleanup)
    nodes_s: int       # a Ray node's (its own watchdog ends it within grace_for)


TODAY = StopWaits(20, 3, 60)  # under SLURM's default KillWait (30 s) and longer ones
_DEFAULT_KILL_WAIT = 30


def stop_waits(kill_wait: str | None) -> StopWaits:
    """The teardown's waits under the site's KillWait: TODAY's from 30 s up or when unknown
    (whole seconds only, as the job script reads it), as much shorter under a shorter one
    (at least 1 s), so that the job directory is removed before SLURM's SIGKILL. The job
    script computes the same (teardown.j2 hpoc_stop_s, tested equal)."""
    k = min(_DEFAULT_KILL_WAIT if (known := kill_wait_s(kill_wait)) is None else known, _DEFAULT_KILL_WAIT)
    return StopWaits(*(max(1, base * k // _DEFAULT_KILL_WAIT) for base in TODAY))


MARGIN_S = 1.0  # for removing the job directory once the waits are over


def left_s(wait_s: float, kill_wait: str | None, term_at: float | None, after_s: float = 0.0) -> float:
    """`wait_s`, or less once SLURM's SIGTERM has come (at `term_at`, time.monotonic()):
    what is left before its SIGKILL, KillWait later (30 s when not known), less `after_s`
    for what follows the wait and MARGIN_S; 0 when none is left. stop_waits' waits are each
    a share of KillWait, but together more (teardown.j2 hpoc_left_s does the same)."""
    if term_at is None:
        return wait_s
    k = _DEFAULT_KILL_WAIT if (known := kill_wait_s(kill_wait)) is None else known
    return max(0.0, min(wait_s, term_at + k - time.monotonic() - after_s - MARGIN_S))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def heed_sigterm(cleanup: Callable[[], None] = lambda: None, grace_s: float = GRACE_S) -> None:
    """From now on a SIGTERM that Ray's handler has not acted on within `grace_s` kills this
    process's children and ends it (143), after `cleanup`. Call from the main thread."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while signal.SIGTERM not in os.read(read_fd, 64):
            pass
        time.sleep(grace_s)
        print(f"hpoc: Ray did not stop within {grace_s:g} s of SIGTERM; killing its processes",
              file=sys.stderr, flush=True)
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            cleanup()
        finally:
            os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="hpoc-sigterm", daemon=True).start()
