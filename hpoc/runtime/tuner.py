"""The Ray Tune Tuner of a run: the trainable with the resources of one trial, the trials'
names, and a new Tuner or one restored from the experiment directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from hpoc.runtime import marker, rerun
from hpoc.runtime.exits import say
from hpoc.runtime.watch import STATE, watch_callbacks


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


def _is_generator(searcher: Any) -> bool:
    from ray.tune.search import BasicVariantGenerator

    return isinstance(searcher, BasicVariantGenerator)


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


def taken_over(exp: Path) -> str:
    """What a resumed run takes over, by the experiment state Ray saved last: a requeued or
    resubmitted job said "resuming" and no more, so nothing told that finished trials were
    kept and the unfinished ones went on from their checkpoints."""
    from hpoc.files import newest_state, saved_trials

    state = newest_state(exp)
    statuses = [t.get("status") for t, _ in (saved_trials(state) if state else [])]
    done, errored = statuses.count("TERMINATED"), statuses.count("ERROR")
    unfinished = len(statuses) - done - errored
    said = [f"{done} finished trial(s) kept"]
    if unfinished:
        said.append(f"{unfinished} unfinished resume(s) from the last checkpoint, if any")
    if errored:
        said.append(f"{errored} errored")
    return "; ".join(said)


def budget_left(exp: Path) -> float | None:
    """Seconds left of `trials.time_budget` by the experiment state Ray saved last, or None
    (no budget, nothing saved). Ray's TimeoutStopper keeps the count in that state and a
    resumed run restores it, so the budget spans runs: the time queued in between is not
    counted, and a run resumed after the budget ran out ends at once."""
    from hpoc.files import newest_state

    state = newest_state(exp)
    if state is None:
        return None
    try:
        from ray.tune.stopper import TimeoutStopper
        from ray.tune.utils.serialization import _loads_with_cloudpickle

        stopper = _loads_with_cloudpickle(state.read_bytes())["runner_data"]["_stopper"]
    except Exception:  # noqa: BLE001 - a state cut short or from another Ray: no count
        return None
    for one in [stopper, *getattr(stopper, "_stoppers", ())]:
        if isinstance(one, TimeoutStopper):
            return max(0.0, float(one._budget))
    return None


def build_tuner(plan: dict[str, Any], trainable: Any, exp: Path, shard: int, mode: str,
                stream: TextIO, retry: str | None = None, *, seen: marker.Seen) -> Any:
    """`seen`: the marker as the driver read it when it started (marker.Seen), for what this
    run raises of the study's budgets and whether it was ever extended (extend.py)."""
    from ray import tune

    from hpoc.runtime import pool
    from hpoc.runtime.resume import mend_cut_logs, prepare_scheduler
    from hpoc.runtime.search import make_scheduler, make_searcher
    from hpoc.runtime.whole_upload import install, remove_leftovers

    # a disk that fills as Tune saves keeps the last whole state; a state held back long is said
    install(lambda line: say(stream, line))
    searcher, param_space, num_samples = make_searcher(plan, shard)
    if mode in ("restore", "retry"):
        grown, extended = seen.grown, seen.extended
        if grown and "time_budget_s" in grown:
            from hpoc.runtime.extend import add_time

            add_time(exp, *grown["time_budget_s"])
        if mode == "restore":
            left = budget_left(exp) if plan["trials"]["time_budget_s"] else None
            budget = "" if left is None else \
                f"; time budget: {left:.0f} s left of {plan['trials']['time_budget_s']:g} s (it spans runs)"
            was = marker.moved(seen.recorded, seen.fp, exp)
            if was is not None:
                say(stream, f"[hpoc] {exp} was {was} when it ran: it resumes where it is now")
            what = (f"resuming the interrupted run in {exp}" if grown is None else
                    f"extending the study in {exp} ({marker.grown_words(grown, plan)})")
            say(stream, f"[hpoc] {what} ({taken_over(exp)}{budget})")
        retry, STATE.start_over = rerun.prepare(exp, mode, retry, bool(plan["resume"]["retry_errored"]),
                                                 STATE.errored, lambda line: say(stream, line))
        mend_cut_logs(exp)
        remove_leftovers(exp)
        # Errored trials are resumed, keeping their ids (a restart would give them new ones,
        # unknown to the searcher); from scratch, on_trial_start drops their checkpoint.
        tuner = tune.Tuner.restore(str(exp), trainable, resume_unfinished=True,
                                   resume_errored=bool(retry),
                                   restart_errored=False,
                                   param_space=param_space or None)
        if plan["shards"]["count"] > 1:  # a project moved since: the journal with it
            from hpoc.runtime.shards import journal_path, repoint_journal

            repoint_journal(tuner._local_tuner._tune_config.search_alg, journal_path(plan))
        if extended:
            from hpoc.runtime.extend import rebuild_search

            rebuild_search(tuner, exp, searcher, num_samples, watch_callbacks(plan, num_samples, stream))
        return tuner, num_samples
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
        callbacks=watch_callbacks(plan, num_samples, stream),
        verbose=0,
        # The trials keep their output themselves, capped (output.py). Files a trial
        # writes in its working directory, a staging folder under the run's temp
        # directory, would be removed with it, unread, without sync_artifacts.
        log_to_file=False,
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=run_config), num_samples
