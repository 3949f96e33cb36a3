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
    """`trials` trials of `epochs` reports each in experiment directory `exp`; every tenth
    failed, a third stopped early (ASHA). Returns the summary's trial entries."""
    rng = random.Random(seed)
    exp.mkdir(parents=True, exist_ok=True)
    state, entries = [], []
    for i in range(trials):
        trial_id = f"{i // 100000:05x}_{i % 100000:05d}"
        config = {"batch_size": rng.choice([32, 64, 128]),
                  "optimizer": {"name": rng.choice(["adam", "sgd"]),
                                "lr": 10 ** rng.uniform(-4, -1)},
                  "dropout": rng.uniform(0, 0.5), "epochs": epochs}
        name = f"trainable_{trial_id}_{i}_lr={config['optimizer']['lr']:.4g}"
        path = exp / name
        path.mkdir()
        (path / "params.json").write_text(json.dumps(config))
        failed = i % 10 == 9
        ran = epochs // 3 if failed else (epochs // 2 if i % 3 == 0 else epochs)
        lines = []
        for e in range(1, ran + 1):
            val = 0.5 / e + 0.3 * abs(math.log10(config["optimizer"]["lr"]) + 2.5) \
                + 0.1 * config["dropout"]
            lines.append(json.dumps({
                "train_loss": 0.9 * val, "val_loss": val, "val_accuracy": 1 - val / 2,
                "training_iteration": e, "trial_id": trial_id, "timestamp": 1000 + 10 * i + e,
                "time_total_s": float(e), "done": e == ran and not failed, "config": config}))
        (path / "result.json").write_text("".join(line + "\n" for line in lines))
        status = "ERROR" if failed else "TERMINATED"
        if failed:
            (path / "error.txt").write_text("Traceback (most recent call last):\n"
                                            "RuntimeError: loss diverged (nan)\n")
        state.append([json.dumps({"trial_id": trial_id, "status": status, "config": config,
                                  "relative_logdir": name}),
                      json.dumps({"start_time": 1000 + 10 * i,
                                  "last_result_time": 1000 + 10 * i + ran})])
        entries.append({"trial_id": trial_id, "status": status, "config": config,
                        "metrics": json.loads(lines[-1]) if lines else {}, "epochs": ran,
                        "error": "RuntimeError: loss diverged (nan)" if failed else None,
                        "path": str(path)})
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": state}))
    return entries


def write_summary(exp: Path, study: str, shard: int, entries: list[dict[str, Any]]) -> None:
    ok = [t for t in entries if t["status"] == "TERMINATED"]
    best = min(ok, key=lambda t: t["metrics"]["val_loss"]) if ok else None
    (exp / "summary.json").write_text(json.dumps({
        "study": study, "shard": shard, "plan_hash": None,
        "metrics": [{"name": "val_loss", "mode": "min"}], "num_trials": len(entries),
        "status_counts": {}, "best": best, "trials": entries, "wall_s": 1.0,
        "interrupted": False, "stopped": None, "experiment_dir": str(exp)}))
