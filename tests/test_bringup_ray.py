"""Preflight against a real one-node Ray cluster started by the node entry point (no SLURM)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hpoc.runtime import cluster

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def head():
    job_dir = Path(tempfile.mkdtemp(prefix="hpr", dir="/tmp")) / "hpoc-4711"
    cluster.init(job_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(SLURM_CPUS_PER_TASK="1", SLURM_MEM_PER_NODE="1000", RAY_USAGE_STATS_ENABLED="0")
    log = open(job_dir.parent / "head.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hpoc.runtime.node", "head", "--job-dir", str(job_dir),
                             "--job-id", "4711", "--node-name", "solo", "--interface", "lo"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = cluster.wait_head(job_dir, timeout=180, pid=proc.pid)
        yield {"address": address, "job_dir": job_dir, "token": job_dir / "token", "pid": proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        left = subprocess.run(["pgrep", "-f", str(job_dir)], capture_output=True, text=True).stdout.split()
        for pid in left:
            os.kill(int(pid), signal.SIGKILL)
        log.close()
        shutil.rmtree(job_dir.parent, ignore_errors=True)
        assert left == [], "Ray processes outlived their `ray start --block`"


def preflight(head, *args: str, token: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token or head["token"]),
               RAY_USAGE_STATS_ENABLED="0", HOME=str(head["job_dir"]))
    return subprocess.run([sys.executable, "-m", "hpoc.runtime.preflight", "--address", head["address"], *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_preflight_reports_a_ready_cluster_in_one_line(head):
    start = time.time() - 5
    run = preflight(head, "--nodes", "1", "--cpus-per-node", "1", "--gpus-per-node", "0", "--start", str(start))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    match = re.fullmatch(r"hpoc: cluster ready nodes=1 cpus=1 gpus=0 seconds=(\S+)", lines[0])
    assert match and 5 <= float(match.group(1)) < 300


def test_preflight_names_what_is_wrong(head, tmp_path):
    run = preflight(head, "--nodes", "1", "--cpus-per-node", "4")
    assert run.returncode == 1
    assert "hpoc: cluster not ready: expected 4 CPUs (4 per node), Ray sees 1" in run.stderr
    run = preflight(head, "--nodes", "1", "--gpus-per-node", "2")
    assert "expected 2 GPUs (2 per node), Ray sees 0" in run.stderr
    steps = tmp_path / "steps"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        steps.write_text(f"{head['pid']} solo\n{sleeper.pid} node9\n")
        run = preflight(head, "--nodes", "2", "--job-dir", str(tmp_path), "--timeout", "2")
        assert "only 1 of 2 Ray nodes joined within 2 s; missing: node9" in run.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    run = preflight(head, "--nodes", "2", "--job-dir", str(tmp_path), "--timeout", "60")
    assert "the Ray step on node9 exited before joining" in run.stderr  # found at once, no timeout
    assert "Traceback" not in run.stderr


def test_preflight_with_a_wrong_token_is_refused(head, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("0" * 64)
    wrong.chmod(0o600)
    run = preflight(head, "--nodes", "1", token=wrong)
    assert run.returncode == 1 and "refused our token" in run.stderr


def test_a_node_stops_on_sigterm_while_ray_waits_for_a_gcs_that_is_gone(tmp_path):
    """scancel during bring-up signals every process of the job at once, the head's GCS
    too: a node whose `ray start` then waits in Ray's C++ GCS client cannot run Ray's
    Python SIGTERM handler, and lived on about 40 s. SLURM's SIGKILL (KillWait, 30 s)
    came first, to the job script's teardown too: the job directory stayed in /tmp."""
    job_dir = Path(tempfile.mkdtemp(prefix="hps", dir="/tmp")) / "hpoc-4712"
    cluster.init(job_dir)
    with socket.socket() as gone:  # takes TCP connections, never answers as a GCS
        gone.bind(("0.0.0.0", 0))
        gone.listen(64)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
        env.update(SLURM_CPUS_PER_TASK="1", SLURM_MEM_PER_NODE="1000", RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(job_dir / "token"))
        proc = subprocess.Popen([sys.executable, "-m", "hpoc.runtime.node", "worker", "--job-dir", str(job_dir),
                                 "--job-id", "4712", "--interface", "lo", "--address",
                                 f"127.0.0.1:{gone.getsockname()[1]}"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            said = []
            for line in proc.stdout:
                said.append(line)
                if "Local node IP" in line:  # `ray start` is connecting to the GCS now
                    break
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGTERM)  # as SLURM signals every process of the step
            said.append(proc.communicate(timeout=120)[0])
            removed = not job_dir.exists()  # the worker's own copy of the token, its temp dir
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            left = subprocess.run(["pgrep", "-f", str(job_dir)], capture_output=True, text=True).stdout.split()
            for pid in left:
                os.kill(int(pid), signal.SIGKILL)
            shutil.rmtree(job_dir.parent, ignore_errors=True)
    out = "".join(said)
    assert "hpoc: Ray did not stop within 10 s of SIGTERM; killing its processes" in out, out[-3000:]
    assert proc.returncode == 143 and left == [] and removed
