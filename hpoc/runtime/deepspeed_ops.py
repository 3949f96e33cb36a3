"""DeepSpeed's C++ ops that the first trial builds, said before it: DeepSpeed compiles them
on first use (2-3 minutes on a small machine), and the study showed its trials "running"
without a word meanwhile. Read from the plan and the build cache alone (no DeepSpeed
import in the driver); an op DeepSpeed was installed with prebuilt for the trials'
accelerator is not built."""

from __future__ import annotations

import ast
import contextlib
import glob
import importlib.util
import os
import sys
from typing import Any

from hpoc.plan import dsjson


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
    if params.get("torch_adam"):  # as DeepSpeed reads it: any true value
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


def _built(op: str, root: str, accelerator: str) -> bool:
    return bool(glob.glob(os.path.join(root, op, f"{op}*.so"))) or _prebuilt(op, accelerator)


def _prebuilt(op: str, accelerator: str) -> bool:
    """As DeepSpeed's `OpBuilder.load`: an op its install built (DS_BUILD_OPS=1) is loaded only
    on the accelerator it was built for, and built again elsewhere. Read from the file its
    setup wrote, not imported."""
    spec = importlib.util.find_spec("deepspeed")
    for where in (spec.submodule_search_locations or []) if spec else []:
        try:
            with open(os.path.join(where, "git_version_info_installed.py"), encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError):
            return False  # not installed by its setup (a source checkout): DeepSpeed builds every op
        said: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                with contextlib.suppress(ValueError, TypeError):
                    said[node.targets[0].id] = ast.literal_eval(node.value)
        ops = said.get("installed_ops")
        return isinstance(ops, dict) and bool(ops.get(op)) and said.get("accelerator_name") == accelerator
    return False


def build_line(plan: dict[str, Any]) -> str | None:
    """One line before the trials when the first one builds ops; None when none."""
    ops = needed(plan)
    if not ops:
        return None
    root = cache_dir()
    accelerator = "cuda" if plan["resources"].get("gpus_per_worker") else "cpu"  # DeepSpeed's, ROCm's too
    missing = [op for op in ops if not _built(op, root, accelerator)]
    if not missing:
        return None
    listed = " and ".join(f"`{op}`" for op in missing)
    return (f"[hpoc] the first DeepSpeed trial builds DeepSpeed's {listed} op{'s' * (len(missing) > 1)} with a C++ "
            f"compiler before it trains, first time only (~2-3 min; kept in {root})")
