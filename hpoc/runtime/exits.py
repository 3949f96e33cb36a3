"""How a run ends, as the user sees it: the driver's exit codes, the two exceptions that
carry one up to `run_study`, and `say`, its one way to write a line (a closed terminal
must not turn a stop into a traceback)."""

from __future__ import annotations

from typing import TextIO

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
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass
