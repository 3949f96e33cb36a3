"""The per-node entry point and the batch-node helpers, without SLURM."""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpoc.runtime import cluster, node, ports, preflight
from hpoc.runtime.node import NodeError

MiB = 2**20


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- resources from the allocation --------------------------------------------------------


def test_resources_come_from_the_allocation_not_the_machine():
    res = node.allocation({"SLURM_CPUS_PER_TASK": "4", "SLURM_GPUS_ON_NODE": "2", "SLURM_MEM_PER_NODE": "8192"})
    assert res["cpus"] == 4 and res["gpus"] == 2
    assert res["memory"] + res["object_store_memory"] == 8192 * MiB
    assert res["object_store_memory"] <= int(8192 * MiB * node.OBJECT_STORE_FRACTION)
    assert node.resource_args(res) == [
        "--num-cpus=4", "--num-gpus=2", f"--memory={res['memory']}",
        f"--object-store-memory={res['object_store_memory']}",
    ]


def test_resource_fallbacks():
    res = node.allocation({"SLURM_CPUS_ON_NODE": "8", "SLURM_MEM_PER_CPU": "1000", "CUDA_VISIBLE_DEVICES": "0,1,3"})
    assert res["cpus"] == 8 and res["gpus"] == 3
    assert res["memory"] + res["object_store_memory"] == 8000 * MiB
    bare = node.allocation({})
    assert bare == {"cpus": None, "gpus": 0, "memory": None, "object_store_memory": None}
    assert node.resource_args(bare) == ["--num-gpus=0"]  # Ray would otherwise count the node's GPUs
    assert node.allocation({"SLURM_CPUS_ON_NODE": "2(x3)"})["cpus"] == 2


def test_a_mem_per_gpu_jobs_memory_is_its_gpus_share():
    """`--mem-per-gpu=10G` with 2 GPUs on the node: Ray was told no memory, sized its object
    store from the host's, and the job's cgroup limit of 20 GiB killed the node's processes."""
    res = node.allocation({"SLURM_CPUS_ON_NODE": "8", "SLURM_GPUS_ON_NODE": "2", "SLURM_MEM_PER_GPU": "10240"})
    assert res["memory"] + res["object_store_memory"] == 20 * 1024 * MiB
    # GPUs counted from the visible devices when SLURM says none
    res = node.allocation({"SLURM_MEM_PER_GPU": "1024", "CUDA_VISIBLE_DEVICES": "0,1,2"})
    assert res["memory"] + res["object_store_memory"] == 3 * 1024 * MiB
    assert node.allocation({"SLURM_MEM_PER_GPU": "1024"})["memory"] is None  # no GPU here: unknown


def test_object_store_fits_in_shared_memory(tmp_path):
    res = node.allocation({"SLURM_MEM_PER_NODE": "1000000"}, shm=str(tmp_path))  # ~1 TB asked
    st = os.statvfs(tmp_path)
    assert res["object_store_memory"] <= max(st.f_bavail * st.f_frsize, node.OBJECT_STORE_MIN)


# ---- the ray start command ------------------------------------------------------------


def _command(role: str) -> list[str]:
    return node.ray_start_command(
        role=role, python="/venv/bin/python", ip="10.1.2.3", node_ports=ports.node_ports(42, 1),
        temp_dir=Path("/tmp/hpoc-42/n1"), node_name="nodeA", res={"cpus": 2, "gpus": 0, "memory": None,
                                                                  "object_store_memory": None},
        address="10.1.2.0:12345" if role == "worker" else None,
    )


def test_head_command_pins_address_ports_temp_dir_and_turns_the_dashboard_off():
    cmd = _command("head")
    p = ports.node_ports(42, 1)
    assert cmd[:6] == ["/venv/bin/python", "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats"]
    for arg in ("--head", "--include-dashboard=false", "--node-ip-address=10.1.2.3", "--temp-dir=/tmp/hpoc-42/n1",
                "--node-name=nodeA", f"--port={p.gcs}", f"--min-worker-port={p.min_worker}",
                f"--max-worker-port={p.max_worker}", f"--dashboard-agent-listen-port={p.dashboard_agent_listen}",
                "--num-cpus=2", "--num-gpus=0"):
        assert arg in cmd, arg
    assert not [a for a in cmd if a.startswith("--address")]


def test_worker_command_joins_the_head_and_uses_no_head_only_flags():
    cmd = _command("worker")
    assert "--address=10.1.2.0:12345" in cmd and "--node-ip-address=10.1.2.3" in cmd
    assert not [a for a in cmd if a.startswith(("--head", "--port=", "--include-dashboard", "--dashboard-port"))]


