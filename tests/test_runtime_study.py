"""Running studies end to end with a real, local Ray (2 CPUs at most)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpoc.plan import content_hash, dumps
from hpoc.runtime.study import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SPEC, RunOptions, run_study
from runtime_plans import make_plan, param, write_toy

pytestmark = pytest.mark.ray
TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def _ray_env(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Other processes on a shared test machine can fill the memory; Ray's OOM killer would
    # then kill our trials, which is not what these tests are about.
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _run(plan, **kw):
    progress, out = io.StringIO(), io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=kw.pop("num_cpus", 2), progress=progress,
                                      out=out, **kw))
    return code, progress.getvalue(), out.getvalue()


def _summary(plan):
    return json.loads((Path(plan["storage"]["path"]) / plan["storage"]["name"] / "summary.json").read_text())


def _epochs(trial):
    lines = (Path(trial["path"]) / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def test_a_local_study_with_asha_runs_end_to_end(tmp_path):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(
        workdir, tmp_path / "results",
        # Two good learning rates first, then hopeless ones: ASHA must cut those at a rung.
        space={"params": [param("lr", "grid", values=[0.05, 0.03, 1e-6, 2e-6, 3e-6, 4e-6]),
                          param("hidden", "choice", categories=[12, 16])],
               "constants": {"epochs": 4, "batch_size": 32}},
        trials={"num_samples": 1, "max_concurrent": 2},
        scheduler={"name": "asha", "time_attr": "training_iteration",
                   "options": {"max_t": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 1}})
    started = time.monotonic()
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress + out
    summary = _summary(plan)
    assert summary["num_trials"] == 6 and summary["status_counts"] == {"TERMINATED": 6}
    assert summary["study"] == "toy" and summary["shard"] == 0
    assert summary["plan_hash"] == plan["content_hash"]
    assert summary["metrics"] == [{"name": "val_accuracy", "mode": "max"}]
    assert 0 < summary["wall_s"] <= time.monotonic() - started
    trials = summary["trials"]
    epochs = sorted(t["epochs"] for t in trials)
    assert epochs[0] < 4 and epochs[-1] == 4, epochs          # ASHA stopped some early
    for t in trials:
        assert set(t["config"]) == {"lr", "hidden", "epochs", "batch_size"}
        assert _epochs(t) == list(range(1, t["epochs"] + 1))  # each epoch reported once
        assert t["metrics"]["epoch"] == t["epochs"] and t["error"] is None
        assert (Path(t["path"]) / ".hpoc-started").is_file()  # hpoc status: running before a report
        assert not (Path(t["path"]) / ".hpoc-oom.json").exists()  # needed only after a death: no inode kept
    best = max(trials, key=lambda t: t["metrics"]["val_accuracy"])
    assert summary["best"] == {k: best[k] for k in ("trial_id", "config", "metrics", "epochs")}
    assert f"best trial {best['trial_id']}: val_accuracy=" in out
    assert "\r" not in progress and "\x1b" not in progress     # plain lines in a log
    assert "6/6 trials finished" in progress
    from hpoc.results import load

    by_id = {t.trial_id: t.config for t in load(summary["experiment_dir"]).trials}  # no plan
    assert by_id == {t["trial_id"]: t["config"] for t in trials}  # constants included

    # Running it again does not repeat a finished study; another plan in the same place is refused.
    code, progress, out = _run(plan)
    assert code == EXIT_OK and "already ran to the end" in progress
    assert f"best trial {best['trial_id']}" in out
    other = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1})
    code, _, _ = _run(other)
    assert code == EXIT_SPEC


def test_a_trial_that_dies_mid_way_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    # Tune saves the experiment (and with it the trial's logs) rarely: the retry's loggers
    # copied the storage's older result.json back (epochs 1, 2, 4, 5; resume.push_trial_logs).
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1000")
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(
        workdir, tmp_path / "results", trials={"num_samples": 1},
        space={"constants": {"epochs": 5, "batch_size": 32}},
        pipeline={"trainer": {"target": "toy:FailOnceTrainer",
                              "args": {"marker_dir": str(tmp_path), "fail_after": 3}}},
        failure={"max_retries": 1})
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress
    assert "failed; retrying from its last checkpoint" in progress
    (trial,) = _summary(plan)["trials"]
    assert trial["status"] == "TERMINATED" and trial["epochs"] == 5
    assert _epochs(trial) == [1, 2, 3, 4, 5]  # continued at epoch 4, did not start over, lost no row


def test_a_trial_whose_process_crashes_says_what_crashed_and_where(tmp_path):
    """A crash (os.abort, as a C extension's) was Ray's paragraph on every way a worker dies,
    cut at 240 characters; Python's stack of it was in Ray's worker log, removed with the run."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     pipeline={"trainer": {"target": "toy:KillAfterTrainer",
                                           "args": {"kill_after": 1, "abort": True}}})
    code, progress, _ = _run(plan)
    assert code == EXIT_FAILED
    assert re.search(r"errored: the trial's process crashed: Aborted \(.*\) at .*toy\.py:\d+ \(details", progress), \
        progress
    (trial,) = _summary(plan)["trials"]
    assert "Fatal Python error: Aborted" in trial["error"]


def test_a_trial_process_the_oom_killer_ends_is_said_to_have_run_out_of_memory(tmp_path, monkeypatch):
    """A one-worker trial's process SIGKILLed by the kernel's OOM killer: its line said it
    died without a Python error, since the process that reads the kill count was the one
    that died. The driver, on the same node, reads it instead (faked here to have risen)."""
    from hpoc.runtime import oom

    monkeypatch.setattr(oom, "_count", lambda path: 10**9)  # the driver's read only
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     pipeline={"trainer": {"target": "toy:KillAfterTrainer", "args": {"kill_after": 1}}})
    code, progress, _ = _run(plan)
    assert code == EXIT_FAILED
    assert ("errored: the trial's process was killed by the kernel's OOM killer (it killed a process on "
            "that node while the trial ran): give the trial more memory, or make it use less") in progress, progress
    (trial,) = _summary(plan)["trials"]
    assert trial["error"].count("hpoc: the kernel's OOM killer killed") == 1


