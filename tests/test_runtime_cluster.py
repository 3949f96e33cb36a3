"""Cluster mode: the driver joins a running Ray head (token authentication, pinned ports),
as it does inside a SLURM job, instead of starting Ray itself."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hpoc.plan import dumps
from hpoc.runtime.report import free_port
from runtime_plans import make_plan, write_toy

pytestmark = pytest.mark.ray
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def head(tmp_path):
    """A one-node Ray cluster with token auth, started and stopped by process id."""
    temp = tempfile.mkdtemp(prefix="hpt-", dir="/tmp")  # unix socket paths must stay short
    token = Path(temp) / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port = free_port()
    ports = [free_port() for _ in range(7)]
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               RAY_USAGE_STATS_ENABLED="0", RAY_memory_monitor_refresh_ms="0")
    env.pop("RAY_ADDRESS", None)
    cmd = [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
           "--include-dashboard=false", f"--temp-dir={temp}/r", "--node-ip-address=127.0.0.1",
           f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
           f"--runtime-env-agent-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
           f"--dashboard-agent-listen-port={ports[4]}", f"--metrics-export-port={ports[5]}",
           "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the Ray head did not come up")
            time.sleep(0.3)
    try:
        yield {"address": f"127.0.0.1:{port}", "token": token, "env": env}
    finally:
        proc.send_signal(signal.SIGTERM)  # --block takes Ray's processes down with it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of this head left behind
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


def test_the_driver_runs_a_study_on_the_jobs_cluster(head, tmp_path):
    from hpoc.runtime.probe import not_ray

    assert not_ray(head["address"]) is None  # a head with token auth passes the probe without it
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2},
                     space={"constants": {"epochs": 2, "batch_size": 32}})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    env = dict(head["env"], RAY_ADDRESS=head["address"], HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-m", "hpoc.runtime", str(plan_file), "--shard", "0"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert f"on {head['address']}" in done.stderr
    summary = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 2}
    assert not (tmp_path / "home" / ".ray").exists()  # nothing written to ~/.ray

    # A driver with the wrong token is turned away with a message, not a hang.
    wrong = tmp_path / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    started = time.monotonic()
    denied = subprocess.run([sys.executable, "-m", "hpoc.runtime", str(plan_file), "--fresh"],
                            env=dict(env, RAY_AUTH_TOKEN_PATH=str(wrong)),
                            capture_output=True, text=True, timeout=240)
    assert denied.returncode == 1
    assert f"cannot connect to the Ray cluster at {head['address']}" in denied.stderr
    assert "Traceback" not in denied.stderr
    assert time.monotonic() - started < 120
