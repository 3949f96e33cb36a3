"""What a trial prints is kept with a cap (hpoc/runtime/output.py), and Ray's copy too."""

from __future__ import annotations

import os
import sys

from hpoc.runtime import output
from hpoc.runtime import session as session_mod


def test_a_trial_printing_every_step_keeps_its_latest_output_within_twice_the_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(output, "CAP_BYTES", 1000)
    with output.kept(str(tmp_path)):
        for step in range(500):
            print(f"step {step:04d}")
        print("the last words", file=sys.stderr)
    assert capsys.readouterr().out.count("step") == 500  # the process's own stream: everything
    out, before = (tmp_path / "stdout").read_text(), (tmp_path / "stdout.1").read_text()
    assert out.endswith("step 0499\n") and before.endswith(f"step {int(out[5:9]) - 1:04d}\n")
    assert len(out) <= 1000 and len(before) <= 1000 and not (tmp_path / "stdout.2").exists()
    assert (tmp_path / "stderr").read_text() == "the last words\n"
    assert not isinstance(sys.stdout, output._Tee)  # put back for the next trial of the process


def test_one_write_over_the_cap_keeps_its_end(tmp_path):
    log = output.CappedLog(str(tmp_path / "stdout"), cap=10)
    log.write("x" * 50 + "0123456789")
    log.close()
    assert (tmp_path / "stdout").read_text() == "0123456789"


def test_a_local_runs_ray_rotates_its_processes_logs_unless_told_otherwise(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(os.environ))  # workers inherit it
    monkeypatch.delenv("RAY_ROTATION_MAX_BYTES", raising=False)
    monkeypatch.setenv("RAY_ROTATION_BACKUP_COUNT", "3")
    s = session_mod.start_local(workdir=None, num_cpus=1)
    s.close()
    assert seen["RAY_ROTATION_MAX_BYTES"] == str(16 * 2**20) and seen["RAY_ROTATION_BACKUP_COUNT"] == "3"
    assert "RAY_ROTATION_MAX_BYTES" not in os.environ and os.environ["RAY_ROTATION_BACKUP_COUNT"] == "3"
