"""Real jobs on the local SLURM cluster (scripts/local-slurm.sh up): real sbatch, real Ray.

Every job is preflight-only (no study driver), short, and logs into the test's tmp dir.
The fake nodes share one host, so these tests also prove that jobs sharing nodes keep
their ports, temp dirs and tokens apart.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_plans import (READY, job_records, logs, output_of, ray_processes, sbatch, wait_jobs, wait_until,
                         write_job)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB_TIMEOUT = 300  # a loaded 2-core machine can take a while to start three Ray nodes
HOLD = {"HPOC_HOLD_S": "240"}


def held(folder: Path) -> dict[str, str]:
    return dict(HOLD, HPOC_HOLD_FILE=str(folder / "release"))


def release(folder: Path) -> None:
    (folder / "release").touch()


def ready_lines(folder: Path) -> list[re.Match]:
    return [m for text in output_of(folder).values() for m in READY.finditer(text)]


def head_of(job: str) -> dict:
    return json.loads(Path(f"/tmp/hpoc-{job}/head.json").read_text())


def slot_ports(folder: Path) -> list[range]:
    """Port ranges the Ray nodes of the jobs logging in `folder` announced."""
    spans = []
    for log in folder.glob("logs/*/ray-*.log"):
        for a, b in re.findall(r"^hpoc: ray \w+ on \S+: ip=\S+ ports=(\d+)-(\d+)", log.read_text(), re.M):
            spans.append(range(int(a), int(b) + 1))
    return spans


def task_ids(records: list[dict]) -> list[str]:
    return sorted(r["JobId"] for r in records)


def attach(address: str, token_path: str | None, tmp_path: Path, retries: int = 20) -> subprocess.CompletedProcess:
    """A driver attaching with `ray.init(address)`; token_path None = no token at all.
    Ray retries a refused connection once a second, `retries` times."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_NUM_REDIS_GET_RETRIES=str(retries),
               HOME=str(tmp_path))  # no ~/.ray/auth_token to fall back on
    if token_path:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=token_path)
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print('alive', sum(n['Alive'] for n in ray.nodes())); ray.shutdown()")
    return subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_preflight_job_brings_up_three_nodes_and_leaves_no_ray_behind(tmp_path):
    job = sbatch(write_job(tmp_path, nodes=3))
    (record,) = wait_jobs([job], JOB_TIMEOUT, tmp_path)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", logs(tmp_path)
    (out,) = output_of(tmp_path).values()
    ready = READY.findall(out)
    assert len(ready) == 1, out
    nodes, cpus, gpus, seconds = ready[0]
    assert (nodes, cpus, gpus) == ("3", "3", "0") and 0 < float(seconds) < JOB_TIMEOUT
    hosts = subprocess.run(["scontrol", "show", "hostnames", record["NodeList"]], capture_output=True,
                           text=True, check=True).stdout.split()
    assert len(hosts) == 3
    assert sorted(p.name for p in (tmp_path / "logs" / job).iterdir()) == [f"ray-{h}.log" for h in sorted(hosts)]
    assert ray_processes(job) == []
    assert not Path(f"/tmp/hpoc-{job}").exists()
    assert output_of(tmp_path, ".err") == {"t-preflight-%s.err" % job: ""}


def test_two_array_tasks_at_once_get_disjoint_ports_and_both_clean_up(tmp_path):
    array = sbatch(write_job(tmp_path, nodes=2, shards=2, parallel=2), **held(tmp_path))
    try:
        wait_until(lambda: len(ready_lines(tmp_path)) == 2, JOB_TIMEOUT, "both array tasks ready", tmp_path)
        running = [r for r in job_records(array) if r["JobState"] == "RUNNING"]
        assert len(running) == 2  # held at once, so they really ran side by side
        tasks = task_ids(running)
        addresses = {head_of(t)["address"] for t in tasks}
        assert len(addresses) == 2
        spans = slot_ports(tmp_path)
        assert len(spans) == 4
        for i, a in enumerate(spans):
            for b in spans[i + 1:]:
                assert not set(a) & set(b)
    finally:
        release(tmp_path)
    records = wait_jobs([array], JOB_TIMEOUT, tmp_path)
    assert [r["JobState"] for r in records] == ["COMPLETED", "COMPLETED"], logs(tmp_path)
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1"]
    for task in tasks:
        assert ray_processes(task) == [] and not Path(f"/tmp/hpoc-{task}").exists()
    assert [m.group(1) for m in ready_lines(tmp_path)] == ["2", "2"]


