"""Whether one trial's data fits in this machine's memory, said as the data loads, before Ray.

The driver puts the splits into Ray's object store once (spilled to disk when it is too big).
A trial's workers read NumPy arrays from there without a copy, but each worker process
unpickles torch tensors into memory of its own: tensors that could not fit even one trial
were loaded, sent, and the trial killed by the OOM killer mid-study.
"""

from __future__ import annotations

from typing import Any

from hpoc.runtime.pipeline import data_step

_DEPTH = 4  # (x, y) in a split, ((x1, x2), y), a dict of them: as compact.py walks them


def sizes(data: Any) -> tuple[int, int]:
    """(bytes of the splits' arrays, tensors and frames; bytes of their torch tensors),
    each object counted once. A Dataset class of one's own is not looked into (it may load
    lazily)."""
    import numpy as np
    import torch

    seen: set[Any] = set()  # ids, and storages (device, address)
    total = tensors = 0

    def walk(obj: Any, depth: int) -> None:
        nonlocal total, tensors
        if obj is None or id(obj) in seen or depth > _DEPTH:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            n = _storage_bytes(obj, seen)
            total, tensors = total + n, tensors + n
        elif isinstance(obj, np.ndarray):
            total += obj.nbytes
        elif type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "memory_usage"):
            total += int(np.sum(obj.memory_usage(index=False)))
        elif isinstance(obj, torch.utils.data.TensorDataset):
            walk(obj.tensors, depth)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (tuple, list)):
            for v in obj:
                walk(v, depth + 1)

    walk(data, 0)
    return total, tensors


def _storage_bytes(tensor: Any, seen: set[Any]) -> int:
    """Bytes a worker unpickles for `tensor`: its storage, once however many views share it
    (torch pickles each storage whole, once; compact.py gave other views their own)."""
    try:
        storage = tensor.untyped_storage()
        key = ("storage", tensor.device, storage.data_ptr())
        n = storage.nbytes()
    except (RuntimeError, NotImplementedError):  # sparse and other layouts without one storage
        return tensor.numel() * tensor.element_size()
    if key in seen:
        return 0
    seen.add(key)
    return n


def too_big(plan: dict[str, Any], data: Any, available: int) -> str | None:
    """Why one trial's copies of the data exceed the `available` bytes of memory, or None:
    each of its workers unpickles the tensors into memory of its own."""
    total, tensors = sizes(data)
    workers = int((plan.get("resources") or {}).get("workers") or 1)
    need = tensors * workers  # the object store's copy may go to disk (Ray's fallback): not counted
    if need <= available:
        return None
    return (f"{data_step(plan)} returned splits of {_size(total)}, of which {_size(tensors)} torch "
            f"tensors that each of a trial's {workers} worker process{'es' if workers > 1 else ''} "
            f"copies: {_size(need)} for one trial, more than the "
            f"{_size(available)} this machine has available\n  help: load a sample of the data "
            "for the search, give NumPy arrays (a trial's workers share one copy of those), or "
            "run where there is more memory")


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def available_memory() -> int | None:
    """Bytes of memory this machine has available now, or None when unknown."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
