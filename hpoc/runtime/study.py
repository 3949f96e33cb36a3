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

Fail fast (failfast.py): when the first trials to end (in a small study: every trial, at
its first failure) all failed the same way, the study stops as on a signal, with exit 1.

Exit codes: 0 done (some trial succeeded), 1 every trial failed, none gave a finite
objective, the study failed fast, or an internal error,
2 a problem with the spec, its code or data, 75 stopped by a signal (resumable),
128 + the signal's number when one came before any trial started (130 for Ctrl-C), or as
the driver started (early.py: caught from the first line of `python -m hpoc.runtime`).

The parts: exits.py (exit codes), prior.py (what an earlier run left), watch.py (the Tune
callbacks and the state they share with the driver), tuner.py (the Tuner), signals.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hpoc.plan import plan_hash
from hpoc.runtime import clock, compact, deepspeed_ops, failfast, full, hooks, lean, marker, rerun, runlock
from hpoc.runtime import progress, walltime, watch, whole_upload
from hpoc.runtime import summary as summary_mod
from hpoc.runtime.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_PROGRESS, Interrupted, StudyError, say
from hpoc.runtime.exits import EXIT_OK, EXIT_SPEC  # noqa: F401 - callers read every exit code here
from hpoc.runtime.prior import move_aside, prior_run, refuse_synch_population, take_lock
from hpoc.runtime.shards import experiment_dir, missing_shard, trials_of_shard
from hpoc.runtime.signals import install_signals, restore_signals, stopped_line
from hpoc.runtime.tuner import budget_left, build_tuner, make_trainable
from hpoc.runtime.watch import STATE, _as_seen, _budget_line

# Ray pickles the callbacks and the trial-name creators into the experiment (tuner.pkl) by
# module and name: a run saved while they lived here resumes only if they are still found here.
from hpoc.runtime.tuner import trial_dirname, trial_name  # noqa: F401
from hpoc.runtime.watch import _make_events, _make_quiet  # noqa: F401

RUN_MIN_FREE_GB = 1 / 16  # on the compute node: refuse a full storage, not a small one


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
        # Tune's TensorBoard logger says "NaN or Inf found in input tensor." of a NaN metric,
        # naming no trial: the summary and `hpoc results` say which trial diverged
        logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)


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
        try:
            return _run(plan, opts, progress_stream, out)
        finally:  # a run that raised left the terminal's live line drawn: its error goes below
            progress.leave(progress_stream)
    except StudyError as exc:
        say(sys.stderr, f"error: {_in_spec_words(plan, str(exc))}")
        return exc.exit_code
    except Interrupted:
        if STATE.before_start:  # the run was not started: an earlier one's state is as it was
            name = signal.Signals(STATE.signal or signal.SIGINT).name
            say(sys.stderr, f"[hpoc] {name} came as the driver started: the run did not start; "
                             "running the same plan again runs the study (resuming what an "
                             "earlier run saved)")
            return 128 + (STATE.signal or signal.SIGINT)
        if STATE.mode in ("restore", "retry"):
            say(sys.stderr, "[hpoc] interrupted before the trials restarted; run the same "
                             "plan again to resume")
            return EXIT_INTERRUPTED
        # The study still has all to do: a job cancelled while starting must be submitted again.
        say(sys.stderr, "[hpoc] interrupted before any trial started; nothing to resume: running "
                         "the same plan again starts the study")
        return 128 + (STATE.signal or signal.SIGINT)


