"""`hpoc status BUILD|PLAN|SPEC|EXPDIR|JOBID`: where a study stands.

    hpoc status build/digits          # jobs (SLURM state) + trials per shard + best so far
    hpoc status study.hpo             # compiled in memory; reads the storage it names
    hpoc status results/digits        # an experiment directory (no plan: no budget)
    hpoc status 1234                  # the study a job belongs to
    hpoc status build/digits --json   # the same, for scripts

Reads the study's storage (Ray's result files and experiment state, summary.json, the
Optuna journal of a sharded study) and, where SLURM is present, squeue and scontrol
(sacct when the site has accounting). Never starts Ray.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hpoc.commands import joblogs
from hpoc.commands.status_next import never_starts, next_steps
from hpoc.runtime.shards import index_ranges
from hpoc.site import ACTIVE

HELP = "show a study's jobs, trials done/running/paused/pending/errored and the best so far"

COUNTS = ("done", "running", "paused", "pending", "errored")  # trials, as `hpoc results` labels them
_JOB_ID = re.compile(r"^\d+(_\d+)?$")
# Shards (and jobs) listed one per line before the rest are counted: a 200-shard array's
# rows hid the one shard that needed attention.
SHARD_LINES = 20
UNREAD: Any = object()  # a shard's plan marker that `results` did not read


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="BUILD|PLAN|SPEC|EXPDIR|JOBID", nargs="?",
                   help="build directory, plan.json, study file, experiment directory, "
                        "or a job id of the study (default: the current directory; in a study's "
                        "directory, its one study file)")
    p.add_argument("--json", action="store_true", help="write JSON to stdout")
    p.add_argument("--all", action="store_true",
                   help=f"list every shard and job (default: past {SHARD_LINES} shards, the ones "
                        "not finished and those with errors, and a count of the rest)")


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    return run_reporting(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from hpoc.results.source import OtherPlanVersion, holds_study, lone_spec

    if args.target is None:  # `hpoc status` where the study is
        args.target = "."
        if not holds_study(Path(".")):
            from hpoc.errors import HpocError

            raise HpocError("no study in the current directory (no plan.json, study file or experiment "
                            "directory): pass one, or a job id, or run it in a study's directory")
    if (spec := lone_spec(Path(args.target))) is not None:  # the advice names the spec, not `.`
        args.target = str(spec)
    try:
        plan, build_dir = resolve(args.target)
        note = None
    except OtherPlanVersion as exc:  # an older hpoc's build: its storage still reads
        plan, build_dir, note = None, exc.storage, exc.note
    from hpoc.runtime.runlock import one_look

    with one_look():  # each run lock's SLURM job asked once, however often its lock is read
        status = gather(plan, build_dir) if plan is not None else gather_dir(build_dir)
    status["plan_note"] = note
    status["edited_spec"] = _edited_spec(plan, build_dir)
    status["next"] = next_steps(status, args.target, plan)
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(render(status, every=args.all, words=((plan or {}).get("source") or {}).get("words")))
    return 0


# ---------------------------------------------------------------- which study


def resolve(target: str) -> tuple[dict[str, Any] | None, Path | None]:
    """(plan, build dir or None) for a build dir, plan.json, spec or job id; (None,
    experiment dir) for a directory without plan.json."""
    from hpoc.errors import HpocError
    from hpoc.plan import PlanError, load

    path = Path(target)
    if not path.exists() and _JOB_ID.match(target):
        plan_path = plan_of_job(target)
        if plan_path is None:
            raise HpocError(f"job {target}: {_job_unknown(target)} (pass the study's build directory instead)")
        path = plan_path
    if not path.exists():
        from hpoc.files import missing_hint

        hint = missing_hint(target)
        raise HpocError(f"{target}: no such file or directory (a build directory, plan.json, "
                        "study file, experiment directory or job id)" + (f"\n  = help: {hint}" if hint else ""))
    if path.is_dir():
        from hpoc.results.model import ResultsError
        from hpoc.results.source import lone_build

        try:
            build = lone_build(path)  # `build/`, holding `build/<study>/`
        except ResultsError as exc:
            raise HpocError(str(exc)) from None
        if not (path / "plan.json").is_file() and build is None:
            return None, path
        path = (build or path) / "plan.json"
    if path.suffix == ".json":
        try:
            return load(path), path.resolve().parent
        except PlanError as exc:
            from hpoc.results.source import OtherPlanVersion

            raise (OtherPlanVersion.of(path) or HpocError(str(exc))) from None
    from hpoc.compiler import compile_path
    from hpoc.plan import content_hash
    from hpoc.runtime.shards import study_root

    plan = compile_path(path).plan
    plan["content_hash"] = content_hash(plan)
    # `hpoc submit SPEC` keeps its job records in ./build/<study>; a local run keeps none.
    # Either way the trials are where the spec says: in its storage.
    build = Path("build", plan["study"]["name"]).resolve()
    try:
        same = study_root(load(build / "plan.json")) == study_root(plan)
    except (PlanError, KeyError, TypeError):
        same = False
    return plan, build if same else None


def plan_of_job(job_id: str) -> Path | None:
    """The plan.json above a job's files (its script, submitit files or output), as SLURM
    still names them, else as found here: `hpoc submit`'s records, job.sbatch's logs."""
    info = _scontrol(job_id)
    candidates = [info.get(k) for k in ("Command", "StdOut", "StdErr")]
    for text in candidates:
        if not text:
            continue
        for parent in Path(text).parents:
            if (parent / "plan.json").is_file():
                return parent / "plan.json"
    for jobs_file in Path("build").glob("*/jobs.json"):  # SLURM forgot the job: our records
        try:
            records = json.loads(jobs_file.read_text())
        except (OSError, ValueError):
            continue
        ids = {j["job_id"] for r in records for j in r.get("jobs", [])}
        if job_id in ids or any(i.split("_")[0] == job_id for i in ids):
            return jobs_file.parent / "plan.json"
    # `sbatch BUILD/job.sbatch` keeps no records: its .err, named after the job (an array's
    # tasks after JOBID_TASK), lies beside plan.json in a build here or one level down.
    # Job ids restart on another cluster: logs of the id in two builds are not guessed between.
    builds: list[Path] = []
    for pattern in (f"*-{job_id}.err", f"*-{job_id}_*.err"):
        for err in sorted(Path(".").glob(pattern)) + sorted(Path(".").glob("*/" + pattern)):
            if (err.parent / "job.sbatch").is_file() and (err.parent / "plan.json").is_file():
                builds += [err.parent] if err.parent not in builds else []
    if len(builds) > 1:
        from hpoc.errors import HpocError

        raise HpocError(f"job {job_id}: the logs of several builds name it "
                        f"({', '.join(str(b) for b in builds)}); pass the study's build directory instead")
    return builds[0] / "plan.json" if builds else None


def _edited_spec(plan: dict[str, Any] | None, build_dir: Path | None) -> str | None:
    """What each job of this plan warns in its log, said here first: the spec was edited
    since the plan was compiled, and the jobs run the plan (a spec target: the same)."""
    from hpoc.runtime.before import edited_spec

    if plan is None:
        return None
    build = shlex.quote(str(build_dir)) if build_dir is not None else "BUILD"
    return edited_spec(plan, runs="its jobs run", build=build)


# ---------------------------------------------------------------- SLURM


def _job_unknown(job_id: str) -> str:
    """Why a job id named no study: SLURM could not be asked (no scontrol here, no controller
    reached), or it does not know the job and neither do the build directories here."""
    if not shutil.which("scontrol"):
        return "SLURM cannot be asked here (no `scontrol`), and no build/*/jobs.json here records it"
    try:
        run = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`scontrol` could not be asked ({exc})"
    said = (run.stderr.strip().splitlines() or [""])[-1]
    if run.returncode != 0 and "invalid job id" not in said.lower():
        return f"`scontrol` could not be asked ({said or f'exit {run.returncode}'})"
    return "not found, or not a job hpoc submitted"


def _scontrol(job_id: str) -> dict[str, str]:
    if not shutil.which("scontrol"):
        return {}
    try:
        run = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if run.returncode != 0:
        return {}
    line = run.stdout.splitlines()[0] if run.stdout else ""
    return dict(re.findall(r"(\w+)=(\S*)", line))


def slurm_states(ids: list[str], queued: list[dict[str, Any]] | None = None) -> dict[str, dict[str, str]]:
    """job id -> {state, elapsed, nodes, reason}: squeue for live jobs (`queued`, the user's
    jobs when the caller has them already), then scontrol (jobs SLURM still remembers),
    then sacct where the site has accounting."""
    out: dict[str, dict[str, str]] = {}
    if not ids or not shutil.which("squeue"):
        return out
    from hpoc.submit.queue import queued_jobs

    wanted = set(ids)
    answer = queued_jobs() if queued is None else queued
    for job in answer if isinstance(answer, list) else []:  # else scontrol and sacct, below
        if job["job_id"] in wanted:
            out[job["job_id"]] = {k: job[k] for k in ("state", "elapsed", "nodes", "reason")}
    for job_id in ids:
        if job_id in out:
            continue
        info = _scontrol(job_id)
        if info.get("JobState"):
            out[job_id] = {"state": info["JobState"], "elapsed": info.get("RunTime", ""),
                           "nodes": info.get("NodeList", ""), "reason": ""}
        elif (acct := _sacct(job_id)) is not None:
            out[job_id] = acct
    return out


def _sacct(job_id: str) -> dict[str, str] | None:
    if not shutil.which("sacct"):
        return None
    try:
        run = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,Elapsed,NodeList"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in run.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0] == job_id:
            return {"state": parts[1].split()[0], "elapsed": parts[2], "nodes": parts[3], "reason": ""}
    return None


# ---------------------------------------------------------------- the study


def budget(plan: dict[str, Any]) -> tuple[int, list[int | None]]:
    """(trials of the whole study, per-shard share or None where shards share a budget)."""
    from hpoc.runtime.shards import shared_budget

    from hpoc.plan.space import total_trials

    n, k = total_trials(plan), plan["shards"]["count"]
    if shared_budget(plan):
        return n, [None] * k
    return n, [len(range(s, n, k)) for s in range(k)]


def _grown(plan: dict[str, Any], shards: list[dict[str, Any]], shares: list[int | None],
           results: Any) -> None:
    """A finished shard whose run this plan extends (a raised `trials.num_samples` or
    `trials.time_budget`) has trials left to run: `extended`, with the added trials pending.
    Not `interrupted`: nothing stopped it, and the next step is to run it again; its job's
    state while one is queued or running (the old run's summary says finished until then).
    Each shard's marker as `results` read it, where they did."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    fp = marker.fingerprint(plan, plan_hash(plan))
    known = {shard.index: shard.marker for shard in results.shards} if results else {}
    for s, share in zip(shards, shares):
        exp = Path(s["experiment_dir"])
        recorded = marker.here(known[s["shard"]] if s["shard"] in known else marker.read(exp), fp, exp)
        grown = marker.growth(recorded, fp)
        if grown is None or s["state"] != "finished":
            continue
        job = s["job"] or {}
        if job.get("state") in ACTIVE:  # the job that runs the added trials is in the queue
            state = "running" if job["state"] == "RUNNING" else job["state"].lower()
        else:
            state = "extended"
        s["state"], s["grown"] = state, marker.grown_words(grown, plan)
        if share is not None:
            s["pending"] += max(0, share - s["trials"])


def gather(plan: dict[str, Any], build_dir: Path | None) -> dict[str, Any]:
    from hpoc.errors import HpocError
    from hpoc.results import load_plan
    from hpoc.results.load import compiled_elsewhere
    from hpoc.results.model import ResultsError, UnreadableError
    from hpoc.runtime.shards import journal_trials, shared_budget, study_root

    count = plan["shards"]["count"]
    root = study_root(plan)
    total, shares = budget(plan)
    metric = plan["objective"]["metrics"][0]
    latest, unasked, queued = _latest_jobs(build_dir, plan)
    try:
        results = load_plan(plan)  # the storage the plan names, not a build dir's copy
    except UnreadableError as exc:  # there, but not ours to read: not "not started"
        raise HpocError(str(exc)) from None
    except ResultsError:
        results = None  # not started yet, or its build directory was copied elsewhere
    by_shard = _by_shard(results.trials if results else [])
    known = {shard.index: shard.marker for shard in results.shards} if results else {}
    shards = [_shard(k, root / f"shard-{k}" if count > 1 else root, by_shard.get(k, []),
                     latest.get(k), shares[k], metric, known.get(k, UNREAD)) for k in range(count)]
    _ended_jobs(build_dir, plan["study"]["name"], shards, None if unasked else queued)
    _grown(plan, shards, shares, results)

    totals = {key: sum(s[key] for s in shards) for key in COUNTS}
    created = sum(s["trials"] for s in shards)
    if shared_budget(plan):
        totals["pending"] += max(0, total - created) if any(s["state"] != "finished" for s in shards) else 0
    journal = None
    if shared_budget(plan):
        rows = journal_trials(plan)
        if rows is not None:
            # a queued point (`points_to_evaluate`, WAITING) is asked for later (shards.budget_used)
            budget_rows = [r for r in rows if not r["extra"] and r["state"] != "WAITING"]
            journal = {"trials": len(budget_rows), "complete": sum(r["state"] == "COMPLETE" for r in budget_rows),
                       "per_shard": {str(k): sum(r["shard"] == k for r in budget_rows) for k in range(count)}}
    return {
        "study": plan["study"]["name"], "plan_hash": plan.get("content_hash"), "storage": str(root),
        "build_dir": str(build_dir) if build_dir else None, "search": plan["search"]["algorithm"],
        "parallel": plan["shards"]["parallel"], "resume": bool(plan["resume"]["enabled"]),
        "metric": metric, "budget": total, "shared_budget": shared_budget(plan),
        "shards": shards, "totals": totals, "trials": created,
        "best": _best(results.trials if results else [], metric),
        "journal": journal, "warnings": list(results.warnings) if results else [],
        "compiled_elsewhere": None if results else compiled_elsewhere(plan),
        "other_plan": results.other_plan if results else None,
        "ran_in": results.ran_in if results else None,
        "state": _overall([s["state"] for s in shards]),
        "submitted_by_hpoc": _last_by_hpoc(latest, shards),
        "squeue_error": unasked,
        "slurm_time": (plan.get("slurm") or {}).get("time"),
        "slurm": plan.get("slurm") is not None,  # without it `hpoc submit` runs the study here
    }


def gather_dir(exp: Path) -> dict[str, Any]:
    """Status of an experiment directory read without a plan: no jobs; the budget its run's
    marker records, where it does."""
    from hpoc.errors import HpocError
    from hpoc.results import load
    from hpoc.results.model import ResultsError

    try:
        results = load(exp)
    except ResultsError as exc:
        one = _lone_study(exp)  # `results/`, holding the one study `load` found no trial in
        if _unstarted(one):  # nothing there for `load` to read yet
            return _dir_status(one.absolute().name, None, one, [_shard(0, one, [], None, None, None)], [], None, [])
        raise HpocError(str(exc)) from None
    primary = results.primary
    metric = {"name": primary.name, "mode": primary.mode} if primary else None
    by_shard = _by_shard(results.trials)
    total, shares, search, shared = _recorded_budget(results)
    shards = [_shard(s.index, s.path, by_shard.get(s.index, []), None,
                     shares[s.index] if shares and s.index < len(shares) else None, metric, s.marker)
              for s in results.shards]
    found = {s.index for s in results.shards}  # the recorded plan's shards with no run yet too
    shards += [_shard(k, results.root / f"shard-{k}", [], None,
                      shares[k] if shares and k < len(shares) else None, metric, None)
               for k in range(results.planned_shards or 0) if k not in found]
    shards.sort(key=lambda s: s["shard"])
    return _dir_status(results.study, results.plan_hash, results.root, shards, results.trials, metric,
                       results.warnings, total, search, shared, results.mixed_plans)


def _recorded_budget(results: Any) -> tuple[int | None, list[int | None] | None, str | None, bool]:
    """(budget, per-shard shares, search, shared) of the plan the run recorded in its marker
    (its `body`); all None where it recorded none (an older hpoc) or one of another shape."""
    from hpoc.runtime.shards import shared_budget

    body = next((s.marker["body"] for s in results.shards
                 if isinstance((s.marker or {}).get("body"), dict)), None)
    try:
        total, shares = budget(body)  # type: ignore[arg-type]
        return total, shares, str(body["search"]["algorithm"]), bool(shared_budget(body))
    except Exception:  # noqa: BLE001 - no body, or not a plan's shape: unknown, as before
        return None, None, None, False


def _dir_status(study: str, plan_hash: str | None, storage: Path, shards: list[dict[str, Any]],
                trials: list[Any], metric: dict[str, str] | None, warnings: list[str],
                total: int | None = None, search: str | None = None,
                shared: bool = False, mixed: str | None = None) -> dict[str, Any]:
    totals = {key: sum(s[key] for s in shards) for key in COUNTS}
    if shared and total is not None and any(s["state"] != "finished" for s in shards):
        totals["pending"] += max(0, total - len(trials))  # shards share it: not counted per shard
    return {
        "study": study, "plan_hash": plan_hash, "storage": str(storage),
        "build_dir": None, "search": search, "metric": metric, "budget": total,
        "shared_budget": shared, "shards": shards, "totals": totals,
        "trials": len(trials), "best": _best(trials, metric), "journal": None,
        "warnings": list(warnings), "state": _overall([s["state"] for s in shards]),
        "spec_unknown": True,  # `hpoc run` takes a spec or plan, not this directory
        "mixed_plans": mixed,
    }


def _lone_study(path: Path) -> Path:
    """The experiment directory `load` reads for `path` (it, or the one study below it)."""
    from hpoc.results.model import ResultsError
    from hpoc.results.source import study_dir

    try:
        return study_dir(path, [])
    except (ResultsError, OSError):
        return path


def _unstarted(exp: Path) -> bool:
    """An experiment directory made for a study (by hand, or a run that never began, or was
    killed before its first trial) that holds nothing of a trial yet: at most a run's lock
    (and its driver's view of trials not begun), its plan marker, and the files Ray writes
    as its Tuner is made."""
    from hpoc.files import LIVE
    from hpoc.runtime.marker import PLAN_MARKER
    from hpoc.runtime.runlock import LOCK

    before_trials = {LOCK, LIVE, PLAN_MARKER, "tuner.pkl", ".validate_storage_marker"}
    try:
        return exp.is_dir() and {p.name for p in exp.iterdir()} <= before_trials
    except OSError:
        return False


def _latest_jobs(build_dir: Path | None, plan: dict[str, Any]
                 ) -> tuple[dict[int, dict[str, Any]], str | None, list[dict[str, Any]]]:
    """Latest job per shard (jobs.json keeps every submission, oldest first), with its state;
    why squeue could not be asked, where the study may have SLURM jobs (else None); and
    squeue's jobs (none when it could not be asked)."""
    from hpoc.submit import read_jobs
    from hpoc.submit.params import study_id

    latest: dict[int, dict[str, Any]] = {}
    mine = study_id(plan)
    for record in read_jobs(build_dir) if build_dir else []:
        if record.get("study_id", mine) != mine:
            continue  # submitted before the build dir was compiled for another storage
        for job in record.get("jobs", []):
            latest[int(job["shard"])] = {"job_id": str(job["job_id"]), "cluster": record.get("cluster"),
                                         "submitted": record.get("submitted")}
    from hpoc.submit.queue import queued_jobs

    slurm_ids = [j["job_id"] for j in latest.values() if j["cluster"] == "slurm"]
    # without a `slurm` block there is no job script, and `hpoc submit` runs it here
    scripted = build_dir is not None and (plan.get("slurm") is not None
                                          or (build_dir / "job.sbatch").is_file())
    answer = queued_jobs() if scripted or slurm_ids else []  # one squeue for both
    unasked = answer if isinstance(answer, str) else None
    if unasked is not None and not slurm_ids and not shutil.which("squeue"):
        unasked = None  # no SLURM here, and no job of this study was sent to one
    queued = [] if isinstance(answer, str) else answer
    states = slurm_states(slurm_ids, queued)
    for job in latest.values():
        # One SLURM has forgotten has ended, as an sbatch job's is shown (squeue answered)
        forgotten = {"state": "ENDED"} if job["cluster"] == "slurm" and unasked is None else {}
        job.update(states.get(job["job_id"], forgotten))
        if job["cluster"] == "local":  # the id is the pid of submitit's local controller
            job["state"] = "RUNNING" if _pid_alive(job["job_id"]) else "ENDED"
    for shard, job in _sbatch_jobs(build_dir, queued).items():
        if latest.get(shard, {}).get("state") not in ACTIVE:
            latest[shard] = job
    return latest, unasked, queued


def _sbatch_jobs(build_dir: Path | None, queued: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Queued or running `sbatch BUILD/job.sbatch` jobs by shard (the array task id):
    jobs.json has only what `hpoc submit` sent."""
    from hpoc.submit.queue import build_jobs

    found: dict[int, dict[str, Any]] = {}
    for job in build_jobs(build_dir, queued) if build_dir else []:
        shard = job["task"] or 0
        if shard in found and found[shard]["state"] == "RUNNING":
            continue  # submitted twice: the running one is the one that counts
        if Path(job["script"]).name == "job.sbatch":
            found[shard] = {"cluster": "slurm", "submitted": None, "sbatch": True,
                            **{k: job[k] for k in ("job_id", "state", "elapsed", "nodes", "reason")}}
    return found


def _ended_jobs(build_dir: Path | None, study: str, shards: list[dict[str, Any]],
                queued: list[dict[str, Any]] | None) -> None:
    """Why the newest job of a shard that did not run to the end ended, from its .err. An
    `sbatch BUILD/job.sbatch` job that ended is in no queue: it is found by its .err beside
    plan.json; an `hpoc submit` job's is submitit's task-0 log. `queued`: squeue's jobs,
    None when it could not be asked: a job scontrol and sacct do not know may be running."""
    logged = joblogs.newest(build_dir, study) if build_dir is not None else {}
    ended = [s for s in shards if s["state"] != "running" and (s["job"] or {}).get("state") not in ACTIVE]
    newer = {s["shard"]: log for s in ended if (log := logged.get(s["shard"])) is not None
             and (s["job"] is None or _base_id(s["job"]) <= _base_id(log))}
    states = slurm_states([log["job_id"] for log in newer.values()], queued or [])  # one query for all
    for s in ended:
        job, log = s["job"], newer.get(s["shard"])
        if log is not None:
            state = states.get(log["job_id"]) or ({"state": "ENDED"} if queued is not None else None)
            failed = state is not None and state["state"] != "COMPLETED" and _failed_end(s, state["state"])
            if failed or (state is not None and job is not None):  # not the older job it follows
                s["job"] = job = {"cluster": "slurm", "submitted": None, "sbatch": True, **log, **state}
            if not failed:
                continue
        elif (job is not None and job.get("cluster") == "slurm" and build_dir is not None
              and (queued is not None or job.get("state")) and _failed_end(s, job.get("state"))):
            job["err"] = joblogs.err_file(build_dir, study, job)
        else:
            continue
        # A cancelled job's last line may be an earlier run's (a requeue appends): its state says it.
        if job.get("state") not in ("COMPLETED", "CANCELLED"):
            job["why"] = joblogs.why(job["err"]) or s.get("no_success_why")


def _last_by_hpoc(latest: dict[int, dict[str, Any]], shards: list[dict[str, Any]]) -> bool:
    """Whether the study was last run by `hpoc submit`: its newest job is one jobs.json has,
    not an `sbatch BUILD/job.sbatch` since, so the next step goes on the same way."""
    submitted = [j for j in latest.values() if j.get("submitted") is not None]
    sbatch = [s["job"] for s in shards if (s["job"] or {}).get("sbatch")]
    return bool(submitted) and (not sbatch or max(map(_base_id, sbatch)) < max(map(_base_id, submitted)))


def _failed_end(shard: dict[str, Any], state: str | None) -> bool:
    """Whether the ended job of a shard is worth naming: any, for a shard that did not run
    to the end; for one that did, a job SLURM says did not complete, or one whose driver
    failed because no trial succeeded (a FAILED array task was hidden behind "finished")."""
    if shard["state"] != "finished":
        return True
    return state not in (None, "ENDED", "COMPLETED") or shard.get("no_success", False)


def _base_id(job: dict[str, Any]) -> int:
    head = str(job["job_id"]).split("_")[0]
    return int(head) if head.isdigit() else -1


def _by_shard(trials: list[Any]) -> dict[int, list[Any]]:
    """The trials of each shard, in one pass (a pass per shard read a 200-shard study's
    trials 200 times)."""
    out: dict[int, list[Any]] = {}
    for t in trials:
        out.setdefault(t.shard, []).append(t)
    return out


def _shard(k: int, exp: Path, trials: list[Any], job: dict[str, Any] | None, share: int | None,
           metric: dict[str, str] | None, recorded: Any = UNREAD) -> dict[str, Any]:
    """`recorded`: the shard's plan marker where `results` read it already."""
    from hpoc.results.live import earlier_summary, lock_and_summary, other_plans
    from hpoc.runtime.marker import read as read_marker
    from hpoc.runtime.summary import SUMMARY, ending, exit_code, stop_of
    from hpoc.runtime.summary import read as read_summary

    def read() -> tuple[dict[str, Any] | None, bool]:
        summary = read_summary(exp)
        return summary, summary is not None or not (exp / SUMMARY).exists()

    lock, summary = lock_and_summary(exp, read)
    last = summary  # the ended run's, kept for `requeued` when the run since hides it
    run = lock if lock is not None and lock.alive else None  # a driver runs now (local too)
    ended = job is not None and job.get("state") is not None and job["state"] not in ACTIVE
    if run is not None and not run.here and ended:
        run = None  # another host's lock, but its job has ended: a hard kill leaves the lock
    if earlier_summary(summary, exp / "summary.json", lock) or (
            lock is None and summary is not None
            and other_plans(summary, read_marker(exp) if recorded is UNREAD else recorded)):
        summary = None  # an earlier run's: the run since has not ended
    active = bool(job and job.get("state") in ACTIVE) or run is not None
    counts = {"done": 0, "running": 0, "paused": 0, "pending": 0, "errored": 0}
    for t in trials:
        if t.status == "TERMINATED":
            counts["done"] += 1
        elif t.status == "ERROR":
            counts["errored"] += 1
        elif t.status == "RUNNING" and (active or job is None):
            counts["running"] += 1
        elif t.status == "PAUSED":  # by a scheduler (PBT) or a stopped run: `hpoc results` says so too
            counts["paused"] += 1
        else:
            counts["pending"] += 1  # PENDING, or RUNNING when its job is gone
    if run is not None:
        state = "running"
    elif summary and not summary.get("interrupted"):
        state = "finished"
    elif active:
        state = "running" if job.get("state") == "RUNNING" else job["state"].lower()
    elif trials or summary:
        state = "interrupted"
    elif job is not None and job.get("cluster") == "slurm" and not job.get("state"):
        state = "unknown"
    else:
        state = "not started"
    if share is not None and state != "finished":
        counts["pending"] += max(0, share - len(trials))
    why = summary.get("stopped") if summary and state == "interrupted" else None
    timed_out = sum(1 for t in trials if t.status == "TERMINATED" and t.stopped_by == "time limit")
    cut = sum(1 for t in trials if t.status == "TERMINATED" and t.retry_cut)
    # (a summary without the counts exit_code reads, hand-made or very old, says nothing of it)
    no_success = (state == "finished" and {"num_trials", "status_counts"} <= set(summary)
                  and bool(exit_code(summary)))
    return {"shard": k, "state": state, "experiment_dir": str(exp), "job": job,
            "run": run.to_dict() if run is not None else None, "stopped": why,
            "stop": stop_of(summary) if why else None,
            "trials": len(trials), **counts, "time_limit": timed_out,
            "retry_cut": cut, "best": _best(trials, metric),
            # its driver exited 1 (every trial failed, or none gave a finite objective)
            "no_success": no_success,
            "no_success_why": _no_success_why(k, summary) if no_success else None,
            # its time budget ended the run: trials of its budget never ran
            "ended": ending(summary) if state in ("finished", "interrupted") else None,
            # its searcher had nothing left: a larger budget would run nothing more
            "search_ended": bool(state == "finished" and summary.get("search_ended")),
            # a trial's file failed at every save for long: the state a resume reads is old
            "held": _held_back(exp),
            # its job's last run reached the time limit and the job requeued itself
            "requeued": _requeued(last, job, lock, run is not None or job.get("state") == "RUNNING")
            if active else None}


def _requeued(summary: dict[str, Any] | None, job: dict[str, Any] | None, lock: Any,
              alive: bool = False) -> dict[str, Any] | None:
    """The last run of a SLURM job that its time limit stopped (the summary's `signal` is
    the walltime's SIGUSR2), while the job, requeued, waits or runs again: {"at": when it
    stopped, "restart": SLURM_RESTART_COUNT of that run}. Only a summary that this job wrote
    (its `slurm_job`, an array task's `slurm_task`): an earlier job's, submitted again since,
    or an older hpoc's, says nothing. `lock`: the shard's run lock as status read it (RunLock
    or None); `alive`: whether the job runs again now."""
    if not summary or not summary.get("interrupted") or summary.get("signal") != "SIGUSR2" \
            or not job or job.get("cluster", "slurm") != "slurm":
        return None
    name = summary.get("slurm_task") or summary.get("slurm_job")
    restart = summary.get("slurm_restart")
    if name is None or str(name) != str(job.get("job_id")) or not isinstance(restart, int):
        return None
    # a later run of this job left its lock and no summary (a lost node, SIGKILL): the job
    # waits again for that, not for the time limit
    later = lock.slurm_restart if lock is not None else None
    if not alive and lock is not None and lock.slurm_job == str(name) and isinstance(later, int) and later > restart:
        return None
    started, wall = summary.get("run_started"), summary.get("wall_s")
    at = started + wall if isinstance(started, (int, float)) and isinstance(wall, (int, float)) else None
    return {"at": at, "restart": restart}


def _held_back(exp: Path) -> str | None:
    """The driver's line of a state held back long (whole_upload.HELD), while it lasts."""
    from hpoc.runtime.whole_upload import HELD

    try:
        return (exp / HELD).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _no_success_why(k: int, summary: dict[str, Any]) -> str:
    """Why a shard's driver exited 1, from its summary: the trials' errors went to their own
    error.txt, so the job's .err may say nothing of them."""
    from hpoc import unranked
    from hpoc.runtime.summary import errors_said, objective, outcomes

    try:
        return f"shard {k}: " + unranked.why(objective(summary), outcomes(summary), errors_said(summary),
                                             budget_s=summary.get("budget_reached_s"))
    except (KeyError, IndexError, TypeError, AttributeError):  # a summary of another shape
        return f"shard {k}: no trial succeeded"


def _pid_alive(job_id: str) -> bool:
    from hpoc.runtime.cluster import alive

    return job_id.isdigit() and alive(int(job_id))


def _overall(states: list[str]) -> str:
    if all(s == "finished" for s in states):
        return "finished"
    # A shard whose job is in another SLURM state than RUNNING shows that state (lowercase).
    if any(s in ("running", "completing", "signaling", "stage_out", "resizing") for s in states):
        return "running"
    if any(s in ("pending", "requeued", "configuring", "requeue_hold", "requeue_fed") for s in states):
        return "queued"
    ran = {"finished", "extended"}
    if any(s in ("interrupted", "unknown") for s in states) or (
            ran & set(states) and "not started" in states):
        return "interrupted"  # some shards ran, others stopped (or never started)
    if set(states) <= ran:
        return "extended"  # ran to the end of the old budget; the spec raises it
    return "not started" if all(s == "not started" for s in states) else "mixed"


def _best(trials: list[Any], metric: dict[str, str] | None) -> dict[str, Any] | None:
    from hpoc.results.rank import best_trial

    trial = best_trial(trials, metric["name"], metric["mode"]) if metric else None
    if trial is None:
        return None
    return {"trial_id": trial.trial_id, "shard": trial.shard, "value": trial.value(metric["name"]),
            "epochs": trial.epochs, "status": trial.status, "config": trial.config}


# ---------------------------------------------------------------- table


def render(status: dict[str, Any], every: bool = False, words: dict[str, str] | None = None) -> str:
    """`words`: the plan's `source.words` (a YAML config's names for hpoc's settings)."""
    from hpoc.plan.words import respell

    metric = status["metric"]["name"] if status["metric"] else "(no objective)"
    kind = "shared by the shards" if status["shared_budget"] else "split over the shards"
    if status["budget"] is None:
        head = "budget unknown (read without a plan)"
    else:
        head = (f"budget {status['budget']} trial(s)"
                + (f", {kind}" if len(status["shards"]) > 1 else "") + f" ({status['search']})")
    lines = [f"study `{status['study']}`: {status['state']}; {head}",
             f"storage: {status['storage']}"]
    if status.get("other_plan"):  # another spec with this storage ran there: its trials follow
        lines.append(f"warning: {status['other_plan']}")
    if status.get("mixed_plans"):  # shards of two searches, read without a plan
        lines.append(f"warning: {status['mixed_plans']}")
    if status.get("edited_spec"):
        lines.append(f"warning: {status['edited_spec']}")
    if status.get("compiled_elsewhere"):  # "not started" may be a copy's storage it cannot see
        lines.append(f"warning: {status['compiled_elsewhere']}")
    if status.get("plan_note"):
        lines.append(f"warning: {status['plan_note']}")
    for s in status["shards"]:
        if s.get("held"):
            lines.append("warning: " + ("" if len(status["shards"]) == 1 else f"shard {s['shard']}: ") + s["held"])
    ended = [(s["shard"], s["ended"]) for s in status["shards"] if s.get("ended")]
    if ended:
        from hpoc.runtime.summary import endings

        lines += [f"ended: {words}" for words in
                  ([ended[0][1]] if len(status["shards"]) == 1 else endings(ended))]
    runs = [s for s in status["shards"] if s.get("run")]
    if runs:
        lines.append("runs in progress:")
        for s in runs:
            lines.append(f"  shard {s['shard']}  {_describe_run(s['run'])}")
    jobs = [s for s in status["shards"] if s["job"]]
    jobs, unlisted = _listed(jobs, every, _job_rank)
    if jobs:
        lines.append("jobs:")
        for s in jobs:
            job = s["job"]
            where = " (this machine)" if job.get("cluster") == "local" else ""
            bits = [f"  shard {s['shard']}", f"job {job['job_id']}{where}",
                    job.get("state") or "(unknown to SLURM)"]
            if job.get("elapsed"):
                bits.append(job["elapsed"])
            if job.get("nodes") and job.get("state") == "RUNNING":
                bits.append(job["nodes"])
            if job.get("reason"):
                bits.append(f"({job['reason']})")
            lines.append("  ".join(bits))
    if unlisted:
        lines.append(f"… {len(unlisted)} more job(s) not listed: "
                     + _tally(s["job"].get("state") or "(unknown to SLURM)" for s in unlisted))
    t = status["totals"]
    counts = [c for c in COUNTS if c != "paused" or t.get(c)]  # paused only where a scheduler pauses
    header = ["shard", "state", *counts, f"best {metric}"]
    shards, unlisted = _listed(status["shards"], every, _shard_rank)
    rows = [[str(s["shard"]), s["state"], *(str(s.get(c, 0)) for c in counts), _fmt(s["best"])]
            for s in shards]
    rows.append(["all", status["state"], *(str(t.get(c, 0)) for c in counts), _fmt(status["best"])])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if unlisted:
        lines.append(f"… {len(unlisted)} more shard(s) not listed: "
                     f"{_tally(_said_state(s) for s in unlisted)} (--all lists every shard)")
    lines += _requeue_lines(status)
    timed_out = sum(s.get("time_limit", 0) for s in status["shards"])
    if timed_out:
        lines.append(respell(f"{timed_out} of the done trial(s) stopped at their time limit (`trials.time_limit`)",
                             words))
    cut = sum(s.get("retry_cut", 0) for s in status["shards"])
    if cut:
        lines.append(f"{cut} of the done trial(s) failed and were being retried when the time budget "
                     "or their time limit stopped them: `hpoc results` shows their errors")
    # Why a shard that ran to the end had no success, where no job's `next:` line says it.
    # Shards that failed alike are one line: a broken trainer fails every shard of an array.
    alike: dict[str, list[int]] = {}
    for s in status["shards"]:
        if s.get("no_success_why") and not (s["job"] or {}).get("why"):
            why = s["no_success_why"].removeprefix(f"shard {s['shard']}: ")
            alike.setdefault(why, []).append(s["shard"])
    lines += [f"shard {ks[0]}: {respell(why, words)}" if len(ks) == 1
              else f"shards {index_ranges(ks, ', ')}: {respell(why, words)}" for why, ks in alike.items()]
    best = status["best"]
    if best:
        lines.append(f"best so far: trial {best['trial_id']} (shard {best['shard']}) "
                     f"{metric}={best['value']:.4g} after {best['epochs']} epoch(s)")
        lines.append("  config: " + json.dumps(best["config"], sort_keys=True, ensure_ascii=False))
    if status["journal"]:
        j = status["journal"]
        per = ", ".join(f"shard {k}: {n}" for k, n in j["per_shard"].items())
        lines.append(f"optuna journal: {j['trials']} trial(s) asked, {j['complete']} complete ({per})")
    lines.extend(f"next: {step}" for step in status.get("next", []))
    return "\n".join(lines) + "\n"


def _requeue_lines(status: dict[str, Any]) -> list[str]:
    """Why trials are paused while a job waits or runs again: its last run reached the time
    limit and the job requeued itself (not a failure; `slurm.time` sets how long a run is)."""
    from hpoc.plan import MAX_WALLTIME_REQUEUES

    out = []
    limit = f" (`slurm.time` {status['slurm_time']})" if status.get("slurm_time") else ""
    for s in status["shards"]:
        r = s.get("requeued")
        if not r:
            continue
        run = r["restart"] + 1  # _requeued: only a summary that names its run
        when = f" at {time.strftime('%H:%M', time.localtime(r['at']))}" if r["at"] else ""
        shard = f"shard {s['shard']}: " if len(status["shards"]) > 1 else ""
        out.append(f"{shard}run {run} of job {s['job']['job_id']} reached its time limit{limit}{when} and the "
                   f"job requeued itself (requeue {run} of at most {MAX_WALLTIME_REQUEUES}): trials resume "
                   "from their checkpoints")
    return out


def _listed(shards: list[dict[str, Any]], every: bool,
            rank: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(shards to list, shards only counted): all of them up to SHARD_LINES, else the
    notable ones (`rank` not None), the most urgent (lowest rank) first, in shard order."""
    if every or len(shards) <= SHARD_LINES:
        return shards, []
    notable = [s for s in shards if rank(s) is not None]
    first = sorted(notable, key=rank)[:SHARD_LINES]  # stable: shard order kept within a rank
    listed = {id(s) for s in first}
    return [s for s in shards if id(s) in listed], [s for s in shards if id(s) not in listed]


def _shard_rank(s: dict[str, Any]) -> int | None:
    """A shard's row before others: one to act on (stopped, failed, no success), then the
    running, the queued, then the finished with errored trials; a clean finish is counted."""
    if s["state"] == "finished":
        return 0 if s.get("no_success") else 3 if s["errored"] else None
    return 1 if s["state"] == "running" else 2 if s["job"] and s["state"] not in (
        "interrupted", "extended") else 0


def _job_rank(s: dict[str, Any]) -> int:
    """A job's line before others, as its shard's row: ended, or pending for good
    (never_starts), then running (where, for how long), then pending."""
    job = s["job"]
    if job.get("state") not in ACTIVE or never_starts(job):
        return 0
    return 1 if job.get("state") == "RUNNING" else 2


def _said_state(s: dict[str, Any]) -> str:
    """A shard counted, not listed: its errored trials said, or the table's errored column
    added up to more than the rows listed."""
    return s["state"] + (" with errored trials" if s["errored"] else "")


def _tally(states: Any) -> str:
    return ", ".join(f"{n} {state}" for state, n in Counter(states).items())


def _describe_run(run: dict[str, Any]) -> str:
    from hpoc.results.live import RunLock

    return RunLock(**run).describe()


def _fmt(best: dict[str, Any] | None) -> str:
    return "-" if not best else f"{best['value']:.4g}"
