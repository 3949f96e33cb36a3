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


DEFAULT_LAYOUT = [20000 + 256 * k for k in range(49)] + [61000 + 256 * k for k in range(15)]


@pytest.mark.parametrize("ephemeral, reserved", [
    ((32768, 60999), ()),              # Linux's default
    ((49152, 65535), ()),              # IANA's range, set on some sites
    ((15000, 40000), ()),              # low: only ports above it are left
    ((1024, 65535), ((20000, 29999), (8080, 8080))),  # widened, with ports reserved for services
    ((32768, 60999), ((40000, 45055),)),  # reserved inside the default range: more room
])  # fmt: skip
def test_slots_stay_clear_of_the_ephemeral_range_a_host_really_uses(ephemeral, reserved):
    """Slots assumed Linux's default range: on a host whose kernel hands out client ports from
    49152-65535, the slots in 61000-64839 could be held by any program's connection."""
    handed_out = set(range(ephemeral[0], ephemeral[1] + 1)) - {p for a, b in reserved for p in range(a, b + 1)}
    bases = ports.slot_bases(ephemeral, reserved)
    assert 0 < len(bases) <= ports.N_SLOTS
    seen: set[int] = set()
    for base in bases:
        span = set(range(base, base + ports.SLOT))
        assert not span & handed_out and not span & RAY_DEFAULTS and not span & seen
        assert ports.LOW <= base and base + ports.SLOT <= ports.HIGH
        seen |= span
    for job in range(0, 3000, 7):
        for rank in range(3):
            assert node_ports(job, rank, 0, bases).gcs in bases
    # any len(bases) consecutive job ids of rank 0 get different slots
    assert len({node_ports(job, 0, 0, bases).slot for job in range(100, 100 + len(bases))}) == len(bases)


def test_the_default_range_keeps_the_layout_of_before():
    assert ports.slot_bases() == ports.DEFAULT_BASES == tuple(DEFAULT_LAYOUT)
    assert [node_ports(j).gcs for j in range(64)] == DEFAULT_LAYOUT
    assert ports.slot_bases((1024, 65535)) == ()  # no slot fits: the caller decides


def test_the_kernel_files_are_read_as_linux_writes_them():
    assert ports.parse_port_range("32768\t60999\n") == (32768, 60999)
    assert ports.parse_port_range("") is None and ports.parse_port_range("9 3") is None
    assert ports.parse_reserved("\n") == ()
    assert ports.parse_reserved("8080,20000-29999,x\n") == ((8080, 8080), (20000, 29999))