def _run(plan: dict[str, Any], opts: RunOptions, stream: TextIO, out: TextIO) -> int:
    started = time.monotonic()
    STATE.__init__()
    watch.begin(plan, stream)
    shard = opts.shard
    if missing := missing_shard(plan, shard):
        raise StudyError(missing)
    _require_workdir(plan)
    exp = STATE.experiment = experiment_dir(plan, shard)
    fp = marker.fingerprint(plan, plan_hash(plan))
    _quiet_ray(opts.verbose)
    previous_signals = install_signals()
    lock = runlock.Lock(exp, shard)
    try:
        if STATE.signal is not None:  # it came as the driver started
            raise Interrupted()
        _check_storage(plan, exp, stream, fresh=opts.fresh)
        # One driver per experiment directory, before looking at (or moving) what is there,
        # and before the slow checks: another live run is said at once.
        marker.migrate_legacy(exp)
        take_lock(lock, stream)
        trainer_cls = _check_code(plan, stream)
        mode, previous, seen = _prior(plan, opts, exp, fp, stream)
        if mode == "done":
            say(stream, _done_line(exp, bool(opts.retry_errored), len(STATE.errored)))
            say(out, summary_mod.describe_best(previous, words=(plan.get("source") or {}).get("words")))
            return summary_mod.exit_code(previous)
        # in a list _tune empties: the driver holds no copy of it beside Ray's while trials run
        data = [_load_data(plan, trainer_cls, stream)]
        room, tensors = _require_memory(plan, data[0], opts)
        ray_session = _start_ray(plan, opts)
        try:
            # ray.init replaced the SIGTERM handler (in Python, and with its C++ failure
            # handler, which aborts the process): take the stop signals back.
            install_signals()
            if STATE.signal is not None:
                raise Interrupted()
            if ray_session.neighbours:
                say(stream, _sharing_line(ray_session.neighbours))
            _check_capacity(plan, ray_session)
            if room is not None:
                _warn_concurrent(plan, tensors, room, stream, _trials_left(plan, opts), opts.shard,
                                 _errored_rerun(plan, opts))
            if building := deepspeed_ops.build_line(plan):
                say(stream, building)
            if mode == "aside":  # only now: a getter, a Ray or a trial too big for it leaves the earlier run
                move_aside(exp, stream, lock)
                mode = STATE.mode = "fresh"
            return _tune(plan, opts, ray_session, data, exp, seen, mode, started, stream, out)
        finally:
            ray_session.close()
            watch.sweep_rank_crashes()  # what ranks Ray ended at the end left (its workers gone)
    finally:
        lock.release()
        restore_signals(previous_signals)


def _check_capacity(plan: dict[str, Any], ray_session: Any) -> None:
    """One trial must fit on the Ray cluster, or the study would wait for ever."""
    import ray

    from hpoc.runtime import session

    try:
        session.check_capacity(plan, ray.nodes(), "this machine" if ray_session.local else "the cluster")
    except session.SessionError as exc:
        raise StudyError(str(exc), exc.exit_code) from None


def _require_workdir(plan: dict[str, Any]) -> None:
    from hpoc.runtime.pipeline import workdir_gone

    if (why := workdir_gone(plan)) is not None:
        raise StudyError(why)


def _check_storage(plan: dict[str, Any], exp: Path, stream: TextIO, fresh: bool = False) -> None:
    """A storage that cannot take the results, or the study's files (free inodes, the user's
    quota): here, not as a traceback from Tune once the cluster is up, nor a stop midway.
    `fresh`: `exp` is moved aside, its trials written anew."""
    from hpoc.runtime import quota
    from hpoc.runtime.login_preflight import free_gb_needed, storage_problem

    problem = (storage_problem(plan["storage"]["path"], min_free_gb=RUN_MIN_FREE_GB)
               or _not_a_directory(exp, Path(plan["storage"]["path"])))
    if problem:
        raise StudyError(problem)
    problem, tight = quota.check(plan, free_gb_needed(RUN_MIN_FREE_GB), fresh=exp if fresh else None)
    if problem:
        raise StudyError(problem)
    for line in tight:
        say(stream, f"[hpoc] warning: {line}")


def _check_code(plan: dict[str, Any], stream: TextIO) -> Any:
    """Everything about the spec's code, before Ray: the steps import, the search and
    logger libraries are installed (and an MLflow server answers), torch can use the GPUs
    asked for. Returns the trainer class."""
    from hpoc.runtime import gpus, pipeline, search, space

    try:
        trainer_cls = pipeline.check_imports(plan).get("trainer")
        for line in hooks.trainer_warnings(trainer_cls, plan):
            say(stream, f"[hpoc] warning: trainer: {line}")
        search.require_search(plan)
        search.make_scheduler(plan)
    except (pipeline.PipelineError, search.SearchError, space.SpaceError) as exc:
        raise StudyError(str(exc)) from None
    cpu_torch = gpus.build_problem(float(plan["resources"]["gpus_per_worker"] or 0))
    if cpu_torch:
        raise StudyError(cpu_torch)
    tracking = _tracking()
    missing = tracking and (tracking.missing_libraries(plan) or tracking.unreachable_server(plan))
    if missing:
        raise StudyError(missing)
    return trainer_cls


