"""The runtime: runs a study's trials from its plan.json (and nothing else).

    python -m hpoc.runtime build/fashion/plan.json --shard 0

Modules: `study` (the driver), `trial` (what runs in a trial), `trainer` (the user API),
`strategy` (DDP/DeepSpeed), `space` and `search` (plan -> Ray Tune), `pipeline` (data),
`session` (local Ray or the job's cluster), `summary` (summary.json).
Importing this package is cheap; Ray and torch load when a run starts.
"""

from __future__ import annotations

from hpoc.runtime.visible import adopt_rocr

# Before any import of Ray in this process (driver, Ray node, helper) or its children: on
# AMD nodes Ray refuses SLURM's ROCR_VISIBLE_DEVICES without a HIP_VISIBLE_DEVICES.
adopt_rocr()

_LAZY = {
    "run_study": "hpoc.runtime.study",
    "RunOptions": "hpoc.runtime.study",
    "Trainer": "hpoc.runtime.trainer",
    "Strategy": "hpoc.runtime.strategy",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hpoc.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = list(_LAZY)