def test_ray_environment_carries_the_token_path_never_the_token():
    env = node.ray_env({"PATH": "/bin", node.TOKEN_ENV: "secret", "RAY_AUTH_TOKEN": "old"}, Path("/j/token"))
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/j/token"
    assert "secret" not in env.values() and "RAY_AUTH_TOKEN" not in env and node.TOKEN_ENV not in env
    assert env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] == "0"



def test_a_jobs_ray_nodes_cap_their_processes_logs_as_a_local_run_does_unless_told_otherwise():
    """What the workers of a multi-worker trial print goes to Ray's logs only: a local run
    capped them, a job's nodes (job.sbatch and hpoc submit start them here) did not."""
    env = node.ray_env({"PATH": "/bin"}, Path("/j/token"))
    assert env["RAY_ROTATION_MAX_BYTES"] == str(16 * 2**20) and env["RAY_ROTATION_BACKUP_COUNT"] == "1"
    own = node.ray_env({"RAY_ROTATION_MAX_BYTES": "1000", "RAY_ROTATION_BACKUP_COUNT": ""}, Path("/j/token"))
    assert own["RAY_ROTATION_MAX_BYTES"] == "1000" and own["RAY_ROTATION_BACKUP_COUNT"] == "1"


# ---- job directory, token and rank ------------------------------------------------------


def test_token_is_written_private_from_the_environment(tmp_path):
    job = tmp_path / "hpoc-7"
    token = node.ensure_token(job, {node.TOKEN_ENV: "abc123"})
    assert token.read_text() == "abc123"
    assert mode(job) == 0o700 and mode(token) == 0o600
    assert node.ensure_token(job, {}) == token  # a second node on this host reuses it


def test_token_problems_are_refused(tmp_path):
    with pytest.raises(NodeError, match="HPOC_RAY_TOKEN is not set"):
        node.ensure_token(tmp_path / "a", {})
    loose = tmp_path / "b"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(NodeError, match="mode 0700"):
        node.ensure_token(loose, {node.TOKEN_ENV: "x"})
    job = tmp_path / "c"
    node.ensure_token(job, {node.TOKEN_ENV: "x"})
    (job / "token").chmod(0o644)
    with pytest.raises(NodeError, match="readable by others"):
        node.ensure_token(job, {})
    # The script chose the job directory's base on the batch node; another node lacks it.
    with pytest.raises(NodeError, match=r"missing does not exist on .*: the job directory's base "
                       r"\(HPOC_TMP, or the job's TMPDIR\) must exist on every node"):
        node.ensure_token(tmp_path / "missing" / "hpoc-7", {node.TOKEN_ENV: "x"})


def test_ranks_are_claimed_atomically(tmp_path):
    job = tmp_path / "hpoc-9"
    job.mkdir(mode=0o700)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(node.claim_rank(job)[0])) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(8))
    assert mode(job / "n0") == 0o700
    # More than a host can hold: a base every node of the job shares (HPOC_TMP on GPFS), which
    # was said as "more than 64 Ray nodes of one job on this host".
    with pytest.raises(NodeError, match=r"more than 8 Ray nodes of this job share .*hpoc-9: it must be on "
                       r"node-local storage \(an HPOC_TMP on a shared file system"):
        node.claim_rank(job, limit=8)


def test_temp_dirs_too_long_for_unix_sockets_are_refused():
    node.check_socket_room(Path("/tmp/hpoc-123456789/n3"))
    with pytest.raises(NodeError, match="107"):
        node.check_socket_room(Path("/scratch/" + "x" * 40 + "/hpoc-123456789/n3"))


# ---- addresses and ports -----------------------------------------------------------------


def test_node_ip_uses_the_interface_or_the_first_routable_address():
    assert node.node_ip("lo") == "127.0.0.1"
    with pytest.raises(NodeError, match="no IPv4 address"):
        node.node_ip("nosuchif0")
    ip = node.node_ip(None)
    listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    routable = [a for a in listed if node._routable(a)]
    assert ip == (routable[0] if routable else "127.0.0.1")


def test_a_taken_port_moves_the_node_to_the_next_slot():
    def free(job: int, attempt: int) -> bool:
        return all(node.port_free("127.0.0.1", p) for p in ports.node_ports(job, 0, attempt).all_ports())

    # a job whose first two slots are free right now (other programs here may hold ports)
    job = next(j for j in range(4_000_000, 4_000_064) if free(j, 0) and free(j, 1))
    first = ports.node_ports(job, 0)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", first.object_manager))
        s.listen()
        assert not node.port_free("127.0.0.1", first.object_manager)
        chosen = node.pick_ports(job, 0, "127.0.0.1")
    assert chosen == ports.node_ports(job, 0, 1)
    assert first.object_manager not in chosen.all_ports()


