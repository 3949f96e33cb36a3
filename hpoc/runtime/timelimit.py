"""Trials stopped at `trials.time_limit`.

A trial whose config makes it very slow (a huge batch) or that hangs inside an epoch would
hold its CPUs and GPUs until the job's walltime. A trial's running time is what Ray counts
(`time_total_s` of its last report, which a retry or resume from a checkpoint goes on from)
plus the time since that report or since the attempt started: a trial that never reports
again reaches its limit too.

Tune stops one trial only when a result or a scheduler asks it to, and only schedulers are
handed the controller (`stop_trial`): the schedulers hpoc builds (resume.py, population.py)
ask `due()` on every controller step, stop those trials as completed (the searcher and the
scheduler see their last report, their checkpoints stay) and then kill the trial's process:
a hung epoch keeps it from stopping, as its main thread waits for the epoch's report (by
Ray's source, Tune would force it after `TUNE_FORCE_TRIAL_CLEANUP_S`, 10 min). With a
limit Tune does not reuse trial processes: a stopped one may still be busy, and its reuse
would fail the next trial. The reason is written into the trial's directory (`MARKER`), so
that `hpoc status`/`results` say why the trial ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpoc.files import read_json_object, trial_path, write_atomic
from hpoc.runtime import clock

MARKER = "hpoc-stopped.json"
REASON = "time limit"


def due(times: clock.TrialTimes, trials: list[Any]) -> list[Any]:
    """Running trials at their limit that were not stopped yet (each once)."""
    if not times.limit_s:
        return []
    now = times.clock()
    return [trial for trial, _ in times.once(trials, "stopped", lambda t: t.running_s(now) >= times.limit_s)]


def stop_due(tune_controller: Any) -> None:
    """Stop the trials at their limit (from a scheduler's `choose_trial_to_run`)."""
    for trial in due(clock.TIMES, tune_controller.get_trials()):
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        record(trial_path(trial), clock.TIMES.limit_s)
        tune_controller.stop_trial(trial)
        if actor is not None:
            import ray

            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - gone already
                pass


def record(directory: str | None, limit_s: float | None) -> None:
    if not directory:
        return
    try:
        write_atomic(Path(directory) / MARKER, json.dumps({"reason": REASON, "limit_s": limit_s}))
    except OSError:
        pass  # the trial still stops; only the reason is not shown


def reason(directory: str | None) -> str | None:
    """Why the trial in `directory` was stopped by hpoc, or None."""
    if not directory:
        return None
    data = read_json_object(Path(directory) / MARKER) or {}
    return str(data["reason"]) if data.get("reason") else None


class TimeLimited:
    """Scheduler mixin: stops trials at their time limit on every controller step."""

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        stop_due(tune_controller)
        return super().choose_trial_to_run(tune_controller)  # type: ignore[misc]