def test_jobs_sharing_nodes_stay_apart_and_refuse_strangers(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    same = ["--nodelist=node[1-3]"]  # passed verbatim from slurm.extra
    a = sbatch(write_job(a_dir, nodes=3, extra=same), **held(a_dir))
    b = sbatch(write_job(b_dir, nodes=3, extra=same), **held(b_dir))
    try:
        for folder in (a_dir, b_dir):
            wait_until(lambda f=folder: ready_lines(f), JOB_TIMEOUT, f"job in {folder.name} ready", folder)
        states = {r["JobState"] for j in (a, b) for r in job_records(j)}
        nodes = {r["NodeList"] for j in (a, b) for r in job_records(j)}
        assert states == {"RUNNING"} and nodes == {"node[1-3]"}  # the very same nodes, at the same time
        spans = slot_ports(a_dir) + slot_ports(b_dir)
        assert len(spans) == 6
        for i, x in enumerate(spans):
            for y in spans[i + 1:]:
                assert not set(x) & set(y)
        addr_a, addr_b = head_of(a)["address"], head_of(b)["address"]
        token_a, token_b = f"/tmp/hpoc-{a}/token", f"/tmp/hpoc-{b}/token"
        assert Path(token_a).read_text() != Path(token_b).read_text()
        for token in (token_a, token_b):
            assert oct(os.stat(token).st_mode & 0o777) == "0o600"
            assert oct(os.stat(Path(token).parent).st_mode & 0o777) == "0o700"
            assert Path(token).read_text() not in logs(tmp_path)

        own = attach(addr_a, token_a, tmp_path)
        assert own.returncode == 0 and "alive 3" in own.stdout, own.stderr[-2000:]
        wrong = tmp_path / "wrong-token"
        wrong.write_text(secrets.token_hex(32))
        wrong.chmod(0o600)
        # job A's driver aiming at job B's cluster, a client without a token, one with a wrong one
        for address, token in ((addr_b, token_a), (addr_a, None), (addr_a, str(wrong))):
            stranger = attach(address, token, tmp_path, retries=2)
            assert stranger.returncode != 0 and "alive" not in stranger.stdout, stranger.stdout
            assert "Authentication token is missing or incorrect" in stranger.stderr, stranger.stderr[-2000:]
    finally:
        release(a_dir)
        release(b_dir)
    for job, folder in ((a, a_dir), (b, b_dir)):
        (record,) = wait_jobs([job], JOB_TIMEOUT, folder)
        assert record["JobState"] == "COMPLETED", logs(folder)
        assert ray_processes(job) == []


def test_cancelled_job_tears_its_cluster_down(tmp_path):
    job = sbatch(write_job(tmp_path, nodes=2), **held(tmp_path))
    try:
        wait_until(lambda: ready_lines(tmp_path), JOB_TIMEOUT, "cluster ready", tmp_path)
        assert ray_processes(job)  # the cluster is really there
        subprocess.run(["scancel", job], check=True, timeout=30)
        (record,) = wait_jobs([job], JOB_TIMEOUT, tmp_path)
    finally:
        release(tmp_path)
    assert record["JobState"] == "CANCELLED"
    wait_until(lambda: ray_processes(job) == [], 60, "no Ray process of the cancelled job", tmp_path)
    err = "".join(output_of(tmp_path, ".err").values())
    assert "hpoc: terminated (SIGTERM)" in err
    assert "hpoc: stopping Ray on 2 node(s)" in "".join(output_of(tmp_path).values())


def test_failed_bringup_names_the_problem_and_cleans_up(tmp_path):
    job = sbatch(write_job(tmp_path, nodes=2), HPOC_BRINGUP_TIMEOUT="0.2")
    (record,) = wait_jobs([job], JOB_TIMEOUT, tmp_path)
    assert record["JobState"] == "FAILED"
    err = "".join(output_of(tmp_path, ".err").values())
    assert "hpoc: the Ray head did not answer" in err and "within 0.2 s" in err
    assert "ray-node1.log" in err
    assert ray_processes(job) == [] and not Path(f"/tmp/hpoc-{job}").exists()


def test_a_requeued_job_keeps_the_log_of_its_run_before(tmp_path):
    """A resumable job requeues itself at the walltime; the requeued run (same job id, same
    `--output`) overwrote the first run's log, its USR2 and requeue lines included."""
    first = 'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then echo "run one"; scontrol requeue "$SLURM_JOB_ID"; sleep 60; fi'
    script = write_job(tmp_path, nodes=1, preflight_only=False, resume=True,
                       setup=[first, 'echo "run two"; exit 0'])
    job = sbatch(script)
    try:
        wait_until(lambda: any(r.get("Restarts") == "1" and r.get("JobState") == "PENDING"
                               for r in job_records(job)), 60, "the job requeued", tmp_path)
        # SLURM holds a requeued job for ~2 minutes; let it start sooner, but not within the
        # second of the requeue: slurmd refuses a credential made in the second it revoked the
        # job's ("Killing non-startable batch job: Job credential revoked", the job FAILED).
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+2"], check=True, timeout=30)
        (record,) = wait_jobs([job], 60, tmp_path)
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)
    assert record["JobState"] == "COMPLETED"
    out = "".join(output_of(tmp_path).values())
    assert "run one" in out and "run two" in out, out