def test_a_trainer_mistake_is_not_retried(tmp_path):
    """A TrainerError fails the same way every time: one quick re-run, not max_retries."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "mistake.py").write_text("from toy import ToyTrainer\n\nclass ListTrainer(ToyTrainer):\n"
                                        "    def create_model(self, config):\n        return [1]\n")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     pipeline={"trainer": {"target": "mistake:ListTrainer", "args": {}}},
                     failure={"max_retries": 3})
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED
    assert "retrying" not in progress
    assert re.search(r"errored: create_model\(\) \(.*mistake.py:4\) returned list", progress)
    (trial,) = _summary(plan)["trials"]
    assert (Path(trial["path"]) / "error.txt").read_text().count("Failure #") == 2


def test_what_a_trial_prints_is_kept_in_its_directory(tmp_path):
    """A newcomer's print() went to a staging folder in the run's temp directory, removed
    at the end: neither on the terminal (without -v) nor with the results."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "loud.py").write_text("from toy import ToyTrainer\n\nclass Loud(ToyTrainer):\n"
                                     "    def create_model(self, config):\n"
                                     "        print('building hidden', config['hidden'])\n"
                                     "        return super().create_model(config)\n")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     pipeline={"trainer": {"target": "loud:Loud", "args": {}}},
                     space={"constants": {"epochs": 1, "batch_size": 32}})
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress + out
    (trial,) = _summary(plan)["trials"]
    assert "building hidden" in (Path(trial["path"]) / "stdout").read_text()


HANGS = """import time

from toy import ToyTrainer


class Hangs(ToyTrainer):
    def train_epoch(self, epoch):
        if self.config["hidden"] == 12 and epoch == 1:  # its second epoch never ends
            time.sleep(150)
        return super().train_epoch(epoch)
"""


def test_a_trial_over_its_time_limit_is_stopped_even_when_it_never_reports_again(tmp_path):
    """A trial hung inside an epoch held its CPU until the study ended: at `time_limit` it
    is stopped (not errored), says why, and the other trials run to the end."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "hangs.py").write_text(HANGS)
    plan = make_plan(workdir, tmp_path / "results",
                     space={"params": [param("hidden", "grid", values=[12, 16, 20])],
                            "constants": {"epochs": 2, "batch_size": 32}},
                     trials={"num_samples": 1, "max_concurrent": 2, "time_limit_s": 12},
                     pipeline={"trainer": {"target": "hangs:Hangs", "args": {}}})
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress + out
    by_width = {t["config"]["hidden"]: t for t in _summary(plan)["trials"]}
    hung = by_width[12]  # (on a loaded machine it may not have reported its first epoch)
    assert (hung["status"], hung["stopped"], hung["error"]) == ("TERMINATED", "time limit", None), progress
    assert hung["epochs"] <= 1, progress  # stopped inside its second epoch, not after the hang
    assert re.search(r"trial \S+ \(hidden=12\) stopped: time limit of 12 s reached", progress), progress
    for width in (16, 20):
        assert (by_width[width]["status"], by_width[width]["stopped"], by_width[width]["epochs"]) == \
            ("TERMINATED", None, 2), progress


REPEATS = """import os

from toy import ToyTrainer


class Repeats(ToyTrainer):
    def create_model(self, config):
        attempts = os.path.join(self.args["dir"], str(config["hidden"]))
        n = len(open(attempts).read()) if os.path.exists(attempts) else 0
        open(attempts, "a").write("x")
        if config["hidden"] == 12:  # a bug of this config: every attempt fails alike
            raise TypeError("unsupported width")
        if config["hidden"] == 16 and n < 2:  # a different failure each time: a flaky node
            raise RuntimeError(f"rank {n} lost")
        return super().create_model(config)
"""


def test_a_retry_that_fails_the_same_way_is_not_retried_again(tmp_path):
    """A deterministic error retried `max_retries` times wasted the allocation: after two
    identical failures at the same point the trial errors, saying so; errors that differ
    are retried as before, and the other trials go on."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "repeats.py").write_text(REPEATS)
    plan = make_plan(workdir, tmp_path / "results",
                     space={"params": [param("hidden", "grid", values=[12, 16, 20])],
                            "constants": {"epochs": 1, "batch_size": 32}},
                     trials={"num_samples": 1, "max_concurrent": 2},
                     pipeline={"trainer": {"target": "repeats:Repeats", "args": {"dir": str(tmp_path)}}},
                     failure={"max_retries": 3, "fail_fast": 0})
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress + out
    by_width = {t["config"]["hidden"]: t for t in _summary(plan)["trials"]}
    assert (tmp_path / "12").read_text() == "xx", progress  # two attempts, not 1 + max_retries
    assert by_width[12]["status"] == "ERROR"
    assert re.search(r"failed the same way twice: TypeError: unsupported width at \S+repeats.py:\d+; "
                     r"not retried again", by_width[12]["error"].splitlines()[-1]), by_width[12]["error"]
    assert (tmp_path / "16").read_text() == "xxx" and by_width[16]["status"] == "TERMINATED"
    assert by_width[20]["status"] == "TERMINATED"
    # the user's error and line, not hpoc's wrapper class
    assert re.search(r"trial \S+ \(hidden=12\) errored: failed the same way twice: TypeError: unsupported "
                     r"width at \S+repeats.py:\d+; not retried again", progress), progress


WRONG_DTYPE = """import os

import torch
from toy import ToyTrainer


class WrongDtype(ToyTrainer):
    def create_model(self, config):
        if not os.path.exists(self.args["fixed"]):
            torch.nn.functional.nll_loss(torch.randn(4, 3), torch.zeros(4))  # float labels
        return super().create_model(config)
"""


def _wrong_dtype_plan(tmp_path, samples, **failure):
    workdir = write_toy(tmp_path / "study")
    (workdir / "wrongdtype.py").write_text(WRONG_DTYPE)
    return make_plan(workdir, tmp_path / "results", trials={"num_samples": samples, "max_concurrent": 2},
                     space={"constants": {"epochs": 1, "batch_size": 32}},
                     pipeline={"trainer": {"target": "wrongdtype:WrongDtype",
                                           "args": {"fixed": str(tmp_path / "fixed")}}},
                     failure=failure)