def test_a_node_takes_its_ports_outside_the_hosts_own_ephemeral_range(tmp_path, monkeypatch, capsys):
    """The slots assumed Linux's default ephemeral range (32768-60999); on a host whose kernel
    hands out 49152-65535 to client sockets, half of them lay where any program's connection
    could hold a port a Ray worker needs later."""
    port_range, reserved = tmp_path / "ip_local_port_range", tmp_path / "ip_local_reserved_ports"
    monkeypatch.setattr(node, "PORT_RANGE", port_range, raising=False)
    monkeypatch.setattr(node, "RESERVED_PORTS", reserved, raising=False)
    monkeypatch.setattr(node, "port_free", lambda ip, port: True)  # the layout, not this machine's ports
    port_range.write_text("49152\t65535\n")
    reserved.write_text("\n")
    for job in range(60, 124):
        assert node.pick_ports(job, 0, "127.0.0.1").max_worker < 49152
    port_range.write_text("1024\t65535\n")  # widened: only the reserved ports are left
    reserved.write_text("30000-39999\n")
    for job in range(60, 124):
        p = node.pick_ports(job, 0, "127.0.0.1")
        assert 30000 <= p.gcs and p.max_worker <= 39999
    reserved.write_text("\n")  # nothing fits: Linux's default layout, said
    monkeypatch.setenv("SLURMD_NODENAME", "node4")
    assert node.pick_ports(64, 0, "127.0.0.1").gcs in ports.DEFAULT_BASES
    assert ("hpoc: warning: no block of 256 ports in 20000-64999 lies outside node4's ephemeral port range "
            "1024-65535") in capsys.readouterr().err


def test_a_port_held_on_ipv6_only_is_taken():
    """Ray's GCS, raylet and workers bind `[::]` (both families): a port that another
    program holds on IPv6 only looked free, and that Ray process failed to start."""
    try:
        v6 = socket.socket(socket.AF_INET6)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::", 0))
    except OSError:
        pytest.skip("no IPv6 on this host")
    with v6:
        v6.listen()
        port = v6.getsockname()[1]
        assert not node.port_free("127.0.0.1", port)


@pytest.fixture
def short_tmp():
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="hpt", dir="/tmp"))  # pytest's tmp_path is too long for sockets
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_prepare_writes_the_head_address_and_returns_the_ray_command(short_tmp, capsys, monkeypatch):
    job = short_tmp / "hpoc-55"
    args = argparse.Namespace(role="head", job_dir=str(job), address=None, job_id=55, node_name=None,
                              interface="lo", gpus=None)
    env = {"SLURMD_NODENAME": "node7", "SLURM_CPUS_PER_TASK": "2", node.TOKEN_ENV: "tok"}
    cmd, ray_env = node.prepare(args, env)
    head = json.loads((job / "head.json").read_text())
    # slot of job 55, or a later attempt if something on this machine holds one of its ports
    p = next(ports.node_ports(55, 0, a) for a in range(ports.MAX_ATTEMPTS)
             if head["address"] == f"127.0.0.1:{ports.node_ports(55, 0, a).gcs}")
    assert head == {"address": f"127.0.0.1:{p.gcs}", "node": "node7"}
    assert f"--port={p.gcs}" in cmd
    assert cmd[0] == sys.executable and f"--temp-dir={job / 'n0'}" in cmd and "--node-name=node7" in cmd
    assert ray_env["RAY_AUTH_TOKEN_PATH"] == str(job / "token") and node.TOKEN_ENV not in ray_env
    assert ray_env["HPOC_SCRATCH"] == str(job / "scratch")  # removed with the job directory
    assert "hpoc: ray head on node7: ip=127.0.0.1" in capsys.readouterr().out
    args.role, args.address = "worker", f"127.0.0.1:{p.gcs}"
    cmd, _ = node.prepare(args, env)
    assert f"--temp-dir={job / 'n1'}" in cmd and f"--address=127.0.0.1:{p.gcs}" in cmd
    assert "--num-gpus=0" in cmd  # SLURM's count: none here
    args.gpus = 4  # a job that asked SLURM for no GPUs (gpu_request = none): the plan's count
    dev = short_tmp / "dev"
    (dev / "dri").mkdir(parents=True)
    monkeypatch.setattr(node, "DEV", dev)
    for k in range(4):
        (dev / f"nvidia{k}").touch()
    cmd, _ = node.prepare(args, env | {"SLURM_GPUS_ON_NODE": "0"})
    assert "--num-gpus=4" in cmd and "--num-gpus=0" not in cmd


