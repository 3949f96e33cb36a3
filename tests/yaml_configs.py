"""itwinai HPO configs for the YAML tests: the seed's config as data, and writers.

`seed()` is the tutorial's `ray_training_pipeline` as a Python structure; tests change
parts of it and write it with `write(tmp_path, doc)` (YAML, keys in order).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "itwinai"

_SEED: dict[str, Any] = {
    "ray_training_pipeline": {
        "class_path": "itwinai.pipeline.Pipeline",
        "init_args": {
            "steps": [
                {"class_path": "data.FashionMNISTGetter"},
                {"class_path": "data.FashionMNISTSplitter",
                 "init_args": {"train_proportion": 0.9, "validation_proportion": 0.1}},
                {"class_path": "trainer.MyRayTorchTrainer",
                 "init_args": {
                     "config": {
                         "scaling_config": {"num_workers": 4, "use_gpu": True,
                                            "resources_per_worker": {"CPU": 5, "GPU": 1}},
                         "train_loop_config": {
                             "batch_size": {"type": "choice", "options": [32, 64, 128]},
                             "learning_rate": {"type": "uniform", "min": 1e-5, "max": 1e-3},
                             "epochs": 20,
                         },
                         "tune_config": {
                             "num_samples": 2,
                             "scheduler": {"name": "asha", "max_t": 20, "grace_period": 10,
                                           "reduction_factor": 4, "brackets": 1},
                             "search_alg": {"name": "bayes", "metric": "loss", "mode": "min",
                                            "n_random_steps": 5},
                         },
                         "run_config": {"storage_path": "ray_checkpoints", "name": "Virgo-HPO-Experiment"},
                     },
                     "strategy": "ddp",
                     "logger": {
                         "class_path": "itwinai.loggers.LoggersCollection",
                         "init_args": {"loggers": [{
                             "class_path": "itwinai.loggers.MLFlowLogger",
                             "init_args": {"experiment_name": "MNIST HPO Experiment", "log_freq": "batch"},
                         }]},
                     },
                 }},
            ]
        },
    }
}


def seed() -> dict[str, Any]:
    return copy.deepcopy(_SEED)


def trainer_args(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]


def config(doc: dict[str, Any]) -> dict[str, Any]:
    return trainer_args(doc)["config"]


def write(directory: Path, doc: dict[str, Any] | str, name: str = "config.yaml",
          with_code: bool = True) -> Path:
    """Write the config (a dict, or YAML text as is) beside the example's data/trainer code."""
    directory.mkdir(parents=True, exist_ok=True)
    if with_code:
        for f in ("data.py", "trainer.py"):
            if not (directory / f).exists():
                shutil.copy(EXAMPLE / f, directory / f)
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def comparable(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan without what names its source file (source, spans, content_hash)."""
    return {k: v for k, v in plan.items() if k not in ("source", "spans", "content_hash")}