def _prior(plan: dict[str, Any], opts: RunOptions, exp: Path, fp: dict[str, Any],
           stream: TextIO) -> tuple[str, Any, marker.Seen]:
    """(mode, summary.json's content, the marker as this run starts from it) by what an
    earlier run left (prior.py); summary.json, the marker and Ray's saved state each read
    once, for prior_run and the restore. A run that starts a new Tuner ("fresh", "aside":
    once moved aside) starts over whatever the marker said: its own is written as new."""
    previous = summary_mod.read(exp)
    STATE.errored, STATE.saved_ended = rerun.errored_and_ended(exp, previous)
    seen = marker.Seen(marker.here(marker.read(exp), fp, exp), fp)  # moved since: as if it ran here
    mode = STATE.mode = prior_run(exp, fp, opts.fresh, bool(plan["resume"]["enabled"]),
                                  stream, opts.retry_errored, STATE.errored, previous,
                                  recorded=seen.recorded)
    if mode in ("restore", "retry"):
        full.prune_states(exp)  # prior_run found the newest whole: the older ones are unread
        refuse_synch_population(plan, exp)
        if (grown := seen.grown) is not None:
            from hpoc.runtime.extend import refuse_population

            refuse_population(plan, exp, grown)
    return mode, previous, seen.started_over() if mode in ("fresh", "aside") else seen


def _done_line(exp: Path, retry_errored: bool, errored: int) -> str:
    """A finished study is not run again. Fixed the trainer after some trials failed?
    --retry-errored trains them again."""
    return f"[hpoc] this study already ran to the end in {exp} " + (
        "with no errored trial: nothing to retry" if retry_errored else
        f"with {errored} errored trial(s); a finished study does not retry them: pass "
        "--retry-errored to run only those again (after fixing what failed), or --fresh "
        "to run every trial again" if errored else "(pass --fresh to run it again)")


def _load_data(plan: dict[str, Any], trainer_cls: Any, stream: TextIO) -> Any:
    from hpoc.runtime import pipeline

    loading = _loading_line(plan)
    if loading:  # a getter may take a while, and Ray's start after it too
        say(stream, loading)
    try:
        data = pipeline.load_data(plan)
        pipeline.require_datasets(trainer_cls, data, plan)
    except pipeline.PipelineError as exc:
        raise StudyError(str(exc)) from None
    leak = pipeline.shared_validation(plan, data)
    if leak:
        say(stream, f"[hpoc] warning: {leak}")
    # Ray pickles what this returns for every trial; the views as returned are dropped here
    return compact.for_ray(data, arrays=hooks.batches_splits(trainer_cls),
                           cast=pipeline.model_dtype_cast(trainer_cls))


def _trials_here(opts: RunOptions) -> bool:
    """Whether the trials run on this machine, in this job's memory: a local run, or a
    one-node job (a job's other nodes are not seen from here)."""
    return opts.is_local or os.environ.get("SLURM_JOB_NUM_NODES") == "1"


def _require_memory(plan: dict[str, Any], data: Any, opts: RunOptions) -> tuple[Any, int]:
    """Data that one trial's copies cannot fit in memory: said now, not by the OOM killer.
    Returns the memory left (memlimit.Room; None when unknown): here, or for trials on
    several nodes one node's limit, empty (its usage is not seen from here, so it says no
    more than whether a trial's share of a node can fit at all); and the bytes of torch
    tensors each worker copies (the data walked once)."""
    from hpoc.runtime import datamem

    room = datamem.available_memory() if _trials_here(opts) else datamem.node_memory(plan)
    if room is None or data is None:
        return None, 0
    walked = datamem.sizes(data)
    if why := datamem.too_big(plan, walked, room):
        raise StudyError(why)
    return room, walked[1]


def _trials_left(plan: dict[str, Any], opts: RunOptions) -> int:
    """The most trials this run starts (after `_prior`): a job array's task its shard's, not
    the study's; a resumed run those its earlier run did not end, and the errored ones when
    it retries them; a finished run's retry its errored trials alone."""
    if STATE.mode == "retry":
        return len(STATE.errored)
    total = trials_of_shard(plan, opts.shard)
    if STATE.mode != "restore":
        return total
    return max(0, total - STATE.saved_ended) + _errored_rerun(plan, opts)


def _errored_rerun(plan: dict[str, Any], opts: RunOptions) -> int:
    """The errored trials this run starts again (after `_prior`): Tune restores them all at
    once, beside what the search asks for."""
    retried = bool(opts.retry_errored or plan["resume"].get("retry_errored"))
    return len(STATE.errored) if STATE.mode == "retry" or (STATE.mode == "restore" and retried) else 0


