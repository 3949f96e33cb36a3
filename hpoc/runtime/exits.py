"""How a run ends, as the user sees it: the driver's exit codes, the two exceptions that
carry one up to `run_study`, and `say`, its one way to write a line (a closed terminal
must not turn a stop into a traceback)."""

from __future__ import annotations

import sys
from typing import NoReturn, TextIO

from hpoc.plan import EXIT_INTERRUPTED, EXIT_NO_PROGRESS  # noqa: F401 - the job scripts act on them

EXIT_OK, EXIT_FAILED, EXIT_SPEC = 0, 1, 2


class StudyError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_SPEC) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):
    """A stop signal before the trials started. Not an Exception, so that no `except
    Exception` on its way (the getter's, Ray's) reports it as a failure."""


def say(stream: TextIO, text: str) -> None:
    from hpoc.runtime.progress import said_over  # the live line on a terminal: not run into

    try:
        stream.write(said_over(stream, text))
        stream.flush()
    except (OSError, ValueError):
        pass


def leave(code: int) -> NoReturn:
    """End the driver's process with `code` once the run is over, without Python's own
    teardown: with torch and Ray imported, freeing every module's objects one by one took
    2-6 s of each run's end on two cores (docs/performance.md), after all was written.
    What that teardown is for still happens: the atexit handlers run (logging's flush,
    Ray's, multiprocessing's, weakref finalizers) and every open file object is flushed.
    While a thread that is not a daemon still runs, the exit waits for it as ever.
    Only for a process run as `hpoc run` or `python -m hpoc.runtime`, never in-process."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    _flush_files()
    os._exit(code)


def _flush_files() -> None:
    """Flush every open file object, as their finalizers would at teardown (a trainer
    module's log file, a file in a reference cycle that only the collector frees)."""
    import gc
    import io

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    for obj in gc.get_objects():
        if issubclass(type(obj), io.IOBase):  # not isinstance: a proxy's __class__ may warn
            try:
                if not obj.closed and obj.writable():
                    obj.flush()
            except (OSError, ValueError):
                pass
