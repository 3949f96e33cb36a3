"""Shared test data for the results, report and tracking tests.

`study_data(tmp_path_factory)` runs real Ray Tune studies once per test session (see
results_gen.py) and lays them out the way hpoc does:

    <base>/storage/fmnist/                 one-shard study: Ray experiment "tune/" + summary.json
    <base>/storage/fmnist-sharded/shard-0/ a copy of that study as shard 0
    <base>/storage/fmnist-sharded/shard-1/ a second, smaller study as shard 1
    <base>/storage/partial/                the one-shard study as a crashed driver leaves it:
                                           no summary.json, no experiment state, a cut line
    <base>/build/{fmnist,sharded,partial}/plan.json   plans pointing at them
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def make_plan(storage: Path, name: str, shards: int = 1, loggers: list | None = None,
              workdir: Path | None = None) -> dict[str, Any]:
    """A plan as `hpoc compile` writes it (docs/plan.md), for the generated studies."""
    from hpoc.plan import dumps

    plan = {
        "plan_version": 1,
        "source": {"file": "study.hpo", "format": "hpo", "sha256": "0" * 64,
                   "workdir": str(workdir or storage)},
        "study": {"name": name},
        "pipeline": {
            "getter": None, "splitter": None,
            "trainer": {"target": "trainer:Trainer", "args": {}},
        },
        "space": {
            "params": [
                {"name": "batch_size", "domain": "choice",
                 "args": {"categories": [32, 64, 128]}, "condition": None},
                {"name": "optimizer.name", "domain": "choice",
                 "args": {"categories": ["adam", "sgd"]}, "condition": None},
                {"name": "optimizer.lr", "domain": "loguniform",
                 "args": {"lower": 0.0001, "upper": 0.1, "base": 10}, "condition": None},
                {"name": "dropout", "domain": "uniform", "args": {"lower": 0.0, "upper": 0.5},
                 "condition": None},
            ],
            "constants": {"epochs": 6},
        },
        "objective": {"metrics": [{"name": "val_loss", "mode": "min"},
                                  {"name": "val_accuracy", "mode": "max"}]},
        "trials": {"num_samples": 8, "max_concurrent": 2, "time_budget_s": None,
                   "stop": {"training_iteration": 6}},
        "search": {"algorithm": "random", "options": {}},
        "scheduler": {"name": "asha", "time_attr": "training_iteration",
                      "options": {"max_t": 6, "grace_period": 2, "reduction_factor": 2,
                                  "brackets": 1}},
        "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0,
                      "strategy": "ddp", "deepspeed": None},
        "training": {"precision": "auto", "compile": False, "seed": None,
                     "data_on_device": "auto"},
        "failure": {"max_retries": 0},
        "checkpoint": {"every": 1, "keep": 2, "score_attribute": "val_loss",
                       "score_order": "min"},
        "resume": {"enabled": True, "retry_errored": True, "grace_s": 120},
        "storage": {"path": str(storage), "name": name},
        "loggers": loggers or [],
        "shards": {"count": shards, "parallel": shards},
        "slurm": None,
        "spans": {},
    }
    return json.loads(dumps(plan))


def write_plan(build: Path, plan: dict[str, Any]) -> Path:
    from hpoc.plan import dumps

    build.mkdir(parents=True, exist_ok=True)
    path = build / "plan.json"
    path.write_text(dumps({k: v for k, v in plan.items() if k != "content_hash"}),
                    encoding="utf-8")
    return path


@dataclass
class StudyData:
    base: Path
    storage: Path
    single: Path          # experiment directory of the one-shard study
    sharded: Path         # study directory holding shard-0 and shard-1
    partial: Path
    build_single: Path    # build directories (plan.json inside)
    build_sharded: Path
    build_partial: Path
    progress_log: Path    # what hpoc.runtime.progress printed during the one-shard run
    gen_seconds: float


_CACHE: dict[str, StudyData] = {}


def study_data(tmp_path_factory) -> StudyData:
    """Generate once per session (several test modules share it)."""
    if "data" in _CACHE:
        return _CACHE["data"]
    import time

    base = tmp_path_factory.mktemp("hpoc-results")
    storage = base / "storage"
    single = storage / "fmnist"
    sharded = storage / "fmnist-sharded"
    spec = [
        {"storage": str(single), "name": "tune", "num_samples": 8, "seed": 1,
         "progress_log": str(base / "progress.log")},
        {"storage": str(sharded / "shard-1"), "name": "tune", "num_samples": 4, "seed": 2},
    ]
    (base / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE / "results_gen.py"), str(base / "spec.json")],
                          env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - started
    if proc.returncode != 0 or not (single / "summary.json").is_file():
        raise RuntimeError(f"generating Ray Tune test data failed:\n{proc.stderr[-4000:]}")

    shutil.copytree(single, sharded / "shard-0")
    for k in (0, 1):
        summary_file = sharded / f"shard-{k}" / "summary.json"
        summary = json.loads(summary_file.read_text())
        summary.update(study="fmnist-sharded", shard=k)
        summary_file.write_text(json.dumps(summary, indent=2))

    partial = storage / "partial"
    shutil.copytree(single, partial)
    (partial / "summary.json").unlink()
    for state in partial.rglob("experiment_state-*.json"):
        state.unlink()
    # The driver was killed while a trial was running: the longest trial keeps 4 of its
    # reports plus half of the next line; another trial never wrote a result.
    files = sorted(partial.rglob("result.json"), key=lambda p: (-len(p.read_text()), str(p)))
    lines = files[0].read_text().splitlines()
    assert len(lines) >= 5, "the generated study has no trial that ran 5 epochs"
    files[0].write_text("\n".join(lines[:4]) + "\n" + lines[4][:40])
    [p for p in files[1:] if not (p.parent / "error.txt").exists()][-1].unlink()

    build = base / "build"
    data = StudyData(
        base=base, storage=storage, single=single, sharded=sharded, partial=partial,
        build_single=write_plan(build / "fmnist", make_plan(storage, "fmnist")).parent,
        build_sharded=write_plan(build / "sharded",
                                 make_plan(storage, "fmnist-sharded", shards=2)).parent,
        build_partial=write_plan(build / "partial", make_plan(storage, "partial")).parent,
        progress_log=base / "progress.log", gen_seconds=took,
    )
    _CACHE["data"] = data
    return data
