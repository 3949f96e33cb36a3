"""The memory this process may still use: the machine's available memory, or less under a
memory cgroup's limit (a SLURM job's `--mem`/`--mem-per-cpu`, a container's `--memory`).

psutil sees the host: a job of `--mem=8G` on a 512 GB node had 500 GB "available" and its
trials were killed by the cgroup's OOM killer. The limit that binds is the tightest along
the process's cgroup path, each level's limit less its usage (the page cache it can drop,
`inactive_file` and `active_file`, not counted as used: a getter that read its files from
disk filled it, and the kernel reclaims both lists before it OOM-kills, as the host's
"available" counts them; shared memory, Ray's object store, is on the anon lists: used).
cgroup v2: `memory.max` ("max": none) and `memory.current` under the unified path; v1:
`memory.limit_in_bytes` (a huge sentinel: none) and `memory.usage_in_bytes` under the
memory controller's. A file that cannot be read gives no finding, never an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpoc.sizes import size, slurm_mem

_V1_UNLIMITED = 2**62  # v1 writes PAGE_COUNTER_MAX pages (about 2**63 bytes) for no limit


@dataclass(frozen=True)
class Room:
    available: int             # bytes
    limit: int | None = None   # the cgroup limit that binds; None: the machine's memory does
    nodes: int = 1             # more: `available` is the limit of each of a job's nodes, empty

    def phrase(self) -> str:
        """`the 3.1 GiB left of the job's memory limit of 8.0 GiB (SLURM --mem / cgroup)`."""
        if self.nodes > 1:
            return (f"the job's memory limit of {size(self.available)} per node "
                    "(SLURM --mem / --mem-per-cpu / --mem-per-gpu)")
        if self.limit is None:
            return f"the {size(self.available)} this machine has available"
        whose = "the job's memory limit" if os.environ.get("SLURM_JOB_ID") else "this process's memory limit"
        return (f"the {size(self.available)} left of {whose} of {size(self.limit)} "
                "(SLURM --mem / cgroup)")

    def more(self) -> str:
        """Where more memory comes from."""
        if self.limit is None:
            return "run where there is more memory"
        return "ask the job for more memory (`slurm.mem`, or --mem of salloc/srun)"


def room(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> Room | None:
    """What this process may still use, or None when not even the machine's memory is known."""
    host = _host_available()
    bound = cgroup_bound(proc, root)
    if bound is not None and (host is None or bound[0] < host):
        return Room(bound[0], bound[1])
    return Room(host) if host is not None else None


def node_limit(plan: dict[str, Any], env: Mapping[str, str] = os.environ) -> int | None:
    """The memory limit of each node of this SLURM job, in bytes: slurm_mib with the most
    CPUs and GPUs a node of the job has (a worker may land there), else the plan's
    `slurm.mem` (as sbatch reads it). None outside a job, or where none is said or it is 0
    (all of a node's memory: not known from here)."""
    if not env.get("SLURM_JOB_ID"):
        return None
    slurm = plan.get("slurm") or {}
    mib = slurm_mib(env, _most_cpus(env) or int(slurm.get("cpus_per_node") or 0),
                    _most_gpus(env) or int(slurm.get("gpus_per_node") or 0))
    if mib is None and (read := slurm_mem(str(slurm.get("mem") or ""))):
        mib = read[1]
    return mib * 2**20 if mib else None


def slurm_mib(env: Mapping[str, str], cpus: int | None, gpus: int | None) -> int | None:
    """The job's MiB on a node of `cpus` CPUs and `gpus` GPUs, from its one memory option's
    variable (plain MiB): SLURM_MEM_PER_NODE, _PER_CPU times `cpus`, or _PER_GPU times `gpus`.
    0: all of a node's (--mem=0), or the count not known; None where none is said."""
    for name, times in (("SLURM_MEM_PER_NODE", 1), ("SLURM_MEM_PER_CPU", cpus), ("SLURM_MEM_PER_GPU", gpus)):
        if re.fullmatch(r"[0-9]+", said := env.get(name, "")):
            return int(said) * (times or 0)
    return None


def _most_cpus(env: Mapping[str, str]) -> int:
    """The most CPUs a node of the job has: SLURM_JOB_CPUS_PER_NODE (`72(x2),36`), else this
    node's SLURM_CPUS_ON_NODE; 0 where neither is said."""
    counts = re.findall(r"(\d+)(?:\(x\d+\))?", env.get("SLURM_JOB_CPUS_PER_NODE", ""))
    if counts:
        return max(int(c) for c in counts)
    on_node = env.get("SLURM_CPUS_ON_NODE", "")
    return int(on_node) if on_node.isdigit() else 0


def _most_gpus(env: Mapping[str, str]) -> int:
    """The GPUs a node of the job has: SLURM_GPUS_PER_NODE (`4`, `a100:4`, types summed),
    else this node's SLURM_GPUS_ON_NODE; 0 where neither is said."""
    per_node = env.get("SLURM_GPUS_PER_NODE", "")
    counts = [part.rsplit(":", 1)[-1] for part in per_node.split(",") if part]
    if counts and all(c.isdigit() for c in counts):
        return sum(int(c) for c in counts)
    on_node = env.get("SLURM_GPUS_ON_NODE", "")
    return int(on_node) if on_node.isdigit() else 0


def _host_available() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def cgroup_bound(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[int, int] | None:
    """(bytes left, limit) of the tightest memory limit on this process's cgroup path and
    its ancestors, or None where there is none (or none can be read)."""
    found = [b for d in _levels(proc, root) if (b := _level(*d)) is not None]
    return min(found) if found else None


def _levels(proc: str, root: str) -> list[tuple[str, str]]:
    """(directory, "v1"/"v2") of each level from this process's cgroup up to the hierarchy's
    root (a container's root has its own limit)."""
    try:
        with open(proc) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base, version = root, "v2"
        elif "memory" in controllers.split(","):
            base, version = os.path.join(root, "memory"), "v1"
        else:
            continue
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        out += [(os.path.join(base, *parts[:k]), version) for k in range(len(parts), -1, -1)]
    return out


def _level(directory: str, version: str) -> tuple[int, int] | None:
    names = ("memory.max", "memory.current", "") if version == "v2" else \
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_")  # v1: the subtree's counts
    limit = _number(os.path.join(directory, names[0]))
    if limit is None or limit >= _V1_UNLIMITED:
        return None
    used = _number(os.path.join(directory, names[1]))
    if used is None:
        return None
    stat = os.path.join(directory, "memory.stat")
    used -= sum(_stat(stat, f"{names[2]}{lru}_file") for lru in ("inactive", "active"))
    return max(0, limit - max(0, used)), limit


def _number(path: str) -> int | None:
    """The file's integer; None for "max", a missing or unreadable file, or other text."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            found = re.search(rf"^{key} (\d+)$", fh.read(), re.MULTILINE)
    except OSError:
        return 0
    return int(found.group(1)) if found else 0
