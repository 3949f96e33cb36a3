"""DeepSpeed's C++ ops that the first trial builds, said before it: DeepSpeed compiles them
on first use (2-3 minutes on a small machine), and the study showed its trials "running"
without a word meanwhile. Read from the plan and the build cache alone (no DeepSpeed
import in the driver); an op DeepSpeed was installed with prebuilt is not built."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from typing import Any

from hpoc.plan import dsjson

# op -> its prebuilt module's folder under deepspeed/ (DeepSpeed's `absolute_name()`)
PACKAGES = {"deepspeed_shm_comm": "ops/comm", "cpu_adam": "ops/adam", "fused_adam": "ops/adam"}


def needed(plan: dict[str, Any]) -> list[str]:
    """The ops a trial of `plan` has DeepSpeed load: its CPU accelerator's shared-memory
    collectives; the ZeRO-Offload Adam, or the fused one, for a config file's Adam."""
    r = plan["resources"]
    if r.get("strategy") != "deepspeed":
        return []
    ops = ["deepspeed_shm_comm"] if not r.get("gpus_per_worker") else []
    path = (r.get("deepspeed") or {}).get("config_file")
    try:
        config = dsjson.read(path) if path else {}
    except (OSError, ValueError):
        return ops  # the trial says what is wrong with it
    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    if not isinstance(optimizer, dict) or str(optimizer.get("type", "")).lower() not in ("adam", "adamw"):
        return ops
    params = optimizer.get("params") if isinstance(optimizer.get("params"), dict) else {}
    if params.get("torch_adam") is True:
        return ops
    zero = config.get("zero_optimization")
    zero = zero if isinstance(zero, dict) else {}
    offload = zero.get("offload_optimizer")
    device = offload.get("device") if isinstance(offload, dict) else ("cpu" if zero.get("cpu_offload") else None)
    return ops + ["cpu_adam" if device in ("cpu", "nvme") else "fused_adam"]


def cache_dir() -> str:
    """Where torch builds (and keeps) extensions for this Python and torch, as
    `torch.utils.cpp_extension` has it on Linux (importing that module warns of CUDA_HOME
    in a CPU study's driver)."""
    import torch

    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    device = f"rocm{torch.version.hip.replace('.', '')}" if torch.version.hip else (
        f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    root = os.path.realpath(os.path.join(cache, "torch_extensions"))
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"  # py313t
    return os.path.join(root, f"{python}_{device}")


def _built(op: str, root: str) -> bool:
    if glob.glob(os.path.join(root, op, f"{op}*.so")):
        return True
    spec = importlib.util.find_spec("deepspeed")
    where = spec.submodule_search_locations if spec else None
    return bool(where) and any(glob.glob(os.path.join(w, PACKAGES[op], f"{op}_op*.so")) for w in where)


def build_line(plan: dict[str, Any]) -> str | None:
    """One line before the trials when the first one builds ops; None when none."""
    ops = needed(plan)
    if not ops:
        return None
    root = cache_dir()
    missing = [op for op in ops if not _built(op, root)]
    if not missing:
        return None
    listed = " and ".join(f"`{op}`" for op in missing)
    return (f"[hpoc] the first DeepSpeed trial builds DeepSpeed's {listed} op{'s' * (len(missing) > 1)} with a C++ "
            f"compiler before it trains, first time only (~2-3 min; kept in {root})")
