"""What a run finds in its experiment directory: which plan ran there (no Ray started)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from hpoc.commands.run import load_plan
from hpoc.plan import content_hash
from hpoc.runtime import marker
from hpoc.runtime.study import StudyError, _prior_run, plan_hash
from hpoc.submit import SubmitError, check_previous

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def spec(tmp_path):
    study = tmp_path / "digits"
    shutil.copytree(EXAMPLES / "digits", study, ignore=shutil.ignore_patterns("results", "build"))
    return study / "study.hpo"


def _finished_run(plan, exp):
    """An experiment directory as a finished run of `plan` leaves it."""
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    (exp / "summary.json").write_text(json.dumps(
        {"study": "digits", "plan_hash": plan_hash(plan), "interrupted": False, "num_trials": 1,
         "status_counts": {"TERMINATED": 1}, "trials": [], "best": None}))


def _prior(plan, exp):
    fp = marker.fingerprint(plan, plan_hash(plan))
    return _prior_run(exp, fp, False, True, io.StringIO())


def test_comments_layout_and_the_walltime_do_not_change_the_plan_a_run_resumes(spec, tmp_path):
    first = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(first, exp)
    text = spec.read_text()
    spec.write_text("# lr sweep for the paper\n" + text.replace("time", "time   ", 1) + "\n\n")
    edited = load_plan(str(spec))
    edited["slurm"]["time"] = "02:00:00"  # a longer walltime for the rest of the study
    assert edited["content_hash"] != first["content_hash"]
    assert marker.fingerprint(edited, "x")["run_hash"] == marker.fingerprint(first, "y")["run_hash"]
    assert _prior(edited, exp) == "done"  # not "holds a run of a different plan"


def test_a_real_change_is_refused_naming_the_parts_that_differ(spec, tmp_path):
    first = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(first, exp)
    changed = json.loads(json.dumps(first))
    changed["space"]["params"][0]["args"]["upper"] = 0.1
    changed["trials"]["num_samples"] += 1
    changed["content_hash"] = content_hash(changed)
    with pytest.raises(StudyError, match="different plan") as err:
        _prior(changed, exp)
    assert "the plans differ in `space`, `trials`" in str(err.value)
    assert "source" not in str(err.value) and "spans" not in str(err.value)


def test_a_marker_of_an_older_hpoc_still_matches_the_exact_plan(spec, tmp_path):
    plan = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(plan, exp)
    (exp / marker.PLAN_MARKER).unlink()
    (exp / ".hpoc-run.json").write_text(json.dumps({"plan_hash": plan_hash(plan), "shard": 0}))
    assert _prior(plan, exp) == "done"
    spec.write_text("# a comment\n" + spec.read_text())
    with pytest.raises(StudyError, match="recorded by an older hpoc"):
        _prior(load_plan(str(spec)), exp)
    marker.migrate_legacy(exp)  # what a new run does before it takes the lock's name
    assert not (exp / ".hpoc-run.json").exists()
    assert marker.read(exp)["plan_hash"] == plan_hash(plan) and _prior(plan, exp) == "done"


def test_hpoc_submit_compares_plans_the_same_way(spec, tmp_path):
    plan = load_plan(str(spec))
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    _finished_run(plan, exp)
    spec.write_text("# a comment\n" + spec.read_text())
    assert check_previous(load_plan(str(spec)), fresh=False) == "done"
    changed = load_plan(str(spec))
    changed["search"]["options"]["seed"] = 7
    changed["content_hash"] = content_hash(changed)
    with pytest.raises(SubmitError, match="the plans differ in `search`"):
        check_previous(changed, fresh=False)
