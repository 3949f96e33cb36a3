"""Each trial's time in this run, one record per trial: fed by the driver's Tune callback
(watch.py), read by the stall check (stall.py), the time limit (timelimit.py) and the point
an attempt failed at (watch.py). `TIMES` is module-level, set by each run: the schedulers
that stop trials at their limit are pickled with the experiment."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable


@dataclass(frozen=True)
class TrialTime:
    run_s: float = 0.0            # Ray's time_total_s at `at`
    at: float = 0.0               # clock time of the attempt's start or its last report
    reports: int = 0              # reports of this attempt
    longest: float | None = None  # its longest epoch, seconds, over all attempts
    named: bool = False           # said to have gone quiet, this attempt (stall.py)
    stopped: bool = False         # stopped at its time limit (timelimit.py)

    def running_s(self, now: float) -> float:
        """Ray's count of its running time, also when it never reports again."""
        return self.run_s + now - self.at


class TrialTimes:
    def __init__(self, limit_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.clock = limit_s, clock  # limit_s: the run's trials.time_limit
        self.trials: dict[str, TrialTime] = {}
        self.reported_any = False  # a report in this run (walltime.py)

    def started(self, trial: Any) -> None:
        # From a checkpoint Ray's time_total_s goes on from the checkpoint's (last_result
        # holds at least that much); from scratch it starts at 0.
        resumed = getattr(trial, "checkpoint", None) is not None
        run = (getattr(trial, "last_result", None) or {}).get("time_total_s") if resumed else 0
        old = self.trials.get(trial.trial_id, TrialTime())
        self.trials[trial.trial_id] = replace(old, run_s=float(run or 0), at=self.clock(), reports=0, named=False)

    def reported(self, trial_id: str, result: dict[str, Any]) -> None:
        now = self.clock()
        self.reported_any = True
        old = self.trials.get(trial_id, TrialTime(at=now))
        run, took = result.get("time_total_s"), result.get("time_this_iter_s")
        self.trials[trial_id] = replace(
            old, at=now, reports=old.reports + 1, named=False,
            run_s=float(run) if isinstance(run, (int, float)) else old.running_s(now),
            longest=max(old.longest or 0.0, float(took)) if isinstance(took, (int, float)) else old.longest)

    def of(self, trial_id: str) -> TrialTime:
        """The trial's time; a zero one for a trial not started in this run."""
        return self.trials.get(trial_id) or TrialTime()

    def once(self, trials: list[Any], flag: str, due: Callable[[TrialTime], bool]) -> list[tuple[Any, TrialTime]]:
        """(trial, its time) of the running trials `due` whose `flag` is not set; sets it (each once)."""
        out = []
        for trial in trials:
            time_ = self.trials.get(trial.trial_id)
            if trial.status == "RUNNING" and time_ is not None and not getattr(time_, flag) and due(time_):
                self.trials[trial.trial_id] = replace(time_, **{flag: True})
                out.append((trial, time_))
        return out


TIMES = TrialTimes()  # the current run's (study.py sets it)
