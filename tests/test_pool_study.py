"""Studies with `resources.reuse_workers`: multi-worker trials on warm groups under Ray Tune."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from test_pool import study

pytestmark = pytest.mark.ray


def _summary(tmp_path):
    exp = tmp_path / "results" / "toy"
    return json.loads((exp / "summary.json").read_text()), exp


def test_a_study_with_reuse_workers_runs_every_trial_on_one_warm_group(tmp_path, monkeypatch):
    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Tune stops every trial after 2 of its 3 epochs (the stop criterion: the same SystemExit
    # in tune.report as a scheduler's early stop), and the next trial still finds the group.
    plan = study(tmp_path, "leaky:PidTrainer", trials={"num_samples": 3, "max_concurrent": 1,
                                                         "stop": {"training_iteration": 2}},
                 space={"constants": {"epochs": 3, "batch_size": 32}})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    summary, _exp = _summary(tmp_path)
    trials = summary["trials"]
    assert len(trials) == 3 and all(t["status"] == "TERMINATED" for t in trials)
    assert [t["epochs"] for t in trials] == [2, 2, 2]
    assert len({t["metrics"]["worker_pid"] for t in trials}) == 1  # one warm group served them all


def test_a_pooled_trial_that_fails_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    plan = study(tmp_path, "toy:FailOnceTrainer", {"marker_dir": str(tmp_path), "fail_after": 2},
                 trials={"num_samples": 1}, space={"constants": {"epochs": 3, "batch_size": 32}},
                 failure={"max_retries": 1})
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    assert code == EXIT_OK, progress.getvalue()
    assert "retrying from its last checkpoint" in progress.getvalue()
    summary, exp = _summary(tmp_path)
    (trial,) = summary["trials"]
    reports = [json.loads(x) for x in (Path(trial["path"]) / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in reports] == [1, 2, 3]  # the retry resumed at epoch 3
    assert not list((exp / "train").glob("*/staging/report_*"))  # staged copies handed over
