"""`python -m hpoc.runtime PLAN --shard K --before-ray`: whether a job has anything to do,
asked before it brings a Ray cluster up (seconds, no Ray import).

Exit 0: go on. 3: the shard already ran to the end (a resubmitted array's finished task);
5: it did, and no trial succeeded (the job fails, as the driver would have). With
HPOC_RETRY_ERRORED (or --retry-errored) a shard that ran to the end with errored trials is
a GO: its driver runs them again (rerun.py). 4: another
run holds the shard's lock (the study submitted twice). 6: this python cannot import Ray.
7: the storage path cannot be written (a claim could not be made there). The driver asks again when it
starts; this only spares the job a cluster it would not use. Codes of their own, so that
the job script tells an answer from a crash of this check (which it goes past).

With `--claim PID` (the job script's shell) a GO also takes the shard's run lock for this
SLURM job (runlock.claim): of two jobs of one shard that start together, the second gets 4
instead of a Ray cluster. Its driver takes the claim over; `--release-claim` (the job
script's teardown) removes one that no driver took. The `hpoc submit` job asks the same
(`check`), for its own process.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hpoc.runtime import marker

GO, DONE, BUSY, FAILED = 0, 3, 4, 5
NO_RAY = 6  # no answer: the job script's import check names `slurm.python`
STORAGE = 7  # the storage path cannot be written (under a file, not writable): as the driver says


def verdict(plan: dict[str, Any], shard: int, retry: str | None = None,
            recorded: dict[str, Any] | None = marker.UNREAD) -> tuple[int, str]:
    """The answer for a shard; `retry` (--retry-errored, HPOC_RETRY_ERRORED): a shard that
    ran to the end with errored trials has something to do. `recorded`: the shard's marker
    where the caller read it already (one read of the shared filesystem per array task)."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import rerun, runlock
    from hpoc.runtime.shards import experiment_dir
    from hpoc.runtime.summary import exit_code, finished_run

    exp = experiment_dir(plan, shard)
    live = runlock.holder(exp)
    if live:
        return BUSY, runlock.describe(exp, live)
    if recorded is marker.UNREAD:
        recorded = marker.read(exp)
    digest = plan_hash(plan)
    fp = marker.fingerprint(plan, digest)
    recorded = marker.here(recorded, fp, exp)  # a directory moved since: as if it ran here
    if recorded is not None and marker.differences(recorded, fp, exp) is not None:
        return GO, ""  # another plan's run: the driver refuses it, with the differences
    summary = finished_run(exp, recorded, digest, fp)
    if summary is not None:
        errored = rerun.errored(exp, summary)
        if retry and errored:
            return GO, ""
        if retry:
            return (FAILED if exit_code(summary) else DONE), (
                f"{exp} already ran to the end with no errored trial: nothing to retry")
        # A job has no --fresh of its own: say what starts the study over from a login node.
        # The retry first, as `hpoc status` says it: after a fix it is what a user wants.
        spec = _spec(plan)
        again = (f"once what failed is fixed, `hpoc submit {spec} --retry-errored` runs its "
                 f"{len(errored)} errored trial(s) again (`HPOC_RETRY_ERRORED=1 sbatch` for this "
                 "job's script); " if errored else "")
        over = f"to start over: `hpoc submit {spec} --fresh`, or move {exp} aside and resubmit"
        if exit_code(summary):
            return FAILED, (f"{exp} already ran to the end and no trial succeeded "
                            f"(`hpoc results` shows why; {again}{over})")
        return DONE, f"{exp} already ran to the end (`hpoc results`; {again}{over})"
    return GO, ""


def _spec(plan: dict[str, Any]) -> str:
    """The spec's path as the user pastes it into a shell (a directory may have a space)."""
    source = plan.get("source") or {}
    return shlex.quote(str(Path(source.get("workdir") or ".") / (source.get("file") or "study.hpo")))


def check(plan: dict[str, Any], shard: int, claim_pid: int | None = None,
          retry: str | None = None) -> tuple[int, str]:
    """verdict(), and with `claim_pid` the shard claimed for this SLURM job on a GO."""
    from hpoc.runtime.shards import experiment_dir

    recorded = marker.read(experiment_dir(plan, shard))
    code, why = verdict(plan, shard, retry, recorded)
    if code == GO and not retry and recorded is None and (taken := budget_taken(plan, shard)):
        return DONE, taken
    if code == GO and claim_pid:
        code, why = _claim(plan, shard, claim_pid)
    return code, why


