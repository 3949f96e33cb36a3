"""The Tune callbacks that watch the trials for the driver: one line per error, retry,
stall or time limit, fail fast, the sweep of orphaned placement groups, and how the trials
look after a stop.

Their state is the module-level `STATE`, shared with the signal handler (signals.py) and
the driver (study.py): Ray pickles the callbacks into the experiment, and one restored by
`Tuner.restore` must report into the current run. Those modules hold it by name, so a run
resets it in place (`STATE.__init__()`) and never rebinds it."""

from __future__ import annotations

import functools
import math
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hpoc.files import mark_started, trial_path, write_live
from hpoc.runtime import clock, failfast, full, rerun, retry, stall
from hpoc.runtime import oom as oom_mod
from hpoc.runtime import summary as summary_mod
from hpoc.runtime.crash import with_crash
from hpoc.runtime.exits import say


@dataclass
class _State:
    """What the signal handler and the Tune callbacks share with the driver (module-level so
    callbacks restored from a pickled experiment find the current run)."""

    signal: int | None = None
    trials: list[Any] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # trials that completed or errored
    stream: TextIO | None = None
    retries: dict[str, int] = field(default_factory=dict)
    mode: str = "fresh"       # what prior_run decided
    resume: bool = True       # the plan's resume.enabled: whether a stopped run can go on
    defer: bool = False       # inside ray.init: note a signal, act on it once init returns
    params: list[str] = field(default_factory=list)  # searched names: an error line shows them
    run: str = field(default_factory=lambda: uuid.uuid4().hex)  # this `hpoc run` (retry.py)
    max_retries: int = 0      # the plan's; a trial restored from an earlier run may hold 0
    sweep_at: float | None = None  # next look for orphaned placement groups (orphans.py)
    experiment: Path | None = None  # the experiment directory (Train runs' checkpoints)
    start_over: set[str] = field(default_factory=set)  # errored trials retried from scratch
    errored: dict[str, Path] = field(default_factory=dict)  # rerun.errored, read at start-up
    saved_ended: int = 0      # ... and the trials Ray's saved state has ended (TERMINATED, ERROR)
    fail_fast: failfast.FailFast | None = None
    failed: str | None = None  # why the study stopped itself (failfast.py, full.py)
    full: str | None = None   # it stopped because a disk was full: what ran out (full.py)
    full_at: str | None = None  # ... and where (the storage, or a place outside it the error names)
    repeats: retry.Repeats = field(default_factory=retry.Repeats)  # failed the same way twice
    # trial id -> the failure its retry follows, until the retry reports: a time budget that
    # ends the study then leaves the trial TERMINATED, and its error would go unsaid
    retrying: dict[str, str] = field(default_factory=dict)
    live: dict[str, str] = field(default_factory=dict)  # the statuses last written (files.LIVE)
    live_at: float = 0.0      # when they may be written again
    run_started: float | None = None  # this run's lock's `started`, which the file names
    late: bool = False        # the first signal came once every trial had ended: nothing stopped
    before_start: bool = False  # the signal came while the driver started (early.py)
    # trial id -> (when, its directory): the empty rank crash files to remove then
    rank_crashes: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    swept: set[str] = field(default_factory=set)  # ... and those removed after their trial ended
    objective: str | None = None  # the first objective metric's name
    diverged: set[str] = field(default_factory=set)  # trials said to have diverged

    @property
    def stopping(self) -> bool:
        return (self.signal is not None and not self.late) or self.failed is not None

    def all_ended(self) -> bool:
        """Whether every trial of the shard has completed or errored (a trial being retried
        is PENDING, not ERROR)."""
        # fail_fast is made with the shard's trial count once the Tuner is built
        return (self.fail_fast is not None and len(self.trials) >= self.fail_fast.total
                and all(t.trial_id in self.ended or t.status == "ERROR" for t in self.trials))


STATE = _State()
ORPHAN_SWEEP_S = 2.0
# after a trial ended: by then Ray has ended its ranks (with their owner, the trial's process)
RANK_CRASH_SWEEP_S = 10.0
LIVE_EVERY_S = 0.5


