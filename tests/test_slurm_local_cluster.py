"""scripts/local-slurm.sh: a second, private cluster next to the main one (own state folder,
own ports, own munged), brought up twice (idempotent), used, and taken down by pid."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "local-slurm.sh"


def test_script_passes_shellcheck_and_prints_its_env(tmp_path):
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    env = dict(os.environ, HPOC_SLURM_STATE=str(tmp_path / "st ate"))
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, env=env, check=True)
    assert out.stdout == f"export SLURM_CONF={tmp_path}/st\\ ate/slurm.conf\n"
    bad = subprocess.run(["bash", str(SCRIPT), "frobnicate"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def _pids(state: Path) -> dict[str, str]:
    files = [state / "munge" / "munged.pid", state / "slurmctld.pid", *sorted(state.glob("slurmd-*.pid"))]
    return {f.name: f.read_text().strip() for f in files if f.exists()}


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slurm
def test_up_is_idempotent_and_down_stops_only_its_own_daemons(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/munged needs root")
    state = Path("/tmp") / f"hpoc-slurm-test-{os.getpid()}"
    env = dict(os.environ, HPOC_SLURM_STATE=str(state), HPOC_SLURM_PORT="6917", HPOC_SLURMD_PORT="17201")
    main_conf = os.environ.get("SLURM_CONF")
    try:
        up = subprocess.run(["bash", str(SCRIPT), "up", "--nodes", "2"], capture_output=True, text=True,
                            env=env, timeout=120)
        assert up.returncode == 0, up.stderr
        conf = state / "slurm.conf"
        text = conf.read_text()
        assert "NodeName=node[1-2]" in text and "ProctrackType=proctrack/linuxproc" in text
        assert "TaskPlugin=task/none" in text and "CPUs=2 RealMemory=4000" in text
        first = _pids(state)
        assert len(first) == 4 and all(_alive(p) for p in first.values())

        again = subprocess.run(["bash", str(SCRIPT), "up", "--nodes", "2"], capture_output=True, text=True,
                               env=env, timeout=120)
        assert again.returncode == 0 and "already up" in again.stderr
        assert _pids(state) == first  # nothing restarted

        job = subprocess.run(["srun", "-N2", "hostname"], capture_output=True, text=True, timeout=60,
                             env=dict(env, SLURM_CONF=str(conf)))
        assert job.returncode == 0 and job.stdout.count("\n") == 2, job.stderr
        status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, env=env)
        assert "running slurmctld" in status.stdout and "idle" in status.stdout

        down = subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, text=True, env=env, timeout=60)
        assert down.returncode == 0
        assert not any(_alive(p) for p in first.values())
        if main_conf:  # the main cluster did not notice
            sinfo = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=30)
            assert sinfo.returncode == 0
    finally:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, env=env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def test_slurm_tests_skip_without_slurm_and_fail_when_slurm_is_required(tmp_path):
    import sys

    root = SCRIPT.parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HPOC_"))}
    env.update(PATH=str(tmp_path), HPOC_SLURM_STATE=str(tmp_path / "none"))  # no sbatch anywhere
    target = "tests/test_slurm_local_cluster.py::test_up_is_idempotent_and_down_stops_only_its_own_daemons"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", target]
    run = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout
    assert "no SLURM here (sbatch not found)" in run.stdout
    run = subprocess.run(cmd, cwd=root, env=dict(env, HPOC_REQUIRE_SLURM="1"), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1 and ("1 error" in run.stdout or "1 failed" in run.stdout), run.stdout
    assert "HPOC_REQUIRE_SLURM=1 but no SLURM here" in run.stdout
