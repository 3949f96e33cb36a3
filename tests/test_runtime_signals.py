"""What the driver says when a signal stops it: who resumes the run."""

from __future__ import annotations

import io
import os
import signal

import pytest

from hpoc.plan import WALLTIME_REQUEUE
from hpoc.runtime import signals, watch


@pytest.mark.parametrize("requeue, then", [
    ("1", "the requeued job resumes"), (None, "running the plan again resumes")])
def test_a_walltime_stop_in_a_job_that_requeues_says_it_resumes_itself(monkeypatch, requeue, then):
    """A job requeued at its walltime said "run the same plan again to resume" just before
    its own "requeueing job …" line."""
    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out))
    monkeypatch.setattr(signals, "STATE", watch.STATE)
    stopped = []

    def signal_interrupt_tune_run(signum, frame):  # Tune's handler, by its name
        stopped.append(signum)

    monkeypatch.setattr(signals, "stop_tune", signal_interrupt_tune_run)
    if requeue:
        monkeypatch.setenv(WALLTIME_REQUEUE, requeue)
    else:
        monkeypatch.delenv(WALLTIME_REQUEUE, raising=False)
    before = signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
    previous = signals.install_signals()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
    finally:
        signals.restore_signals(previous)
        signal.signal(signal.SIGUSR1, before)
    assert stopped == [signal.SIGUSR2]
    assert f"SIGUSR2: stopping; checkpoints are kept and {then}" in out.getvalue()
    last = signals.stopped_line(signal.SIGUSR2)
    assert ("requeues itself" in last) == bool(requeue) and ("run the same plan again" in last) != bool(requeue)
    assert "run the same plan again" in signals.stopped_line(signal.SIGTERM)


@pytest.mark.parametrize("check", [None, "--before-ray", "--release-claim"])
def test_a_stop_signal_while_the_driver_imports_is_heeded_not_fatal(tmp_path, check):
    """SLURM's USR2 that reached the driver during its slow imports killed it with 140,
    which job.sbatch cannot tell from the driver's own "stopped before any trial started"
    (and `hpoc submit`'s job saw -12, and requeued). Here the plan is a FIFO: the driver
    waits on it, past its first lines, when the signal comes. The short checks before and
    after Ray are no run: the signal ends them as ever."""
    import json
    import subprocess
    import sys

    from runtime_plans import make_plan

    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    text = json.dumps(make_plan(tmp_path, tmp_path / "storage"))
    args = [sys.executable, "-m", "hpoc.runtime", str(fifo), "--local", *([check] if check else [])]
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(fifo, "w") as plan:  # opens once the driver reads it
        driver.send_signal(signal.SIGUSR2)
        plan.write(text)
    out, _ = driver.communicate(timeout=120)
    if check:
        assert driver.returncode == -signal.SIGUSR2, out
        return
    assert driver.returncode == 128 + signal.SIGUSR2, out
    assert "[hpoc] SIGUSR2 came as the driver started: the run did not start" in out


def test_a_check_started_with_sigterm_ignored_is_not_ended_by_it(tmp_path):
    """The job's teardown releases the shard's claim with SIGTERM ignored (hpoc_shielded), as
    SLURM signals every process of the job: `hold` put a handler in its place, and `release`
    then ended the release halfway with the SIGTERM that had come meanwhile."""
    import json
    import subprocess
    import sys

    from runtime_plans import make_plan

    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    text = json.dumps(make_plan(tmp_path, tmp_path / "storage"))
    args = [sys.executable, "-m", "hpoc.runtime", str(fifo), "--release-claim"]
    check = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    with open(fifo, "w") as plan:  # opens once the check reads it, past `hold`
        check.send_signal(signal.SIGTERM)
        plan.write(text)
    out, _ = check.communicate(timeout=120)
    assert check.returncode == 0, out


def test_a_stop_in_a_study_with_resume_off_does_not_promise_a_resume(monkeypatch):
    """With `resume { enabled = false }` the driver said "checkpoints are kept and running
    the plan again resumes", then the run again refused the unfinished run (--fresh)."""
    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out))
    watch.STATE.resume = False  # the plan's resume.enabled
    monkeypatch.setattr(signals, "STATE", watch.STATE)
    stopped = []

    def signal_interrupt_tune_run(signum, frame):  # Tune's handler, by its name
        stopped.append(signum)

    monkeypatch.setattr(signals, "stop_tune", signal_interrupt_tune_run)
    before = signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
    previous = signals.install_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signals.restore_signals(previous)
        signal.signal(signal.SIGUSR1, before)
    assert stopped == [signal.SIGTERM]
    said = out.getvalue() + signals.stopped_line(signal.SIGTERM)
    assert "resumes" not in said and "to resume" not in said, said
    assert said.count("resume is off in the study") == 2 and "--fresh" in said, said