def begin(plan: dict[str, Any], stream: TextIO) -> None:
    """What the callbacks need of this run's plan. Set for every run: a resumed one keeps
    the callbacks Tune restores, and without the plan's retries its trials had none."""
    STATE.stream = stream
    STATE.params = [p["name"] for p in plan["space"]["params"]]
    STATE.max_retries = plan["failure"]["max_retries"] or 0
    STATE.resume = bool(plan["resume"]["enabled"])
    STATE.objective = ((plan.get("objective") or {}).get("metrics") or [{}])[0].get("name")
    if plan["resources"]["workers"] > 1:  # trials of Ray Train runs (and warm groups)
        STATE.sweep_at = 0.0


def watch_callbacks(plan: dict[str, Any], total: int, stream: TextIO) -> list[Any]:
    from ray import tune

    from hpoc.runtime.progress import Progress, tune_callback

    metric = (plan["objective"]["metrics"] or [{"name": None, "mode": "min"}])[0]
    progress = Progress(total=total, metric=metric["name"], mode=metric["mode"], stream=stream)

    return [tune_callback(progress, _as_seen), _make_events(progress), _make_quiet()]


@functools.lru_cache(maxsize=1)
def _quiet_class() -> type:
    from ray.tune.progress_reporter import TrialProgressCallback

    class Quiet(TrialProgressCallback):
        """Ray adds its own TrialProgressCallback unless one is given; even at verbose=0 it
        prints "Trial ... completed. Last result: {...}". Our progress line says it all."""

        def _print(self, msg: str) -> None:
            pass

        def __reduce__(self):  # restorable from a pickled experiment, like Events
            return (_make_quiet, ())

    return Quiet


def _make_quiet() -> Any:
    return _quiet_class()()


def _as_seen(trials: list[Any]) -> tuple[list[Any], bool]:
    """(trials, stopped): after a stop, Tune's clean-up marks the trials it stopped
    TERMINATED; they will resume, so they are PAUSED (PENDING if they never reported).
    After a fail-fast stop those waiting for a retry are ERROR: they failed (their error
    is retry_failures')."""
    if not STATE.stopping:
        return trials, False
    failed = retry_failures(interrupted=True)
    return [t if t.trial_id in STATE.ended or t.status == "ERROR" else
            _Relabelled(t, "ERROR") if t.trial_id in failed else
            _Relabelled(t, "PAUSED" if _reported(t) else "PENDING") for t in trials], True


def retry_failures(interrupted: bool) -> dict[str, str]:
    """trial id -> the failure of the trials being retried when the run ended, which the
    summary keeps as their error: the time budget or their time limit cut the retry short,
    or the study stopped itself (fail fast). A stop by a signal leaves them to the next run."""
    return dict(STATE.retrying) if not interrupted or STATE.failed else {}


def _budget_line(budget: float, total: int, trials: list[Any], retrying: int = 0) -> str:
    """Tune ends the whole experiment at the budget: running trials stop where they are.
    Said as summary.json's `ending` says it (trials created of those planned); a trial never
    created never ran, so only those that started and never reported are counted as such."""
    ended = summary_mod.ending({"budget_reached_s": budget, "num_trials": len(trials), "planned": total})
    silent = sum(not _reported(t) for t in trials)
    quiet = f"; {silent} of them never reported" if silent else ""
    cut = (f"; {retrying} trial(s) being retried after an error were stopped before the retry "
           "reported (`hpoc results` shows the error)") if retrying else ""
    return f"[hpoc] {ended}: trials still running were stopped where they were{quiet}{cut}"


def _reported(trial: Any) -> bool:
    """Whether a trial reported once: Ray's `last_result` is never empty (before the first
    report it holds the trial id and auto-filled keys); every report has an iteration."""
    return "training_iteration" in (trial.last_result or {})


