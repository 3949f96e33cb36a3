"""Valid plan dicts (docs/plan.md) for the SLURM backend tests, built by hand.

`plan(**overrides)` returns a complete plan; `slurm=`/`shards=`/`resume=`... replace or
update whole sections, e.g. `plan(slurm={"nodes": 3}, shards={"count": 2})`.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from hpoc.plan import content_hash

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