def test_a_study_whose_first_trials_fail_the_same_way_stops_and_resumes_once_fixed(tmp_path):
    plan = _wrong_dtype_plan(tmp_path, 6, fail_fast=3)
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED, progress
    assert progress.count("failed with the same error") == 1
    stop = progress[progress.index("failed with the same error"):]
    assert "[hpoc] stopped: all of the first 3 trials to end failed with the same error, and no " \
           "trial reported `val_accuracy`\n" in progress
    assert stop.count("RuntimeError: expected target dtype to be Long or Byte, but got Float") == 1
    assert re.search(r"--> \S*wrongdtype\.py:10\n", stop)
    assert "help: every trial failed the same way; fix the trainer and run the same command " \
           "again" in stop
    summary = _summary(plan)
    assert summary["interrupted"] and "failed with the same error" in summary["stopped"]
    assert summary["stop"] == {"kind": "fail_fast", "at": None}
    # the others never ran to the end: paused (running when it stopped) or pending; one
    # waiting for its retry at the stop failed too
    assert summary["status_counts"]["ERROR"] >= 3, summary["status_counts"]
    assert all(t["error"] for t in summary["trials"] if t["status"] == "ERROR"), summary["trials"]
    assert set(summary["status_counts"]) <= {"ERROR", "PAUSED", "PENDING"}, summary["status_counts"]

    (tmp_path / "fixed").touch()  # the fix: the same plan resumes, retrying the failed trials
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress
    summary = _summary(plan)
    assert summary["status_counts"] == {"TERMINATED": 6} and summary["stopped"] is None


SPLIT_KEYS = """
import torch
from toy import ToySplitter


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], {"label": self.y[i]}["target"]


class Split(ToySplitter):
    def execute(self, data):
        return tuple(Rows(*part) for part in super().execute(data))
"""


def test_a_study_stopped_by_its_splitters_error_says_to_fix_the_splitter(tmp_path):
    """It said "fix the trainer" when every trial failed in a Dataset the splitter made."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "split.py").write_text(SPLIT_KEYS)
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 6, "max_concurrent": 2},
                     space={"constants": {"epochs": 1, "batch_size": 32}},
                     pipeline={"splitter": {"target": "split:Split", "args": {}}}, failure={"fail_fast": 3})
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED, progress
    assert re.search(r"--> \S*split\.py:14\n", progress), progress
    assert "help: every trial failed the same way; fix the splitter `split:Split` and " in progress, progress


def test_a_smoke_test_whose_trials_all_fail_the_same_way_stops_before_retrying_them(tmp_path):
    """2 trials, fail_fast 3: nothing to stop but the retries, 2 x 3 identical failures."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2, "max_concurrent": 2},
                     space={"constants": {"epochs": 1, "batch_size": 32}},
                     pipeline={"trainer": {"target": "toy:BrokenTrainer", "args": {}}},
                     failure={"max_retries": 2, "fail_fast": 3})
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED, progress
    attempts = re.findall(r"\] trial \S+ .*(?:failed|errored).*this model cannot be built", progress)
    assert len(attempts) <= 3, progress  # each trial once; a retry that had already started
    assert "[hpoc] stopping the study: every trial failed the same way; not retrying them" in progress
    assert "[hpoc] stopped: all 2 trials of the study failed with the same error, and no trial " \
           "reported `val_accuracy`\n  ValueError: this model cannot be built\n" in progress
    summary = _summary(plan)
    assert summary["stopped"].startswith("all 2 trials of the study failed")
    # failed, not paused or pending: their retries were what the stop cut
    assert summary["status_counts"] == {"ERROR": 2}, summary["status_counts"]
    assert all("this model cannot be built" in t["error"] for t in summary["trials"])


def test_fail_fast_off_runs_every_trial(tmp_path):
    # one trial more than the default fail_fast (3) would let start: a third wave on two slots
    plan = _wrong_dtype_plan(tmp_path, 4, fail_fast=0)
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED
    assert "failed with the same error" not in progress
    summary = _summary(plan)
    assert summary["status_counts"] == {"ERROR": 4} and not summary["interrupted"]


def test_every_trial_failing_is_a_failed_study(tmp_path):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1},
                     pipeline={"trainer": {"target": "toy:BrokenTrainer", "args": {}}})
    code, progress, out = _run(plan)
    assert code == EXIT_FAILED
    summary = _summary(plan)
    assert summary["status_counts"] == {"ERROR": 1} and summary["best"] is None
    assert all("this model cannot be built" in t["error"] for t in summary["trials"])
    assert "errored: ValueError: this model cannot be built" in progress


def test_a_bad_trainer_path_fails_fast_before_ray_starts(tmp_path, capsys):
    import ray

    workdir = write_toy(tmp_path / "study")
    for target, expected in [("toy:ToyTrainr", "did you mean `ToyTrainer`"),
                             ("nosuchmodule:Trainer", "no module named `nosuchmodule`"),
                             ("toy:ToyGetter", "does not subclass `hpoc.Trainer`")]:
        plan = make_plan(workdir, tmp_path / "results",
                         pipeline={"trainer": {"target": target, "args": {}}})
        started = time.monotonic()
        code, _, _ = _run(plan)
        err = capsys.readouterr().err
        assert code == EXIT_SPEC
        assert f"trainer `{target}`" in err and expected in err and str(workdir) in err
        assert "Traceback" not in err
        assert time.monotonic() - started < 10 and not ray.is_initialized()
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9"])  # discard port: nothing listens
def test_an_unreachable_cluster_is_a_clear_error(tmp_path, capsys, monkeypatch, address):
    """A Ray Client address too: its client retried a dead one for half a minute, then
    blamed the token."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    monkeypatch.setenv("RAY_ADDRESS", address)
    code = run_study(plan, RunOptions(progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert f"cannot reach the Ray cluster at RAY_ADDRESS={address}" in err and "--local" in err
    assert "token" not in err  # nothing answered: authentication is not the problem


def test_a_trial_bigger_than_the_machine_is_refused(tmp_path, capsys):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", resources={"workers": 2, "cpus_per_worker": 4})
    code, _, _ = _run(plan)
    err = capsys.readouterr().err
    assert code == EXIT_SPEC
    assert "one trial needs 2 worker(s) x (4 CPU); this machine has 2 CPU" in err


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _signal_when(cmd, env, ready, what, sig, settle=0.0):
    """Run `cmd`, send `sig` once `ready()` holds (and `settle` seconds more): (exit code, stderr)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, 120, what)
        time.sleep(settle)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def _slow_toy_run(tmp_path, epochs):
    """(command, environment, experiment dir) of a local run of 2 one-second-epoch trials."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2, "max_concurrent": 2},
                     space={"constants": {"epochs": epochs, "batch_size": 32}},
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 1.0}}})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    cmd = [sys.executable, "-m", "hpoc.runtime", str(plan_file), "--local", "--cpus", "2"]
    env = dict(os.environ, RAY_memory_monitor_refresh_ms="0", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    return cmd, env, tmp_path / "results" / "toy"


def _temp_dir_of(pid):
    """The private /tmp/hpoc-XXXX of a local run (its Ray processes name it)."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        for part in child.cmdline():
            found = re.search(r"(/tmp/hpoc-[^/\s]+)/", part)
            if found:
                return found.group(1)
    return None


