"""Hand-made experiment directories, laid out as Ray Tune and hpoc's driver leave them.

Cheaper than running studies (results_fixtures.py) when a test needs one exact situation:
a trial that reported nothing, a NaN, a stale summary.json, a run lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

# The study the hand-made directories of "tiny" (3 grid points) are runs of.
TINY_SPEC = '''study "tiny"
pipeline { trainer = trainer:Trainer }
space { lr = grid(0.1, 0.01, 0.001)
        epochs = 2 }
objective maximize val_accuracy
search grid
storage { path = "results", name = "tiny" }
'''


def trial_dir(exp: Path, trial_id: str, config: dict[str, Any], reports: list[dict[str, Any]],
              *, done: bool = True, error: str | None = None) -> Path:
    """One trial: params.json, result.json (one line per report), error.txt if it failed."""
    index = int(trial_id.split("_")[1])
    path = exp / f"trainable_{trial_id}_{index}_lr={config.get('lr')}"
    path.mkdir(parents=True)
    (path / "params.json").write_text(json.dumps(config))
    lines = []
    for i, report in enumerate(reports, 1):
        row = {"training_iteration": i, "trial_id": trial_id, "timestamp": 1000 + i,
               "time_total_s": float(i), "done": done and i == len(reports), **report}
        lines.append(json.dumps(row))  # NaN is written as NaN, as Ray does
    (path / "result.json").write_text("".join(line + "\n" for line in lines))
    if error:
        (path / "error.txt").write_text(f"Traceback (most recent call last):\n{error}\n")
    return path


def summary(exp: Path, study: str, trials: list[dict[str, Any]], *, interrupted: bool = False,
            metric: str = "val_loss", mode: str = "min", plan_hash: str = "sha256:abc",
            stopped: str | None = None, best: dict[str, Any] | None = None, shard: int = 0) -> Path:
    """summary.json as the driver writes it when a shard ends. Without `best` it says no
    trial gave a finite objective (the driver exits 1): pass it where trials reported."""
    data = {"study": study, "shard": shard, "plan_hash": plan_hash,
            "metrics": [{"name": metric, "mode": mode}], "num_trials": len(trials),
            "status_counts": {}, "best": best, "trials": trials, "wall_s": 1.0,
            "interrupted": interrupted, "stopped": stopped, "experiment_dir": str(exp)}
    path = exp / "summary.json"
    path.write_text(json.dumps(data))
    return path


def run_lock(exp: Path, *, pid: int | None = None, host: str | None = None,
             started: float | None = None, shard: int = 0) -> Path:
    """The driver's .hpoc-run.json while a run is live (by default held by pid 1: alive and
    older than any `started`; not this process, whose own lock a driver would take over)."""
    path = exp / ".hpoc-run.json"
    path.write_text(json.dumps({"pid": 1 if pid is None else pid,
                                "host": host or socket.gethostname(),
                                "started": time.time() if started is None else started,
                                "shard": shard}))
    return path


def age(path: Path, seconds: float) -> None:
    """Make a file look `seconds` old."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def closed(monkeypatch: Any, directory: Path) -> None:
    """`directory` unreadable, as another user's on a shared file system (root reads any
    directory, so the listing fails by hand)."""
    real = Path.iterdir

    def iterdir(self: Path) -> Any:
        if self == directory:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