def _warn_concurrent(plan: dict[str, Any], tensors: int, room: Any, stream: TextIO, left: int,
                     shard: int = 0, restored: int = 0) -> None:
    """Trials that would run at once here, or on a job's nodes, whose copies of the data
    (`tensors` bytes a worker) do not all fit (`datamem.crowded`): a warning naming how many
    fit, and the setting that caps them.
    Not a refusal (fewer at once fit) nor a cap of hpoc's own: the copies are a lower bound
    of a trial's memory (its model and batches come on top), and `max_concurrent` shapes
    the search. `left`: the trials this run may start (`_trials_left`); at once, no more
    than the search lets run (`search.search_cap`) and, under a shared Optuna budget, than
    the journal leaves the shard (read only when there would be a warning). `restored`: the
    errored trials it starts again (`_errored_rerun`)."""
    import ray

    from hpoc.runtime import datamem, search, session, shards

    nodes = ray.nodes()
    slots = session.worker_slots(plan, nodes)
    cap = search.search_cap(plan, STATE.saved_ended if STATE.mode == "restore" else 0, shard) or 10**9
    if not plan["trials"]["max_concurrent"]:  # a searcher's own cap: restored trials are not held to it
        cap += restored
    at_once = min(session.trials_at_once(plan, nodes), left, cap)
    said = datamem.crowded(plan, tensors, room, at_once, slots)
    if said and (open_ := shards.budget_open(plan, shard)) is not None:
        said = datamem.crowded(plan, tensors, room, min(at_once, open_ + restored), slots)
    if said:
        say(stream, "[hpoc] warning: " + _in_spec_words(plan, said))


def _start_ray(plan: dict[str, Any], opts: RunOptions) -> Any:
    """A local Ray, or the job's cluster; a signal meanwhile is acted on once it is up."""
    from hpoc.runtime import session

    workdir = plan["source"]["workdir"]
    STATE.defer = True
    try:
        if opts.is_local:
            return session.start_local(workdir=workdir, num_cpus=opts.num_cpus,
                                       num_gpus=opts.num_gpus, verbose=opts.verbose)
        return session.connect_cluster(os.environ["RAY_ADDRESS"], workdir=workdir,
                                       verbose=opts.verbose)
    except session.SessionError as exc:
        raise StudyError(str(exc), exc.exit_code) from None
    finally:
        STATE.defer = False


def _sharing_line(others: list[dict[str, Any]]) -> str:
    """Other local runs of this user share this machine's cores with this one: each gave
    its Ray as many as it was told, the machine's unless --cpus said fewer."""
    from hpoc.runtime.session import local_cpus

    slots = [o.get("cpus") for o in others]
    taken = (f"; {sum(slots)} CPU slot(s) between them" if all(isinstance(n, int) for n in slots)
             else "")  # runs of an older hpoc did not record theirs
    pids = ", ".join(str(o["pid"]) for o in others)
    return (f"[hpoc] warning: {len(others)} other local run(s) of yours share this machine's "
            f"{local_cpus()} core(s) (pid {pids}{taken}): trials run slower; `--cpus N` gives "
            "a run fewer slots")


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