@pytest.mark.slow
def test_term_and_hup_stop_gracefully_release_everything_and_resume(tmp_path):
    """TERM and HUP each stop a run that the next one resumes (USR2, the walltime warning,
    takes the same way: tests/test_resume.py sends it to a real SLURM job). Ray's
    failure-signal handler (installed by ray.init) used to abort the driver on SIGTERM
    (exit 134, no summary); SIGHUP was not handled at all."""
    from hpoc.runtime import runlock

    cmd, env, exp = _slow_toy_run(tmp_path, epochs=6)
    reported = len
    for sig in (signal.SIGTERM, signal.SIGHUP):
        before = sum(reported(p.read_text().splitlines()) for p in exp.glob("trial_*/result.json"))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            _wait_for(lambda: sum(reported(p.read_text().splitlines())
                                  for p in exp.glob("trial_*/result.json")) > before, 120,
                      "a newly reported epoch")
            assert runlock.holder(exp)["pid"] == proc.pid  # a second run would refuse
            temp = _temp_dir_of(proc.pid)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert f"{signal.Signals(sig).name}: stopping" in err
        assert re.search(r"\| [01]/2 trials finished \| 0 running \| 0 pending \| [12] paused", err), err
        summary = json.loads((exp / "summary.json").read_text())
        assert summary["interrupted"] is True and summary["status_counts"].get("PAUSED", 0) >= 1
        assert not (exp / runlock.LOCK).exists()
        assert temp and not os.path.exists(temp)

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == EXIT_OK, again.stderr
    assert "resuming the interrupted run" in again.stderr
    final = json.loads((exp / "summary.json").read_text())
    assert final["interrupted"] is False and final["status_counts"] == {"TERMINATED": 2}
    for trial in final["trials"]:
        assert _epochs(trial) == list(range(1, 7))  # continued after each stop, from its checkpoint


def test_a_signal_to_the_terminals_process_group_stops_gracefully(tmp_path):
    """A closed terminal (SIGHUP) or `timeout` (SIGTERM) signals the run's whole process
    group: the local Ray's GCS and raylet died of it too, and the driver waited 60 s for the
    GCS, busy, then ended with exit 1, no summary and its lock left behind."""
    from hpoc.runtime import runlock

    cmd, env, exp = _slow_toy_run(tmp_path, epochs=6)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own group, as in a terminal
    try:
        _wait_for(lambda: any(p.read_text().strip() for p in exp.glob("trial_*/result.json")),
                  120, "a reported epoch")
        os.killpg(proc.pid, signal.SIGHUP)
        _, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "SIGHUP: stopping" in err and "Failed to connect to GCS" not in err, err
    assert json.loads((exp / "summary.json").read_text())["interrupted"] is True
    assert not (exp / runlock.LOCK).exists()


def test_the_time_budget_spans_resumed_runs(tmp_path):
    """Ray keeps the budget's count in its saved state and a resumed run restores it: the run
    says what is left, and, ended by it sooner than a whole budget, still says the budget did
    (it said nothing, and its trials looked cut short for no reason). The budget sets the
    test's length (the second run lasts what the first left of it); the first run's first
    report (a Ray start and an epoch, under load) and `settle` must fit well inside it."""
    cmd, env, exp = _slow_toy_run(tmp_path, epochs=60)
    plan = json.loads(Path(cmd[3]).read_text())
    plan["trials"]["time_budget_s"] = 30
    plan["content_hash"] = content_hash(plan)
    Path(cmd[3]).write_text(dumps(plan))
    code, err = _signal_when(cmd, env, lambda: any(p.read_text().strip() for p in exp.glob("trial_*/result.json")),
                             "a reported epoch", signal.SIGTERM, settle=2)
    assert code == EXIT_INTERRUPTED, err
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    left = re.search(r"time budget: (\d+) s left of 30 s \(it spans runs\)", again.stderr)
    assert left and int(left.group(1)) < 30, again.stderr
    assert "time budget of 30 s reached" in again.stderr, again.stderr
    assert json.loads((exp / "summary.json").read_text())["interrupted"] is False


def test_budget_left_reads_rays_saved_count(tmp_path):
    from ray.tune.stopper import CombinedStopper, MaximumIterationStopper, TimeoutStopper
    from ray.tune.utils.serialization import TuneFunctionEncoder

    from hpoc.runtime.tuner import budget_left

    def saved(stopper, name="experiment_state-2026-01-01_00-00-00.json"):
        exp = tmp_path / name.split(".")[0]
        exp.mkdir()
        (exp / name).write_text(json.dumps({"trial_data": [], "runner_data": {"_stopper": stopper}},
                                           cls=TuneFunctionEncoder))
        return exp

    spent = TimeoutStopper(100)
    spent._budget = 37.5
    assert budget_left(saved(spent)) == 37.5
    spent._budget = -0.2
    both = CombinedStopper(MaximumIterationStopper(3), spent)
    assert budget_left(saved(both, "experiment_state-2026-01-01_00-00-01.json")) == 0.0
    assert budget_left(saved(MaximumIterationStopper(3), "experiment_state-2026-01-01_00-00-02.json")) is None
    assert budget_left(tmp_path / "nothing") is None


