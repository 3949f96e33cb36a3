"""Plans and jobs for the SLURM backend tests and benchmarks.

`plan(**overrides)` returns a complete, valid plan (docs/plan.md) built by hand; each
keyword updates a section, e.g. `plan(slurm={"nodes": 3}, shards={"count": 2})`.
`write_job`, `sbatch`, `wait_jobs`... run short jobs on the local SLURM cluster.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hpoc.plan import content_hash
from study_jobs import wait_for

VENV_PYTHON = sys.executable  # what the integration tests run on the fake nodes

BASE: dict[str, Any] = {
    "plan_version": 1,
    "content_hash": None,
    "source": {"file": "study.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": "/work/studies/fashion"},
    "study": {"name": "fashion-mnist"},
    "pipeline": {
        "getter": None,
        "splitter": None,
        "trainer": {"target": "trainer:FashionTrainer", "args": {}},
    },
    "space": {
        "params": [
            {"name": "batch_size", "domain": "choice", "args": {"categories": [32, 64]}, "condition": None},
        ],
        "constants": {"epochs": 2},
    },
    "objective": {"metrics": [{"name": "val_loss", "mode": "min"}]},
    "trials": {"num_samples": 4, "max_concurrent": 2, "time_budget_s": None, "stop": {}},
    "search": {"algorithm": "random", "options": {}},
    "scheduler": {"name": "fifo", "time_attr": "training_iteration", "options": {}},
    "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "strategy": "ddp", "deepspeed": None},
    "training": {"precision": "auto", "compile": False, "seed": None, "data_on_device": "auto"},
    "failure": {"max_retries": 0},
    "checkpoint": {"every": 1, "keep": 1, "score_attribute": "val_loss", "score_order": "min"},
    "resume": {"enabled": False, "retry_errored": True, "grace_s": 120},
    "storage": {"path": "/work/studies/fashion/ray_results", "name": "fashion-hpo"},
    "loggers": [],
    "shards": {"count": 1, "parallel": 1},
    "slurm": {
        "nodes": 2,
        "gpus_per_node": None,
        "cpus_per_node": 1,
        "mem": "1G",
        "partition": None,
        "account": None,
        "qos": None,
        "time": "00:10:00",
        "time_s": 600,
        "constraint": None,
        "extra": [],
        "setup": [],
        "env": {},
        "container": None,
        "interface": None,
        "python": "python3",
    },
    "spans": {},
}


def plan(**sections: Any) -> dict[str, Any]:
    """A valid plan; each keyword updates that section (None replaces it, e.g. slurm=None)."""
    out = copy.deepcopy(BASE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(copy.deepcopy(value))
        else:
            out[key] = copy.deepcopy(value)
    out["content_hash"] = content_hash(out)
    return out


# A plan with every site setting in use, rendered in the golden tests.
FULL_SITE = dict(
    study={"name": "resnet-sweep"},
    slurm={
        "nodes": 4, "gpus_per_node": 4, "cpus_per_node": 32, "mem": "256G",
        "partition": "booster", "account": "hpo-proj", "qos": "normal",
        "time": "1-00:00:00", "time_s": 86400, "constraint": "gpu&ib",
        "extra": ["--exclusive", "--mail-type=END"],
        "setup": ["module load Stages/2025 Python", "source /p/project/hpo/venv/bin/activate"],
        "env": {"NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "8", "MSG": "it's a $test"},
        "container": {"image": "/p/images/torch ray.sif", "runtime": "apptainer"},
        "interface": "ib0",
        "python": "python3",
    },
    shards={"count": 4, "parallel": 2},
    resume={"enabled": True, "retry_errored": True, "grace_s": 300},
    source={"file": "study.hpo", "format": "hpo", "sha256": "1" * 64, "workdir": "/p/project/hpo/my study"},
    storage={"path": "/p/scratch/hpo/ray_results", "name": "resnet"},
)


# ---- running jobs on the local SLURM cluster (tests marked `slurm`, benchmarks) ----------

REPO = str(Path(__file__).resolve().parent.parent)
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
        "BOOT_FAIL", "DEADLINE"}
READY = re.compile(r"^hpoc: cluster ready nodes=(\d+) cpus=(\S+) gpus=(\S+) seconds=(\S+)$", re.M)


def write_job(folder: Path, *, nodes: int = 3, shards: int = 1, parallel: int = 1,
              preflight_only: bool = True, resume: bool = False, **slurm: Any) -> Path:
    """Render a short job for the local cluster into `folder`; return the script path."""
    from hpoc import plan as plan_mod
    from hpoc.compiler.render import render_all

    folder.mkdir(parents=True, exist_ok=True)
    p = plan(
        study={"name": "t"},
        source={"file": "t.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": REPO},
        storage={"path": str(folder / "results"), "name": "t"},
        shards={"count": shards, "parallel": parallel},
        resume={"enabled": resume, "grace_s": 60},
        slurm={"nodes": nodes, "cpus_per_node": 1, "mem": "1G", "time": "00:10:00", "time_s": 600,
               "python": VENV_PYTHON, **slurm},
    )
    plan_path = folder / "plan.json"
    plan_path.write_text(plan_mod.dumps(p))
    files = render_all(p, plan_path=str(plan_path), preflight_only=preflight_only)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder / "job.sbatch"


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SLURM_JOB", "HPOC_HOLD"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    return env


def sbatch(script: Path, **env: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", str(script)], cwd=script.parent, env=job_env(**env),
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip().split(";")[0]


def job_records(job: str) -> list[dict[str, str]]:
    """`scontrol show job` as dicts (one per array task); [] once SLURM forgot the job."""
    run = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        return []
    records = []
    for line in run.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields:
            records.append(fields)
    return records


def wait_jobs(jobs: list[str], timeout: float, folder: Path | None = None) -> list[dict[str, str]]:
    """Poll until every job (and array task) has finished; return their records."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for j in jobs for r in job_records(j)]
        if records and all(r.get("JobState") in DONE for r in records):
            return records
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *jobs], capture_output=True)
            raise AssertionError(f"jobs {jobs} still running after {timeout} s; states: "
                                 f"{[r.get('JobState') for r in records]}\n{logs(folder) if folder else ''}")
        time.sleep(0.5)


def wait_until(predicate, timeout: float, what: str, folder: Path | None = None):
    """`wait_for` that shows the job logs under `folder` when it times out."""
    return wait_for(predicate, timeout, what, lambda: logs(folder) if folder else "")


def logs(folder: Path) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".out", ".err", ".log"):
            parts.append(f"==== {path.relative_to(folder)}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(parts)


def output_of(folder: Path, suffix: str = ".out") -> dict[str, str]:
    """Job output files in `folder` by name."""
    return {p.name: p.read_text(errors="replace") for p in sorted(folder.glob(f"*{suffix}"))}


def ray_processes(job_id: str) -> list[str]:
    """Command lines of processes that belong to a job's Ray cluster (its temp dirs)."""
    out = subprocess.run(["pgrep", "-af", f"/tmp/hpoc-{job_id}/"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]