def budget_taken(plan: dict[str, Any], shard: int) -> str | None:
    """A shard of a shared (Optuna) budget that never ran (no marker: `check` read it), once
    the other shards have asked for every trial (an array task that waited for `parallel`):
    recorded as the driver records it (marker, summary with `budget_taken`), so that
    `hpoc status` counts it finished, and said; its job then brings no Ray cluster up to
    find that out."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import summary as summary_mod
    from hpoc.runtime.shards import experiment_dir, journal_path, journal_trials, shared_budget

    exp = experiment_dir(plan, shard)
    if not shared_budget(plan) or not journal_path(plan).exists():
        return None
    # a queued point (`points_to_evaluate`) waits for a shard to ask for it
    rows = [r for r in journal_trials(plan) or [] if r["extra"] is None and r["state"] != "WAITING"]
    if len(rows) < plan["trials"]["num_samples"] or any(
            r["shard"] == shard and r["state"] == "RUNNING" for r in rows):
        return None  # trials left to ask, or asked by this shard and not yet run
    digest = plan_hash(plan)
    marker.write(exp, marker.fingerprint(plan, digest), shard, previous=None)  # check: none
    built = summary_mod.build(plan, shard, [], wall_s=0.0, interrupted=False, experiment_dir=exp,
                              plan_hash=digest)
    summary_mod.write(built, exp)
    return (f"shard {shard}: the other shards have already asked for all {len(rows)} trial(s) of "
            "the study's shared budget (`trials.num_samples`)")


def edited_spec(plan: dict[str, Any], runs: str = "this job runs", build: str = "BUILD") -> str | None:
    """A warning when the spec was edited after this plan was compiled from it, in a way
    that changes the plan: `sbatch BUILD/job.sbatch` runs plan.json, not the spec, and
    nothing said so. Comments and layout change the spec's bytes only: no warning. `runs`
    names who runs the plan as compiled (a job; on the login node, the study's jobs);
    `build`, the build directory to compile into, where known."""
    source = plan.get("source") or {}
    if not (source.get("sha256") and source.get("workdir") and source.get("file")):
        return None
    from hpoc.dsl.digest import spec_digest

    spec = Path(source["workdir"]) / source["file"]
    try:
        if spec_digest(spec.read_bytes()) == source["sha256"]:
            return None
    except OSError:
        return None  # moved away: the plan is all there is
    key = source.get("pipe_key")
    pick = f" --pipe-key {shlex.quote(key)}" if key else ""
    how = (f"{runs} the plan as compiled; to run the edited spec, compile it again "
           f"(`hpoc compile {shlex.quote(str(spec))}{pick} -o {build}`, or `hpoc submit` it) and submit again")
    from hpoc.compiler import compile_path
    from hpoc.yaml import PIPE_KEY

    token = PIPE_KEY.set(source.get("pipe_key"))  # the pipeline it was compiled from, of several
    try:
        edited = _comparable(compile_path(spec).plan)
    except Exception:  # a spec that no longer compiles: `hpoc check` says why
        return f"{spec} was edited since this plan was compiled from it and no longer compiles; {how}"
    finally:
        PIPE_KEY.reset(token)
    compiled = _comparable(plan)
    parts = sorted(k for k in set(compiled) | set(edited) if compiled.get(k) != edited.get(k))
    if not parts:
        return None
    return (f"{spec} was edited since this plan was compiled from it (they differ in "
            f"{', '.join(f'`{p}`' for p in parts)}): {how}")


# What only says where a plan came from (its hashes, error locations): the rest, the job's
# own settings too, is what an edit of the spec changes for the jobs.
_ORIGIN = (("content_hash",), ("spans",), ("source", "sha256"))


def _comparable(plan: dict[str, Any]) -> dict[str, Any]:
    from hpoc.runtime.marker import runnable

    return runnable(plan, _ORIGIN)


def main(plan: dict[str, Any], shard: int, claim_pid: int | None = None,
         retry: str | None = None) -> int:
    import importlib.util

    # hpoc installed without its runtime extra: found, not imported (seconds), else a GO sends
    # the job on to a head step that dies on `No module named 'ray'`.
    if importlib.util.find_spec("ray") is None:
        return NO_RAY
    if (edited := edited_spec(plan)) is not None:
        print(f"hpoc: warning: {edited}", file=sys.stderr)
    code, why = check(plan, shard, claim_pid, retry)
    if why:
        print(f"hpoc: {'error: ' if code in (BUSY, FAILED, STORAGE) else ''}{why}", file=sys.stderr)
    return code


def _claim(plan: dict[str, Any], shard: int, pid: int) -> tuple[int, str]:
    from hpoc.runtime import runlock
    from hpoc.runtime.shards import experiment_dir

    if not os.environ.get("SLURM_JOB_ID"):
        return GO, ""  # outside SLURM no driver would know the claim for its own
    exp = experiment_dir(plan, shard)
    try:
        runlock.claim(exp, shard, pid, lambda line: print(line, file=sys.stderr))
    except runlock.Busy as exc:
        return BUSY, str(exc)
    except OSError:  # storage the driver cannot use either: said now, before a Ray cluster
        from hpoc.runtime.login_preflight import storage_problem

        problem = storage_problem(plan["storage"]["path"], min_free_gb=0)  # room: the driver's to judge
        if problem:
            return STORAGE, problem
    return GO, ""


def release(plan: dict[str, Any], shard: int) -> int:
    from hpoc.runtime import runlock
    from hpoc.runtime.shards import experiment_dir

    runlock.release_claim(experiment_dir(plan, shard))
    return 0