def test_runs_the_walltime_stops_before_any_report_end_the_requeues(tmp_path):
    """A job whose walltime ends before any epoch does checkpoints nothing and requeued itself
    forever. The third such run in a row exits EXIT_NO_PROGRESS, which the job scripts do
    not requeue."""
    from hpoc.plan import EXIT_NO_PROGRESS
    from hpoc.runtime import walltime

    cmd, env, exp = _slow_toy_run(tmp_path, epochs=2)
    plan = json.loads(Path(cmd[3]).read_text())
    plan["pipeline"]["trainer"]["args"]["sleep"] = 20.0  # no epoch ends before the walltime
    plan["content_hash"] = content_hash(plan)
    Path(cmd[3]).write_text(dumps(plan))
    exp.mkdir(parents=True)
    (exp / walltime.FILE).write_text("2\n")  # two runs like it before this one
    code, err = _signal_when(cmd, env, lambda: list(exp.glob("trial_*")), "a trial to start", signal.SIGUSR2,
                             settle=1)
    assert code == EXIT_NO_PROGRESS, err
    assert "the walltime stopped 3 runs in a row before any trial reported an epoch: not requeued" in err
    assert (exp / walltime.FILE).read_text().strip() == "3"
    # a run with a report starts the count again
    assert walltime.after_stop(exp, progressed=True) == 0 and not (exp / walltime.FILE).exists()
    assert [walltime.after_stop(exp, progressed=False) for _ in range(2)] == [1, 2]


def test_a_trial_line_names_the_values_searched_for_it(monkeypatch):
    """'fails for one lr' is seen at once: errors and retries show the trial's searched values."""
    from types import SimpleNamespace

    from hpoc.runtime import watch

    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=["lr", "optimizer.name", "depth"]))
    trial = SimpleNamespace(trial_id="ab12", status="RUNNING", config={
        "lr": 0.123456, "optimizer": {"name": "sgd"}, "depth": 3, "epochs": 5}, path=None, local_path=None)
    watch._trial_line(trial, "failed; retrying from its last checkpoint (retry 1)")
    assert out.getvalue().strip() == (
        "[hpoc] trial ab12 (lr=0.1235, optimizer.name='sgd', depth=3) failed; retrying from its last "
        "checkpoint (retry 1)")


def test_a_trial_error_line_names_the_users_file_and_line(monkeypatch, tmp_path):
    """A KeyError from the trainer is found at once: the innermost frame of the study's own
    code, not Ray's or hpoc's, is on the line."""
    from types import SimpleNamespace

    import ray

    from hpoc.runtime import watch

    user = tmp_path / "mytrainer.py"
    hpoc_file = Path(watch.__file__).with_name("trainer.py")
    ray_file = Path(ray.__file__).with_name("worker.py")
    error = tmp_path / "error.txt"
    error.write_text(f'''Failure # 1
Traceback (most recent call last):
  File "{ray_file}", line 10, in run
  File "{hpoc_file}", line 278, in create_model_loss_optimizer
  File "{user}", line 7, in create_model
    return nn.Linear(64, config["hidden"])
  File "{hpoc_file}", line 20, in __getitem__
KeyError: 'hidden'
''')
    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=["lr"]))
    trial = SimpleNamespace(trial_id="ab12", status="ERROR", config={"lr": 0.5}, error_file=str(error),
                            path=str(tmp_path), local_path=None)
    watch._trial_line(trial, "errored")
    assert out.getvalue().strip() == (
        f"[hpoc] trial ab12 (lr=0.5) errored: KeyError: 'hidden' at {user}:7 (details: {tmp_path}/error.txt)")


def test_a_trial_error_line_keeps_the_help_its_error_carries(monkeypatch, tmp_path):
    """A module missing on the nodes only: the line dropped "install it", left in error.txt."""
    from types import SimpleNamespace

    from hpoc.runtime import watch

    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nTraceback (most recent call last):\n"
                     "hpoc.runtime.pipeline.PipelineError: trainer `t:T`: importing `t` failed: "
                     "No module named 'timm'\n  help: install `timm` in the environment the study runs in\n")
    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=[]))
    trial = SimpleNamespace(trial_id="ab12", status="ERROR", config={}, error_file=str(error),
                            path=str(tmp_path), local_path=None)
    watch._trial_line(trial, "errored")
    assert out.getvalue().strip() == (
        f"[hpoc] trial ab12 errored: trainer `t:T`: importing `t` failed: No module named 'timm' "
        f"(details: {tmp_path}/error.txt)\n  help: install `timm` in the environment the study runs in")


