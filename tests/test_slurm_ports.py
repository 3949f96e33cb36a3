"""Port slots: every Ray port pinned, inside the range, disjoint between jobs and nodes."""

from __future__ import annotations

import itertools

import pytest

from hpoc.runtime import ports
from hpoc.runtime.ports import node_ports

EPHEMERAL = range(32768, 61000)  # Linux default ip_local_port_range


def _span(p: ports.NodePorts) -> set[int]:
    return set(p.all_ports())


RAY_DEFAULTS = {6379, 8265, 10001, 52365, *range(10002, 20000)}  # a Ray started with defaults


def test_slots_avoid_ephemeral_ports_and_ray_defaults():
    assert ports.N_SLOTS == 64
    seen: set[int] = set()
    for slot in range(ports.N_SLOTS):
        span = set(range(ports.slot_base(slot), ports.slot_base(slot) + ports.SLOT))
        assert 10000 <= min(span) and max(span) <= 65000
        assert not span & set(EPHEMERAL) and not span & RAY_DEFAULTS
        assert not span & seen
        seen |= span
    for job in range(0, 5000, 7):
        for rank in range(6):
            p = node_ports(job, rank)
            assert len(_span(p)) == ports.SLOT and p.slot == ports.slot_index(job, rank)


def test_every_named_port_is_distinct_and_outside_the_worker_range():
    p = node_ports(123456, 2)
    named = [p.gcs, p.node_manager, p.object_manager, p.runtime_env_agent, p.dashboard_agent_grpc,
             p.dashboard_agent_listen, p.metrics_export, p.dashboard, p.ray_client_server]
    assert len(set(named)) == len(named)
    workers = range(p.min_worker, p.max_worker + 1)
    assert not set(named) & set(workers)
    assert len(workers) >= 200  # room for a big node's worker processes


def test_ray_start_args_pin_every_port():
    p = node_ports(77, 0)
    head = " ".join(p.ray_start_args(head=True))
    for flag in ("--port=", "--node-manager-port=", "--object-manager-port=", "--runtime-env-agent-port=",
                 "--dashboard-agent-grpc-port=", "--dashboard-agent-listen-port=", "--metrics-export-port=",
                 "--min-worker-port=", "--max-worker-port=", "--dashboard-port=", "--ray-client-server-port="):
        assert flag in head, flag
    worker = p.ray_start_args(head=False)  # head-only flags are refused by workers
    assert not [a for a in worker if a.startswith(("--port=", "--dashboard-port=", "--ray-client-server-port="))]
    assert f"--node-manager-port={p.node_manager}" in worker
    assert "--ray-client-server-port" not in " ".join(p.ray_start_args(head=True, client_server=False))


@pytest.mark.parametrize("start", [0, 1, 63, 64, 12345, 999_999_937])
def test_consecutive_job_ids_on_one_node_per_host_never_collide(start):
    """Real clusters: one Ray node per job per host (rank 0); any N_SLOTS consecutive ids."""
    spans = [_span(node_ports(start + i, 0)) for i in range(ports.N_SLOTS)]
    for a, b in itertools.combinations(spans, 2):
        assert not a & b


@pytest.mark.parametrize("start", [1, 500, 70_001])
def test_jobs_sharing_a_host_with_several_nodes_each_never_collide(start):
    """Fake clusters: up to MAX_RANK Ray nodes of a job per host; ids less than RANK_STRIDE apart."""
    owners: dict[int, tuple[int, int]] = {}
    for job in range(start, start + ports.RANK_STRIDE):
        for rank in range(ports.MAX_RANK):
            for port in _span(node_ports(job, rank)):
                assert port not in owners, f"job {job} rank {rank} collides with {owners[port]}"
                owners[port] = (job, rank)


def test_nodes_of_one_job_never_collide_for_any_rank():
    for job in (0, 41, 10_000_019):
        slots = [ports.slot_index(job, rank) for rank in range(ports.N_SLOTS)]
        assert len(set(slots)) == ports.N_SLOTS


def test_array_tasks_get_their_own_job_ids_and_so_their_own_slots():
    # SLURM gives each array task its own SLURM_JOB_ID (the first equals the array job id).
    array_tasks = [5000, 5001, 5002, 5003]
    spans = [_span(node_ports(j, r)) for j in array_tasks for r in range(3)]
    for a, b in itertools.combinations(spans, 2):
        assert not a & b


def test_attempts_move_to_another_slot():
    assert node_ports(10, 0, 1).slot != node_ports(10, 0, 0).slot
    assert len({node_ports(10, 0, a).slot for a in range(ports.MAX_ATTEMPTS)}) == ports.MAX_ATTEMPTS


def test_negative_inputs_are_refused():
    with pytest.raises(ValueError):
        node_ports(-1)
