"""Trials with several workers: Ray Train V2 inside Tune, DDP and DeepSpeed on CPU (Gloo)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from hpoc.runtime.study import EXIT_OK, RunOptions, run_study
from runtime_plans import make_plan, write_toy

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def _ray_env(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _two_worker_trial(tmp_path, strategy, deepspeed=None, fail=True):
    """One trial of 2 workers (that dies after epoch 2 and is retried, if `fail`)."""
    workdir = write_toy(tmp_path / "study")
    trainer = {"target": "toy:FailOnceTrainer", "args": {"marker_dir": str(tmp_path), "fail_after": 2}}
    plan = make_plan(
        workdir, tmp_path / "results", trials={"num_samples": 1},
        space={"constants": {"epochs": 3, "batch_size": 32}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": strategy, "deepspeed": deepspeed},
        pipeline={"trainer": trainer if fail else {"target": "toy:ToyTrainer", "args": {}}},
        failure={"max_retries": 1})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    assert ("retrying from its last checkpoint" in progress.getvalue()) == fail
    exp = tmp_path / "results" / "toy"
    summary = json.loads((exp / "summary.json").read_text())
    (trial,) = summary["trials"]
    reports = [json.loads(x) for x in (Path(trial["path"]) / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in reports] == [1, 2, 3]  # a retry resumes at epoch 3
    # Checkpoints live in the trial's Train run, named after the trial (so a retry finds them).
    run_dir = exp / "train" / trial["trial_id"]
    assert all(r["checkpoint_path"].startswith(str(run_dir)) for r in reports)
    return trial, run_dir


def test_a_two_worker_ddp_trial_trains_reports_and_resumes(tmp_path):
    trial, run_dir = _two_worker_trial(tmp_path, "ddp")
    assert trial["status"] == "TERMINATED" and 0 <= trial["metrics"]["val_accuracy"] <= 1
    (newest,) = [p for p in run_dir.glob("checkpoint_*") if (p / "state.pt").exists()][-1:]
    assert newest.is_dir()


# Resuming from ZeRO-1/2/3 checkpoints merged from both ranks is tested without Ray in
# test_strategy.py (a retry costs a second worker-group start here); `make stress` does it
# through Ray Train as well.
# ZeRO-1 plain; ZeRO-2 through a retry (a plain ZeRO-2 run is its first half); ZeRO-3 plain,
# where the parameters are partitioned too (validation gathers them from both workers): 35 s
# after the ZeRO-1 case and 97 s alone on a loaded 2-CPU machine, so under `make stress`
# (test_strategy.py trains, saves and restores ZeRO-3 on two ranks without Ray in `make test`).
@pytest.mark.parametrize("stage, fail", [(1, False), pytest.param(2, True, marks=[pytest.mark.slow,
                                                                                  pytest.mark.stress]),
                                         pytest.param(3, False, marks=[pytest.mark.slow, pytest.mark.stress])])
def test_a_two_worker_deepspeed_trial_saves_every_ranks_zero_partition(tmp_path, stage, fail):
    pytest.importorskip("deepspeed")
    trial, run_dir = _two_worker_trial(
        tmp_path, "deepspeed", {"zero_stage": stage, "precision": None, "config_file": None}, fail)
    assert trial["status"] == "TERMINATED"
    shards = {p.name for p in run_dir.glob("checkpoint_*/hpoc/*")}
    # both ranks' optimizer partitions were merged into each checkpoint
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= shards
    if stage == 3:  # and their parameter partitions, without which no checkpoint restores
        assert {"zero_pp_rank_0_mp_rank_00_model_states.pt",
                "zero_pp_rank_1_mp_rank_00_model_states.pt"} <= shards


# HyperBand pauses a trial that reaches its bracket's milestone before the others, and
# resumes it later: max_t = 4, rf = 2 put trials 4-6 in a bracket halved after epoch 2.
# A Train run per trial takes ~3 min here: under `make stress` only.
@pytest.mark.slow
@pytest.mark.parametrize("reuse", [pytest.param(False, marks=pytest.mark.stress), True],
                         ids=["train-run", "warm-group"])
def test_hyperband_resumes_a_paused_two_worker_trial_from_its_checkpoint(tmp_path, reuse):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(
        workdir, tmp_path / "results", trials={"num_samples": 6, "max_concurrent": None},
        space={"constants": {"epochs": 4, "batch_size": 32}},
        scheduler={"name": "hyperband", "time_attr": "training_iteration",
                   "options": {"max_t": 4, "reduction_factor": 2, "stop_last_trials": None}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": "ddp", "reuse_workers": reuse})
    progress = io.StringIO()
    # room for all six at once: the bracket's trials run together, the first at epoch 2 waits
    code = run_study(plan, RunOptions(local=True, num_cpus=8, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    summary = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())
    resumed = 0
    for trial in summary["trials"]:
        reports = [json.loads(x) for x in (Path(trial["path"]) / "result.json").read_text().splitlines()]
        epochs = [r["epoch"] for r in reports]
        assert epochs == list(range(1, len(epochs) + 1)), (trial["trial_id"], epochs)  # never epoch 1 again
        resumed += any(r["iterations_since_restore"] < r["training_iteration"] for r in reports)
    assert resumed, "no trial was paused and resumed"


STEP_LOG = '''
import os, time
from toy import ToyTrainer


class StepLog(ToyTrainer):
    """Logs each training step (0.1 s) and each report its rank made, with the time."""

    def _log(self, line):
        with open(os.path.join(self.args["log_dir"], "rank%d.log" % self.strategy.rank), "a") as fh:
            fh.write(line + "\\n")

    def train_step(self, batch):
        time.sleep(0.1)
        self._log("step")
        return super().train_step(batch)

    def report(self, metrics, *, epoch=None, **kwargs):
        super().report(metrics, epoch=epoch, **kwargs)
        self._log("reported %d" % (epoch + 1))
'''


def test_a_train_run_that_tune_stops_trains_no_further_epoch(tmp_path):
    """A Train run's controller collected its workers' reports every 2 s (Ray's default)
    and the workers trained on meanwhile: ASHA stopped this trial at `max_t` = 2 when its
    second report reached Tune, by then the workers had trained all of epoch 3 (9 steps
    of 0.1 s each). Now the stop reaches them within a few steps."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "steplog.py").write_text(STEP_LOG, encoding="utf-8")
    plan = make_plan(
        workdir, tmp_path / "results", trials={"num_samples": 1},
        space={"constants": {"epochs": 6, "batch_size": 16}},  # 9 steps per rank and epoch
        pipeline={"trainer": {"target": "steplog:StepLog", "args": {"log_dir": str(tmp_path)}}},
        scheduler={"name": "asha", "time_attr": "training_iteration",
                   "options": {"max_t": 2, "grace_period": 1}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": "ddp", "reuse_workers": False})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    for rank in (0, 1):
        lines = (tmp_path / f"rank{rank}.log").read_text().splitlines()
        assert lines[:10] == ["step"] * 9 + ["reported 1"], lines[:10]
        after = lines[lines.index("reported 2") + 1:]
        assert len(after) < 9 and "reported 3" not in after, (rank, after)


def _crashing_rank(tmp_path, how, reuse):
    """One trial of 2 workers whose rank 1 crashes after its first report: its line."""
    from hpoc.runtime.study import EXIT_FAILED

    plan = make_plan(
        write_toy(tmp_path / "study"), tmp_path / "results", trials={"num_samples": 1},
        space={"constants": {"epochs": 1, "batch_size": 32}},
        pipeline={"trainer": {"target": "toy:CrashRankTrainer", "args": {"how": how}}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": "ddp", "reuse_workers": reuse})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_FAILED, progress.getvalue()
    (trial,) = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())["trials"]
    return progress.getvalue(), trial


@pytest.mark.parametrize("reuse", [False, True], ids=["train-run", "warm-group"])
def test_a_rank_that_segfaults_is_named_with_what_crashed_and_where(tmp_path, reuse):
    """Ray's error listed both ranks (rank 0 lost its peer) and every way a worker dies; the
    line said the trial's process died without a Python error, though rank 1 segfaulted."""
    progress, trial = _crashing_rank(tmp_path, "segfault", reuse)
    assert re.search(r"errored: the process of the trial's rank 1 crashed: Segmentation fault \(Python's stack "
                     r"of it is in the trial's rank-1\.crash\) at .*toy\.py:\d+ \(details", progress), progress
    stack = (Path(trial["path"]) / "rank-1.crash").read_text()
    assert stack.startswith("Fatal Python error: Segmentation fault") and "toy.py" in stack
    from hpoc.runtime.summary import error_line

    assert error_line(trial["error"]).startswith("the process of the trial's rank 1 crashed: Segmentation fault")
    assert not (Path(trial["path"]) / "rank-0.crash").exists()  # rank 0 did not crash


def test_a_warm_group_rank_sent_sigterm_fails_its_trial_and_the_next_trial_gets_a_new_group(tmp_path):
    """A warm group's rank ignored SIGTERM (its trials run in threads; Ray's handler waits for
    the main thread, which stays in C++) until a later trial's task let it run: that trial
    failed, though the rank was sent SIGTERM during the one before."""
    plan = make_plan(
        write_toy(tmp_path / "study"), tmp_path / "results", trials={"num_samples": 2, "max_concurrent": 1},
        space={"constants": {"epochs": 1, "batch_size": 32}},
        pipeline={"trainer": {"target": "toy:CrashRankTrainer",
                              "args": {"how": "sigterm", "once": str(tmp_path / "once")}}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": "ddp", "reuse_workers": True})
    progress = io.StringIO()
    run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert re.search(r"errored: the process of the trial's rank 1 was terminated by SIGTERM: a `kill`, the job "
                     r"scheduler or a memory watchdog sent it \(Python's stack of it is in the trial's "
                     r"rank-1\.crash\) at .*toy\.py:\d+", progress.getvalue()), progress.getvalue()
    trials = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())["trials"]
    # the trial of the SIGTERM fails (it ended that trial's turn, not a later one's), the next
    # runs on a new group
    assert [t["status"] for t in sorted(trials, key=lambda t: t["path"])] == ["ERROR", "TERMINATED"]


def test_a_rank_that_crashes_while_its_warm_group_starts_is_named_with_where(tmp_path):
    """A rank that died while the group started (importing the study's code) was "the
    trial's process died without a Python error", no rank, no crash file."""
    study = write_toy(tmp_path / "study")
    (study / "startcrash.py").write_text(
        "import ctypes, os\nfrom toy import ToyTrainer as StartCrashTrainer  # noqa: F401\n"
        f"if os.environ.get('RANK') == '1' and not os.path.exists({str(tmp_path / 'once')!r}):\n"
        f"    open({str(tmp_path / 'once')!r}, 'w').close()\n    ctypes.string_at(0)\n")
    plan = make_plan(
        study, tmp_path / "results", trials={"num_samples": 2, "max_concurrent": 1},
        space={"constants": {"epochs": 1, "batch_size": 32}},
        pipeline={"trainer": {"target": "startcrash:StartCrashTrainer", "args": {}}},
        resources={"workers": 2, "cpus_per_worker": 0.5, "strategy": "ddp", "reuse_workers": True})
    progress = io.StringIO()
    run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert re.search(r"errored: the process of the trial's rank 1 crashed: Segmentation fault \(Python's stack "
                     r"of it is in the trial's rank-1\.crash\) at .*startcrash\.py:5 ", progress.getvalue()), \
        progress.getvalue()
    trials = sorted(json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())["trials"],
                    key=lambda t: t["path"])
    assert [t["status"] for t in trials] == ["ERROR", "TERMINATED"]
    assert "startcrash.py" in (Path(trials[0]["path"]) / "rank-1.crash").read_text()


@pytest.mark.parametrize("reuse", [False, True], ids=["train-run", "warm-group"])
def test_a_rank_killed_or_exiting_is_named(tmp_path, reuse):
    """os._exit(3): Ray gives no exit code (the worker's connection ended), the rank's
    process records it."""
    progress, _ = _crashing_rank(tmp_path, "exit" if reuse else "kill", reuse)
    if reuse:
        assert re.search(r"errored: the process of the trial's rank 1 exited with code 3: it called os\._exit\(3\) "
                         r"\(Python's stack of it is in the trial's rank-1\.crash\) at .*toy\.py:\d+", progress), progress
    else:
        assert "errored: the process of the trial's rank 1 died without a Python error: killed" in progress, progress
