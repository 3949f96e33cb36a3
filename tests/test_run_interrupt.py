"""Signals before the trials start, and clean-up when a stop is cut short."""

from __future__ import annotations

import io
import os
import re
import signal
import tempfile
from pathlib import Path

import pytest

from hpoc.runtime import session as session_mod
from hpoc.runtime.study import RunOptions, run_study
from runtime_plans import make_plan, write_toy

GETTER = '''
import os, signal, time
from toy import ToyGetter

class InterruptedGetter(ToyGetter):
    """Ctrl-C while the data loads."""
    def execute(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        return super().execute()
'''


@pytest.fixture(autouse=True)
def _ray_env(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_ctrl_c_while_the_getter_loads_is_an_interruption_not_a_getter_error(tmp_path, capsys):
    import ray

    workdir = write_toy(tmp_path / "study")
    (workdir / "slowdata.py").write_text(GETTER)
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"getter": {"target": "slowdata:InterruptedGetter", "args": {}}})
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == 130, err
    # not read as "the study has nothing left to do"
    assert ("interrupted before any trial started; nothing to resume: running the same plan again "
            "starts the study") in err
    assert "failed" not in err and "study.py" not in err
    assert not ray.is_initialized() and not (tmp_path / "results" / "toy").exists()


def test_a_second_ctrl_c_during_rays_shutdown_still_removes_the_temp_dir(monkeypatch):
    import ray

    temp = tempfile.mkdtemp(prefix="hpoc-test-")
    Path(temp, "token").write_text("secret")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)

    def shutdown(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "before")
    s = session_mod.Session(local=True, temp_dir=temp, _env_backup={"RAY_AUTH_TOKEN_PATH": "old"})
    with pytest.raises(KeyboardInterrupt):
        s.close()
    assert not os.path.exists(temp) and os.environ["RAY_AUTH_TOKEN_PATH"] == "old"


def test_the_temp_dir_goes_at_exit_when_close_never_ran(tmp_path):
    """Exits where the driver's own clean-up is skipped (an exception in a `finally`)."""
    import subprocess
    import sys

    code = ("import ray\n"
            "ray.init = lambda **kw: None  # no Ray needed to test the clean-up\n"
            "from hpoc.runtime.session import start_local\n"
            "print(start_local(workdir=None).temp_dir, flush=True)\n"
            "raise SystemExit(3)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    temp = run.stdout.strip()
    assert temp.startswith("/tmp/hpoc-") and not os.path.exists(temp)


def test_checkpoints_being_saved_live_in_the_local_runs_temp_dir(monkeypatch):
    """A trial killed mid-save (SIGKILL, OOM) used to leave `/tmp/hpoc-ckpt-*` behind."""
    import ray

    from hpoc.runtime.report import scratch_dir

    seen = {}
    # no Ray needed: what matters is the environment its processes inherit
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(env=dict(os.environ)))
    monkeypatch.delenv("HPOC_SCRATCH", raising=False)
    s = session_mod.start_local(workdir=None, num_cpus=1)
    try:
        scratch = os.environ["HPOC_SCRATCH"]
        assert scratch.startswith(s.temp_dir + os.sep)
        owner = Path(s.temp_dir, session_mod.OWNER).read_text()
        assert f'"pid": {os.getpid()}' in owner  # so a later run can sweep it after a kill -9
        assert seen["env"]["HPOC_SCRATCH"] == scratch  # the trials see it
        kept = scratch_dir()  # what a killed trial leaves
        assert kept.startswith(scratch + os.sep)
    finally:
        s.close()
    assert not os.path.exists(kept) and "HPOC_SCRATCH" not in os.environ


