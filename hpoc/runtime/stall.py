"""Trials that stop reporting, said once each in the run's output.

A trial that hangs (a deadlock, a collective waiting for a lost rank, a `sleep`) holds its
CPUs and GPUs until the study ends, or its `trials.time_limit` (timelimit.py), and the
progress line only shows it as running. The driver names it once it has been quiet for much longer than
its epochs took, so that whoever watches the log can stop the study (the checkpoints are
kept, and a rerun resumes).
"""

from __future__ import annotations

import time
from typing import Any, Callable

FIRST_REPORT_S = 1800.0  # before a trial's first report: loading, compiling may be slow
MIN_QUIET_S = 600.0
EPOCHS = 10  # quiet for this many of its longest epochs


class StallWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: dict[str, float] = {}     # trial id -> its start or last report
        self.longest: dict[str, float] = {}   # trial id -> its longest epoch, seconds
        self.said: set[str] = set()

    def started(self, trial_id: str) -> None:
        self.since[trial_id] = self.clock()
        self.said.discard(trial_id)

    def reported(self, trial_id: str, result: dict[str, Any]) -> None:
        self.started(trial_id)
        took = result.get("time_this_iter_s")
        if isinstance(took, (int, float)):
            self.longest[trial_id] = max(self.longest.get(trial_id, 0.0), float(took))

    def quiet(self, trials: list[Any]) -> list[tuple[Any, float, float | None]]:
        """(trial, seconds quiet, longest epoch or None) for each running trial quiet too
        long that was not named yet."""
        now, out = self.clock(), []
        for trial in trials:
            since = self.since.get(trial.trial_id)
            if trial.status != "RUNNING" or since is None or trial.trial_id in self.said:
                continue
            longest = self.longest.get(trial.trial_id)
            limit = FIRST_REPORT_S if longest is None else max(MIN_QUIET_S, EPOCHS * longest)
            if now - since > limit:
                self.said.add(trial.trial_id)
                out.append((trial, now - since, longest))
        return out


def describe(quiet_s: float, longest: float | None) -> str:
    took = f"its epochs took {longest:.3g} s at most" if longest is not None else "it has not reported yet"
    return (f"has not reported for {quiet_s / 60:.0f} min ({took}): stuck? "
            "`trials { time_limit = ... }` stops such a trial; Ctrl-C stops the study, keeping checkpoints, and a rerun resumes it")
