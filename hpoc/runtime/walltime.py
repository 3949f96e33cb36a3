"""Runs that the walltime stopped before any trial reported.

A job whose walltime ends before the first epoch does (a slow epoch, a `time` too short
for Ray's start and the data) checkpoints nothing, requeues itself, and does the same
again, for as long as the site lets it. The driver counts such runs in a row, in the
experiment directory (all runs of a shard share it); at `MAX_IDLE_RUNS` it exits with
`EXIT_NO_PROGRESS` and the job script (and `hpoc submit`'s job) does not requeue.
"""

from __future__ import annotations

from pathlib import Path

from hpoc.files import write_atomic

FILE = ".hpoc-idle-runs"
MAX_IDLE_RUNS = 3


def after_stop(exp: Path, progressed: bool) -> int:
    """Record a run the walltime stopped; how many in a row have reported nothing."""
    path = exp / FILE
    if progressed:
        path.unlink(missing_ok=True)
        return 0
    try:
        idle = int(path.read_text(encoding="utf-8").strip() or 0) + 1
    except (OSError, ValueError):
        idle = 1
    try:
        write_atomic(path, f"{idle}\n")
    except OSError:
        pass  # an unwritable count only loses the guard
    return idle


def message(idle: int) -> str:
    # `error: ` first: `hpoc status` takes such a line from the job's .err as why it ended
    return (f"error: the walltime stopped {idle} runs in a row before any trial reported an epoch: "
            "not requeued, as the next run would do the same\n"
            "  help: raise `slurm.time` (or lower `resume.grace`), or make an epoch shorter; "
            "submitting again resumes the study")
