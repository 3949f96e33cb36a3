"""Trials given GPUs that torch cannot use.

SLURM and Ray count a job's GPUs from its allocation, not from torch: with a CPU-only
build of torch (`pip install torch` on a node without CUDA, an aarch64 wheel) or a node
whose driver is missing, every trial reserved its GPUs and trained on the CPU, many times
slower, and nothing said so.
"""

from __future__ import annotations

import socket
from typing import Any

from hpoc.runtime import node, visible

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
    # the vendor, not the count: GPUs the job's cgroup denies are AMD's still (node.amd_gpus)
    amd = (node.DEV / "kfd").exists() and not any(node.DEV.glob("nvidia[0-9]*"))
    if amd and getattr(torch.version, "hip", None) is None:  # `pip install torch` on LUMI: a CUDA build
        return (f"`gpus_per_worker = {gpus:g}` reserves GPUs for each worker, but this torch "
                f"({torch.__version__}, {torch.__file__.rsplit('/torch/', 1)[0]}) is built for CUDA and "
                f"{socket.gethostname()}'s GPUs are AMD ({node.DEV}/kfd): every trial would train on the CPU\n"
                f"  help: install a ROCm build of torch (https://pytorch.org/get-started/locally/, or your "
                f"site's module or container) in the environment the trials run in (`slurm.python`, `slurm.setup`)")
    return (f"`gpus_per_worker = {gpus:g}` reserves GPUs for each worker, but torch on "
            f"{socket.gethostname()} sees none ({visible.shown()}, torch.cuda.device_count() = "
            f"{torch.cuda.device_count()}): the trial would train on the CPU\n"
            f"  help: check the node's GPU driver (`{'rocm-smi' if amd else 'nvidia-smi'}` there) and the "
            f"job's GPU request (`slurm.gpu_request`)")

