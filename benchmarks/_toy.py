"""A small study for measuring per-trial overhead: short trials whose work is known.

`write_study(dir)` writes `bench_toy.py` (getter, splitter, an hpoc trainer: an MLP on
Gaussian points, labels from a random linear map). The naive baseline in trial_overhead.py
imports the same module for the same data and model.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = textwrap.dedent('''
    """Benchmark toy: an MLP on Gaussian points (labels from a random linear map)."""
    import torch
    from torch import nn

    import hpoc

    DIM, CLASSES = 32, 4


    def make_data(n, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, DIM, generator=g)
        w = torch.randn(DIM, CLASSES, generator=g)
        return x, (x @ w).argmax(dim=1)


    def make_model(hidden=256):
        return nn.Sequential(nn.Linear(DIM, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


    class Getter:
        def __init__(self, n=16384):
            self.n = n

        def execute(self):
            return make_data(self.n)


    class Splitter:
        def execute(self, data):
            x, y = data
            k = int(len(y) * 0.9)
            return (x[:k], y[:k]), (x[k:], y[k:])


    class Trainer(hpoc.Trainer):
        def create_model(self, config):
            return make_model(int(config.get("hidden", 256)))
''')


def write_study(directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench_toy.py").write_text(MODULE, encoding="utf-8")
    return directory


def study_text(*, n: int, epochs: int, trials: int, workers: int, cpus_per_worker: float,
               reuse_workers: bool, storage: str | Path, name: str) -> str:
    return f"""
study "{name}"
pipeline {{
  getter   = bench_toy:Getter(n = {n})
  splitter = bench_toy:Splitter
  trainer  = bench_toy:Trainer
}}
space {{
  lr         = loguniform(1e-4, 1e-2)
  batch_size = 128
  epochs     = {epochs}
}}
objective minimize val_loss
trials {{ num_samples = {trials}, max_concurrent = 1 }}
search random {{ seed = 0 }}
resources {{ workers = {workers}, cpus_per_worker = {cpus_per_worker}, reuse_workers = {str(reuse_workers).lower()} }}
storage {{ path = "{storage}", name = "{name}" }}
"""
