"""The fixed cost of a driver's start and end (hpoc/runtime/lean.py, exits.leave): what a
local run's Ray does not start, what Tune's fit does not import, how the process ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpoc.runtime import lean

ROOT = Path(__file__).resolve().parent.parent


def _child(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_leave_ends_with_the_code_after_atexit_handlers_and_with_every_file_flushed(tmp_path):
    """What Python's teardown did that matters still happens: atexit handlers run, buffered
    writes reach their files (one in a reference cycle, freed only by the collector), what
    was printed is there; the exit code is the run's."""
    got = _child("""
        import atexit, sys, threading
        from hpoc.runtime.exits import leave

        atexit.register(lambda: open("atexit", "w").write("ran"))
        log = open("module-log", "w", buffering=1 << 20)
        log.write("kept at module level\\n")

        class Holder:
            pass
        a, b = Holder(), Holder()
        a.other, b.other = b, a
        a.file = open("in-a-cycle", "w", buffering=1 << 20)
        a.file.write("kept in a cycle\\n")
        del a, b
        threading.Thread(target=threading.Event().wait, daemon=True).start()  # never ends
        print("the summary line")
        leave(7)
    """, tmp_path)
    assert got.returncode == 7, got.stderr
    assert got.stdout == "the summary line\n" and got.stderr == ""
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "module-log").read_text() == "kept at module level\n"
    assert (tmp_path / "in-a-cycle").read_text() == "kept in a cycle\n"


def test_leave_waits_for_a_thread_that_is_not_a_daemon(tmp_path):
    got = _child("""
        import threading
        from hpoc.runtime.exits import leave

        go = threading.Event()
        def late():
            go.wait()
            open("late", "w").write("written")
        threading.Thread(target=late).start()
        threading.Timer(0.2, go.set).start()
        leave(3)
    """, tmp_path)
    assert got.returncode == 3, got.stderr
    assert (tmp_path / "late").read_text() == "written"


class _Left(Exception):
    pass


@pytest.mark.parametrize("as_program", [True, False])
def test_hpoc_run_as_a_program_ends_through_leave_and_in_process_returns(monkeypatch, as_program):
    """`hpoc run` (argv from the command line) ends its process once the run is over;
    `cli.main([...])` called in a process that goes on (tests, scripts) returns."""
    from hpoc import cli
    from hpoc.commands import run as run_cmd
    from hpoc.runtime import exits

    left = []

    def leave(code):
        left.append(code)
        raise _Left()

    monkeypatch.setattr(run_cmd, "run", lambda args: 4)
    monkeypatch.setattr(exits, "leave", leave)
    monkeypatch.setattr(sys, "argv", ["hpoc", "run", "study.hpo", "--local"])
    if as_program:
        with pytest.raises(_Left):
            cli.main()
        assert left == [4]
    else:
        assert cli.main(["run", "study.hpo", "--local"]) == 4 and left == []


def test_python_m_hpoc_runtime_ends_without_pythons_teardown(tmp_path):
    """The job's driver: its exit code as main gives it, and no teardown of the modules (a
    module-level object's finalizer is one step of it)."""
    got = _child("""
        import runpy, sys

        class Witness:
            def __del__(self):
                open("teardown", "w").write("ran")
        witness = Witness()
        sys.argv = ["hpoc.runtime", "missing-plan.json"]
        runpy.run_module("hpoc.runtime", run_name="__main__")
    """, tmp_path)
    assert got.returncode == 2 and "missing-plan.json" in got.stderr, got.stderr
    assert not (tmp_path / "teardown").exists()


def test_a_lean_head_skips_the_api_server_and_monitor_and_puts_them_back():
    from ray._private.node import Node

    before = {name: getattr(Node, name) for name in lean.SKIPPED}
    with lean.lean_head(False) as on:
        assert not on and {name: getattr(Node, name) for name in lean.SKIPPED} == before
    with pytest.raises(RuntimeError):
        with lean.lean_head() as on:
            assert on
            assert all(getattr(Node, name) is not before[name] for name in lean.SKIPPED)
            assert Node.start_monitor(object()) is None
            raise RuntimeError("ray.init failed")
    assert {name: getattr(Node, name) for name in lean.SKIPPED} == before


@pytest.mark.parametrize("setting, lean_wanted", [(None, True), ("full", False), (" FULL ", False), ("", True)])
def test_hpoc_local_ray_full_starts_ray_as_it_comes(monkeypatch, setting, lean_wanted):
    if setting is None:
        monkeypatch.delenv(lean.ENV, raising=False)
    else:
        monkeypatch.setenv(lean.ENV, setting)
    assert lean.wanted() is lean_wanted


@pytest.mark.parametrize("stats, skipped", [("0", True), ("1", False)])
def test_tunes_callback_tag_is_not_made_with_usage_stats_off(tmp_path, stats, skipped):
    """The tag imported MLflow's integration (MLflow itself) into every driver."""
    got = _child(f"""
        import os, sys
        os.environ["RAY_USAGE_STATS_ENABLED"] = "{stats}"
        from hpoc.runtime import lean
        from ray.air._internal import usage
        from ray.tune import Callback
        print(lean.skip_callback_tag())
        usage.tag_callbacks([Callback()])
        print("ray.air.integrations.mlflow" in sys.modules)
    """, tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [str(skipped), str(not skipped)]


@pytest.mark.ray
@pytest.mark.parametrize("setting", [None, "full"])
def test_a_local_run_starts_no_api_server_or_monitor_unless_told(monkeypatch, setting):
    import ray
    from ray._private import worker

    from hpoc.runtime import session

    if setting is None:
        monkeypatch.delenv(lean.ENV, raising=False)
    else:
        monkeypatch.setenv(lean.ENV, setting)
    s = session.start_local(workdir=None, num_cpus=1)
    try:
        started = set(worker._global_node.all_processes)
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    finally:
        s.close()
    assert {"gcs_server", "raylet"} <= started
    assert ({"dashboard", "monitor"} & started) == (set() if setting is None else {"dashboard", "monitor"})
