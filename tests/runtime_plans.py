"""Valid plan dicts (docs/plan.md) for the runtime tests, and a toy study to run them on.

`make_plan(workdir, storage, **sections)` returns a complete plan whose trainer, getter and
splitter live in `toy.py` (written by `write_toy(workdir)`); keyword arguments replace whole
sections (`search={...}`) or, with a dict for a dict section, update it
(`resources={"workers": 2}`).
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

from hpoc.plan import content_hash
from hpoc.plan.validate import validate

TOY = textwrap.dedent('''
    """A toy classification study: Gaussian points, labels from a random linear map."""
    import os

    import torch
    from torch import nn

    import hpoc


    class ToyGetter:
        def __init__(self, n=384, dim=8, classes=3, seed=0):
            self.n, self.dim, self.classes, self.seed = n, dim, classes, seed

        def execute(self):
            g = torch.Generator().manual_seed(self.seed)
            x = torch.randn(self.n, self.dim, generator=g)
            w = torch.randn(self.dim, self.classes, generator=g)
            return x, (x @ w).argmax(dim=1)


    class ToySplitter:
        def __init__(self, train_proportion=0.75):
            self.train_proportion = train_proportion

        def execute(self, data):
            x, y = data
            k = int(len(y) * self.train_proportion)
            return (x[:k], y[:k]), (x[k:], y[k:])


    class ToyTrainer(hpoc.Trainer):
        def create_model(self, config):
            hidden = int(config.get("hidden", 16))
            return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, 3))


    class FailOnceTrainer(ToyTrainer):
        """Dies right after reporting epoch `fail_after`, once per trial (a marker file
        remembers), like a node lost mid-trial."""

        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            marker = os.path.join(self.args["marker_dir"], self.trial.id)
            if epoch is not None and epoch + 1 == self.args["fail_after"] and not os.path.exists(marker):
                if self.strategy.is_main:
                    open(marker, "w").close()
                raise RuntimeError("injected failure after epoch %d" % (epoch + 1))


    class KillAfterTrainer(ToyTrainer):
        """SIGKILLs its own process right after reporting epoch `kill_after` (a node crash);
        with `abort`, crashes it as a C extension would (os.abort)."""

        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            if epoch is not None and epoch + 1 == self.args.get("kill_after"):
                import signal
                if self.args.get("abort"):
                    os.abort()
                os.kill(os.getpid(), signal.SIGKILL)


    class CrashRankTrainer(ToyTrainer):
        """Rank `rank` crashes right after its first report: `how` = "segfault" (a C
        extension's), "abort", "exit" (os._exit(3)), "sigterm" (a `kill`; the rank trains
        on if it is ignored) or "kill" (SIGKILL, as the OOM killer). With `once` (a file
        path), only the first trial of the study crashes."""

        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            if self.strategy.rank == self.args.get("rank", 1):
                import ctypes
                import signal
                import time
                once = self.args.get("once")
                if once and os.path.exists(once):
                    return
                if once:
                    open(once, "w").close()
                how = self.args["how"]
                if how == "segfault":
                    ctypes.string_at(0)
                elif how == "abort":
                    os.abort()
                elif how == "exit":
                    os._exit(3)
                elif how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(10)
                    return
                os.kill(os.getpid(), signal.SIGKILL)


    class SlowTrainer(ToyTrainer):
        """Sleeps a little per epoch, so a test can signal the run while trials are busy;
        after its first epoch, waits while the file `hold` exists (a test looks at the run)."""

        def train_epoch(self, epoch):
            import os
            import time
            time.sleep(self.args.get("sleep", 1.0))
            while epoch >= 1 and self.args.get("hold") and os.path.exists(self.args["hold"]):
                time.sleep(0.2)
            return super().train_epoch(epoch)


    class BrokenTrainer(ToyTrainer):
        def create_model(self, config):
            raise ValueError("this model cannot be built")
''')


def write_toy(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "toy.py").write_text(TOY, encoding="utf-8")
    return workdir


BASE: dict[str, Any] = {
    "plan_version": 1,
    "source": {"file": "study.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": "/tmp"},
    "study": {"name": "toy"},
    "pipeline": {
        "getter": {"target": "toy:ToyGetter", "args": {}},
        "splitter": {"target": "toy:ToySplitter", "args": {"train_proportion": 0.75}},
        "trainer": {"target": "toy:ToyTrainer", "args": {}},
    },
    "space": {
        "params": [
            {"name": "lr", "domain": "loguniform", "args": {"lower": 1e-3, "upper": 3e-2, "base": 10},
             "condition": None},
            {"name": "hidden", "domain": "choice", "args": {"categories": [8, 16]}, "condition": None},
        ],
        "constants": {"epochs": 3, "batch_size": 32},
    },
    "objective": {"metrics": [{"name": "val_accuracy", "mode": "max"}]},
    "trials": {"num_samples": 2, "max_concurrent": 2, "time_budget_s": None, "stop": {}},
    "search": {"algorithm": "random", "options": {"seed": 0}},
    "scheduler": {"name": "fifo", "time_attr": "training_iteration", "options": {}},
    "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "strategy": "ddp",
                  "deepspeed": None},
    "training": {"precision": "auto", "compile": False, "seed": 0, "data_on_device": "auto"},
    "failure": {"max_retries": 0},
    "checkpoint": {"every": 1, "keep": 2, "score_attribute": None, "score_order": None},
    "resume": {"enabled": True, "retry_errored": True, "grace_s": 120},
    "storage": {"path": "/tmp/results", "name": "toy"},
    "loggers": [],
    "shards": {"count": 1, "parallel": 1},
    "slurm": None,
    "spans": {},
}


def make_plan(workdir: Path, storage: Path, **sections: Any) -> dict[str, Any]:
    plan = copy.deepcopy(BASE)
    plan["source"]["workdir"] = str(workdir)
    plan["storage"]["path"] = str(storage)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(plan.get(key), dict) and not value.get("_replace"):
            plan[key].update(copy.deepcopy(value))
        else:
            plan[key] = copy.deepcopy({k: v for k, v in value.items() if k != "_replace"}
                                      if isinstance(value, dict) else value)
    plan["content_hash"] = content_hash(plan)
    validate(plan, "test plan")
    return plan


def param(name: str, domain: str, condition: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    return {"name": name, "domain": domain, "args": args, "condition": condition}


def saved_state(exp: Path, statuses: list[str]) -> Path:
    """Ray's saved experiment state in `exp`, with trials of these statuses (`t0` in
    `trial_0`, ...), and the file that makes it restorable."""
    rows = [[json.dumps({"trial_id": f"t{i}", "status": s, "relative_logdir": f"trial_{i}"}), "{}"]
            for i, s in enumerate(statuses)]
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": rows}))
    (exp / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    return exp


def idx_bytes(array: Any) -> bytes:
    """An IDX file (the MNIST format): uint8 magic, dimensions, then the data."""
    import struct

    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fashion_files(n_train: int = 120, n_test: int = 40, seed: int = 0) -> dict[str, bytes]:
    """Small Fashion-MNIST-format files (uncompressed), images of random noise plus a
    class-dependent bright square so that a model can learn something."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 5)
            images[i, 4 + 10 * r: 12 + 10 * r, 2 + 5 * c: 6 + 5 * c] = 250
        out[f"{prefix}-images-idx3-ubyte"] = idx_bytes(images)
        out[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(labels)
    return out


def digit_images(n: int = 50) -> bytes:
    """An IDX image file drawn as MNIST's digits are: dim strokes on a mostly blank page
    (what a copy of MNIST under Fashion-MNIST's names holds)."""
    import numpy as np

    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        images[i, 6:22, 12 + i % 4: 15 + i % 4] = 200  # a "1", 48 of 784 pixels inked
    return idx_bytes(images)


def write_fashion(root: Path, n_train: int = 120, n_test: int = 40) -> Path:
    """torchvision's layout after a download: `<root>/FashionMNIST/raw/` with each file
    gzip'd and extracted."""
    import gzip

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, data in fashion_files(n_train, n_test).items():
        (raw / name).write_bytes(data)
        (raw / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
    return raw
