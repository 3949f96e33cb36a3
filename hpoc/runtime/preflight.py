"""Wait for every node of a job's Ray cluster, then check it before the study starts.

    python -m hpoc.runtime.preflight --address IP:PORT --nodes N [--job-dir DIR]
        [--cpus-per-node C] [--gpus-per-node G] [--start EPOCH] [--timeout S]

Connects with the job's token (RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH from the environment),
polls the GCS until N nodes are alive (naming the missing ones on timeout, and failing at
once when a node's step has died), then checks the CPU and GPU totals and that the
cluster refuses a client without the token. On success it prints exactly one line:

    hpoc: cluster ready nodes=N cpus=C gpus=G seconds=S

where S counts from --start (the job script's start, epoch seconds). Exit 1 otherwise.
`<job dir>/steps` (lines "PID NODE", written by the job script) names the expected nodes
and lets a dead step be reported by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpoc.runtime.cluster import alive

POLL_S = 0.2


class NotReady(Exception):
    """The cluster is not usable; the message says what is wrong."""


@dataclass(frozen=True)
class Step:
    pid: int
    node: str


def read_steps(job_dir: Path | None) -> list[Step]:
    if job_dir is None or not (job_dir / "steps").exists():
        return []
    steps = []
    for line in (job_dir / "steps").read_text().splitlines():
        pid, _, node = line.partition(" ")
        if pid.isdigit() and node:
            steps.append(Step(int(pid), node.strip()))
    return steps


def alive_nodes(client, timeout: float) -> list[tuple[str, dict[str, float]]]:
    """(node name, resources_total) of every alive node."""
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    infos = client.get_all_node_info(timeout=timeout, state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
    return [(info.node_name, dict(info.resources_total)) for info in infos.values()]


def _refused(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "auth" in text or "token" in text


def wait_for_nodes(address: str, want: int, job_dir: Path | None, timeout: float):
    from ray._raylet import GcsClient

    deadline = time.monotonic() + timeout
    steps = read_steps(job_dir)
    client = None
    nodes: list[tuple[str, dict[str, float]]] = []
    while True:
        try:
            client = client or GcsClient(address=address)
            nodes = alive_nodes(client, timeout=max(1.0, min(5.0, deadline - time.monotonic())))
        except Exception as exc:  # noqa: BLE001 - any failure to ask means "not ready (yet)"
            if _refused(exc):
                raise NotReady(f"the cluster at {address} refused our token: {exc}") from None
            nodes = []
        if len(nodes) >= want:
            return nodes
        joined = {name for name, _ in nodes}
        dead = [s.node for s in steps if s.node not in joined and not alive(s.pid)]
        if dead:
            raise NotReady(f"the Ray step on {', '.join(dead)} exited before joining; "
                           "see its ray-<node>.log in the job's log directory")
        if time.monotonic() >= deadline:
            missing = [s.node for s in steps if s.node not in joined]
            named = f"; missing: {', '.join(missing)}" if missing else ""
            raise NotReady(f"only {len(nodes)} of {want} Ray nodes joined within {timeout:g} s{named}")
        time.sleep(POLL_S)


def refuses_strangers(address: str) -> bool:
    """True if the GCS rejects a call that carries no token (token auth is really on)."""
    import grpc

    from hpoc.runtime.probe import ask_gcs

    return ask_gcs(address, timeout=5)[0] == grpc.StatusCode.UNAUTHENTICATED


def check(address: str, want: int, *, job_dir: Path | None = None, cpus_per_node: float | None = None,
          gpus_per_node: float | None = None, timeout: float = 300) -> tuple[int, float, float]:
    if os.environ.get("RAY_AUTH_MODE") != "token" or not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        raise NotReady("RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH must be set")
    nodes = wait_for_nodes(address, want, job_dir, timeout)
    cpus = sum(r.get("CPU", 0.0) for _, r in nodes)
    gpus = sum(r.get("GPU", 0.0) for _, r in nodes)
    if len(nodes) != want:
        raise NotReady(f"expected {want} Ray nodes, found {len(nodes)}: {', '.join(sorted(n for n, _ in nodes))}")
    if cpus_per_node is not None and cpus != want * cpus_per_node:
        raise NotReady(f"expected {want * cpus_per_node:g} CPUs ({cpus_per_node:g} per node), Ray sees {cpus:g}")
    if gpus_per_node is not None and gpus != want * gpus_per_node:
        raise NotReady(f"expected {want * gpus_per_node:g} GPUs ({gpus_per_node:g} per node), Ray sees {gpus:g}; "
                       "check the GPU request (slurm.gpu_request: --gres, --gpus-per-node) and "
                       "CUDA_VISIBLE_DEVICES (ROCR_VISIBLE_DEVICES on AMD nodes) on the nodes")
    if not refuses_strangers(address):
        raise NotReady(f"the cluster at {address} accepts clients without the token: token auth is off")
    return len(nodes), cpus, gpus


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpoc.runtime.preflight", description=__doc__.split("\n")[0])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="head IP:PORT (default $RAY_ADDRESS)")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--job-dir", type=Path, help="job directory with the `steps` file")
    p.add_argument("--cpus-per-node", type=float)
    p.add_argument("--gpus-per-node", type=float)
    p.add_argument("--start", type=float, default=None, help="job start, epoch seconds")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(argv)
    if not args.address:
        p.error("no --address and no RAY_ADDRESS")
    start = args.start if args.start is not None else time.time()
    try:
        nodes, cpus, gpus = check(args.address, args.nodes, job_dir=args.job_dir, cpus_per_node=args.cpus_per_node,
                                  gpus_per_node=args.gpus_per_node, timeout=args.timeout)
    except NotReady as exc:
        print(f"hpoc: cluster not ready: {exc}", file=sys.stderr)
        return 1
    print(f"hpoc: cluster ready nodes={nodes} cpus={cpus:g} gpus={gpus:g} seconds={time.time() - start:.1f}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