@functools.lru_cache(maxsize=1)
def _events_class() -> type:
    from ray import tune

    class Events(tune.Callback):
        """Trial errors and retries as one line each; keeps the Trial objects for the summary.

        State lives in the module's `STATE`, so an instance restored from a pickled
        experiment (Tuner.restore) reports into the current run."""

        def __init__(self, progress: Any = None) -> None:
            self.progress = progress

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            _step_ended(trials)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            STATE.trials = trials
            STATE.ended.add(trial.trial_id)
            STATE.retrying.pop(trial.trial_id, None)  # its retry's own error is the one kept
            _note_oom(trial)
            _trial_line(trial, "errored")
            _sweep_later(trial)
            if not _storage_full(trial, summary_mod.trial_error(trial)):
                _fail_fast(trial, trials)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            STATE.ended.add(trial.trial_id)
            _sweep_later(trial)
            if clock.TIMES.of(trial.trial_id).stopped:
                _trial_line(trial, f"stopped: time limit of {clock.TIMES.limit_s:g} s reached")
            _fail_fast(trial, trials)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            clock.TIMES.reported(trial.trial_id, result)
            STATE.retrying.pop(trial.trial_id, None)
            _diverged(trial, result)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _trial_started(trial)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _trial_recovered(trial, trials)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            STATE.trials = trials
            _late_ooms(trials, oom_mod.END_S)  # the summary reads error.txt next
            if self.progress is not None:
                self.progress.close()

        def __reduce__(self):
            return (_make_events, (self.progress,))

    return Events


def _step_ended(trials: list[Any]) -> None:
    STATE.trials = trials
    if not STATE.stopping:  # finished before this run (restored) or during it;
        # after a stop Tune marks the trials it stops TERMINATED too (_as_seen)
        STATE.ended.update(t.trial_id for t in trials if t.status == "TERMINATED")
        _write_live(trials)
        for trial, quiet_s, longest in stall.quiet(clock.TIMES, trials):
            say(STATE.stream or sys.stderr, f"[hpoc] trial {trial.trial_id}{_searched(trial)} "
                                              f"{stall.describe(quiet_s, longest)}")
    if STATE.sweep_at is not None and time.monotonic() >= STATE.sweep_at:
        _sweep_orphans()
    if STATE.rank_crashes:
        sweep_rank_crashes(trials, time.monotonic())
    _late_ooms(trials)


def _late_ooms(trials: list[Any], wait: float = 0.0) -> None:
    """Say the OOM kills another node's count showed after the trial's line (oom.poll)."""
    for directory in oom_mod.poll(wait):
        trial = next((t for t in trials if str(trial_path(t)) == directory), None)
        if trial is None:
            continue
        error = with_crash(retry.last_failure(getattr(trial, "error_file", None)), directory)
        say(STATE.stream or sys.stderr, f"[hpoc] trial {trial.trial_id}{_searched(trial)}: "
                                        f"{summary_mod.error_at(error)} (details: {directory}/error.txt)")


def _sweep_later(trial: Any) -> None:
    if STATE.sweep_at is not None:  # multi-worker trials
        STATE.rank_crashes[trial.trial_id] = (time.monotonic() + RANK_CRASH_SWEEP_S, trial_path(trial))


def sweep_rank_crashes(trials: list[Any] | None = None, now: float | None = None) -> None:
    """Remove the empty `rank-<k>.crash` of trials that ended (still ended at `now`, a while
    after): a rank Ray ended while busy in C code (the GIL held) left its own (rank_term.py),
    which read as a crash. Without `now` (the run's end, its Ray gone): every trial's not
    swept yet (`swept`: those swept after they ended, each folder listed once)."""
    from hpoc.runtime import output

    ended = {t.trial_id for t in trials or [] if t.status in ("TERMINATED", "ERROR")}
    if now is None:
        for trial in STATE.trials if STATE.sweep_at is not None else []:
            if trial.trial_id not in STATE.swept:
                STATE.rank_crashes.setdefault(trial.trial_id, (0.0, trial_path(trial)))
    for tid, (due, path) in list(STATE.rank_crashes.items()):
        if now is None or now >= due:
            del STATE.rank_crashes[tid]
            if now is None or tid in ended:  # not a trial Tune retries meanwhile
                output.drop_empty_crashes_in(path)
                STATE.swept.add(tid)


def _sweep_orphans() -> None:
    from hpoc.runtime import orphans

    STATE.sweep_at = time.monotonic() + ORPHAN_SWEEP_S
    try:
        orphans.release()  # a trial Tune ended left its workers' group reserved
    except Exception:  # noqa: BLE001 - the GCS is going away; the next look retries
        pass