def test_the_final_report_says_why_no_trial_has_a_best_value(tmp_path):
    """Not "no trial reported the objective metric" when every trial failed, or reported NaN."""
    from types import SimpleNamespace

    from hpoc.runtime import summary

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")

    def report(*trials, interrupted=False, budget_s=None, stopped=None):
        built = summary.build(plan, 0, list(trials), wall_s=1.0, interrupted=interrupted,
                              experiment_dir=tmp_path, plan_hash="sha256:0", stopped=stopped)
        return summary.describe_best(built, budget_s).splitlines()[-1]

    def trial(status, **result):
        return SimpleNamespace(trial_id="t1", status=status, config={}, last_result=result, path=None,
                               local_path=None, error_file=None, error_msg="boom")

    # the error itself, as `hpoc status` says it (it was "each trial's error.txt says why")
    assert report(trial("ERROR"), trial("ERROR")) == "every trial failed (2 of 2): boom"
    missing = SimpleNamespace(**{**vars(trial("ERROR")), "error_msg": (
        "PipelineError: trainer `t:T`: importing `t` failed: No module named 'timm'\n"
        "  help: install `timm` in the environment the study runs in")})
    assert report(missing, missing) == ("every trial failed (2 of 2): trainer `t:T`: importing `t` failed: "
                                        "No module named 'timm'; install `timm` in the environment the study runs in")
    assert report(trial("TERMINATED", val_accuracy=float("nan")), trial("ERROR")) == (
        "no trial reported a finite `val_accuracy`: 1 trial(s) reported NaN or inf (training diverged? "
        "try a smaller learning rate)")
    assert report(trial("TERMINATED", train_loss=1.0)) == "no trial reported the objective metric `val_accuracy`"
    # A train() of the user's own that never calls self.report(): said, not just "no objective".
    assert report(trial("TERMINATED"), trial("ERROR")) == (
        "no trial reported the objective metric `val_accuracy`: 1 trial(s) ended without reporting "
        "once (does the trainer's `train()` call `self.report(metrics, epoch=epoch)` every epoch?)")
    # The time budget stopped them before their first report: not the trainer's fault.
    assert report(trial("TERMINATED"), budget_s=10) == (
        "no trial reported the objective metric `val_accuracy`: the time budget "
        "(`trials.time_budget`, 10 s) ended the study before any did")
    # A walltime stop before the first epoch ended: the trials have not had their turn; it
    # said "ended without reporting once" and blamed the trainer.
    assert report(trial("PENDING"), trial("RUNNING"), interrupted=True) == (
        "no trial has reported the objective metric `val_accuracy` yet: the run stopped before "
        "any did; running the same plan again resumes it")
    # fail fast stopped it: running it again as it is fails again, not "resumes it"
    assert report(trial("PENDING"), trial("PENDING"), interrupted=True, stopped="all 2 trials ...") == (
        "no trial reported the objective metric `val_accuracy`: the study stopped itself, its "
        "trials failing the same way")
    # a full disk stopped it: no trial failed the same way, and it resumes once there is room
    full = "trial t1: no space left on a device writing under /s/results (0.0 MiB and 9 inodes free)"
    assert report(trial("PENDING"), trial("PENDING"), interrupted=True, stopped=full) == (
        "no trial has reported the objective metric `val_accuracy` yet: the run stopped before "
        "any did; running the same plan again resumes it")
    # a stop that left trials Ray never made: "2 trial(s)" read as a budget of 2
    built = summary.build(plan, 0, [trial("PAUSED"), trial("PENDING")], wall_s=1.0, interrupted=True,
                          experiment_dir=tmp_path, plan_hash="sha256:0")
    assert summary.describe_best(built, planned=4).startswith("study `toy`: 2 of 4 trial(s) (")
    assert summary.describe_best(built, planned=2).startswith("study `toy`: 2 trial(s) (")
    # counts read as words: it said "(2 error, 1 terminated)"
    built = summary.build(plan, 0, [trial("TERMINATED"), trial("ERROR"), trial("ERROR")], wall_s=1.0,
                          interrupted=False, experiment_dir=tmp_path, plan_hash="sha256:0")
    assert "(2 errors, 1 terminated)" in summary.describe_best(built)
    assert built["status_counts"] == {"ERROR": 2, "TERMINATED": 1}


def test_a_study_without_a_finite_objective_is_a_failed_study(tmp_path):
    """All NaN/inf (training diverged) is no result: exit 1, as when every trial failed."""
    from types import SimpleNamespace

    from hpoc.runtime import summary

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")

    def code(*results, objective=True):
        trials = [SimpleNamespace(trial_id=f"t{i}", status="TERMINATED", config={}, last_result=r,
                                  path=None, local_path=None, error_file=None, error_msg=None)
                  for i, r in enumerate(results)]
        p = plan if objective else {**plan, "objective": {"metrics": []}}
        return summary.exit_code(summary.build(p, 0, trials, wall_s=1.0, interrupted=False,
                                              experiment_dir=tmp_path, plan_hash="sha256:0"))

    nan, inf = float("nan"), float("inf")
    assert code({"val_accuracy": nan}, {"val_accuracy": inf}) == EXIT_FAILED
    assert code({"val_accuracy": nan}, {"val_accuracy": 0.5}) == EXIT_OK
    assert code({"val_accuracy": nan}, objective=False) == EXIT_OK  # nothing to rank by


def test_an_objective_metric_named_with_a_slash_is_the_studys_result(tmp_path):
    """`minimize "val/err"` (the language takes it, as Ray does): the summary dropped every
    key with a `/`, so the study ended "no trial reported the objective metric" with exit 1.
    Ray's own flattened keys (`config/lr`) and hpoc's (`perf/...`) are still not metrics."""
    from types import SimpleNamespace

    from hpoc.runtime import summary

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    plan = {**plan, "objective": {"metrics": [{"name": "val/err", "mode": "min"}]}}
    results = [{"val/err": 0.3, "config/lr": 0.1, "perf/train_s": 2.0}, {"val/err": 0.1}]
    trials = [SimpleNamespace(trial_id=f"t{i}", status="TERMINATED", config={}, last_result=r,
                              path=None, local_path=None, error_file=None, error_msg=None)
              for i, r in enumerate(results)]
    built = summary.build(plan, 0, trials, wall_s=1.0, interrupted=False,
                          experiment_dir=tmp_path, plan_hash="sha256:0")
    assert built["trials"][0]["metrics"] == {"val/err": 0.3}
    assert built["best"]["trial_id"] == "t1"
    assert summary.exit_code(built) == EXIT_OK


def test_a_shard_that_finds_the_shared_budget_spent_has_done_its_part(tmp_path):
    """An array throttled by `parallel`: shards 0 and 1 asked every trial of an Optuna study
    before shard 2 started. Its job failed ("no trial reported the objective metric") though
    the study had finished, and `hpoc status` then named that job FAILED as what to look at."""
    from hpoc.runtime import summary

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", search={"algorithm": "optuna", "options": {"seed": 0}},
                     shards={"count": 3, "parallel": 2})

    def ended(shards=3, algorithm="optuna", **how):
        p = {**plan, "shards": {"count": shards, "parallel": 2},
             "search": {**plan["search"], "algorithm": algorithm}}
        return summary.build(p, 2, [], wall_s=1.0, experiment_dir=tmp_path, plan_hash="sha256:0",
                             **{"interrupted": False, **how})

    built = ended()
    assert summary.exit_code(built) == EXIT_OK
    assert summary.describe_best(built, planned=3) == (
        "study `toy` shard 2: nothing to do: the other shards had already asked for every trial "
        "of the study's shared budget (`trials.num_samples`)")
    # No trial otherwise is still a failed run: a share of its own, or a run cut short.
    for other in (ended(shards=1), ended(algorithm="random"), ended(interrupted=True),
                  ended(stopped="fail fast")):
        assert summary.exit_code(other) == EXIT_FAILED