def test_a_job_named_tmpdir_holds_the_job_directory_on_every_node(tmp_path):
    """As a site's prolog would (fake nodes share this host): TMPDIR named after the job.
    Every Ray node's temp dir is under it, and teardown removes the job directory."""
    job = sbatch(write_job(tmp_path, nodes=2, setup=['export TMPDIR=/tmp/hj-"$SLURM_JOB_ID"',
                                                     'mkdir -p "$TMPDIR"']))
    try:
        (record,) = wait_jobs([job], JOB_TIMEOUT, tmp_path)
        assert record["JobState"] == "COMPLETED", logs(tmp_path)
        temps = re.findall(r"^hpoc: ray \w+ on \S+: .* temp=(\S+)", logs(tmp_path), re.M)
        assert sorted(temps) == [f"/tmp/hj-{job}/hpoc-{job}/n{k}" for k in (0, 1)]
        assert not Path(f"/tmp/hj-{job}/hpoc-{job}").exists() and not Path(f"/tmp/hpoc-{job}").exists()
    finally:
        subprocess.run(["rm", "-rf", f"/tmp/hj-{job}"], check=False)


def test_a_preflight_with_a_python_without_ray_ends_at_once_naming_slurm_python(tmp_path):
    """The preflight checks the nodes' python as the job does: before, it went on to start
    Ray's head, which died on Python's own words, naming no setting."""
    job = sbatch(write_job(tmp_path, nodes=1, python="/usr/bin/python3"))
    (record,) = wait_jobs([job], JOB_TIMEOUT, tmp_path)
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", logs(tmp_path)
    err = "".join(output_of(tmp_path, ".err").values())
    assert "hpoc: error: /usr/bin/python3 on node1 cannot run hpoc (ModuleNotFoundError: No module named" in err, err
    assert "set slurm.python" in err and not list((tmp_path / "logs").rglob("ray-*.log")), err  # no Ray step
