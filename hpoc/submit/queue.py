"""Queued and running SLURM jobs of a build directory, whoever submitted them.

`sbatch build/s/job.sbatch` records nothing, but squeue knows each job's batch script
(`%o`): `build/s/job.sbatch`, or submitit's `build/s/logs/.submission_file_*.sh`. Every such
job reads `build/s/plan.json` when it starts, and again when it is requeued, so that
plan also says which experiment the job will run (`experiment_jobs`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

_FORMAT = "%i|%T|%M|%N|%r|%K|%o"
DONE_SOON = {"COMPLETING"}  # its driver has stopped: it will not read the plan again
LOCAL_CHECK_S = 5.0  # a check before a local run: a hung controller must not hold it up long


def ask_squeue(fmt: str, *args: str, timeout: float = 30, anyones: bool = False) -> list[str] | str:
    """squeue's rows (`-o fmt`) of this user's jobs, or why squeue could not be asked (its
    error): a caller that shows the queue must not take "no answer" for "no jobs". Only
    ours: on a site with tens of thousands of queued jobs the whole queue takes seconds and
    loads the controller, and other users' jobs are not ours to guard or show. `anyones`:
    jobs named in `args` (`-j ID`), whoever's (a run lock in a group's directory). By uid:
    `$USER` (getpass) may name another user (`sudo -E`, a container's environment), whose
    jobs are not this process's (sweep.py would remove the directories of ours)."""
    if not shutil.which("squeue"):
        return "squeue is not installed here"
    try:
        mine = [] if anyones else ["-u", str(os.getuid())]
        run = subprocess.run(["squeue", "-h", *mine, "-o", fmt, *args],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"squeue gave no answer in {timeout:g}s"
    except OSError as exc:
        return f"squeue: {exc}"
    if run.returncode != 0:
        said = (run.stderr.strip() or run.stdout.strip()).splitlines()
        return said[-1] if said else f"squeue exited {run.returncode}"
    return run.stdout.splitlines()


def queued_jobs(timeout: float = 30) -> list[dict[str, Any]] | str:
    """This user's queued and running jobs, array tasks one by one: {job_id, state, elapsed,
    nodes, reason, task (array task id or None), script}; or why squeue could not be asked."""
    rows = ask_squeue(_FORMAT, "-r", timeout=timeout)
    if isinstance(rows, str):
        return rows
    jobs = []
    for line in rows:
        parts = line.split("|", 6)
        if len(parts) != 7:
            continue
        job_id, state, elapsed, nodes, reason, task, script = parts
        jobs.append({"job_id": job_id, "state": state, "elapsed": elapsed, "nodes": nodes,
                     "reason": "" if reason in ("None", "") else reason,
                     "task": int(task) if task.isdigit() else None, "script": script})
    return jobs


def build_jobs(build_dir: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of `jobs` (queued_jobs()), those whose batch script lies in `build_dir`."""
    root = Path(build_dir).resolve()
    return [j for j in jobs if _inside(j["script"], root) and Path(j["script"]).name != "preflight.sbatch"]


def _inside(script: str, root: Path) -> bool:
    try:
        return Path(script).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def readers(build_dir: Path) -> list[dict[str, Any]] | str:
    """The jobs that will still read `build_dir/plan.json` (not those completing); none
    without squeue (no SLURM here: no job reads it); why squeue, installed, did not answer."""
    if not shutil.which("squeue"):
        return []
    jobs = queued_jobs()
    return jobs if isinstance(jobs, str) else [j for j in build_jobs(build_dir, jobs)
                                               if j["state"] not in DONE_SOON]


def describe(jobs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{j['job_id']} ({j['state']})" for j in jobs)


def plan_in_use(plan_path: Path, text: str) -> tuple[str | None, str | None]:
    """(why writing `text` to `plan_path` must not happen, why that could not be checked),
    each None when it does not apply: a queued, running or requeued job reads plan.json when
    it (re)starts, so another plan there would run in place of the one it was submitted
    for. The caller adds how to override the first; the second is a warning, as a login
    node whose controller is slow to answer must still compile."""
    try:
        if Path(plan_path).read_text() == text:
            return None, None
    except OSError:
        return None, None  # nothing there yet
    jobs = readers(Path(plan_path).parent)
    if isinstance(jobs, str):
        return None, (f"could not ask squeue whether a queued job reads {plan_path} ({jobs}): "
                      "one that does runs the new plan when it starts or is requeued\n"
                      "  help: look at `squeue` before compiling over a submitted study, or "
                      "compile into another directory (-o)")
    if not jobs:
        return None, None
    return (f"{plan_path} is read by SLURM job(s) {describe(jobs)}: each reads it when it "
            "starts or is requeued, so another plan here would run in their place\n"
            "  help: compile into another directory (-o), wait for the jobs or `scancel` them"), None


def experiment_jobs(plan: dict[str, Any], shard: int,
                    jobs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Of `jobs` (default: queued_jobs()), those queued or running that will run shard `shard`
    of `plan`'s experiment (the same storage), whatever build directory they were submitted
    from: the plan.json beside (or above) each job's script says where it runs, its array
    task (job.sbatch) or jobs.json (`hpoc submit`) which shard. This very job never counts."""
    from hpoc.runtime.shards import experiment_dir

    if jobs is None:  # squeue not answering tells nothing: the run lock guards the experiment still
        answer = queued_jobs(timeout=LOCAL_CHECK_S)
        jobs = answer if isinstance(answer, list) else []
    return _running({experiment_dir(plan, shard).resolve()}, jobs)


def study_jobs(plan: dict[str, Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of `jobs`, those that will run any shard of `plan`'s study: each job looked at once,
    each build's plan read once, however many shards (not experiment_jobs() per shard)."""
    from hpoc.runtime.shards import experiment_dir

    return _running({experiment_dir(plan, k).resolve() for k in range(plan["shards"]["count"])}, jobs)


def _running(targets: set[Path], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of `jobs`, those queued or running that will run in one of the experiment dirs `targets`."""
    from hpoc.runtime.shards import experiment_dir

    me = {os.environ.get("SLURM_JOB_ID"),
          f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"}
    plans: dict[Path, dict[str, Any] | None] = {}
    sent: dict[Path, dict[str, int]] = {}  # jobs.json of each build, read once
    found = []
    for job in jobs:
        if job["state"] in DONE_SOON or job["job_id"] in me:
            continue
        build = _build_dir(job["script"])
        if build is None:
            continue
        if build not in plans:
            plans[build] = _plan_of(build)
        other = plans[build]
        if other is not None and any(experiment_dir(other, k).resolve() in targets
                                     for k in _shards_of(job, build, other, sent)):
            found.append(job)
    return found


def _build_dir(script: str) -> Path | None:
    """The build directory of a job's batch script: job.sbatch lies in it, submitit's
    submission files in its logs/ (or logs/<job id>/)."""
    path = Path(script)
    if not path.is_absolute() or path.name == "preflight.sbatch":
        return None
    for d in list(path.parents)[:3]:
        if (d / "plan.json").is_file():
            return d
    return None


def _plan_of(build: Path) -> dict[str, Any] | None:
    from hpoc.plan import PlanError, load

    try:
        return load(build / "plan.json")
    except (PlanError, OSError):
        return None


def _shards_of(job: dict[str, Any], build: Path, plan: dict[str, Any],
               sent: dict[Path, dict[str, int]]) -> list[int]:
    """The shards `job` may run: job.sbatch's array task is its shard; `hpoc submit` records
    its jobs' shards in jobs.json (array tasks of a resubmission are not the shards), read
    into `sent` (build -> job id -> shard) the first time a build needs it."""
    if Path(job["script"]).name == "job.sbatch":
        return [job["task"] or 0]
    if build not in sent:
        from hpoc.submit import read_jobs

        sent[build] = {}
        for record in read_jobs(build):
            for one in record.get("jobs", []):
                if isinstance(one.get("shard"), int):
                    sent[build].setdefault(str(one.get("job_id")), one["shard"])
    if job["job_id"] in sent[build]:
        return [sent[build][job["job_id"]]]
    return list(range(plan["shards"]["count"]))  # it cannot tell: any of them
