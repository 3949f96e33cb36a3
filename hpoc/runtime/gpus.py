"""Trials given GPUs that torch cannot use.

SLURM and Ray count a job's GPUs from its allocation, not from torch: with a CPU-only
build of torch (`pip install torch` on a node without CUDA, an aarch64 wheel) or a node
whose driver is missing, every trial reserved its GPUs and trained on the CPU, many times
slower, and nothing said so.
"""

from __future__ import annotations

import os
import socket
from typing import Any

HELP = ("install a CUDA (or ROCm) build of torch in the environment the trials run in "
        "(`slurm.python`, `slurm.setup`), or set `gpus_per_worker = 0` to train on CPUs")


def build_problem(gpus: float) -> str | None:
    """The whole environment's: trials given `gpus` GPUs per worker, and a torch built
    without CUDA or ROCm. None when it can use them (or there are none to use)."""
    if not gpus:
        return None
    import torch

    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return (f"`gpus_per_worker = {gpus:g}` reserves GPUs for each worker, but this torch "
                f"({torch.__version__}, {torch.__file__.rsplit('/torch/', 1)[0]}) is built without "
                f"CUDA: every trial would train on the CPU\n  help: {HELP}")
    return None


def device_problem(gpus: float, device: Any = None) -> str | None:
    """This process's: a worker given `gpus` GPUs that trains on `device`, a CPU (by default:
    that torch sees no GPU)."""
    import torch

    on_cpu = not torch.cuda.is_available() if device is None else getattr(device, "type", "cpu") == "cpu"
    if not gpus or not on_cpu:
        return None
    why = build_problem(gpus)
    if why:
        return why
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "CUDA_VISIBLE_DEVICES unset"
    return (f"`gpus_per_worker = {gpus:g}` reserves GPUs for each worker, but torch on "
            f"{socket.gethostname()} sees none ({seen}, torch.cuda.device_count() = "
            f"{torch.cuda.device_count()}): the trial would train on the CPU\n"
            f"  help: check the node's GPU driver (`nvidia-smi` there) and the job's GPU request "
            f"(`slurm.gpu_request`)")

