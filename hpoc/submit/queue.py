"""Queued and running SLURM jobs of a build directory, whoever submitted them.

`sbatch build/s/job.sbatch` records nothing, but squeue knows each job's batch script
(`%o`): `build/s/job.sbatch`, or submitit's `build/s/logs/.submission_file_*.sh`. Every such
job reads `build/s/plan.json` when it starts, and again when it is requeued.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
from pathlib import Path
from typing import Any

_FORMAT = "%i|%T|%M|%N|%r|%K|%o"
DONE_SOON = {"COMPLETING"}  # its driver has stopped: it will not read the plan again


def squeue(fmt: str, *args: str) -> list[str] | None:
    """squeue's rows (`-o fmt`) of this user's jobs, or None when squeue cannot tell (not
    installed, no answer). Only ours: on a site with tens of thousands of queued jobs the
    whole queue takes seconds and loads the controller, and other users' jobs are not
    ours to guard or show."""
    if not shutil.which("squeue"):
        return None
    try:
        run = subprocess.run(["squeue", "-h", "-u", getpass.getuser(), "-o", fmt, *args],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired, KeyError):  # KeyError: a uid without a name
        return None
    return run.stdout.splitlines() if run.returncode == 0 else None


def user_jobs() -> list[dict[str, Any]]:
    """This user's queued and running jobs, array tasks one by one: {job_id, state, elapsed,
    nodes, reason, task (array task id or None), script}."""
    jobs = []
    for line in squeue(_FORMAT, "-r") or ():
        parts = line.split("|", 6)
        if len(parts) != 7:
            continue
        job_id, state, elapsed, nodes, reason, task, script = parts
        jobs.append({"job_id": job_id, "state": state, "elapsed": elapsed, "nodes": nodes,
                     "reason": "" if reason in ("None", "") else reason,
                     "task": int(task) if task.isdigit() else None, "script": script})
    return jobs


def build_jobs(build_dir: Path, jobs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Of `jobs` (default: user_jobs()), those whose batch script lies in `build_dir`."""
    root = Path(build_dir).resolve()
    return [j for j in (user_jobs() if jobs is None else jobs)
            if _inside(j["script"], root) and Path(j["script"]).name != "preflight.sbatch"]


def _inside(script: str, root: Path) -> bool:
    try:
        return Path(script).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def readers(build_dir: Path) -> list[dict[str, Any]]:
    """The jobs that will still read `build_dir/plan.json` (not those completing)."""
    return [j for j in build_jobs(build_dir) if j["state"] not in DONE_SOON]


def describe(jobs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{j['job_id']} ({j['state']})" for j in jobs)


def plan_in_use(plan_path: Path, text: str) -> str | None:
    """Why writing `text` to `plan_path` must not happen (None when it may): a queued,
    running or requeued job reads plan.json when it (re)starts, so another plan there
    would run in place of the one it was submitted for. The caller adds how to override."""
    try:
        if Path(plan_path).read_text() == text:
            return None
    except OSError:
        return None  # nothing there yet
    jobs = readers(Path(plan_path).parent)
    if not jobs:
        return None
    return (f"{plan_path} is read by SLURM job(s) {describe(jobs)}: each reads it when it "
            "starts or is requeued, so another plan here would run in their place\n"
            "  help: compile into another directory (-o), wait for the jobs or `scancel` them")