def _trial_started(trial: Any) -> None:
    from hpoc.runtime import resume

    if trial.trial_id in STATE.start_over:  # --retry-errored: before Ray restores it
        STATE.start_over.discard(trial.trial_id)
        rerun.start_over(trial)
    mended = resume.lost_checkpoint(trial)
    if mended:
        _trial_line(trial, mended)
    resume.push_trial_logs(trial)  # before Ray's loggers copy the storage's back
    clock.TIMES.started(trial)
    mark_started(trial_path(trial))  # `hpoc status`: running, not pending

    # Tune saves the 0 set below with the trial: a later run (the bug fixed, resumed
    # with retry_errored) gives it the plan's retries again.
    if retry.recorded(trial_path(trial), STATE.run) is None:
        trial.max_failures = STATE.max_retries


def _trial_recovered(trial: Any, trials: list[Any]) -> None:
    """Tune retries `trial` after a failure: say so, unless the failure repeats itself."""
    path = trial_path(trial)
    _note_oom(trial)
    error = with_crash(retry.last_failure(getattr(trial, "error_file", None)), path)
    line = STATE.repeats.same_again(trial.trial_id, error, _failed_after(trial), path)
    if line is not None:  # Tune decided before any callback: its queued retry ends it
        retry.record(path, STATE.run, retry.same_way_twice(line))
    if retry.recorded(path, STATE.run) is not None:
        # A deterministic error: the retry Tune has queued fails at once with it
        # (retry.py); none after that (_trial_started restores the plan's
        # retries in a later run). Its "errored" line follows.
        trial.max_failures = 0
        return
    if _storage_full(trial, error):  # its retry would fail the same way, and so would others
        _trial_line(trial, "failed", error=error)
        return
    STATE.retries[trial.trial_id] = STATE.retries.get(trial.trial_id, 0) + 1
    STATE.retrying[trial.trial_id] = error or "failed (no message kept)"
    verdict = _fail_fast_verdict(trial, trials, retried=error or "")  # a small study: no retry
    start = "its last checkpoint" if _has_checkpoint(trial) else "the start"
    _trial_line(trial, "failed" if verdict else f"failed; retrying from {start} "
                       f"(retry {STATE.retries[trial.trial_id]})", error=error)
    _stop_failed(verdict)


def _note_oom(trial: Any) -> None:
    """A one-worker trial's process the OOM killer ended: said so in its error.txt, read
    here while the count is fresh (oom.py)."""
    from hpoc.runtime import oom

    oom.note_trial_kill(getattr(trial, "error_file", None), trial_path(trial))


def _write_live(trials: list[Any]) -> None:
    """The statuses `hpoc status` reads during the run (files.LIVE), when one changed; at
    most every LIVE_EVERY_S (thousands of trials), a change held back going out at a later step."""
    now = time.monotonic()
    if now < STATE.live_at:
        return
    statuses = {t.trial_id: t.status for t in trials}
    if statuses != STATE.live:
        STATE.live, STATE.live_at = statuses, now + LIVE_EVERY_S
        if STATE.run_started is None and STATE.experiment is not None:
            from hpoc.runtime import runlock

            STATE.run_started = runlock.own_start(STATE.experiment)
        write_live(STATE.experiment, STATE.run_started, statuses)


def _make_events(progress: Any = None) -> Any:
    return _events_class()(progress)


def _fail_fast(trial: Any, trials: list[Any]) -> None:
    _stop_failed(_fail_fast_verdict(trial, trials))


def _fail_fast_verdict(trial: Any, trials: list[Any], retried: str | None = None) -> str | None:
    """The fail-fast rule's verdict on a trial that ended, or failed and is to be retried
    (`retried`: its error, "" when none was kept)."""
    if STATE.fail_fast is None or STATE.stopping:
        return None  # after a stop: a trial Tune's clean-up ended
    if retried is not None:
        return STATE.fail_fast.trial_failed(trial, trials, retried)
    return STATE.fail_fast.trial_ended(trial, trials)


def _storage_full(trial: Any, error: str | None) -> bool:
    """`trial` failed for want of room on a disk (full.py): stop the study now, before more
    trials and retries cut more files short. Whether the study stops for that."""
    storage = str(STATE.experiment or trial_path(trial))
    what = full.of_storage(error, storage)
    if what is None:
        return False
    full.forget_error_pickle(trial, trial_path(trial))
    if STATE.stopping:
        return STATE.full is not None
    if not stop_tune(signal.SIGUSR1, None):
        return False
    STATE.full, STATE.full_at = what, full.place(error, storage)
    full.quiet_unhandled()
    STATE.failed = f"trial {trial.trial_id}: " + full.stop_line(what, STATE.full_at)
    say(STATE.stream or sys.stderr, f"[hpoc] stopping the study: {STATE.failed}; "
                                    "not retrying it nor starting other trials")
    return True