def test_gpus_given_with_the_node_are_refused_on_a_node_without_any(short_tmp, monkeypatch):
    """`gpu_request = none` on a partition without GPUs (LUMI's `small` for `small-g`): Ray
    was told 8 GPUs the node did not have, and every trial failed in CUDA or ran on the CPU."""
    dev = short_tmp / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "nvidiactl").touch()  # the driver's control node: no GPU
    (dev / "dri" / "card0").touch()  # a server's display adapter
    monkeypatch.setattr(node, "DEV", dev)
    args = argparse.Namespace(role="head", job_dir=str(short_tmp / "hpoc-56"), address=None, job_id=56,
                              node_name=None, interface="lo", gpus=8)
    with pytest.raises(NodeError, match=r"the plan gives each node 8 GPU\(s\) \(slurm.gpu_request = none\), but "
                                        r"node3 has no GPU device .*choose a GPU partition, or set "
                                        r"slurm.gpu_request = gres or per_node"):
        node.prepare(args, {"SLURMD_NODENAME": "node3", "SLURM_CPUS_PER_TASK": "2", node.TOKEN_ENV: "tok"})
    (dev / "dri" / "renderD128").touch()  # an AMD GCD
    args.gpus, args.job_dir = 8, str(short_tmp / "hpoc-57")
    node.prepare(args, {"SLURMD_NODENAME": "node3", "SLURM_CPUS_PER_TASK": "2", node.TOKEN_ENV: "tok"})


@pytest.mark.parametrize("closed", ["kfd", "render"])
def test_amd_gpus_a_jobs_cgroup_closes_are_no_gpus(short_tmp, monkeypatch, closed):
    """`gpu_request = none` with `--exclusive` where SLURM constrains devices: the job asked
    for no GPUs, so its cgroup denies them, yet /dev/dri/renderD* are there; the node check
    passed and the trials saw no GPU. On AMD nodes the devices are opened as ROCm opens them
    (read-write); NVIDIA's stay a look at /dev/nvidia*."""
    from fake_dev import amd_node

    dev, closed_paths = amd_node(short_tmp, monkeypatch, gpus=8)
    denied = [dev / "kfd"] if closed == "kfd" else [dev / "dri" / f"renderD{128 + k}" for k in range(8)]
    closed_paths.update(denied)
    env = {"SLURMD_NODENAME": "nid005000", "SLURM_CPUS_PER_TASK": "2", node.TOKEN_ENV: "tok"}
    args = argparse.Namespace(role="head", job_dir=str(short_tmp / "hpoc-56"), address=None, job_id=56,
                              node_name=None, interface="lo", gpus=8)
    with pytest.raises(NodeError) as refused:
        node.prepare(args, env)
    assert str(refused.value) == (
        f"the plan gives each node 8 GPU(s) (slurm.gpu_request = none), but nid005000's AMD GPUs are closed to "
        f"this job ({denied[0]}: Operation not permitted): the job asked SLURM for none, and SLURM gives a job "
        "only the GPUs it asks for; set slurm.gpu_request = gres or per_node")
    closed_paths.clear()  # the job's own GPUs: they open
    args.job_dir = str(short_tmp / "hpoc-57")
    node.prepare(args, env)
    (dev / "kfd").unlink()  # not AMD (an Intel GPU, say): its render nodes count, as before
    closed_paths.update(dev / "dri" / f"renderD{128 + k}" for k in range(8))
    args.job_dir = str(short_tmp / "hpoc-58")
    node.prepare(args, env)


