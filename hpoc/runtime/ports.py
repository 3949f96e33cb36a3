"""Port blocks for Ray nodes, so that jobs sharing a host never fight over a port.

Every port a Ray node listens on is pinned. The ports come from a *slot*: a block of
`SLOT` (256) consecutive ports in 20000-64999, clear of the ports a Ray started with
defaults uses (6379, 8265, 10001, workers in 10002-19999, 52365) and of the host's
ephemeral range (`ip_local_port_range`, less `ip_local_reserved_ports`: the kernel hands
those out to client sockets of any program). With Linux's default range (32768-60999)
the 64 slots lie in two regions:

    slots  0..48  in 20000-32543
    slots 49..63  in 61000-64839

A host with another range gets the slots that fit (`slot_bases`), the first 64 of them;
every Ray node of a host reads the same range, so they share one layout.

A Ray node picks its slot from three numbers:

* `job_id`: SLURM_JOB_ID. Every array task has its own job id, so array tasks differ too.
* `rank`: which Ray node of this job on this *host* it is (0 on a real cluster, where
  each Ray node of a job is on its own host; 0, 1, 2, ... when fake nodes share a host).
* `attempt`: 0, or more when the node found a port of its slot taken and moved on.

    slot = (job_id + rank * RANK_STRIDE + rank // MAX_RANK + attempt) mod N_SLOTS

(mod the number of slots that fit, where fewer than N_SLOTS do: the guarantees below then
hold for fewer ids, and the probe at start catches the rest). Why two jobs on one host do
not collide (see tests/test_slurm_ports.py):

* Two Ray nodes share a port only if they have the same slot: slots never overlap.
* Same rank (the real-cluster case, rank 0): jobs whose ids differ by 1 .. N_SLOTS-1
  get different slots. SLURM hands out ids in sequence, so the other job sharing a host
  would have to be N_SLOTS (64) submissions older and still running on that very host.
* Ranks below MAX_RANK (fake clusters): slots collide only if the ids differ by a
  multiple of RANK_STRIDE modulo N_SLOTS, so any two jobs whose ids differ by less than
  RANK_STRIDE (16) are disjoint. The `rank // MAX_RANK` term keeps the nodes of one job
  apart from each other for any rank below N_SLOTS.
* The rare remaining case, and ports held by unrelated programs, are caught at start:
  the node probes its whole slot (`hpoc.runtime.node`) and moves to the next attempt.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

SLOT = 256
LOW, HIGH = 20000, 65000  # [LOW, HIGH): above the worker ports of a Ray started with defaults
RAY_DEFAULT = 52365  # a default Ray's dashboard agent port: in no slot
EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range, both ends included
N_SLOTS = 64  # 49 below and 15 above the default ephemeral range
RANK_STRIDE = 16
MAX_RANK = N_SLOTS // RANK_STRIDE  # 4 Ray nodes of one job per host keep the guarantee
MAX_ATTEMPTS = 8
FIXED = 16  # first ports of a slot: named listeners (9 used, the rest spare)


@dataclass(frozen=True)
class NodePorts:
    """Every port one Ray node listens on; `ray_start_args` turns them into flags."""

    slot: int
    gcs: int  # --port (head only; reserved on workers too so the layout is uniform)
    node_manager: int
    object_manager: int
    runtime_env_agent: int
    dashboard_agent_grpc: int
    dashboard_agent_listen: int
    metrics_export: int
    dashboard: int  # dashboard is off, but pinned so no default port is ever opened
    ray_client_server: int
    min_worker: int
    max_worker: int

    def all_ports(self) -> range:
        """The whole slot, fixed listeners and worker ports."""
        return range(self.gcs, self.max_worker + 1)

    def ray_start_args(self, *, head: bool, client_server: bool = True) -> list[str]:
        args = [
            f"--node-manager-port={self.node_manager}",
            f"--object-manager-port={self.object_manager}",
            f"--runtime-env-agent-port={self.runtime_env_agent}",
            f"--dashboard-agent-grpc-port={self.dashboard_agent_grpc}",
            f"--dashboard-agent-listen-port={self.dashboard_agent_listen}",
            f"--metrics-export-port={self.metrics_export}",
            f"--min-worker-port={self.min_worker}",
            f"--max-worker-port={self.max_worker}",
        ]
        if head:
            args = [f"--port={self.gcs}", f"--dashboard-port={self.dashboard}", *args]
            if client_server:  # only accepted when ray[client] (grpc) is installed
                args.append(f"--ray-client-server-port={self.ray_client_server}")
        return args


@functools.lru_cache(maxsize=8)
def slot_bases(ephemeral: tuple[int, int] = EPHEMERAL,
               reserved: tuple[tuple[int, int], ...] = ()) -> tuple[int, ...]:
    """First port of each slot clear of the ephemeral ports `ephemeral` (both ends included)
    less the `reserved` ranges, which the kernel never hands out: each run of such ports in
    [LOW, HIGH) cut into SLOTs from its start; at most N_SLOTS of them (pure)."""
    lo, hi = ephemeral
    blocked = [False] * (HIGH - LOW)  # ports that client sockets may hold, or a default Ray
    for port in range(max(lo, LOW), min(hi + 1, HIGH)):
        blocked[port - LOW] = True
    for start, end in reserved:
        for port in range(max(start, LOW), min(end + 1, HIGH)):
            blocked[port - LOW] = False
    blocked[RAY_DEFAULT - LOW] = True
    bases: list[int] = []
    port = LOW
    while port + SLOT <= HIGH and len(bases) < N_SLOTS:
        taken = next((p for p in range(port + SLOT - 1, port - 1, -1) if blocked[p - LOW]), None)
        if taken is None:
            bases.append(port)
            port += SLOT
        else:
            port = taken + 1
    return tuple(bases)


DEFAULT_BASES = slot_bases()


def slot_index(job_id: int, rank: int = 0, attempt: int = 0, slots: int = N_SLOTS) -> int:
    if job_id < 0 or rank < 0 or attempt < 0:
        raise ValueError(f"job_id, rank and attempt must be >= 0, got {job_id}, {rank}, {attempt}")
    return (job_id + rank * RANK_STRIDE + rank // MAX_RANK + attempt) % slots


def slot_base(slot: int, bases: Sequence[int] = DEFAULT_BASES) -> int:
    """First port of `slot`."""
    if not 0 <= slot < len(bases):
        raise ValueError("slot out of range")
    return bases[slot]


def parse_port_range(text: str) -> tuple[int, int] | None:
    """`ip_local_port_range` ("32768\t60999"); None when it does not read as one."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
        return None
    return int(parts[0]), int(parts[1])


def parse_reserved(text: str) -> tuple[tuple[int, int], ...]:
    """`ip_local_reserved_ports` ("8080,20000-29999", or empty): the ranges, both ends included."""
    out = []
    for item in text.strip().split(","):
        start, _, end = item.strip().partition("-")
        if start.isdigit() and (end or start).isdigit():
            out.append((int(start), int(end or start)))
    return tuple(out)


def node_ports(job_id: int, rank: int = 0, attempt: int = 0,
               bases: Sequence[int] = DEFAULT_BASES) -> NodePorts:
    """The ports of Ray node `rank` of job `job_id` on its host, among the slots `bases` (pure)."""
    slot = slot_index(job_id, rank, attempt, len(bases))
    base = slot_base(slot, bases)
    return NodePorts(
        slot=slot,
        gcs=base,
        node_manager=base + 1,
        object_manager=base + 2,
        runtime_env_agent=base + 3,
        dashboard_agent_grpc=base + 4,
        dashboard_agent_listen=base + 5,
        metrics_export=base + 6,
        dashboard=base + 7,
        ray_client_server=base + 8,
        min_worker=base + FIXED,
        max_worker=base + SLOT - 1,
    )
