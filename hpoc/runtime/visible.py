"""Which GPUs a process sees: NVIDIA's CUDA_VISIBLE_DEVICES, AMD's ROCR_ and HIP_VISIBLE_DEVICES.

On AMD nodes (LUMI) SLURM hides the job's other GPUs with ROCR_VISIBLE_DEVICES, and HIP
numbers what that leaves 0..n-1; HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES, which HIP
reads when it is unset) picks among those. Ray, where AMD SMI finds the GPUs, gives each
worker its GPUs in HIP_VISIBLE_DEVICES, and refuses to start, or even be imported, when
ROCR_VISIBLE_DEVICES is set without it ("Please use HIP_VISIBLE_DEVICES instead").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

ROCR, HIP, CUDA = "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"


def _items(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def hip_for_rocr(env: Mapping[str, str]) -> str | None:
    """The HIP_VISIBLE_DEVICES that shows a process the GPUs it sees now, when ROCR is set
    and HIP is not: CUDA_VISIBLE_DEVICES's (HIP reads it then; `hpoc submit --cluster
    local` sets it), else every GPU ROCR leaves (`0,...,n-1`: HIP counts only those).
    Else None."""
    if ROCR not in env or HIP in env:
        return None
    if CUDA in env:
        return env[CUDA]
    return ",".join(str(i) for i in range(len(_items(env[ROCR]))))


def ray_takes_amd_gpus() -> bool:
    """Whether Ray takes this node's GPUs for AMD's, by its own test (AMD SMI finds some),
    run from Ray's file without importing Ray: that import is what fails. Without AMD SMI
    (Ray 2.60 needs the `amdsmi` package) Ray hands each worker its GPUs in
    CUDA_VISIBLE_DEVICES, which HIP also reads, and a HIP_VISIBLE_DEVICES of all the node's
    GPUs would override it: every trial on the first GPU."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("ray")  # finds it, imports nothing
        if spec is None or not spec.submodule_search_locations:
            return False
        path = Path(list(spec.submodule_search_locations)[0], "_private", "thirdparty", "pyamdsmi", "pyamdsmi.py")
        file_spec = importlib.util.spec_from_file_location("hpoc_ray_pyamdsmi", path)
        smi = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(smi)
        smi.smi_initialize()
        try:
            return smi.smi_get_device_count() > 0
        finally:
            smi.smi_shutdown()
    except Exception:  # no Ray, no AMD SMI, no GPU: Ray's own test fails alike
        return False


def adopt_rocr(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set HIP_VISIBLE_DEVICES from SLURM's ROCR_VISIBLE_DEVICES (the same GPUs) where Ray
    takes the node's GPUs for AMD's, so that Ray, which this process or its children load,
    accepts them and hands them out in HIP_VISIBLE_DEVICES."""
    hip = hip_for_rocr(environ)
    if hip is not None and ray_takes_amd_gpus():
        environ[HIP] = hip


def count(env: Mapping[str, str]) -> int | None:
    """GPUs the visible-devices variables leave a process; None when none is set."""
    for name in (CUDA, HIP, ROCR):  # HIP picks among ROCR's: the narrower one
        if name in env:
            return len(_items(env[name]))
    return None


def share(gpus: list[str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Show a process the GPUs `gpus` (Ray's ids) of all workers on its node, as Ray Train
    does for NCCL's peer links. Ray hid the others in the variable of the node's GPUs:
    CUDA_VISIBLE_DEVICES, and on AMD HIP_VISIBLE_DEVICES, which wins over it there."""
    environ[CUDA] = ",".join(gpus)
    if HIP in environ:
        environ[HIP] = ",".join(gpus)


def hip_follows_cuda(environ: MutableMapping[str, str] = os.environ) -> None:
    """On AMD nodes, a Ray Train worker's HIP_VISIBLE_DEVICES (its own GPU, from Ray) takes
    the GPUs Ray Train shared in CUDA_VISIBLE_DEVICES, whose index of the worker's GPU Train
    then hands torch (ray-project/ray#49260: "invalid device ordinal" on local rank 1)."""
    if HIP in environ and CUDA in environ:
        environ[HIP] = environ[CUDA]


def shown(environ: Mapping[str, str] = os.environ) -> str:
    """The visible-devices variables as set, for a message: `CUDA_VISIBLE_DEVICES=''`."""
    said = [f"{name}={environ[name]!r}" for name in (CUDA, HIP, ROCR) if name in environ]
    return ", ".join(said) or "CUDA_VISIBLE_DEVICES unset"
