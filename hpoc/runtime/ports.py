"""Port blocks for Ray nodes, so that jobs sharing a host never fight over a port.

Every port a Ray node listens on is pinned. The ports come from a *slot*: a block of
`SLOT` (256) consecutive ports. The 64 slots lie in two regions that avoid both Linux's
default ephemeral range (32768-60999: the kernel hands those out to client sockets of any
program) and the ports a Ray started with defaults uses (6379, 8265, 10001, workers in
10002-19999, 52365):

    slots  0..48  in 20000-32543
    slots 49..63  in 61000-64839

A Ray node picks its slot from three numbers:

* `job_id`: SLURM_JOB_ID. Every array task has its own job id, so array tasks differ too.
* `rank`: which Ray node of this job on this *host* it is (0 on a real cluster, where
  each Ray node of a job is on its own host; 0, 1, 2, ... when fake nodes share a host).
* `attempt`: 0, or more when the node found a port of its slot taken and moved on.

    slot = (job_id + rank * RANK_STRIDE + rank // MAX_RANK + attempt) mod N_SLOTS

Why two jobs on one host do not collide (see tests/test_slurm_ports.py):

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

from dataclasses import dataclass

SLOT = 256
REGIONS = ((20000, 32768), (61000, 65000))  # [start, end) below and above the ephemeral range
_REGION_SLOTS = [(start, (end - start) // SLOT) for start, end in REGIONS]
N_SLOTS = sum(n for _, n in _REGION_SLOTS)  # 49 + 15 = 64
LOW, HIGH = REGIONS[0][0], REGIONS[-1][1]
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


def slot_index(job_id: int, rank: int = 0, attempt: int = 0) -> int:
    if job_id < 0 or rank < 0 or attempt < 0:
        raise ValueError(f"job_id, rank and attempt must be >= 0, got {job_id}, {rank}, {attempt}")
    return (job_id + rank * RANK_STRIDE + rank // MAX_RANK + attempt) % N_SLOTS


def slot_base(slot: int) -> int:
    """First port of `slot`."""
    for start, count in _REGION_SLOTS:
        if slot < count:
            return start + slot * SLOT
        slot -= count
    raise ValueError("slot out of range")


def node_ports(job_id: int, rank: int = 0, attempt: int = 0) -> NodePorts:
    """The ports of Ray node `rank` of job `job_id` on its host (pure)."""
    slot = slot_index(job_id, rank, attempt)
    base = slot_base(slot)
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
