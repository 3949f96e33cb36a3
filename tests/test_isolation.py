"""Two whole studies on the same nodes at the same time (real sbatch, real Ray).

While both run, on the shared nodes:
* their Ray nodes use disjoint port ranges, and every trial of a study runs on its own
  job's Ray nodes (no cross-attach); each driver talks to its own head;
* the Ray processes listen on all interfaces only where Ray gives no choice (the GCS, the
  node manager and the object manager: docs/reliability.md) - everything else is bound to
  the node's address or to loopback - and only on ports of the job's own slot;
* each token is a 0600 file in a 0700 directory, appears in no process's command line and
  in no Ray process's environment; each GCS refuses a call without a token, with a wrong
  one and with the other job's, and answers with its own (so the refusals are real).
Afterwards both studies completed with all their trials, neither token is in any log,
plan or result file, and nothing of either job is left running.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
from pathlib import Path

import pytest

from slurm_plans import job_records, logs, ray_processes, sbatch, wait_jobs
from study_jobs import (ALL_INTERFACES, _cmdline, _ppid, all_pids, experiment, job_processes, reports,
                        sockets_of, study_job, summary, wait_for)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
JOB_TIMEOUT = 600
# Ray 2.60 binds these gRPC servers to every interface (`::`), with no setting to narrow
# them (docs/reliability.md): the GCS, the raylet's node manager and object manager, and the
# core worker of every Ray process (driver, trials) on a port of the job's worker range.
# Each must refuse a call without the job's token; the method used to ask each one:
PROBES = {"gcs": "/ray.rpc.NodeInfoGcsService/GetClusterId",
          "node_manager": "/ray.rpc.NodeManagerService/GetSystemConfig",
          "object_manager": "/ray.rpc.ObjectManagerService/Pull",
          "core_worker": "/ray.rpc.CoreWorkerService/NumPendingTasks"}
ALLOWED_ALL_INTERFACES = {("gcs_server", "gcs"), ("raylet", "node_manager"), ("raylet", "object_manager")}


def node_ports(folder: Path, job: str) -> list[dict]:
    """The port slot of each Ray node of the job, from its log lines."""
    from hpoc.runtime import ports

    out = []
    for log in sorted((folder / "build" / "logs" / job).glob("ray-*.log")):
        m = re.search(r"^hpoc: ray (\w+) on (\S+): ip=(\S+) ports=(\d+)-(\d+)", log.read_text(), re.M)
        if m:
            first, last = int(m.group(4)), int(m.group(5))
            named = next(p for p in (ports.node_ports(int(job), r, a) for r in range(ports.MAX_RANK * 4)
                                     for a in range(ports.MAX_ATTEMPTS)) if p.gcs == first)
            out.append({"role": m.group(1), "node": m.group(2), "ip": m.group(3), "range": range(first, last + 1),
                        "named": named})
    return out


def grpc_status(address: str, method: str, token: str | None) -> str:
    """Status code of a call with an empty request and the given bearer token (None: none)."""
    import grpc

    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(b"", timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


def role(port: int, program: str, slots: list[dict]) -> str | None:
    for s in slots:
        named = s["named"]
        if program == "gcs_server" and port == named.gcs:
            return "gcs"
        if program == "raylet" and port in (named.node_manager, named.object_manager):
            return "node_manager" if port == named.node_manager else "object_manager"
        if named.min_worker <= port <= named.max_worker and program not in ("gcs_server", "raylet"):
            return "core_worker"
    return None


def job_of(pid: int, jobs: list[str]) -> str | None:
    """The job whose Ray node runs process `pid` (its raylet ancestor's temp dir)."""
    for _ in range(20):
        cmd = _cmdline(pid)
        for job in jobs:
            if "raylet" in cmd.split(" ", 1)[0] and f"/tmp/hpoc-{job}/" in cmd:
                return job
        pid = _ppid(pid) or 0
        if pid <= 1:
            return None
    return None


def test_two_studies_share_nodes_without_touching(tmp_path: Path, cancel_afterwards: list[str]) -> None:
    names = ("iso-a", "iso-b")
    folders = {n: tmp_path / n for n in names}
    hold = tmp_path / "hold"  # trials wait after their first epoch until the looking is done
    hold.touch()
    scripts = {n: study_job(folders[n], name=n, nodes=2, num_samples=2, max_concurrent=2, epochs=3, sleep=1.0,
                            extra=("--nodelist=node[1-2]",), hold=hold) for n in names}
    jobs = {n: sbatch(scripts[n]) for n in names}
    cancel_afterwards += list(jobs.values())
    exps = {n: experiment(folders[n], n) for n in names}
    plans = {n: folders[n] / "build" / "plan.json" for n in names}

    def both_training():
        runs = {n: [r for rows in reports(exps[n]).values() for r in rows] for n in names}
        return all(runs.values()) and runs

    runs = wait_for(both_training, JOB_TIMEOUT, "both studies reporting",
                    lambda: logs(folders["iso-a"] / "build") + logs(folders["iso-b"] / "build"))
    records = {n: job_records(jobs[n]) for n in names}
    assert all(r[0]["JobState"] == "RUNNING" and r[0]["NodeList"] == "node[1-2]" for r in records.values()), records

    # ---- tokens: private files, different, in no command line and no Ray environment
    tokens = {}
    for n, job in jobs.items():
        token = Path(f"/tmp/hpoc-{job}/token")
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
        tokens[n] = token.read_text().strip()
    assert tokens["iso-a"] != tokens["iso-b"]
    procs = {n: job_processes(jobs[n], plans[n]) for n in names}
    assert all(len(p) >= 6 for p in procs.values()), procs
    for pid in all_pids():
        cmd = _cmdline(pid)
        assert not any(t in cmd for t in tokens.values()), (pid, cmd[:200])
    for n in names:
        for pid, cmd in procs[n].items():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert not any(t in environ for t in tokens.values()), (pid, cmd[:200])
            assert "HPOC_RAY_TOKEN=" not in environ and "\0RAY_AUTH_TOKEN=" not in "\0" + environ

    # ---- ports: disjoint slots; listeners bound narrowly, inside the job's own slot
    slots = {n: node_ports(folders[n], jobs[n]) for n in names}
    assert [len(s) for s in slots.values()] == [2, 2], slots
    ranges = [s["range"] for n in names for s in slots[n]]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            assert not set(a) & set(b)
    wildcard: dict[str, list[tuple[str, str, int]]] = {n: [] for n in names}
    for n in names:
        own = {port for s in slots[n] for port in s["range"]}
        listeners = sockets_of(procs[n])
        assert listeners, procs[n]
        for pid, program, addr, port in listeners:
            if addr.startswith("127."):
                continue  # loopback: this host only
            assert port in own, (n, program, addr, port)  # never another job's port, never a default
            kind = role(port, program, slots[n])
            if addr in ALL_INTERFACES:
                assert (program, kind) in ALLOWED_ALL_INTERFACES or kind == "core_worker", (n, program, addr, port)
                wildcard[n].append((kind, program, port))
            else:
                assert addr == slots[n][0]["ip"], (n, program, addr, port)
        kinds = {k for k, _, _ in wildcard[n]}
        assert kinds == {"gcs", "node_manager", "object_manager", "core_worker"}, wildcard[n]

    # ---- no cross-attach: each study's trials run on its own job's Ray nodes
    for n in names:
        for row in runs[n]:
            owner = job_of(int(row["pid"]), list(jobs.values()))
            assert owner in (jobs[n], None), (n, row["pid"], owner)  # None: the trial ended already

    # ---- every listener on all interfaces refuses strangers (and answers its own job)
    for n, other in (("iso-a", "iso-b"), ("iso-b", "iso-a")):
        ip = slots[n][0]["ip"]
        for kind, program, port in wildcard[n]:
            address, method = f"{ip}:{port}", PROBES[kind]
            if kind != "object_manager":  # (its methods move data: no positive call)
                status = grpc_status(address, method, tokens[n])
                if status == "UNAVAILABLE" and kind == "core_worker":
                    continue  # the trial process ended meanwhile
                assert status == "OK", (n, kind, program, port, status)  # the header is right
            gone = {"UNAVAILABLE"} if kind == "core_worker" else set()  # a trial may just have ended
            for stranger in (None, secrets.token_hex(32), tokens[other]):
                assert grpc_status(address, method, stranger) in {"UNAUTHENTICATED"} | gone, \
                    (n, kind, program, port, stranger is None)
        address = json.loads(Path(f"/tmp/hpoc-{jobs[n]}/head.json").read_text())["address"]
        err = "\n".join(p.read_text() for p in (folders[n] / "build").glob("*.err"))
        assert f"on {address}; results in" in err, err  # the driver attached to its own head

    # ---- both complete, all trials accounted for, nothing left, no token anywhere
    hold.unlink()
    for n in names:
        (record,) = wait_jobs([jobs[n]], JOB_TIMEOUT, folders[n] / "build")
        assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", logs(folders[n] / "build")
        result = summary(exps[n])
        assert result["num_trials"] == 2 and result["status_counts"] == {"TERMINATED": 2}
        assert ray_processes(jobs[n]) == [] and not Path(f"/tmp/hpoc-{jobs[n]}").exists()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            assert not any(t.encode() in data for t in tokens.values()), path
    leftover = [pid for pid in all_pids() if any(f"/tmp/hpoc-{j}/" in _cmdline(pid) for j in jobs.values())]
    assert leftover == []
    print("isolation: listeners on all interfaces, per job:",
          {n: sorted((k, p) for k, p, _ in wildcard[n]) for n in names})
