"""The driver: run one shard of a study from its plan.

    code = run_study(plan, RunOptions(shard=0, local=True))

Order matters for users: everything that can be wrong in the spec's code (pipeline imports,
search libraries, the data itself) is checked in this process before Ray starts, so mistakes
are one clear message instead of a traceback from a remote worker. Then Ray (local or the
job's cluster), a capacity check, the Tuner, live progress, and `summary.json`.

Stopping: SIGUSR2 or SIGTERM (sent by the job script before the walltime or on preemption),
SIGHUP (the terminal closed) or Ctrl-C ends the run gracefully: trials stop, their
checkpoints stay, the experiment state is saved. Running the same plan again resumes it
(`Tuner.restore` on the same storage path and name); a finished run is not repeated unless
`fresh` is set.

Fail fast (failfast.py): when the first trials to end all failed the same way, the study
stops as on a signal, with exit 1.

Exit codes: 0 done (some trial succeeded), 1 every trial failed, none gave a finite
objective, the study failed fast, or an internal error,
2 a problem with the spec, its code or data, 75 stopped by a signal (resumable),
128 + the signal's number when one came before any trial started (130 for Ctrl-C).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hpoc.files import trial_path
from hpoc.plan import plan_hash
from hpoc.runtime import clock, failfast, hooks, marker, rerun, retry, runlock, stall
from hpoc.runtime import summary as summary_mod
from hpoc.runtime.shards import experiment_dir

EXIT_OK, EXIT_FAILED, EXIT_SPEC, EXIT_INTERRUPTED = 0, 1, 2, 75
RUN_MIN_FREE_GB = 1 / 16  # on the compute node: refuse a full storage, not a small one
_STOP_SIGNALS = ("SIGTERM", "SIGUSR2", "SIGINT", "SIGHUP")


class StudyError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_SPEC) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    shard: int = 0
    local: bool | None = None        # None: local unless RAY_ADDRESS is set
    num_cpus: int | None = None      # local only: CPU slots Ray may use (default: this machine's)
    num_gpus: int | None = None      # local only: GPUs (default: those present)
    fresh: bool = False              # move a previous run of this shard aside and start over
    retry_errored: str | None = None  # rerun.SCRATCH/CHECKPOINT: run the errored trials again
    verbose: bool = False            # Ray's own logs and the workers' output on the terminal
    progress: TextIO | None = None   # progress lines (default stderr)
    out: TextIO | None = None        # the final report (default stdout)

    @property
    def is_local(self) -> bool:
        return self.local if self.local is not None else not os.environ.get("RAY_ADDRESS")


@dataclass
class _State:
    """What the signal handler and the Tune callbacks share with the driver (module-level so
    callbacks restored from a pickled experiment find the current run)."""

    signal: int | None = None
    trials: list[Any] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # trials that completed or errored
    stream: TextIO | None = None
    retries: dict[str, int] = field(default_factory=dict)
    mode: str = "fresh"       # what _prior_run decided
    defer: bool = False       # inside ray.init: note a signal, act on it once init returns
    params: list[str] = field(default_factory=list)  # searched names: an error line shows them
    run: str = field(default_factory=lambda: uuid.uuid4().hex)  # this `hpoc run` (retry.py)
    max_retries: int = 0      # the plan's; a trial restored from an earlier run may hold 0
    sweep_at: float | None = None  # next look for orphaned placement groups (orphans.py)
    experiment: Path | None = None  # the experiment directory (Train runs' checkpoints)
    start_over: set[str] = field(default_factory=set)  # errored trials retried from scratch
    errored: dict[str, Path] = field(default_factory=dict)  # rerun.errored, read at start-up
    fail_fast: failfast.FailFast | None = None
    failed: str | None = None  # why the study stopped itself (failfast.py)
    repeats: retry.Repeats = field(default_factory=retry.Repeats)  # failed the same way twice

    @property
    def stopping(self) -> bool:
        return self.signal is not None or self.failed is not None


_STATE = _State()
ORPHAN_SWEEP_S = 2.0


class Interrupted(BaseException):
    """A stop signal before the trials started. Not an Exception, so that no `except
    Exception` on its way (the getter's, Ray's) reports it as a failure."""


def _say(stream: TextIO, text: str) -> None:
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- prior runs


def _prior_run(exp: Path, fp: dict[str, Any], fresh: bool, resume_enabled: bool,
               stream: TextIO, lock: runlock.Lock | None = None, retry: str | None = None,
               errored: dict[str, Path] | None = None) -> str:
    """"fresh", "restore", "retry" (a finished run's errored trials) or "done" for an
    experiment directory (whose `lock` this run holds, so a live run is never moved aside);
    `errored` is rerun.errored(exp)."""
    from ray.tune import Tuner

    if retry and fresh:
        raise StudyError(rerun.WITH_FRESH)
    recorded = marker.read(exp) if exp.exists() else None
    has_state = exp.exists() and Tuner.can_restore(str(exp))
    if not has_state and recorded is None:
        if retry:
            raise StudyError(f"--retry-errored: {exp} holds no earlier run of this study, so no "
                             "errored trial to run again\n  help: run the study without "
                             "--retry-errored (or HPOC_RETRY_ERRORED) first")
        return "fresh"
    if fresh:
        aside = exp.with_name(f"{exp.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
        exp.rename(aside)
        _say(stream, f"[hpoc] moved the previous run to {aside}")
        if lock is not None:  # it went aside with the directory
            (aside / runlock.LOCK).unlink(missing_ok=True)
            _lock(lock, stream)
        return "fresh"
    parts = marker.differences(recorded, fp) if recorded is not None else None
    if parts is not None:
        raise StudyError(marker.describe(exp, recorded, fp, parts) + "\n  help: undo that "
                         "change to resume, change `storage.name`, or pass --fresh to move the "
                         "old run aside")
    if summary_mod.finished_run(exp, recorded, fp["plan_hash"]) is not None:
        return "retry" if retry and errored else "done"
    if not has_state:
        return "fresh"
    if not resume_enabled:
        raise StudyError(f"{exp} holds an unfinished run and resume is disabled in the study\n"
                         "  help: pass --fresh to move it aside and start over")
    return "restore"


def _refuse_synch_population(plan: dict[str, Any], exp: Path) -> None:
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


def _lock(lock: runlock.Lock, stream: TextIO) -> None:
    try:
        lock.acquire(lambda line: _say(stream, line))
    except runlock.Busy as exc:
        raise StudyError(str(exc)) from None


# ---------------------------------------------------------------- Tune pieces


def trial_index(trial: Any) -> int:
    """0-based creation order of a trial in this shard (Tune's experiment tag starts with it;
    trials from searchers have random ids, so the id cannot tell)."""
    from hpoc.runtime.space import TRIAL_KEY

    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    if TRIAL_KEY in (getattr(trial, "config", None) or {}):
        # space.fixed_trials: Tune's BasicVariantGenerator counts from 0 (a searcher from 1).
        # Not the key's value: PBT copies a donor's whole config, that key included.
        return int(head) if head.isdigit() else 0
    return int(head) - 1 if head.isdigit() and int(head) > 0 else 0


def trial_name(trial: Any) -> str:
    return f"t{trial_index(trial):05d}_{trial.trial_id}"


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial_index(trial):05d}_{trial.trial_id}"


def _callbacks(plan: dict[str, Any], total: int, stream: TextIO) -> list[Any]:
    from ray import tune

    from hpoc.runtime.progress import Progress, tune_callback

    metric = (plan["objective"]["metrics"] or [{"name": None, "mode": "min"}])[0]
    progress = Progress(total=total, metric=metric["name"], mode=metric["mode"], stream=stream)
    _STATE.stream = stream
    _STATE.params = [p["name"] for p in plan["space"]["params"]]
    _STATE.max_retries = plan["failure"]["max_retries"] or 0
    if plan["resources"]["workers"] > 1:  # trials of Ray Train runs (and warm groups)
        _STATE.sweep_at = 0.0

    return [tune_callback(progress, _as_seen), _make_events(progress), _make_quiet()]


def _is_generator(searcher: Any) -> bool:
    from ray.tune.search import BasicVariantGenerator

    return isinstance(searcher, BasicVariantGenerator)


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
    TERMINATED; they will resume, so they are PAUSED (PENDING if they never reported)."""
    if not _STATE.stopping:
        return trials, False
    return [t if t.trial_id in _STATE.ended or t.status == "ERROR" else
            _Relabelled(t, "PAUSED" if _reported(t) else "PENDING") for t in trials], True


def _budget_line(budget: float, total: int, trials: list[Any]) -> str:
    """Tune ends the whole experiment at the budget: running trials stop where they are,
    and trials it never created or that never reported count as not reported."""
    silent = max(total - len(trials), 0) + sum(not _reported(t) for t in trials)
    return (f"[hpoc] time budget of {budget:g} s reached: trials still running were stopped "
            f"where they were; {silent} of {total} trial(s) never reported")


def _reported(trial: Any) -> bool:
    """Whether a trial reported once: Ray's `last_result` is never empty (before the first
    report it holds the trial id and auto-filled keys); every report has an iteration."""
    return "training_iteration" in (trial.last_result or {})


@functools.lru_cache(maxsize=1)
def _events_class() -> type:
    from ray import tune

    class Events(tune.Callback):
        """Trial errors and retries as one line each; keeps the Trial objects for the summary.

        State lives in the module's `_STATE`, so an instance restored from a pickled
        experiment (Tuner.restore) reports into the current run."""

        def __init__(self, progress: Any = None) -> None:
            self.progress = progress

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            _STATE.trials = trials
            if not _STATE.stopping:  # finished before this run (restored) or during it;
                # after a stop Tune marks the trials it stops TERMINATED too (_as_seen)
                _STATE.ended.update(t.trial_id for t in trials if t.status == "TERMINATED")
                for trial, quiet_s, longest in stall.quiet(clock.TIMES, trials):
                    _say(_STATE.stream or sys.stderr, f"[hpoc] trial {trial.trial_id}{_searched(trial)} "
                                                      f"{stall.describe(quiet_s, longest)}")
            if _STATE.sweep_at is not None and time.monotonic() >= _STATE.sweep_at:
                from hpoc.runtime import orphans

                _STATE.sweep_at = time.monotonic() + ORPHAN_SWEEP_S
                try:
                    orphans.release()  # a trial Tune ended left its workers' group reserved
                except Exception:  # noqa: BLE001 - the GCS is going away; the next look retries
                    pass

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _STATE.trials = trials
            _STATE.ended.add(trial.trial_id)
            _trial_line(trial, "errored")
            _fail_fast(trial, trials)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            _STATE.ended.add(trial.trial_id)
            if clock.TIMES.of(trial.trial_id).stopped:
                _trial_line(trial, f"stopped: time limit of {clock.TIMES.limit_s:g} s reached")
            _fail_fast(trial, trials)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            clock.TIMES.reported(trial.trial_id, result)

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            from hpoc.runtime import resume

            if trial.trial_id in _STATE.start_over:  # --retry-errored: before Ray restores it
                _STATE.start_over.discard(trial.trial_id)
                rerun.start_over(trial)
            resume.push_trial_logs(trial)  # before Ray's loggers copy the storage's back
            clock.TIMES.started(trial)

            # Tune saves the 0 set below with the trial: a later run (the bug fixed, resumed
            # with retry_errored) gives it the plan's retries again.
            if retry.recorded(trial_path(trial), _STATE.run) is None:
                trial.max_failures = _STATE.max_retries

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            path = trial_path(trial)
            error = retry.last_failure(getattr(trial, "error_file", None))
            line = _STATE.repeats.same_again(trial.trial_id, error, _failed_after(trial), path)
            if line is not None:  # Tune decided before any callback: its queued retry ends it
                retry.record(path, _STATE.run, retry.same_way_twice(line))
            if retry.recorded(path, _STATE.run) is not None:
                # A deterministic error: the retry Tune has queued fails at once with it
                # (retry.py); none after that (on_trial_start restores the plan's
                # retries in a later run). Its "errored" line follows.
                trial.max_failures = 0
                return
            _STATE.retries[trial.trial_id] = _STATE.retries.get(trial.trial_id, 0) + 1
            start = "its last checkpoint" if _has_checkpoint(trial) else "the start"
            _trial_line(trial, f"failed; retrying from {start} "
                               f"(retry {_STATE.retries[trial.trial_id]})", error=error)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            _STATE.trials = trials
            if self.progress is not None:
                self.progress.close()

        def __reduce__(self):
            return (_make_events, (self.progress,))

    return Events


def _make_events(progress: Any = None) -> Any:
    return _events_class()(progress)


def _fail_fast(trial: Any, trials: list[Any]) -> None:
    if _STATE.fail_fast is None or _STATE.stopping:
        return  # after a stop: a trial Tune's clean-up ended
    verdict = _STATE.fail_fast.trial_ended(trial, trials)
    if verdict is not None and _stop_tune(signal.SIGUSR1, None):
        _STATE.failed = verdict  # said in full, with a hint, once the trials have stopped
        _say(_STATE.stream or sys.stderr, "[hpoc] stopping the study: its first trials all "
                                          "failed the same way")


def _stop_tune(signum: int, frame: Any) -> bool:
    """Tune's own graceful stop (the handler it installs for SIGUSR1), when it is running."""
    tune_handler = signal.getsignal(signal.SIGUSR1)
    if callable(tune_handler) and getattr(tune_handler, "__name__", "") == "signal_interrupt_tune_run":
        tune_handler(signum, frame)
        return True
    return False


def _failed_after(trial: Any) -> int:
    """The last report (training iteration) before an attempt of `trial` failed: its own
    last one, or the one its checkpoint holds (restored, last_result is that), or 0."""
    if clock.TIMES.of(trial.trial_id).reports or getattr(trial, "checkpoint", None) is not None:
        return int((getattr(trial, "last_result", None) or {}).get("training_iteration") or 0)
    return 0


def _has_checkpoint(trial: Any) -> bool:
    """Whether a retry of `trial` resumes from a checkpoint: Tune's, or that of the trial's
    own Ray Train run (multi-worker trials without a warm group)."""
    if getattr(trial, "checkpoint", None) is not None:
        return True
    if _STATE.experiment is None:
        return False
    from hpoc.runtime.trial import train_runs_dir

    return any(train_runs_dir(_STATE.experiment).joinpath(trial.trial_id).glob("checkpoint_*"))


def _trial_line(trial: Any, what: str, error: str | None = None) -> None:
    """`error`: the failure a retry follows (the trial is no longer ERROR by then)."""
    stream = _STATE.stream or sys.stderr
    if error is None and trial.status == "ERROR":
        error = summary_mod.trial_error(trial)
    detail = ""
    if error:
        line, at = summary_mod.error_line(error), summary_mod.error_where(error)
        detail = f": {line}" + (f" at {at}" if at and at not in line else "")
    where = trial_path(trial)
    hint = f" (details: {where}/error.txt)" if error and where else ""
    _say(stream, f"[hpoc] trial {trial.trial_id}{_searched(trial)} {what}{detail}{hint}")


def _searched(trial: Any) -> str:
    """` (lr=0.1, batch_size=64)`: the values searched for this trial, so that an error
    that comes with some values only is seen at once."""
    from hpoc.plan.space import flatten

    flat = flatten(getattr(trial, "config", None) or {})
    shown = [f"{name}={_short(flat[name])}" for name in _STATE.params if name in flat]
    return f" ({', '.join(shown)})" if shown else ""


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def make_trainable(plan: dict[str, Any], data_ref: Any, exp: Path, shard: int,
                   parent_run_id: str | None = None, run: str | None = None) -> Any:
    from ray import tune

    from hpoc.runtime import pool
    from hpoc.runtime.session import DRIVER_CPU
    from hpoc.runtime.trial import tune_trial

    res = plan["resources"]
    trainable = tune.with_parameters(tune_trial, plan=plan, data_ref=[data_ref],
                                     experiment_dir=str(exp), shard=shard,
                                     parent_run_id=parent_run_id, run=run)
    if res["workers"] == 1:
        resources = {"CPU": float(res["cpus_per_worker"])}
        if res["gpus_per_worker"]:
            resources["GPU"] = float(res["gpus_per_worker"])
    elif pool.enabled(plan):
        resources = pool.placement(plan, DRIVER_CPU)  # driver + warm workers, reserved together
    else:
        resources = {"CPU": DRIVER_CPU}  # the Train workers ask for their own resources
    return tune.with_resources(trainable, resources)


def _tuner(plan: dict[str, Any], trainable: Any, exp: Path, shard: int, mode: str,
           stream: TextIO, verbose: bool = False, retry: str | None = None) -> Any:
    from ray import tune

    from hpoc.runtime import pool
    from hpoc.runtime.resume import mend_cut_logs, prepare_scheduler
    from hpoc.runtime.search import make_scheduler, make_searcher

    searcher, param_space, num_samples = make_searcher(plan, shard)
    if mode in ("restore", "retry"):
        if mode == "restore":
            _say(stream, f"[hpoc] resuming the interrupted run in {exp}")
        retry, _STATE.start_over = rerun.prepare(exp, mode, retry, bool(plan["resume"]["retry_errored"]),
                                                 _STATE.errored, lambda line: _say(stream, line))
        mend_cut_logs(exp)
        # Errored trials are resumed, keeping their ids (a restart would give them new ones,
        # unknown to the searcher); from scratch, on_trial_start drops their checkpoint.
        return tune.Tuner.restore(str(exp), trainable, resume_unfinished=True,
                                  resume_errored=bool(retry),
                                  restart_errored=False,
                                  param_space=param_space or None), num_samples
    trials = plan["trials"]
    ckpt = plan["checkpoint"]
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=prepare_scheduler(make_scheduler(plan), plan),
        num_samples=num_samples,
        # PBT/PB2's generator holds the cap itself (space.fixed_trials).
        max_concurrent_trials=None if _is_generator(searcher) else trials["max_concurrent"],
        time_budget_s=trials["time_budget_s"],
        # A trial stopped at its time limit may still be busy: its process cannot be reused.
        reuse_actors=(plan["resources"]["workers"] == 1 or pool.enabled(plan))
        and not plan["trials"].get("time_limit_s"),
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=str(exp.parent),
        stop=trials["stop"] or None,
        failure_config=tune.FailureConfig(max_failures=plan["failure"]["max_retries"] or 0),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=ckpt["keep"], checkpoint_score_attribute=ckpt["score_attribute"],
            checkpoint_score_order=ckpt["score_order"] or "max"),
        callbacks=_callbacks(plan, num_samples, stream),
        verbose=0,
        log_to_file=not verbose,  # trials' output in their directories, or on the terminal
        # Those files are written in the trial's working directory, a staging folder under
        # the run's temp directory: without this they were removed with it, unread.
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=run_config), num_samples