def _tune(plan: dict[str, Any], opts: RunOptions, ray_session: Any, loaded: list[Any], exp: Path,
          seen: marker.Seen, mode: str, started: float, stream: TextIO, out: TextIO) -> int:
    import ray

    from hpoc.runtime import pipeline, search, session, space

    data = loaded.pop()
    try:
        data_ref = ray.put(data)
    except TypeError as exc:  # Ray pickles the splits to share them with every trial
        raise StudyError(pipeline.unshareable(plan, data, exc)) from None
    del data
    tracking = _tracking()
    if tracking and plan.get("loggers"):  # a study moved since: MLflow's artifact paths with it
        from hpoc.runtime.mlflow_moved import repoint_seen

        repoint_seen(plan, seen, exp)
    parent_run = tracking.start_study_tracking(plan, opts.shard) if tracking and plan.get("loggers") else None
    trainable = make_trainable(plan, data_ref, exp, opts.shard, parent_run, STATE.run)
    lean.skip_callback_tag()  # Tune's usage tag imports MLflow, for statistics that are off
    try:
        tuner, total = build_tuner(plan, trainable, exp, opts.shard, mode, stream, opts.retry_errored,
                                   seen=seen)
    except (search.SearchError, space.SpaceError) as exc:
        raise StudyError(str(exc)) from None
    marker.write(exp, seen.fp, opts.shard, previous=seen.recorded)
    clock.TIMES = clock.TrialTimes(plan["trials"].get("time_limit_s"))  # this run's
    metrics = plan["objective"]["metrics"]
    STATE.fail_fast = failfast.FailFast(plan["failure"].get("fail_fast", failfast.DEFAULT), total,
                                         metrics[0]["name"] if metrics else None,
                                         opts.shard if plan["shards"]["count"] > 1 else None)
    where_to = f"{'local Ray' if ray_session.local else ray_session.address}"
    say(stream, f"[hpoc] study `{plan['study']['name']}` shard {opts.shard}: {total} trial(s) "
                 f"on {where_to}; results in {exp}")
    fit_started = time.monotonic()
    grid = _fit(tuner, plan, ray_session)
    whole_upload.ended()  # Tune's last save left the state held back: said however briefly
    trials = STATE.trials or _trials_from_grid(grid)
    trials, interrupted = _as_seen(trials)
    budget = plan["trials"]["time_budget_s"]
    # Ray's count spans resumed runs (tuner.budget_left): a resumed run may reach it sooner.
    left = budget_left(exp) if budget and not interrupted else None
    budget_reached = bool(budget) and not interrupted and (
        left <= 0 if left is not None else time.monotonic() - fit_started >= budget)
    cut_short = watch.retry_failures(interrupted)
    if budget_reached:
        say(stream, _budget_line(budget, total, trials, len(cut_short)))
    result = summary_mod.build(plan, opts.shard, trials, wall_s=time.monotonic() - started,
                               interrupted=interrupted, experiment_dir=exp, plan_hash=seen.fp["plan_hash"],
                               run_started=runlock.own_start(exp), stopped=STATE.failed,
                               cut_short=cut_short, budget_reached=budget_reached,
                               time_budget_s=budget, planned=total,
                               signal_name=signal.Signals(STATE.signal).name if STATE.signal else None,
                               stop=watch.stop())
    if parent_run:
        status = "FAILED" if STATE.failed or (not interrupted and summary_mod.exit_code(result)) \
            else "KILLED" if interrupted else "FINISHED"
        tracking.end_study_tracking(plan, parent_run, status, opts.shard)
    path = _write_summary(result, exp, stream)
    if result.get("search_ended"):
        say(stream, f"[hpoc] {summary_mod.search_ended(result)}")
    say(out, summary_mod.describe_best(result, budget if budget_reached else None, total,
                                       (plan.get("source") or {}).get("words")))
    if path is not None:
        say(out, f"summary: {path}")
    elif not STATE.failed:  # the disk filled as the run ended: its trials are saved, not the summary
        say(stream, full.hint(str(exp), "run the same command again: it writes the summary"))
        return EXIT_FAILED
    if STATE.failed:
        after = (full.after_stop(str(exp), STATE.full_at or str(exp), full.run_again(plan)) if STATE.full
                 else failfast.hint(plan, STATE.fail_fast.error))
        say(stream, f"[hpoc] stopped: {STATE.failed}\n{after}")
        return EXIT_FAILED
    if interrupted and STATE.signal == signal.SIGUSR2:  # the walltime: the job requeues
        idle = walltime.after_stop(exp, clock.TIMES.reported_any)
        if idle >= walltime.MAX_IDLE_RUNS:
            say(stream, walltime.message(idle))
            return EXIT_NO_PROGRESS
    if interrupted:
        say(stream, stopped_line(STATE.signal))
        return EXIT_INTERRUPTED
    return summary_mod.exit_code(result)


def _write_summary(result: dict[str, Any], exp: Path, stream: TextIO) -> Path | None:
    """summary.json, or None (said in one line) where a full disk or a quota refused it: the
    run's trials are saved already, and the summary of an earlier run stays as it was."""
    try:
        return summary_mod.write(result, exp)
    except OSError as exc:
        what = full.of_exception(exc)
        if what is None:
            raise
        say(stream, f"[hpoc] could not write {exp / summary_mod.SUMMARY}: {full.stop_line(what, str(exp))}")
        return None


def _fit(tuner: Any, plan: dict[str, Any], ray_session: Any) -> Any:
    """Tune's fit; a full disk that failed Tune itself is a StudyError naming the full place,
    not a traceback that reads as a bug of hpoc or the trainer."""
    from hpoc.runtime import session

    try:
        return tuner.fit()
    except Exception as exc:
        temp = os.path.dirname(ray_session.temp_dir) if ray_session.temp_dir else None
        room = session.no_room(exc, {"the run's temp dir in": temp,
                                     "the storage": plan["storage"]["path"]})
        if room is None:
            raise
        raise StudyError(
            f"{room.replace(': ', ' while the study ran: ', 1)}\n  help: free some space "
            "(Ray's logs, with what the trials print, are kept in the temp dir while it runs; "
            "`HPOC_TMP` moves that), then run the same plan again to resume", EXIT_FAILED) from None


def _tracking() -> Any:
    try:
        from hpoc.runtime import tracking
    except ImportError:  # tracking not part of this installation
        return None
    return tracking


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
