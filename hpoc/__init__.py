"""hpoc: compile declarative hyperparameter-optimisation studies to Ray Tune runs on SLURM.

Importing `hpoc` is cheap: the trainer API (which needs torch) loads on first use, so the
compiler stays instant on a login node.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Trainer": "hpoc.runtime.trainer",
    "Strategy": "hpoc.runtime.strategy",
    "submit": "hpoc.submit",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpoc' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["__version__", *_LAZY]
