"""`--retry-errored`: run only a study's errored trials again, after their bug is fixed.

    hpoc run study.hpo --local --retry-errored                    # from scratch
    hpoc run study.hpo --local --retry-errored --from-checkpoint  # from their last checkpoint
    HPOC_RETRY_ERRORED=1 sbatch build/s/job.sbatch                # the job's driver reads it

The driver reopens the run (`Tuner.restore`, errored trials resumed, finished ones kept) -
a finished run too, which otherwise is not run again. From scratch is the default: a
checkpoint written by the code that failed may hold what the bug did. A trial keeps its id
and directory either way (searchers know it by its id); what it left there is moved into
`before-retry-<n>/` inside its directory, so that its reports, curve and status are the
new run's: its error files always, and from scratch its reports and checkpoints too.

Which trials those are is `errored(exp)` alone, for the driver, the job's check before Ray
(before.py) and `hpoc submit --retry-errored`, so that none of them sends a job or a retry
the driver would not run. The driver reads it once, when it starts. They are Ray's errored
trials and those summary.json has as cut short in their retry (`retry_cut`: Ray saved them
as finished); the retry marks those errored in Ray's saved state before restoring it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from hpoc.files import newest_state, saved_trials, write_atomic
from hpoc.runtime.summary import SUMMARY, read

ENV = "HPOC_RETRY_ERRORED"
SCRATCH, CHECKPOINT = "scratch", "checkpoint"
_ON = {"1", "true", "yes", "on", SCRATCH}
_OFF = {"", "0", "false", "no", "off"}
_ERROR_FILES = ("error.txt", "error.pkl")
_REPORTS = ("result.json", "progress.csv", "events.out.tfevents")
_TUNER = "tuner.pkl"  # what Tuner.can_restore looks for: without it nothing is restored
# The CLI refuses both flags; the driver too, for callers of run_study.
WITH_FRESH = ("--retry-errored reruns the errored trials of the run there, --fresh moves that "
              "run aside: pass one of them")


class RetryError(ValueError):
    pass


def mode_from_env(environ: Any = os.environ) -> str | None:
    """SCRATCH, CHECKPOINT or None (unset) from HPOC_RETRY_ERRORED."""
    value = str(environ.get(ENV, "")).strip().lower()
    if value in _OFF:
        return None
    if value in _ON:
        return SCRATCH
    if value == CHECKPOINT:
        return CHECKPOINT
    raise RetryError(f"{ENV}={environ.get(ENV)!r} is not a valid value\n  help: `1` retries the "
                     "errored trials from scratch, `checkpoint` from their last checkpoint, "
                     "`0` or unset not at all")


def errored(exp: Path, summary: Any = ...) -> dict[str, Path]:
    """trial id -> directory of the trials a retry runs again (none without a restorable
    run): those Ray's newest saved experiment state has as ERROR, and those `cut_short`.
    `summary`: summary.json's content, when the caller has read it (None: there is none;
    unset: read here, as prior_run does). No Ray import."""
    return errored_and_ended(exp, summary)[0]


def errored_and_ended(exp: Path, summary: Any = ...) -> tuple[dict[str, Path], int]:
    """`errored(exp, summary)`, and how many trials that state has ended (TERMINATED or
    ERROR: a restore does not run them again unless retried), from one read of it."""
    newest = newest_state(exp) if (exp / _TUNER).is_file() else None
    if newest is None:
        return {}, 0
    saved = saved_trials(newest)
    cut = cut_short(exp, newest, read(exp) if summary is ... else summary)
    return ({str(trial["trial_id"]): exp / str(trial.get("relative_logdir") or "")
             for trial, _ in saved
             if trial.get("status") == "ERROR" or (trial.get("status") == "TERMINATED"
                                                   and str(trial["trial_id"]) in cut)},
            sum(1 for trial, _ in saved if trial.get("status") in ("TERMINATED", "ERROR")))


def cut_short(exp: Path, state: Path, summary: dict[str, Any] | None) -> set[str]:
    """The trials summary.json has as failed, then stopped by the time budget or their
    time limit while being retried (`retry_cut`): Ray saved them TERMINATED, as finished,
    and only the summary knows. Its word counts when it was written after `state`, Ray's
    newest saved state (a later run's state is newer: those trials are Ray's to tell)."""
    try:
        if (exp / SUMMARY).stat().st_mtime < state.stat().st_mtime:
            return set()
    except OSError:
        return set()
    trials = (summary or {}).get("trials") or []
    return {str(t.get("trial_id")) for t in trials if isinstance(t, dict)
            and t.get("retry_cut") is True and t.get("status") == "TERMINATED"}


def prepare(exp: Path, mode: str, retry: str | None, plan_retries: bool,
            trials: dict[str, Path], say: Callable[[str], None]) -> tuple[str | None, set[str]]:
    """Before `Tuner.restore` ("restore": an interrupted run, "retry": a finished one): the
    retry mode the restore uses (None: errored trials stay errored) and the trials to start
    from scratch. `retry` is --retry-errored's; `plan_retries` the plan's
    `resume.retry_errored`, which retries an interrupted run's from their checkpoint;
    `trials` is errored(exp), read when the driver started."""
    asked = retry
    if mode == "restore":
        retry = retry or (CHECKPOINT if plan_retries else None)
    trials = trials if retry else {}
    if not trials:
        if asked:
            say("[hpoc] no errored trial to retry")
        return None, set()
    scratch = retry == SCRATCH
    cut = mark_errored(exp, set(trials), budget_afresh=mode == "retry")
    how = "from scratch" if scratch else "from their last checkpoint"
    among = (f" ({cut} of them failed and were being retried when the time budget or their "
             "time limit stopped them)") if cut else ""
    if mode == "retry":
        say(f"[hpoc] this study ran to the end in {exp}; running its {len(trials)} errored "
            f"trial(s) again {how}{among}; the finished trials are kept")
    else:
        say(f"[hpoc] its {len(trials)} errored trial(s) run again {how}{among}")
    set_aside(exp, trials, scratch)
    return retry, set(trials) if scratch else set()


def mark_errored(exp: Path, trials: set[str], budget_afresh: bool = False) -> int:
    """Have Ray's newest saved state say ERROR for those of `trials` it saved TERMINATED
    (`cut_short`), so that the restore runs them again as it does an errored trial, and
    Ray's own record says what is left to do should this run stop too; how many.
    `budget_afresh` drops the study's saved time budget stopper: the restore builds it
    anew, with the whole budget (a run the budget ended left none, and the retry stopped
    at once)."""
    newest = newest_state(exp)
    try:
        data = json.loads(newest.read_text(encoding="utf-8")) if newest else None
        rows = [item for item in data["trial_data"] if isinstance(item, list) and item] if data else []
    except (OSError, ValueError, TypeError, KeyError):
        return 0
    changed = 0
    for item in rows:
        try:
            trial = json.loads(item[0])
        except (TypeError, ValueError):
            continue
        if isinstance(trial, dict) and trial.get("trial_id") in trials \
                and trial.get("status") == "TERMINATED":
            trial["status"] = "ERROR"
            item[0] = json.dumps(trial, indent=2)
            changed += 1
    runner = data.get("runner_data") if data else None
    stopper = runner.pop("_stopper", None) if budget_afresh and isinstance(runner, dict) else None
    if changed or stopper is not None:
        write_atomic(newest, json.dumps(data))
    return changed


def set_aside(exp: Path, trials: dict[str, Path], scratch: bool) -> None:
    """Move what the errored `trials` left in their directories into `before-retry-<n>/`:
    the error files (a successful retry would still read as errored), and for a retry from
    scratch the reports, checkpoints and (multi-worker trials) their Ray Train run."""
    from hpoc.runtime.trial import train_runs_dir

    for trial_id, where in trials.items():
        if not where.is_dir() or where == exp:
            continue
        names = [*_ERROR_FILES]
        if scratch:
            names += [p.name for p in where.iterdir()
                      if p.name.startswith(("checkpoint_", *_REPORTS))]
        moving = [where / n for n in dict.fromkeys(names) if (where / n).exists()]
        train = train_runs_dir(exp) / trial_id
        if scratch and train.is_dir():
            moving.append(train)
        if not moving:
            continue
        n = 1
        while (where / f"before-retry-{n}").exists():
            n += 1
        aside = where / f"before-retry-{n}"
        aside.mkdir()
        for path in moving:
            path.rename(aside / ("train-run" if path == train else path.name))


def start_over(trial: Any) -> None:
    """Make Ray start a restored `trial` from scratch: no checkpoint, no earlier results
    (what `Trial.reset()` gives a new trial, keeping this one's id)."""
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    old = trial.run_metadata
    fresh = _TrainingRunMetadata()
    fresh.checkpoint_manager = _CheckpointManager(
        checkpoint_config=old.checkpoint_manager.checkpoint_config)
    fresh.start_time = old.start_time
    trial.run_metadata = fresh
    trial.restore_path = None