@pytest.mark.parametrize("role, shared, keep, removed", [
    ("worker", False, False, True),   # node-local: gone with its Ray node
    ("worker", True, False, False),   # the head's too (its address file is there): the teardown's
    ("worker", False, True, False),   # HPOC_KEEP_TMP=1 keeps it to look at
    ("head", False, False, False),    # the batch script still needs the head's
])  # fmt: skip
def test_a_worker_removes_its_job_directory_when_its_ray_node_stops(short_tmp, monkeypatch, role, shared, keep,
                                                                     removed):
    """After scancel or a requeue the teardown's `srun rm -rf` on the other nodes is refused:
    the token and staged checkpoints stayed in the worker nodes' /tmp."""
    job = short_tmp / "hpoc-56"
    monkeypatch.setenv("SLURM_JOB_ID", "56")
    monkeypatch.setenv(node.TOKEN_ENV, "tok")
    monkeypatch.setenv("HPOC_KEEP_TMP", "1" if keep else "0")
    if shared:
        job.mkdir(mode=0o700)
        (job / node.HEAD_FILE).write_text("{}")
    started = []

    def ray_start_stopped_by_sigterm(cmd, env, **kw):
        started.append((job / node.TOKEN_FILE).is_file())
        raise SystemExit(1)  # what `ray start --block` does on SIGTERM

    monkeypatch.setattr(node, "run_ray", ray_start_stopped_by_sigterm)
    argv = [role, "--job-dir", str(job), "--interface", "lo"] + (["--address", "127.0.0.1:1"] if role == "worker" else [])
    with pytest.raises(SystemExit):
        node.main(argv)
    assert started == [True]
    assert job.exists() is not removed


RAY_BLOCKED = """
import os, signal, sys, time, types
from hpoc.runtime import node

def main(args, prog_name):  # `ray start` waiting in Ray's C++ GCS client: its handler cannot act
    signal.signal(signal.SIGTERM, lambda *a: None)
    print("blocked", flush=True)
    while True:
        time.sleep(1)

for name in ("ray", "ray.scripts", "ray.scripts.scripts"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["ray.scripts.scripts"].cli = types.SimpleNamespace(main=main)
node.run_ray([sys.executable, "-m", "ray.scripts.scripts", "start"], dict(os.environ))
"""


def test_a_node_stops_within_a_share_of_the_sites_killwait():
    """The node gave Ray's SIGTERM handler 10 s whatever the site: where SLURM's SIGKILL
    follows its SIGTERM after 5 s (KillWait), it came first, and the job directory (token,
    staged checkpoints) stayed in the node's /tmp. A third of KillWait now."""
    proc = subprocess.Popen([sys.executable, "-c", RAY_BLOCKED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HPOC_KILL_WAIT": "3"})
    while proc.stdout.readline() not in ("blocked\n", ""):  # after hpoc's `ray start` line
        pass
    sent = time.monotonic()
    proc.send_signal(subprocess.signal.SIGTERM)
    rc = proc.wait(timeout=30)
    took = time.monotonic() - sent
    assert rc == 143 and took < 4, took
    assert "hpoc: Ray did not stop within 1 s of SIGTERM; killing its processes" in proc.stderr.read()


def test_the_grace_is_a_third_of_killwait_within_bounds_and_10_s_unknown():
    grace = node.node_stop.grace_for
    assert [grace(k) for k in ("30", "5", "120", "600", "0")] == [10, 1.7, 30, 30, 1]
    assert [grace(k) for k in (None, "", "x", "nan")] == [10] * 4  # SLURM's default KillWait: 30 s


def test_node_cli_reports_problems_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.node", "worker", "--job-dir", str(tmp_path / "j")],
                         capture_output=True, text=True, env={**os.environ, "SLURM_JOB_ID": "3"})
    assert run.returncode == 2 and "worker needs --address" in run.stderr
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.node", "head", "--job-dir", str(tmp_path / "j")],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items() if
                                                              not k.startswith(("SLURM_", "HPOC_"))} | {"SLURM_JOB_ID": "3"})
    assert run.returncode == 1 and run.stderr.startswith("hpoc: cannot start ray head: no auth token")
    assert "Traceback" not in run.stderr


# ---- batch-node helpers ------------------------------------------------------------------


def test_init_makes_a_fresh_private_token_per_job(tmp_path):
    job = tmp_path / "hpoc-1"
    token = cluster.init(job)
    first = token.read_text()
    assert len(first) == 64 and int(first, 16) >= 0
    assert mode(job) == 0o700 and mode(token) == 0o600
    (job / "n0").mkdir()  # left over by an earlier run of a requeued job
    assert cluster.init(job).read_text() != first
    assert not (job / "n0").exists()