def _stop_failed(verdict: str | None) -> None:
    if verdict is not None and stop_tune(signal.SIGUSR1, None):
        STATE.failed = verdict  # said in full, with a hint, once the trials have stopped
        say(STATE.stream or sys.stderr, f"[hpoc] {STATE.fail_fast.headline}")


def stop() -> dict[str, Any] | None:
    """The summary's `stop`: why the study stopped itself as data (STATE.failed is words)."""
    if STATE.failed is None:
        return None
    return {"kind": "disk_full", "at": STATE.full_at} if STATE.full else {"kind": "fail_fast", "at": None}


def tune_stopper() -> Any:
    """Tune's own graceful stop (the handler it installs for SIGUSR1) while it runs, or None."""
    handler = signal.getsignal(signal.SIGUSR1)
    return handler if callable(handler) and getattr(handler, "__name__", "") == "signal_interrupt_tune_run" \
        else None


def stop_tune(signum: int, frame: Any) -> bool:
    """Tune's own graceful stop, when it is running (tune_stopper); whether it was."""
    handler = tune_stopper()
    if handler is not None:
        handler(signum, frame)
    return handler is not None


def _failed_after(trial: Any) -> int:
    """The last report (training iteration) before an attempt of `trial` failed: its own
    last one, or the one its checkpoint holds (restored, last_result is that), or 0. A
    multi-worker trial's checkpoint lies in its Train run: Tune's is None."""
    if clock.TIMES.of(trial.trial_id).reports or _has_checkpoint(trial):
        return int((getattr(trial, "last_result", None) or {}).get("training_iteration") or 0)
    return 0


def _has_checkpoint(trial: Any) -> bool:
    """Whether a retry of `trial` resumes from a checkpoint: Tune's, or that of the trial's
    own Ray Train run (multi-worker trials without a warm group)."""
    if getattr(trial, "checkpoint", None) is not None:
        return True
    if STATE.experiment is None:
        return False
    from hpoc.runtime.trial import train_runs_dir

    return any(train_runs_dir(STATE.experiment).joinpath(trial.trial_id).glob("checkpoint_*"))


def _diverged(trial: Any, result: dict) -> None:
    """Say once that a trial's objective went NaN or inf: `hpoc results` showed it only at
    the end, and without a scheduler the trial trains on to its last epoch."""
    value = result.get(STATE.objective) if STATE.objective else None
    if not isinstance(value, float) or math.isfinite(value) or trial.trial_id in STATE.diverged:
        return
    STATE.diverged.add(trial.trial_id)
    epoch = result.get("epoch", result.get("training_iteration"))
    at = f" at epoch {epoch}" if epoch is not None else ""
    _trial_line(trial, f"diverged: `{STATE.objective}` is {value}{at}; it ranks last (a smaller learning rate?)")


def _trial_line(trial: Any, what: str, error: str | None = None) -> None:
    """`error`: the failure a retry follows (the trial is no longer ERROR by then)."""
    stream = STATE.stream or sys.stderr
    if error is None and trial.status == "ERROR":
        error = summary_mod.trial_error(trial)
    detail = f": {summary_mod.error_at(error)}" if error else ""
    where = trial_path(trial)
    hint = f" (details: {where}/error.txt)" if error and where else ""
    said = summary_mod.error_help(error) if error else None  # "install it", not in error.txt only
    hint += f"\n  help: {said}" if said else ""
    say(stream, f"[hpoc] trial {trial.trial_id}{_searched(trial)} {what}{detail}{hint}")


def _searched(trial: Any) -> str:
    """` (lr=0.1, batch_size=64)`: the values searched for this trial, so that an error
    that comes with some values only is seen at once."""
    from hpoc.plan.space import flatten

    flat = flatten(getattr(trial, "config", None) or {})
    shown = [f"{name}={_short(flat[name])}" for name in STATE.params if name in flat]
    return f" ({', '.join(shown)})" if shown else ""


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


class _Relabelled:
    """A trial seen through another status."""

    def __init__(self, trial: Any, status: str) -> None:
        self._trial, self.status = trial, status

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)