def test_the_driver_says_it_loads_the_data_before_the_getter_runs(tmp_path, monkeypatch):
    """A slow getter (and Ray's start after it) is not silent: one line names the steps."""
    from hpoc.runtime import pipeline

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    progress = io.StringIO()

    def load_data(plan):  # stop the run where the data would load
        raise pipeline.PipelineError("stopped here")

    monkeypatch.setattr(pipeline, "load_data", load_data)
    code = run_study(plan, RunOptions(local=True, progress=progress, out=io.StringIO()))
    assert code == EXIT_SPEC
    assert progress.getvalue() == "[hpoc] loading data: toy:ToyGetter → toy:ToySplitter\n"
    from hpoc.runtime.study import _loading_line

    no_splitter = {**plan, "pipeline": {**plan["pipeline"], "splitter": None}}
    assert _loading_line(no_splitter) == "[hpoc] loading data: toy:ToyGetter"
    assert _loading_line({**plan, "pipeline": {"trainer": plan["pipeline"]["trainer"]}}) is None


def test_the_time_budget_line_counts_trials_that_started_but_never_reported():
    """Ray's `last_result` is never empty (it holds the trial id before any report): a
    started trial that never reported counted as reported."""
    from types import SimpleNamespace

    from hpoc.runtime.watch import _budget_line

    trials = [SimpleNamespace(last_result={"trial_id": "a", "training_iteration": 3}),
              SimpleNamespace(last_result={"trial_id": "b"}),  # started, cut off before its first report
              SimpleNamespace(last_result={})]
    assert _budget_line(6, 4, trials).endswith("; 2 of them never reported")


def test_the_time_budget_line_says_trials_never_created_never_ran_as_the_summary_does():
    """The run said "4 of 4 trial(s) never reported" when the budget ended it after 2 of 4
    trials, while summary.json, `hpoc status` and `hpoc results` said "reached after 2 of 4
    trial(s)": the 2 trials never created were counted as never reported."""
    from types import SimpleNamespace

    from hpoc.runtime import summary as summary_mod
    from hpoc.runtime.watch import _budget_line

    started = [SimpleNamespace(last_result={"trial_id": "a"}), SimpleNamespace(last_result={"trial_id": "b"})]
    line = _budget_line(4, 4, started)
    ending = summary_mod.ending({"budget_reached_s": 4, "num_trials": 2, "planned": 4})
    assert line.startswith(f"[hpoc] {ending}: "), line
    assert line.endswith("; 2 of them never reported"), line
    assert "4 of 4" not in line


def test_splits_that_cannot_be_pickled_are_named_not_an_internal_error(tmp_path, capsys):
    """Ray pickles the splits to share them: a split that cannot be pickled (a generator then,
    refused before Ray now; here a Dataset holding a lock) made `hpoc: internal error` (exit
    1, "a bug in hpoc") with the whole data's repr, hundreds of lines of tensors."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "lazy.py").write_text(
        "import threading\nimport torch\nfrom toy import ToySplitter\n\n"
        "class Locked(torch.utils.data.Dataset):\n"
        "    def __init__(self, x, y):\n        self.x, self.y, self.lock = x, y, threading.Lock()\n"
        "    def __len__(self):\n        return len(self.y)\n"
        "    def __getitem__(self, i):\n        return self.x[i], self.y[i]\n\n"
        "class Lazy(ToySplitter):\n"
        "    def execute(self, data):\n        (x, y), val = super().execute(data)\n"
        "        return Locked(x, y), val\n")
    plan = make_plan(workdir, tmp_path / "results", pipeline={"splitter": {"target": "lazy:Lazy", "args": {}}})
    code, _, _ = _run(plan, num_cpus=1)
    err = capsys.readouterr().err
    assert code == EXIT_SPEC, err
    assert err.startswith("error: the train split from splitter `lazy:Lazy` cannot be sent to the trials: "
                          "TypeError: cannot pickle '_thread.lock' object\n  help: Ray pickles the splits"), err
    assert len(err.splitlines()) == 2


def test_a_trial_that_stops_reporting_is_named_once(monkeypatch):
    """A hung trial (a deadlock, a sleep) showed only as "1 running", for ever (without a
    `trials.time_limit`). Quiet for 10 of its longest epochs (at least 10 min; 30 min before
    a first report), it is named once."""
    from types import SimpleNamespace

    from hpoc.runtime import clock, watch

    now = [0.0]
    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=["lr"]))
    monkeypatch.setattr(clock, "TIMES", clock.TrialTimes(clock=lambda: now[0]))
    events = watch._make_events()
    hung, fine, new = (SimpleNamespace(trial_id=i, status="RUNNING", config={"lr": 0.5}, path=None,
                                       local_path=None) for i in ("aa_1", "aa_2", "aa_3"))
    for trial in (hung, fine, new):
        clock.TIMES.started(trial)
    events.on_trial_result(0, [], hung, {"time_this_iter_s": 90.0})
    for t in (60, 120, 899, 1000, 1799, 1801, 5000):
        now[0] = float(t)
        events.on_trial_result(0, [], fine, {"time_this_iter_s": 1.0})  # reports all the time
        events.on_step_end(0, [hung, fine, new])
    lines = out.getvalue().splitlines()
    assert lines == [
        "[hpoc] trial aa_1 (lr=0.5) has not reported for 17 min (its epochs took 90 s at most): stuck? "
        "`trials { time_limit = ... }` stops such a trial; Ctrl-C stops the study, keeping checkpoints, and a rerun resumes it",
        "[hpoc] trial aa_3 (lr=0.5) has not reported for 30 min (it has not reported yet): stuck? "
        "`trials { time_limit = ... }` stops such a trial; Ctrl-C stops the study, keeping checkpoints, and a rerun resumes it"]


ARMED = """import os

from toy import SlowTrainer


class Armed(SlowTrainer):
    def report(self, metrics, *, epoch=None, **kwargs):
        super().report(metrics, epoch=epoch, **kwargs)
        fired = self.args["arm"] + ".fired"
        if epoch is not None and os.path.exists(self.args["arm"]) and not os.path.exists(fired):
            open(fired, "w").close()
            raise OSError("stale file handle")  # once: a retry goes on