# ---------------------------------------------------------------- signals


def _install_signals() -> dict[int, Any]:
    """SIGTERM/SIGUSR2/SIGINT -> Tune's own graceful stop (the handler it installs for
    SIGUSR1); a second Ctrl-C stops at once."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        first = _STATE.signal is None
        if not first and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        _STATE.signal = signum
        if _STATE.defer:
            return  # an exception inside ray.init would leave its processes behind
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if callable(tune_handler) and getattr(tune_handler, "__name__", "") == "signal_interrupt_tune_run":
            if first:
                _say(_STATE.stream or sys.stderr,
                     f"[hpoc] {signal.Signals(signum).name}: stopping; checkpoints are kept and "
                     "running the plan again resumes")
                _stop_tune(signum, frame)
            return
        raise Interrupted()

    for name in _STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        try:
            signal.signal(sig, handler)
        except (ValueError, TypeError):
            pass


# ---------------------------------------------------------------- the run


def _quiet_ray(verbose: bool) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no tables; we print our own progress
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    # Ctrl-C goes through our handler too (then to Tune's graceful stop), so that the run
    # knows it was interrupted.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    if not verbose:
        # Trial errors are printed by us, one line each, with the path to the full text.
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _in_spec_words(plan: dict[str, Any], text: str) -> str:
    """An error's settings as the study's file names them: a YAML config says `num_workers`
    and `run_config.name` where a .hpo file says `workers` and `storage.name` (the plan's
    `source.words`; absent in plans compiled before it existed)."""
    from hpoc.plan.words import respell

    return respell(text, (plan.get("source") or {}).get("words"))


def run_study(plan: dict[str, Any], options: RunOptions | None = None) -> int:
    """Run shard `options.shard` of the study; returns the exit code."""
    opts = options or RunOptions()
    progress_stream = opts.progress or sys.stderr
    out = opts.out or sys.stdout
    try:
        return _run(plan, opts, progress_stream, out)
    except StudyError as exc:
        _say(sys.stderr, f"error: {_in_spec_words(plan, str(exc))}")
        return exc.exit_code
    except Interrupted:
        if _STATE.mode in ("restore", "retry"):
            _say(sys.stderr, "[hpoc] interrupted before the trials restarted; run the same "
                             "plan again to resume")
            return EXIT_INTERRUPTED
        _say(sys.stderr, "[hpoc] interrupted before any trial started; nothing to resume")
        return 128 + (_STATE.signal or signal.SIGINT)


def _run(plan: dict[str, Any], opts: RunOptions, stream: TextIO, out: TextIO) -> int:
    from hpoc.runtime import pipeline, search, session, space

    started = time.monotonic()
    _STATE.__init__()
    _STATE.stream = stream
    shard, shards = opts.shard, plan["shards"]["count"]
    if not 0 <= shard < shards:
        raise StudyError(f"shard {shard} does not exist: the study has {shards} shard(s) "
                         f"(0..{shards - 1})")
    exp = _STATE.experiment = experiment_dir(plan, shard)
    fp = marker.fingerprint(plan, plan_hash(plan))
    local = opts.is_local
    _quiet_ray(opts.verbose)
    previous_signals = _install_signals()
    lock = runlock.Lock(exp, shard)
    try:
        # 1. Everything about the spec's code, before Ray.
        try:
            trainer_cls = pipeline.check_imports(plan).get("trainer")
            for line in hooks.near_misses(trainer_cls) if isinstance(trainer_cls, type) else ():
                _say(stream, f"[hpoc] warning: trainer: {line}")
            search.require_search(plan)
            search.make_scheduler(plan)
        except (pipeline.PipelineError, search.SearchError, space.SpaceError) as exc:
            raise StudyError(str(exc)) from None
        tracking = _tracking()
        missing = tracking.missing_libraries(plan) if tracking else None
        if missing:
            raise StudyError(missing)
        from hpoc.runtime.login_preflight import storage_problem

        problem = (storage_problem(plan["storage"]["path"], min_free_gb=RUN_MIN_FREE_GB)
                   or _not_a_directory(exp, Path(plan["storage"]["path"])))
        if problem:  # here, not as a traceback from Tune once the cluster is up
            raise StudyError(problem)
        # One driver per experiment directory, before looking at (or moving) what is there.
        marker.migrate_legacy(exp)
        _lock(lock, stream)
        _STATE.errored = rerun.errored(exp)  # read once, for _prior_run and the restore
        mode = _STATE.mode = _prior_run(exp, fp, opts.fresh, bool(plan["resume"]["enabled"]),
                                        stream, lock, opts.retry_errored, _STATE.errored)
        if mode in ("restore", "retry"):
            _refuse_synch_population(plan, exp)
        if mode == "done":
            previous = summary_mod.read(exp)
            errored = len(_STATE.errored)
            # Fixed the trainer after some trials failed? --retry-errored trains them again.
            _say(stream, f"[hpoc] this study already ran to the end in {exp} " + (
                "with no errored trial: nothing to retry" if opts.retry_errored else
                f"with {errored} errored trial(s); a finished study does not retry them: pass "
                "--retry-errored to run only those again (after fixing what failed), or --fresh "
                "to run every trial again" if errored else "(pass --fresh to run it again)"))
            _say(out, summary_mod.describe_best(previous))
            return summary_mod.exit_code(previous)
        loading = _loading_line(plan)
        if loading:  # a getter may take a while, and Ray's start after it too
            _say(stream, loading)
        try:
            data = pipeline.load_data(plan)
        except pipeline.PipelineError as exc:
            raise StudyError(str(exc)) from None

        # 2. Ray.
        workdir = plan["source"]["workdir"]
        _STATE.defer = True
        try:
            if local:
                ray_session = session.start_local(workdir=workdir, num_cpus=opts.num_cpus,
                                                  num_gpus=opts.num_gpus, verbose=opts.verbose)
            else:
                ray_session = session.connect_cluster(os.environ["RAY_ADDRESS"], workdir=workdir,
                                                      verbose=opts.verbose)
        except session.SessionError as exc:
            raise StudyError(str(exc), exc.exit_code) from None
        finally:
            _STATE.defer = False
        try:
            # ray.init replaced the SIGTERM handler (in Python, and with its C++ failure
            # handler, which aborts the process): take the stop signals back.
            _install_signals()
            if _STATE.signal is not None:
                raise Interrupted()
            return _tune(plan, opts, ray_session, data, exp, fp, mode, started, stream, out)
        finally:
            ray_session.close()
    finally:
        lock.release()
        _restore_signals(previous_signals)


def _not_a_directory(exp: Path, storage: Path) -> str | None:
    """Why the experiment directory cannot be one: it, or a directory between it and the
    storage path, is a file. None when it is (or can be made) a directory."""
    for d in (exp, *exp.parents):
        if d == storage:
            return None
        if d.exists() and not d.is_dir():
            where = "" if d == exp else f": {d}"
            return (f"experiment directory {exp}{where} exists and is not a directory\n"
                    f"  help: move {d} away, or change `storage.name` in the study")
    return None


def _loading_line(plan: dict[str, Any]) -> str | None:
    """`[hpoc] loading data: data:Getter → data:Splitter`, or None without either step."""
    steps = [plan["pipeline"].get(role) for role in ("getter", "splitter")]
    targets = [step["target"] for step in steps if step]
    return f"[hpoc] loading data: {' → '.join(targets)}" if targets else None


def _tune(plan: dict[str, Any], opts: RunOptions, ray_session: Any, data: Any, exp: Path,
          fp: dict[str, Any], mode: str, started: float, stream: TextIO, out: TextIO) -> int:
    import ray

    from hpoc.runtime import pipeline, search, session, space

    where = "this machine" if ray_session.local else "the cluster"
    try:
        session.check_capacity(plan, ray.nodes(), where)
    except session.SessionError as exc:
        raise StudyError(str(exc), exc.exit_code) from None
    try:
        data_ref = ray.put(data)
    except TypeError as exc:  # Ray pickles the splits to share them with every trial
        raise StudyError(pipeline.unshareable(plan, data, exc)) from None
    del data
    tracking = _tracking()
    parent_run = tracking.start_study_tracking(plan) if tracking and plan.get("loggers") else None
    trainable = make_trainable(plan, data_ref, exp, opts.shard, parent_run, _STATE.run)
    try:
        tuner, total = _tuner(plan, trainable, exp, opts.shard, mode, stream, opts.verbose,
                              opts.retry_errored)
    except (search.SearchError, space.SpaceError) as exc:
        raise StudyError(str(exc)) from None
    marker.write(exp, fp, opts.shard, plan["space"])
    clock.TIMES = clock.TrialTimes(plan["trials"].get("time_limit_s"))  # this run's
    metrics = plan["objective"]["metrics"]
    _STATE.fail_fast = failfast.FailFast(plan["failure"].get("fail_fast", failfast.DEFAULT), total,
                                         metrics[0]["name"] if metrics else None)
    where_to = f"{'local Ray' if ray_session.local else ray_session.address}"
    _say(stream, f"[hpoc] study `{plan['study']['name']}` shard {opts.shard}: {total} trial(s) "
                 f"on {where_to}; results in {exp}")
    fit_started = time.monotonic()
    grid = tuner.fit()
    trials = _STATE.trials or _trials_from_grid(grid)
    trials, interrupted = _as_seen(trials)
    budget = plan["trials"]["time_budget_s"]
    budget_reached = bool(budget) and not interrupted and time.monotonic() - fit_started >= budget
    if budget_reached:
        _say(stream, _budget_line(budget, total, trials))
    result = summary_mod.build(plan, opts.shard, trials, wall_s=time.monotonic() - started,
                               interrupted=interrupted, experiment_dir=exp, plan_hash=fp["plan_hash"],
                               run_started=runlock.own_start(exp), stopped=_STATE.failed)
    if parent_run:
        status = "FAILED" if _STATE.failed or (not interrupted and summary_mod.exit_code(result)) \
            else "KILLED" if interrupted else "FINISHED"
        tracking.end_study_tracking(plan, parent_run, status)
    path = summary_mod.write(result, exp)
    _say(out, summary_mod.describe_best(result, budget if budget_reached else None))
    _say(out, f"summary: {path}")
    if _STATE.failed:
        _say(stream, f"[hpoc] stopped: {_STATE.failed}\n{failfast.hint(plan)}")
        return EXIT_FAILED
    if interrupted:
        _say(stream, "[hpoc] stopped by a signal; run the same plan again to resume")
        return EXIT_INTERRUPTED
    return summary_mod.exit_code(result)


def _tracking() -> Any:
    try:
        from hpoc.runtime import tracking
    except ImportError:  # tracking not part of this installation
        return None
    return tracking


class _Relabelled:
    """A trial seen through another status."""

    def __init__(self, trial: Any, status: str) -> None:
        self._trial, self.status = trial, status

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class _GridTrial:
    """Trial-like view of a ResultGrid entry (when no callback saw the trials)."""

    def __init__(self, result: Any) -> None:
        metrics = result.metrics or {}
        self.trial_id = metrics.get("trial_id") or Path(result.path).name
        self.status = "ERROR" if result.error else "TERMINATED"
        self.config = result.config or {}
        self.last_result = metrics
        self.path = result.path
        self.error_file = None
        self.error_msg = str(result.error) if result.error else None


def _trials_from_grid(grid: Any) -> list[Any]:
    return [_GridTrial(r) for r in grid]