def test_temp_dirs_of_killed_local_runs_are_swept_and_nothing_else(tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    host, now = socket.gethostname(), time.time()

    def temp(name, owner=None):
        d = tmp_path / name
        d.mkdir()
        (d / "token").write_text("t")
        if owner is not None:
            (d / session_mod.OWNER).write_text(json.dumps(owner))
        return d

    try:
        killed = temp("hpoc-killed01", {"pid": dead.pid, "host": host, "started": now})
        temp("hpoc-running1", {"pid": live.pid, "host": host, "started": now})
        temp("hpoc-otherhst", {"pid": dead.pid, "host": "elsewhere", "started": now})
        temp("hpoc-4242")  # a SLURM job directory: no owner file
        temp("hpoc-garbled1", None).joinpath(session_mod.OWNER).write_text("{")
        (tmp_path / "hpoc-link").symlink_to(killed)
        (tmp_path / "hpoc-notes.md").write_text("")
        assert session_mod.sweep_stale_temp_dirs(str(tmp_path)) == [str(killed)]
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "hpoc-4242", "hpoc-garbled1", "hpoc-link", "hpoc-notes.md", "hpoc-otherhst", "hpoc-running1"]


def test_a_scratch_dir_that_cannot_be_made_falls_back_to_the_system_temp_dir(tmp_path, monkeypatch):
    from hpoc.runtime.report import scratch_dir

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("HPOC_SCRATCH", str(tmp_path / "file" / "scratch"))
    d = scratch_dir()
    try:
        assert Path(d).parent == Path(tempfile.gettempdir())
    finally:
        os.rmdir(d)


@pytest.mark.ray
def test_ctrl_c_while_local_ray_starts_stops_every_ray_process(tmp_path, capsys, monkeypatch):
    import psutil
    import ray
    from ray._private import node

    seen = {}
    start = node.Node.start_ray_processes

    def start_then_ctrl_c(self):
        start(self)
        seen["session"] = self.get_session_dir_path()
        os.kill(os.getpid(), signal.SIGINT)  # lands while ray.init is still connecting

    monkeypatch.setattr(node.Node, "start_ray_processes", start_then_ctrl_c)
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=1, progress=progress, out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == 130, err
    assert "interrupted before any trial started; nothing to resume" in err
    assert "cannot start a local Ray instance" not in err
    # said at once: Ray takes seconds yet to finish starting, then to stop
    assert "[hpoc] SIGINT: stopping once Ray has started" in progress.getvalue()
    temp = re.match(r"(/tmp/hpoc-[^/]+)/", seen["session"]).group(1)
    assert not ray.is_initialized() and not os.path.exists(temp)
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp in part for part in proc.info["cmdline"] or []):
            left.append(proc)
    gone, alive = psutil.wait_procs(left, timeout=15)
    assert not alive, [p.info["cmdline"][:2] for p in alive]


def test_rays_lines_in_a_jobs_log_have_no_terminal_colour_codes(monkeypatch):
    """A node failure's "(raylet) A worker died ..." line reached the job's .out wrapped in
    ESC[33m ... ESC[0m: Ray colours what it prints unless told not to."""
    import ray

    seen = []
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    monkeypatch.setattr(session_mod, "_reachable", lambda address: None)
    monkeypatch.setattr("hpoc.runtime.probe.not_ray", lambda address: None)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(os.environ.get("RAY_COLOR_PREFIX")))
    monkeypatch.setattr("sys.stdout", io.StringIO())  # a file, as in a job
    session_mod.connect_cluster("127.0.0.1:1", workdir=None)
    assert seen == ["0"]


def test_ctrl_c_once_every_trial_ended_is_not_a_stop(tmp_path, monkeypatch):
    """The run ends as it would have: no "stopping ... resumes", not interrupted, exit 0."""
    import json

    from hpoc.runtime import watch

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     space={"constants": {"epochs": 1, "batch_size": 32}})
    after_complete = watch._fail_fast  # what the driver does on each trial that ends

    def then_ctrl_c(trial, trials):
        after_complete(trial, trials)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(watch, "_fail_fast", then_ctrl_c)
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    said = progress.getvalue()
    assert code == 0, said
    assert "[hpoc] SIGINT: every trial has ended already; the run finishes as it is" in said
    assert "resume" not in said and "stopping" not in said
    summary = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 1} and not summary["interrupted"]
