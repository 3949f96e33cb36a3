"""Trials that fail with a deterministic error are not retried.

`failure.max_retries` lets Tune retry a failed trial, and Ray's FailureConfig retries every
error alike. A `TrainerError` (a wrong return type, sys.exit, a missing objective, ...)
fails the same way every time: the trial that raises one records its message in its own
directory (`MARKER`), and a retry of it that finds the record fails at once with the same
message, before fetching data or building a model; the driver then stops retrying it.

A retry that fails with the same exception at the same point as the attempt before it
(`Repeats`) is recorded the same way, so that it is not retried again.

A record holds the token of the `hpoc run` that wrote it: a later run (a resumed study, the
code fixed in between) ignores it and runs the trial again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MARKER = "hpoc-no-retry.json"


def deterministic(exc: BaseException | None) -> Any:
    """The `TrainerError` behind `exc` - raised here, in a pooled worker (a RayTaskError)
    or in a Ray Train worker (a WorkerGroupError) - or None."""
    from hpoc.runtime.trainer import TrainerError

    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)  # RayTaskError: the worker's own exception
        if isinstance(cause, TrainerError):
            return cause
        if isinstance(e, TrainerError):
            return e
        todo.append(cause if isinstance(cause, BaseException) else None)
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            todo.extend(failures.values())
    return None


def record(directory: str | None, run: str | None, error: BaseException | str) -> None:
    if not directory or not run:
        return
    from hpoc.files import write_atomic

    try:
        write_atomic(Path(directory) / MARKER, json.dumps({"run": run, "error": str(error)}))
    except OSError:
        pass  # no record: the trial is retried as any other


def recorded(directory: str | None, run: str | None) -> str | None:
    """The message of the deterministic error this run's trial in `directory` failed with."""
    if not directory or not run:
        return None
    from hpoc.files import read_json_object

    data = read_json_object(Path(directory) / MARKER)
    if data is None or data.get("run") != run:
        return None
    return str(data.get("error", ""))


# ------------------------------------------------------------ the same failure twice

_FAILURE = re.compile(r"^Failure # \d+ \(occurred at [^)\n]*\)$", re.MULTILINE)


def last_failure(error_file: str | None) -> str | None:
    """The text of the latest failure in a trial's `error.txt` (Tune appends each one)."""
    try:
        text = Path(error_file).read_text(encoding="utf-8", errors="replace") if error_file else ""
    except OSError:
        return None
    return latest(text) or None


def latest(text: str) -> str:
    """The latest failure of an `error.txt`'s text (all of it when it has one)."""
    return _FAILURE.split(text)[-1].strip()


# What a lost node, a killed worker or a peer rank gone looks like: the same text every time
# (ids aside), yet the next attempt may well run elsewhere, so these are always retried.
# Ray's memory monitor (OutOfMemoryError) kills for what the node's other users hold too.
_INFRASTRUCTURE = re.compile(
    r"\bray\.exceptions\.(ActorDiedError|ActorUnavailableError|NodeDiedError|WorkerCrashedError|"
    r"LocalRayletDiedError|RaySystemError|OwnerDiedError|ObjectLostError|OutOfMemoryError)\b|"
    r"\b(DistBackendError|DistNetworkError)\b|"
    # a trial's error.txt has an ActorDiedError's message without its class
    r"^The actor died unexpectedly before finishing this task\.", re.MULTILINE)


def infrastructure(text: str | None) -> bool:
    """Whether an error is the cluster's (`_INFRASTRUCTURE`): a retry may get past it. A
    worker that died calling os._exit itself is not (Ray says only that it died)."""
    from hpoc.runtime.crash import called_exit

    return bool(_INFRASTRUCTURE.search(text or "")) and not called_exit(text or "")


class Repeats:
    """Any error is retried, a bug too (its type cannot tell it from a lost node); but a
    retry that fails with the same exception (type and message; addresses and ids aside)
    before the same report as the attempt before it will fail so on every retry, unless
    the exception is the cluster's (`_INFRASTRUCTURE`). Per trial, the last failure's
    (signature, point), this run only."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[str, int]] = {}

    def same_again(self, trial_id: str, text: str | None, point: int, path: str | None) -> str | None:
        """Note a failure of `trial_id` before report `point + 1`; the error line when the
        attempt before failed the same way at the same point."""
        from hpoc.runtime import failfast, summary

        sig = failfast.signature(text, trial_id, path, numbers=False)
        before = self.last.pop(trial_id, None)
        if sig is None or infrastructure(text):
            return None
        self.last[trial_id] = (sig, point)
        if before != (sig, point):
            return None
        return summary.error_at(text or "")  # the retry that ends it has no user frame


_TWICE = ("failed the same way twice: ", "; not retried again")


def same_way_twice(line: str) -> str:
    return f"{_TWICE[0]}{line}{_TWICE[1]}"


def first_way(line: str) -> str:
    """The error of a `same_way_twice` line: a trial stopped so failed as another that was
    not retried (fail-fast) did."""
    if line.startswith(_TWICE[0]) and line.endswith(_TWICE[1]):
        return line[len(_TWICE[0]):-len(_TWICE[1])]
    return line
