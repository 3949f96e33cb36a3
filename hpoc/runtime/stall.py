"""Trials that stop reporting, said once each in the run's output.

A trial that hangs (a deadlock, a collective waiting for a lost rank, a `sleep`) holds its
CPUs and GPUs until the study ends, or its `trials.time_limit` (timelimit.py), and the
progress line only shows it as running. The driver names it once it has been quiet for much longer than
its epochs took, so that whoever watches the log can stop the study (the checkpoints are
kept, and a rerun resumes).
"""

from __future__ import annotations

from typing import Any

from hpoc.runtime.clock import TrialTime, TrialTimes

FIRST_REPORT_S = 1800.0  # before a trial's first report: loading, compiling may be slow
MIN_QUIET_S = 600.0
EPOCHS = 10  # quiet for this many of its longest epochs


def quiet(times: TrialTimes, trials: list[Any]) -> list[tuple[Any, float, float | None]]:
    """(trial, seconds quiet, longest epoch or None) for each running trial quiet too long
    that was not named since its start or last report."""
    now = times.clock()

    def stuck(t: TrialTime) -> bool:
        return now - t.at > (FIRST_REPORT_S if t.longest is None else max(MIN_QUIET_S, EPOCHS * t.longest))

    return [(trial, now - t.at, t.longest) for trial, t in times.once(trials, "named", stuck)]


def describe(quiet_s: float, longest: float | None) -> str:
    took = f"its epochs took {longest:.3g} s at most" if longest is not None else "it has not reported yet"
    return (f"has not reported for {quiet_s / 60:.0f} min ({took}): stuck? "
            "`trials { time_limit = ... }` stops such a trial; Ctrl-C stops the study, keeping checkpoints, and a rerun resumes it")
