"""Whether one trial's data fits in the memory left (memlimit.py: the machine's, or the job's
cgroup limit), said as the data loads, before Ray; and how many trials' copies fit at once.

The driver puts the splits into Ray's object store once (spilled to disk when it is too big).
A trial's workers read NumPy arrays from there without a copy, but each worker process
unpickles torch tensors into memory of its own: tensors that could not fit even one trial
were loaded, sent, and the trial killed by the OOM killer mid-study.
"""

from __future__ import annotations

import os
from typing import Any

from hpoc.runtime import memlimit
from hpoc.runtime.memlimit import Room
from hpoc.runtime.pipeline import data_step
from hpoc.sizes import size

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


def too_big(plan: dict[str, Any], walked: tuple[int, int], room: Room) -> str | None:
    """Why one trial's copies of the data (`walked`: its `sizes`) exceed the memory left
    (`room`), or None: each of its workers unpickles the tensors into memory of its own."""
    total, tensors = walked
    workers = _workers(plan)
    # over several nodes, the fewest of a trial's workers its fullest node can hold
    need = tensors * -(-workers // room.nodes)  # the object store's copy may go to disk (Ray's fallback): not counted
    if need <= room.available:
        return None
    where = "for one trial" if room.nodes == 1 else f"on one of the job's {room.nodes} nodes at least"
    return (f"{data_step(plan)} returned splits of {size(total)}, of which {size(tensors)} torch "
            f"tensors that each of a trial's {workers} worker process{'es' if workers > 1 else ''} "
            f"copies: {size(need)} {where}, more than {room.phrase()}\n  help: load a "
            "sample of the data for the search, give NumPy arrays (a trial's workers share one "
            f"copy of those), or {room.more()}")


def trials_that_fit(plan: dict[str, Any], tensors: int, room: Room) -> int | None:
    """How many trials' copies of `tensors` bytes (`sizes(data)[1]`) fit in `room` at once;
    None when they take none."""
    each = tensors * _workers(plan)
    return room.available // each if each else None


def crowded(plan: dict[str, Any], tensors: int, room: Room, at_once: int, slots: list[int]) -> str | None:
    """What says that `at_once` trials' copies of `tensors` bytes a worker do not fit in
    `room`, or None when they do: on one machine, all of them; on a job's nodes, whose
    CPUs and GPUs hold `slots` workers each (session.worker_slots), those on its fullest
    node. Where each trial goes is Ray's choice: only the fewest copies the fullest node gets
    however they are placed is weighed, against one node's limit (`room`, empty)."""
    if room.nodes > 1:
        return _crowded_nodes(plan, tensors, room, at_once, slots)
    fit = trials_that_fit(plan, tensors, room)
    if fit is None or fit >= at_once:
        return None
    return (f"{at_once} trials run at once here, but their copies of the data ({size(tensors * _workers(plan))} "
            f"each) fit {fit} in {room.phrase()}: the others would be killed by the OOM killer mid-study; "
            f"set `max_concurrent = {fit}` (fewer may fit: a trial's model and batches take memory too)")


def _crowded_nodes(plan: dict[str, Any], tensors: int, room: Room, at_once: int, slots: list[int]) -> str | None:
    per_node = room.available // tensors if tensors else None  # workers' copies an empty node holds
    workers = _workers(plan)
    least = fullest_node(at_once * workers, slots)
    if per_node is None or least <= per_node:
        return None
    fit = max(1, sum(min(s, per_node) for s in slots) // workers)  # an even spread's
    copies = "copies of the data" if workers == 1 else "workers' copies of the data"
    each = f"{size(tensors)} each" + ("" if workers == 1 else ", one a worker")
    used = sum(1 for s in slots if s)  # nodes without CPU or GPU room run no trial
    return (f"{at_once} trials run at once on the job's {used} nodes, but their {copies} ({each}) "
            f"fit {per_node} a node in {room.phrase()}: however Ray places them, a node gets {least} or "
            f"more, and those over {per_node} would be killed by the OOM killer mid-study; set "
            f"`max_concurrent = {fit}` (they fit if Ray spreads them evenly; fewer may fit: a trial's "
            "model and batches take memory too)")


def fullest_node(workers: int, slots: list[int]) -> int:
    """The fewest workers the fullest node holds when `workers` are placed on nodes that
    hold `slots` each: the least L with sum(min(s, L)) >= workers."""
    if not slots or workers <= 0:
        return 0
    least = -(-workers // len(slots))
    while least < max(slots) and sum(min(s, least) for s in slots) < workers:
        least += 1
    return least


def _workers(plan: dict[str, Any]) -> int:
    return int((plan.get("resources") or {}).get("workers") or 1)


def node_memory(plan: dict[str, Any]) -> Room | None:
    """A job of several nodes: each node's limit, empty (the other nodes' usage is not seen
    from here), or None when not known or the job has one node."""
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or ""
    limit = memlimit.node_limit(plan)
    if limit is None or not nodes.isdigit() or int(nodes) < 2:
        return None
    return Room(limit, limit, nodes=int(nodes))


def available_memory() -> Room | None:
    """The memory this process may still use (memlimit.py), or None when unknown."""
    return memlimit.room()
