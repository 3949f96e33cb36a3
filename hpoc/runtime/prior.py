"""What an earlier run left in the experiment directory decides this one: start fresh,
resume it, retry its errored trials, say it is done, or refuse (the plan changed, resume
disabled, a synchronous population). The driver holds the run lock before it looks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from hpoc.files import aside_path
from hpoc.runtime import marker, rerun, runlock
from hpoc.runtime import summary as summary_mod
from hpoc.runtime.exits import StudyError, say


def prior_run(exp: Path, fp: dict[str, Any], fresh: bool, resume_enabled: bool,
               stream: TextIO, retry: str | None = None, errored: dict[str, Path] | None = None,
               summary: Any = ..., recorded: dict[str, Any] | None = marker.UNREAD) -> str:
    """"fresh", "aside" (--fresh over an earlier run: `move_aside` once the data has loaded and Ray is up,
    so that a getter that fails leaves it where it was), "restore", "retry" (a finished run's
    errored trials) or "done" for an experiment directory (whose run lock this run holds, so
    a live run is never moved aside); `errored` is rerun.errored(exp), `summary` its
    summary.json's content (None: there is none; unset: read here), `recorded` the
    directory's marker where the caller read it already."""
    from ray.tune import Tuner

    if retry and fresh:
        raise StudyError(rerun.WITH_FRESH)
    if recorded is marker.UNREAD:
        recorded = marker.read(exp) if exp.exists() else None
    recorded = marker.here(recorded, fp, exp)  # a directory moved since: as if it ran here
    # tuner.pkl alone (a run stopped before Tune first saved its trials, e.g. a job cancelled
    # during start-up) is no state: Tuner.restore then ran fewer trials than the plan's.
    has_state = exp.exists() and Tuner.can_restore(str(exp)) and any(exp.glob("experiment_state-*.json"))
    if not has_state and recorded is None:
        if retry:
            raise StudyError(f"--retry-errored: {exp} holds no earlier run of this study, so no "
                             "errored trial to run again\n  help: run the study without "
                             "--retry-errored (or HPOC_RETRY_ERRORED) first")
        if not fresh and (why := marker.left_behind(fp, exp)) is not None:
            raise StudyError(why)
        return "fresh"
    if fresh:
        return "aside"
    parts = marker.differences(recorded, fp, exp) if recorded is not None else None
    if parts is not None:
        raise StudyError(marker.describe(exp, recorded, fp, parts) + "\n  help: "
                         + marker.remedy(recorded, fp, parts))
    if summary is ...:
        summary = summary_mod.read(exp)
    if summary_mod.finished(summary, recorded, fp["plan_hash"], fp):
        if not (retry and errored):
            return "done"
        _refuse_cut_state(exp)
        return "retry"
    if not has_state:
        return "fresh"
    # An extension of a run that ended resumes nothing unfinished: resume off allows it.
    ended = marker.growth(recorded, fp) is not None and summary_mod.finished(summary, recorded, fp["plan_hash"])
    if not resume_enabled and not ended:
        raise StudyError(f"{exp} holds an unfinished run and resume is disabled in the study\n"
                         "  help: pass --fresh to move it aside and start over")
    _refuse_cut_state(exp)
    return "restore"


def _refuse_cut_state(exp: Path) -> None:
    """A state file a full disk cut short: said here, where Tune would start the study over."""
    from hpoc.runtime import full

    why = full.cut_state(exp)
    if why is not None:
        raise StudyError(why + "\n  help: make room, then pass --fresh to start the study over "
                         "(the run is moved aside, where `hpoc results` still reads its trials); "
                         "the state of a run before it does not match the trials since")


def move_aside(exp: Path, stream: TextIO, lock: runlock.Lock | None = None) -> None:
    """--fresh: the earlier run goes to `<exp>.prev-<time>`; this run keeps its lock on `exp`."""
    aside = aside_path(exp)
    exp.rename(aside)
    say(stream, f"[hpoc] moved the previous run to {aside}")
    if lock is not None:  # it went aside with the directory
        (aside / runlock.LOCK).unlink(missing_ok=True)
        take_lock(lock, stream)


def refuse_synch_population(plan: dict[str, Any], exp: Path) -> None:
    """A synchronous PBT/PB2 study cannot resume: Ray's scheduler does not save when the
    population last synchronised, and the restored trials, each at its own epoch, wait for
    one another forever (nothing runs, nothing ends). Better said now than an allocation
    spent waiting."""
    from hpoc.runtime.search import POPULATION_SCHEDULERS

    sched = plan.get("scheduler") or {}
    if sched.get("name") in POPULATION_SCHEDULERS and (sched.get("options") or {}).get("synch"):
        raise StudyError(
            f"{exp}: this interrupted `scheduler {sched['name']}` study has `synch = true`, and "
            "Ray Tune cannot resume a synchronous population (the restored trials would wait "
            "for each other forever)\n"
            "  help: run it again from the start with `--fresh`, or use `synch = false` "
            "(asynchronous PBT resumes) with a new `storage.name`")


def take_lock(lock: runlock.Lock, stream: TextIO) -> None:
    try:
        lock.acquire(lambda line: say(stream, line))
    except runlock.Busy as exc:
        raise StudyError(str(exc)) from None