"""


@pytest.mark.slow
def test_a_resumed_run_retries_a_failed_trial_as_the_plan_says(tmp_path):
    """A run resumed after a stop keeps the callbacks Tune restores, and they gave every
    trial 0 retries: a trial that failed once in the resumed run errored at once, whatever
    `failure.max_retries` said."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "armed.py").write_text(ARMED)
    arm = tmp_path / "arm"
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1, "max_concurrent": 1},
                     space={"constants": {"epochs": 6, "batch_size": 32}},
                     pipeline={"trainer": {"target": "armed:Armed", "args": {"sleep": 1.0, "arm": str(arm)}}},
                     failure={"max_retries": 2, "fail_fast": 0})
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    cmd = [sys.executable, "-m", "hpoc.runtime", str(plan_file), "--local", "--cpus", "2"]
    env = dict(os.environ, RAY_memory_monitor_refresh_ms="0", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    exp = tmp_path / "results" / "toy"
    code, err = _signal_when(cmd, env, lambda: any(p.read_text().strip() for p in exp.glob("trial_*/result.json")),
                             "a first report", signal.SIGTERM)
    assert code == EXIT_INTERRUPTED, err
    arm.touch()  # the next run's trial fails once, after its first report
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert "resuming the interrupted run" in again.stderr
    assert (tmp_path / "arm.fired").exists(), again.stderr
    assert "failed; retrying" in again.stderr, again.stderr
    (trial,) = json.loads((exp / "summary.json").read_text())["trials"]
    assert (again.returncode, trial["status"], trial["epochs"]) == (EXIT_OK, "TERMINATED", 6), again.stderr


LATE = """import os

from toy import ToyTrainer


class Late(ToyTrainer):
    def create_model(self, config):
        if os.path.exists(self.args["failed"]):
            import time
            time.sleep(120)  # the retry is slow to start: its time limit comes first
        return super().create_model(config)

    def report(self, metrics, *, epoch=None, **kwargs):
        super().report(metrics, epoch=epoch, **kwargs)
        if not os.path.exists(self.args["failed"]):
            open(self.args["failed"], "w").close()
            raise OSError("stale file handle")
"""


def test_a_retry_its_time_limit_cuts_short_keeps_the_trials_error(tmp_path):
    """As with the time budget: a trial stopped at its time limit while it was being retried
    showed "time limit" and no error."""
    from hpoc.results import load_plan, rank
    from hpoc.results.table import render_errors

    workdir = write_toy(tmp_path / "study")
    (workdir / "late.py").write_text(LATE)
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": "late:Late", "args": {"failed": str(tmp_path / "failed")}}},
                     space={"params": [], "constants": {"epochs": 2, "batch_size": 32}},
                     trials={"num_samples": 1, "max_concurrent": 1, "time_limit_s": 10},
                     failure={"max_retries": 3, "fail_fast": 0})
    code, progress, out = _run(plan)
    (trial,) = _summary(plan)["trials"]
    assert (trial["status"], trial["stopped"], trial.get("retry_cut")) == ("TERMINATED", "time limit", True), \
        progress + out
    assert "OSError: stale file handle" in trial["error"]
    assert "OSError: stale file handle" in render_errors(rank(load_plan(plan)))


def test_ray_address_auto_never_joins_another_cluster(tmp_path, capsys, monkeypatch):
    # Left by an earlier `ray start`: Ray would join any cluster on this machine.
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    code = run_study(plan, RunOptions(progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "RAY_ADDRESS=auto" in err and "--local" in err
    import ray

    assert not ray.is_initialized()


def test_fresh_keeps_the_earlier_run_in_place_when_ray_cannot_start(tmp_path, capsys, monkeypatch):
    from hpoc.runtime import marker

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    exp = tmp_path / "results" / plan["storage"]["name"]
    exp.mkdir(parents=True)
    marker.write(exp, {"plan_hash": "an earlier plan"}, shard=0)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # discard port: nothing listens
    code = run_study(plan, RunOptions(fresh=True, progress=io.StringIO(), out=io.StringIO()))
    assert code == EXIT_FAILED and "cannot reach the Ray cluster" in capsys.readouterr().err
    assert marker.read(exp) is not None
    assert [p.name for p in exp.parent.iterdir()] == [exp.name]  # no `.prev-*` beside it


def test_the_summary_says_the_time_budget_ended_the_run_and_after_how_many_trials(tmp_path):
    """summary.json said nothing of it: status read a study its budget cut at 1 of 500
    trials as finished like any other."""
    from types import SimpleNamespace

    from hpoc.runtime import summary

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    trial = SimpleNamespace(trial_id="t1", status="TERMINATED", config={}, last_result={"val_accuracy": 0.5},
                            path=None, local_path=None, error_file=None, error_msg=None)

    def built(planned=500, **kw):
        return summary.build(plan, 0, [trial], wall_s=1.0, interrupted=False, experiment_dir=tmp_path,
                             plan_hash="sha256:0", time_budget_s=3600, planned=planned, **kw)

    assert summary.ending(built(budget_reached=True)) == "time budget of 1 h reached after 1 of 500 trial(s)"
    assert summary.ending(built(planned=1)) is None  # its trials ended first
    # 1 of 500 with the budget not reached: the searcher had no more to suggest
    assert summary.ending(built()).startswith("the search ended: ")
    assert summary.budget_words(90) == "90 s" and summary.budget_words(5400) == "90 min"


def test_a_searcher_with_nothing_left_to_suggest_ends_the_study_and_it_says_so(tmp_path, monkeypatch):
    """A searcher may say FINISHED before `num_samples` (bayesopt once a configuration
    comes back more than `patience` times): Tune ends the run there. The run looked like a
    short study; its summary now says why, for status, results and the report."""
    from hpoc.runtime import search
    from hpoc.runtime import summary as summary_mod

    made = search.make_searcher

    def runs_dry(plan, shard=0):  # our sampler, with 2 of its 4 trials left to suggest
        searcher, param_space, total = made(plan, shard)
        searcher.core.indices = searcher.core.indices[:2]
        return searcher, param_space, total

    monkeypatch.setattr(search, "make_searcher", runs_dry)
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results",
                     space={"params": [param("lr", "loguniform", lower=1e-3, upper=3e-2, base=10)],
                            "constants": {"epochs": 1, "batch_size": 32}},
                     trials={"num_samples": 4, "max_concurrent": 1})
    code, progress, out = _run(plan)
    assert code == EXIT_OK, progress + out
    summary = _summary(plan)
    assert (summary["num_trials"], summary["planned"], summary["search_ended"]) == (2, 4, "random")
    words = summary_mod.ending(summary)
    assert words == ("the search ended: `search random` had no new configuration to suggest "
                     "after 2 of 4 trial(s)")
    assert f"[hpoc] {words}" in progress, progress
