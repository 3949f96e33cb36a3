"""A diverged trial (NaN or infinite objective) is the worst trial to the schedulers that
compare trials: early stopping stops it first, whatever Ray's comparisons make of NaN."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from hpoc.runtime import search
from hpoc.runtime.resume import prepare_scheduler
from runtime_plans import make_plan, write_toy


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.status, self.path = trial_id, "RUNNING", None
        config = SimpleNamespace(num_to_keep=None)
        self.run_metadata = SimpleNamespace(
            last_result={}, checkpoint_manager=SimpleNamespace(checkpoint_config=config))

    def set_status(self, status: str) -> None:
        self.status = status


class Controller:
    search_alg = None

    def __init__(self) -> None:
        self.trials: list[Trial] = []

    def get_trials(self):
        return self.trials


def asha(tmp_path, mode, reduction_factor=2):
    plan = make_plan(tmp_path, tmp_path / "results",
                     objective={"metrics": [{"name": "score", "mode": mode}]},
                     scheduler={"name": "asha", "time_attr": "training_iteration",
                                "options": {"max_t": 4, "grace_period": 1, "reduction_factor": reduction_factor}})
    return prepare_scheduler(search.make_scheduler(plan), plan)


def first_rung(sched, values):
    ctl, decisions = Controller(), []
    for i, value in enumerate(values):
        trial = Trial(f"t{i}")
        ctl.trials.append(trial)
        sched.on_trial_add(ctl, trial)
        decisions.append(sched.on_trial_result(ctl, trial, {"training_iteration": 1, "score": value}))
    return decisions


@pytest.mark.parametrize("mode, values", [
    ("max", [0.5, 0.6, 0.7, math.nan]),
    ("max", [0.5, 0.6, 0.7, math.inf]),
    ("min", [0.5, 0.4, 0.3, math.nan]),
    ("min", [0.5, 0.4, 0.3, -math.inf]),
])
def test_asha_stops_a_diverged_trial_at_its_first_rung(tmp_path, mode, values):
    assert first_rung(asha(tmp_path, mode), values)[-1] == TrialScheduler.STOP


def test_a_diverged_trial_in_a_rung_leaves_its_cutoff_a_number(tmp_path):
    # inf among [0.9, 0.8] made the rung's 75th percentile NaN: no later trial was stopped.
    decisions = first_rung(asha(tmp_path, "max", reduction_factor=4), [0.9, 0.8, math.inf, 0.1])
    assert decisions[-1] == TrialScheduler.STOP


@pytest.mark.parametrize("name", ["pbt", "pb2"])
def test_population_schedulers_put_a_diverged_trial_in_the_bottom_quantile(tmp_path, name):
    # Ray's PBT left NaN trials out of its quantiles: a diverged trial never exploited a
    # better one and trained on, NaN, to its last epoch.
    plan = make_plan(tmp_path, tmp_path / "results",
                     objective={"metrics": [{"name": "score", "mode": "max"}]},
                     scheduler={"name": name, "time_attr": "training_iteration",
                                "options": {"perturbation_interval": 1}})
    sched, ctl, seen = prepare_scheduler(search.make_scheduler(plan), plan), Controller(), []
    sched._checkpoint_or_exploit = lambda trial, _ctl, upper, lower: seen.append((upper, lower))
    for i, value in enumerate([0.9, 0.8, 0.7, math.nan]):
        trial = Trial(f"t{i}")
        trial.config, trial.evaluated_params, trial.experiment_tag = {"lr": 0.01, "hidden": 8}, {}, ""
        trial.is_finished = lambda: False
        ctl.trials.append(trial)
        sched.on_trial_add(ctl, trial)
        sched.on_trial_result(ctl, trial, {"training_iteration": 1, "score": value})
    upper, lower = seen[-1]
    assert [t.trial_id for t in lower] == ["t3"] and [t.trial_id for t in upper] == ["t0"]


def test_the_trial_keeps_the_value_it_reported(tmp_path):
    sched, ctl, trial = asha(tmp_path, "max"), Controller(), Trial("t")
    result = {"training_iteration": 1, "score": math.nan}
    sched.on_trial_add(ctl, trial)
    sched.on_trial_result(ctl, trial, result)
    assert math.isnan(result["score"])


SCORED = '''
import math
from toy import ToyTrainer


class ScoredTrainer(ToyTrainer):
    """Reports `val_score` = the config's `score` every epoch (NaN: a diverged trial)."""

    def validation_step(self, batch):
        x, y = batch
        out = self.model(x)
        return {"loss": self.loss(out, y), "val_score": out.new_tensor(float(self.config["score"]))}
'''


@pytest.mark.ray
def test_a_diverged_trial_under_asha_stops_at_the_first_rung(tmp_path, monkeypatch):
    import io
    import json

    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study
    from runtime_plans import param

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workdir = write_toy(tmp_path / "study")
    (workdir / "scored.py").write_text(SCORED, encoding="utf-8")
    plan = make_plan(
        workdir, tmp_path / "results",
        pipeline={"trainer": {"target": "scored:ScoredTrainer", "args": {}}},
        # The plan holds no NaN: the trainer reads "nan" as float("nan").
        space={"params": [param("score", "grid", values=[0.5, 0.6, 0.7, "nan"])],
               "constants": {"epochs": 3, "batch_size": 64}},
        objective={"metrics": [{"name": "val_score", "mode": "max"}]},
        trials={"num_samples": 1, "max_concurrent": 1},
        scheduler={"name": "asha", "time_attr": "training_iteration",
                   "options": {"max_t": 3, "grace_period": 1, "reduction_factor": 2}})
    progress, out = io.StringIO(), io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=out))
    assert code == EXIT_OK, progress.getvalue() + out.getvalue()
    summary = json.loads((tmp_path / "results" / "toy" / "summary.json").read_text())
    epochs = {str(t["config"]["score"]): t["epochs"] for t in summary["trials"]}
    assert epochs["nan"] == 1, epochs  # it trained all 3 epochs: nan < cutoff is false
    assert summary["best"]["config"]["score"] == 0.7