def full_disk() -> None:
    """In the child: any write past 0 bytes fails (EFBIG), as on a full node-local /tmp."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_job_directory_that_cannot_be_made_is_said_without_a_traceback(tmp_path):
    """A full /tmp on a shared node: `cluster init` failed writing the token with a
    traceback, and left the job directory behind with an empty token in it."""
    job = tmp_path / "hpoc-9"
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.cluster", "init", str(job)], capture_output=True,
                         text=True, preexec_fn=full_disk, env={**os.environ, "SLURMD_NODENAME": "node4"})
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"hpoc: cannot write {job}/token on node4: File too large; free space there, "
                                 "or set HPOC_TMP to another node-local directory"), run.stderr
    assert not job.exists()
    # A base that is not a directory (or read-only, or another user's)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"^hpoc: cannot create the job directory .*/file/hpoc-9 on \S+: Not a "
                       "directory; set HPOC_TMP to a writable node-local directory$"):
        cluster.init(tmp_path / "file" / "hpoc-9")


def test_a_worker_that_cannot_write_the_token_leaves_no_empty_one(tmp_path):
    """An empty token file would pass for this job's: a second Ray node of the job on that
    host would read it and be refused by the head."""
    job = tmp_path / "hpoc-8"
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.node", "worker", "--job-dir", str(job), "--address",
                          "127.0.0.1:1", "--job-id", "8"], capture_output=True, text=True, preexec_fn=full_disk,
                         env={**os.environ, node.TOKEN_ENV: "tok", "SLURMD_NODENAME": "node5"})
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"hpoc: cannot start ray worker: cannot write {job}/token on node5: File too "
                                 "large"), run.stderr
    assert not (job / node.TOKEN_FILE).exists()


def test_init_removes_what_ended_jobs_of_this_user_left_on_the_node(tmp_path, monkeypatch):
    """A teardown that SLURM's SIGKILL cut short left the job directory (token, Ray's session
    logs) in the node's /tmp for good. The next job on the node removes those of jobs squeue
    no longer lists, and only those."""
    squeue = tmp_path / "bin" / "squeue"
    squeue.parent.mkdir()
    squeue.write_text('#!/bin/bash\necho "$*" >>"$0.args"\nprintf "6\\n12\\n"\n')  # this user's live jobs
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{squeue.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.delenv("HPOC_TMP", raising=False)
    base = tmp_path / "tmp"
    for name in ("hpoc-5", "hpoc-7-r1", "hpoc-6", "hpoc-6-r2", "hpoc-12", "hpoc-x1y2z3", "hpoc-8", "hpoc-4"):
        (base / name).mkdir(parents=True, mode=0o700)
        (base / name / "token").write_text("t")
    (base / "hpoc-8" / node.KEEP_FILE).touch()  # kept on purpose: HPOC_KEEP_TMP=1
    (base / "hpoc-12345678").mkdir(mode=0o700)  # a local run's, whose random name is all digits
    (base / "hpoc-12345678" / "owner.json").write_text("{}")
    (base / "hpoc-3").symlink_to(base / "hpoc-4")
    cluster.init(base / "hpoc-9")
    left = sorted(p.name for p in base.iterdir())
    assert left == ["hpoc-12", "hpoc-12345678", "hpoc-3", "hpoc-6", "hpoc-6-r2", "hpoc-8", "hpoc-9",
                    "hpoc-x1y2z3"], left
    assert "-u" in (tmp_path / "bin" / "squeue.args").read_text()  # only this user's jobs asked for
    # squeue not answering (the controller down): nothing is taken for ended
    squeue.write_text("#!/bin/bash\nexit 1\n")
    (base / "hpoc-5").mkdir(mode=0o700)
    cluster.init(base / "hpoc-10")
    assert (base / "hpoc-5").is_dir()
    # under HPOC_TMP (maybe shared with another cluster's jobs) nothing is swept
    squeue.write_text("#!/bin/bash\n")
    monkeypatch.setenv("HPOC_TMP", str(base))
    cluster.init(base / "hpoc-11")
    assert (base / "hpoc-5").is_dir()
    monkeypatch.setenv("HPOC_KEEP_TMP", "1")  # kept to read Ray's logs: no later job removes it
    cluster.init(base / "hpoc-13")
    assert (base / "hpoc-13" / node.KEEP_FILE).is_file()


def test_every_other_node_removes_what_ended_jobs_left_in_its_own_tmp(short_tmp, monkeypatch, capsys):
    """Only the batch node swept (`cluster init`): the other nodes of multi-node jobs kept the
    directories (tokens, Ray's session logs) of ended jobs, and their /tmp filled over weeks.
    Each worker node sweeps its own now, once per job (its first Ray node), asking squeue only
    when there is something to sweep."""
    squeue = short_tmp / "bin" / "squeue"
    squeue.parent.mkdir()
    squeue.write_text('#!/bin/bash\necho "$*" >>"$0.args"\nprintf "6\\n"\n')  # this user's live jobs
    squeue.chmod(0o755)
    asked = lambda: len((squeue.parent / "squeue.args").read_text().splitlines())  # noqa: E731
    monkeypatch.setenv("PATH", f"{squeue.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    base = short_tmp / "t"
    for name in ("hpoc-5", "hpoc-6-r1", "hpoc-7"):
        (base / name).mkdir(parents=True, mode=0o700)
    (base / "hpoc-7" / node.KEEP_FILE).touch()
    env = {"SLURM_JOB_ID": "9", "SLURMD_NODENAME": "node2", "SLURM_CPUS_PER_TASK": "1", node.TOKEN_ENV: "tok"}
    args = argparse.Namespace(role="worker", job_dir=str(base / "hpoc-9"), address="127.0.0.1:1", job_id=9,
                              node_name=None, interface="lo", gpus=None)
    node.prepare(args, env)
    assert sorted(p.name for p in base.iterdir()) == ["hpoc-6-r1", "hpoc-7", "hpoc-9"]
    assert f"hpoc: removed what ended jobs left in {base} on node2 (hpoc-5): their teardown did not finish" in \
        capsys.readouterr().out
    assert asked() == 1
    (base / "hpoc-4").mkdir(mode=0o700)
    node.prepare(args, env)  # a second Ray node of the job on this host (rank 1): swept already
    args.role, args.address, args.job_dir = "head", None, str(base / "hpoc-10")
    node.prepare(args, env | {"SLURM_JOB_ID": "10"})  # the batch node: `cluster init` sweeps there
    args.role, args.address, args.job_dir = "worker", "127.0.0.1:1", str(base / "hpoc-11")
    node.prepare(args, env | {"SLURM_JOB_ID": "11", "HPOC_TMP": str(base)})  # maybe shared: never swept
    assert (base / "hpoc-4").is_dir() and asked() == 1
    empty = short_tmp / "e"
    empty.mkdir()
    args.job_dir = str(empty / "hpoc-12")
    node.prepare(args, env | {"SLURM_JOB_ID": "12"})
    assert asked() == 1  # nothing to sweep: squeue not asked


def test_the_sweep_asks_squeue_for_the_jobs_of_the_real_uid_not_of_user(tmp_path, monkeypatch):
    """squeue was asked for the jobs of `$USER`: where that names someone else (`sudo -E`, a
    container's environment) it listed none of this user's, and the directory of a live job
    of theirs was removed as an ended one's."""
    from hpoc.runtime import sweep

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a live job 6 of this uid, listed only when squeue is asked for this uid's jobs
    (bin_dir / "squeue").write_text(f'#!/bin/sh\ncase " $* " in *" -u {os.getuid()} "*) echo 6;; esac\n')
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "someone-else")
    base = tmp_path / "t"
    for name in ("hpoc-5", "hpoc-6"):
        (base / name).mkdir(parents=True, mode=0o700)
    assert [p.name for p in sweep.sweep_ended_jobs(base)] == ["hpoc-5"]
    assert (base / "hpoc-6").is_dir()


def test_wait_head_returns_the_address_once_the_port_answers(tmp_path):
    job = tmp_path / "hpoc-2"
    cluster.init(job)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"127.0.0.1:{s.getsockname()[1]}"

        def later():
            time.sleep(0.3)
            node.write_head_file(job, address, "node1")

        threading.Thread(target=later).start()
        assert cluster.wait_head(job, timeout=10) == address


def test_wait_head_fails_fast_when_the_head_step_is_gone(tmp_path):
    job = tmp_path / "hpoc-3"
    cluster.init(job)
    dead = subprocess.Popen(["true"])
    dead.wait()
    start = time.monotonic()
    with pytest.raises(SystemExit, match="exited before it answered; its log: /l/ray-node1.log"):
        cluster.wait_head(job, timeout=30, pid=dead.pid, log="/l/ray-node1.log")
    assert time.monotonic() - start < 5
    with pytest.raises(SystemExit, match="did not answer .*never chose its ports.* within 0.5 s"):
        cluster.wait_head(job, timeout=0.5)
    # Its log's last line says why (a Python without Ray on the nodes): the job's .err said
    # only "exited before it answered", and the why was in another file.
    log = tmp_path / "ray-node1.log"
    log.write_text("hpoc: ray head on node1: ip=10.0.0.1 ports=20000-20255\nTraceback (most recent call "
                   "last):\n  File \"node.py\", line 401\nModuleNotFoundError: No module named 'ray'\n"
                   "srun: error: node1: task 0: Exited with exit code 1\n")
    with pytest.raises(SystemExit) as got:
        cluster.wait_head(job, timeout=30, pid=dead.pid, log=str(log))
    assert str(got.value) == ("hpoc: the Ray head step exited before it answered: ModuleNotFoundError: "
                              f"No module named 'ray'; its log: {log}")
    # hpoc's own last words there are quoted without their prefix ("answered: hpoc: cannot …")
    log.write_text("hpoc: cannot start ray head: interface 'ib0' has no IPv4 address on node1; fix it\n")
    with pytest.raises(SystemExit) as got:
        cluster.wait_head(job, timeout=30, pid=dead.pid, log=str(log))
    assert str(got.value) == ("hpoc: the Ray head step exited before it answered: cannot start ray head: "
                              f"interface 'ib0' has no IPv4 address on node1; fix it; its log: {log}")


def test_preflight_reads_the_steps_file(tmp_path):
    (tmp_path / "steps").write_text("101 node1\n102 node2\nbad line\n")
    assert preflight.read_steps(tmp_path) == [preflight.Step(101, "node1"), preflight.Step(102, "node2")]
    assert preflight.read_steps(None) == []


def test_preflight_needs_token_auth_in_its_environment(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(preflight.NotReady, match="RAY_AUTH_MODE=token"):
        preflight.check("127.0.0.1:1", 1)


def test_a_worker_waits_for_the_head_and_gives_up_with_a_clear_message(short_tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(SLURM_JOB_ID="12", HPOC_RAY_TOKEN="t" * 64, SLURMD_NODENAME="node2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port nobody listens on
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.node", "worker", "--job-dir", str(short_tmp / "j"),
                          "--address", nobody, "--timeout", "0.5", "--interface", "lo"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1
    assert f"hpoc: cannot start ray worker: the Ray head at {nobody} did not answer within 0.5 s" in run.stderr
    assert "hpoc: ray worker on node2: ip=127.0.0.1" in run.stdout
    assert not (short_tmp / "j").exists()  # its token and temp dir do not outlive it


def test_wait_for_head_returns_once_the_port_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        node.wait_for_head(f"127.0.0.1:{s.getsockname()[1]}", timeout=5)


def test_a_bracketed_ipv6_head_address_answers():
    """`[v6]:port`, as the driver's RAY_ADDRESS check reads it (probe.split): the brackets
    are the address's form, not the host's name."""
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with s:
        s.listen()
        assert node.answers(f"[::1]:{s.getsockname()[1]}")


def test_a_missing_interface_names_the_slurm_node(monkeypatch):
    """The fake nodes of the local cluster, and sites whose node names differ from the host
    names, read "interface 'ib0' has no IPv4 address on vm": SLURM's name says which node."""
    monkeypatch.setattr(node, "_ipv4_of_interface", lambda name: None)
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    with pytest.raises(NodeError, match=r"interface 'ib0' has no IPv4 address on node7; "):
        node.node_ip("ib0")


def test_processes_whose_name_holds_spaces_and_parentheses_are_read_right(tmp_path):
    """/proc/<pid>/stat names a process in parentheses that its name may hold itself: one
    reader serves cluster.alive (a zombie is gone) and node_stop.descendants (its parent)."""
    from hpoc.runtime import node_stop, procstat

    assert procstat.after_name("12 (a) S 1 (b) R 7 8") == ["R", "7", "8"]
    assert procstat.after_name("garbage") is None
    odd = tmp_path / "x) S 99 (y"  # the kernel keeps the program's name as its comm
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "30"])
    try:
        assert child.pid in node_stop.descendants(os.getpid())
        assert procstat.stat_fields(child.pid)[:2] == ["S", str(os.getpid())]
        assert cluster.alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 5
        while procstat.stat_fields(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not cluster.alive(child.pid)  # ended, not reaped yet
    finally:
        child.kill()
        child.wait()


def test_the_teardowns_waits_fit_the_sites_killwait_and_are_todays_under_30_s():
    """The job's teardown gave the driver 20 s (3 s once Ray's head is gone) and the Ray
    nodes 60 s whatever the site: under KillWait = 5 SLURM's SIGKILL came first and the job
    directory (token included) stayed. A share of KillWait now, today's waits from 30 s up."""
    waits = node.node_stop.stop_waits
    assert [waits(k) for k in (None, "", "x", "30", "120", "7.5")] == [(20, 3, 60)] * 6
    assert waits("5") == (3, 1, 10) and waits("15") == (10, 1, 30) and waits("0") == (1, 1, 1)
    for k in range(4, 121):
        # after scancel: the head's node stops within its grace, the teardown sees it
        # within 0.5 s, waits for the driver, and has a second left to remove the job directory
        assert node.node_stop.grace_for(str(k)) + 0.5 + waits(str(k)).head_down_s < k - 1, k
        assert waits(str(k)).driver_s <= max(1, k * 2 / 3), k
