"""A large finished study on disk, as Ray Tune and hpoc's driver leave it, without running Ray:
per trial params.json and result.json (one line per epoch, the config repeated as Ray writes
it), the experiment state, summary.json. Shared by benchmarks/big_study.py."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any


def write_study(exp: Path, trials: int, epochs: int, seed: int = 0) -> list[dict[str, Any]]:
    """`trials` trials of `epochs` reports each in experiment directory `exp` (the tests'
    trial_dir, with the config on every line as Ray writes it); every tenth failed, a third
    stopped early (ASHA). Returns the summary's trial entries."""
    from results_dirs import trial_dir  # tests/, on the path big_study.py sets

    rng = random.Random(seed)
    exp.mkdir(parents=True, exist_ok=True)
    state, entries = [], []
    for i in range(trials):
        trial_id = f"{i // 100000:05x}_{i % 100000:05d}"
        config = {"batch_size": rng.choice([32, 64, 128]),
                  "optimizer": {"name": rng.choice(["adam", "sgd"]),
                                "lr": 10 ** rng.uniform(-4, -1)},
                  "dropout": rng.uniform(0, 0.5), "epochs": epochs}
        failed = i % 10 == 9
        ran = epochs // 3 if failed else (epochs // 2 if i % 3 == 0 else epochs)
        reports = []
        for e in range(1, ran + 1):
            val = 0.5 / e + 0.3 * abs(math.log10(config["optimizer"]["lr"]) + 2.5) \
                + 0.1 * config["dropout"]
            reports.append({"train_loss": 0.9 * val, "val_loss": val, "val_accuracy": 1 - val / 2,
                            "timestamp": 1000 + 10 * i + e, "config": config})
        path = trial_dir(exp, trial_id, config, reports, done=not failed,
                         error="RuntimeError: loss diverged (nan)" if failed else None)
        status = "ERROR" if failed else "TERMINATED"
        state.append([json.dumps({"trial_id": trial_id, "status": status, "config": config,
                                  "relative_logdir": path.name}),
                      json.dumps({"start_time": 1000 + 10 * i,
                                  "last_result_time": 1000 + 10 * i + ran})])
        last = {**reports[-1], "training_iteration": ran, "trial_id": trial_id} if reports else {}
        entries.append({"trial_id": trial_id, "status": status, "config": config,
                        "metrics": last, "epochs": ran,
                        "error": "RuntimeError: loss diverged (nan)" if failed else None,
                        "path": str(path)})
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": state}))
    return entries


def write_summary(exp: Path, study: str, shard: int, entries: list[dict[str, Any]]) -> None:
    from results_dirs import summary

    ok = [t for t in entries if t["status"] == "TERMINATED"]
    summary(exp, study, entries, shard=shard, plan_hash=None,
            best=min(ok, key=lambda t: t["metrics"]["val_loss"]) if ok else None)
