"""A resumed run keeps only the state files Tune restores from (the newest of each kind, by
name, as Tune's own max() picks it): each resume used to leave another set of Ray's state
files in the storage (files against a quota, ~20 KB a trial each)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest

from hpoc.plan import plan_hash
from hpoc.runtime import marker
from hpoc.runtime.study import RunOptions
from runtime_plans import make_plan, saved_state

RUNS = ("2026-01-01_00-00-00", "2026-01-02_00-00-00", "2026-01-03_00-00-00")


def _earlier_runs(exp: Path) -> None:
    for run in RUNS:
        (exp / f"experiment_state-{run}.json").write_text(json.dumps({"trial_data": []}))
        (exp / f"searcher-state-{run}.pkl").write_bytes(pickle.dumps({"run": run}))
        (exp / f"search_gen_state-{run}.json").write_bytes(pickle.dumps({"run": run}))
        (exp / f"basic-variant-state-{run}.json").write_text("{}")


def _prior(plan, exp):
    from hpoc.runtime import study

    fp = marker.fingerprint(plan, plan_hash(plan))
    return study._prior(plan, RunOptions(), exp, fp, io.StringIO())[0]


def test_a_resumed_run_removes_the_state_files_of_earlier_runs_tune_no_longer_reads(tmp_path):
    pytest.importorskip("ray")
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    exp = saved_state(Path(plan["storage"]["path"]) / plan["storage"]["name"], ["TERMINATED", "RUNNING"])
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    _earlier_runs(exp)
    (exp / "result.json").write_text("{}")  # not a state file: kept
    assert _prior(plan, exp) == "restore"
    left = sorted(p.name for p in exp.iterdir() if "state" in p.name)
    assert left == [f"basic-variant-state-{RUNS[-1]}.json", f"experiment_state-{RUNS[-1]}.json",
                    f"search_gen_state-{RUNS[-1]}.json", f"searcher-state-{RUNS[-1]}.pkl"]
    assert (exp / "result.json").exists() and (exp / "tuner.pkl").exists()


def test_a_newest_state_cut_short_refuses_the_resume_and_removes_nothing(tmp_path):
    """The older files are all that is left of the state then: the refusal leaves them."""
    from hpoc.runtime.exits import StudyError

    pytest.importorskip("ray")
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    exp = saved_state(Path(plan["storage"]["path"]) / plan["storage"]["name"], ["RUNNING"])
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    _earlier_runs(exp)
    (exp / "experiment_state-2026-01-04_00-00-00.json").write_text('{"trial_da')
    before = sorted(p.name for p in exp.iterdir())
    with pytest.raises(StudyError, match="cut short"):
        _prior(plan, exp)
    assert sorted(p.name for p in exp.iterdir()) == before
