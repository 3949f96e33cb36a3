"""A study extended with more trials: raise `trials.num_samples` and run it again."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import pytest

from hpoc.plan import content_hash, plan_hash
from hpoc.runtime import marker
from hpoc.runtime.study import EXIT_FAILED, EXIT_OK, EXIT_SPEC, RunOptions, run_study
from runtime_plans import make_plan, write_toy


def _with(plan, **trials):
    out = copy.deepcopy(plan)
    out["trials"].update(trials)
    out["content_hash"] = content_hash(out)
    return out


def _fp(plan):
    return marker.fingerprint(plan, plan_hash(plan))


# ---------------------------------------------------------------- which plans extend a run


def test_a_raised_num_samples_is_the_same_study_grown(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    recorded = _fp(plan)
    more = _fp(_with(plan, num_samples=4))
    assert marker.differences(recorded, more) is None
    assert marker.growth(recorded, more) == {"num_samples": (2, 4)}
    assert marker.growth(recorded, recorded) is None and marker.differences(recorded, recorded) is None


def test_a_lowered_num_samples_is_refused_and_said(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 4})
    recorded, fewer = _fp(plan), _fp(_with(plan, num_samples=2))
    assert marker.differences(recorded, fewer) == ["trials"]
    assert marker.growth(recorded, fewer) is None
    said = marker.describe(tmp_path, recorded, fewer, ["trials"])
    assert said.endswith("holds a run of 4 trial(s) (`trials.num_samples`), and this plan asks for "
                         "2 trial(s): a study can be extended, not cut")


def test_a_longer_time_budget_extends_and_a_shorter_or_new_one_is_refused(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2, "time_budget_s": 60})
    recorded = _fp(plan)
    assert marker.growth(recorded, _fp(_with(plan, time_budget_s=120))) == {"time_budget_s": (60, 120)}
    assert marker.growth(recorded, _fp(_with(plan, time_budget_s=None))) == {"time_budget_s": (60, None)}
    assert marker.growth(recorded, _fp(_with(plan, num_samples=3, time_budget_s=90))) == {
        "num_samples": (2, 3), "time_budget_s": (60, 90)}
    shorter = _fp(_with(plan, num_samples=4, time_budget_s=30))
    assert marker.differences(recorded, shorter) == ["trials"]
    assert marker.describe(tmp_path, recorded, shorter, ["trials"]).endswith(
        "holds a run of a time budget of 60 s (`trials.time_budget`), and this plan asks for a time "
        "budget of 30 s: a study can be extended, not cut")
    unlimited = _fp(_with(plan, time_budget_s=None))
    assert marker.differences(unlimited, recorded) == ["trials"]  # a limit where there was none


def test_growth_with_any_other_change_is_another_plan(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    other = _with(plan, num_samples=4, max_concurrent=1)
    assert marker.differences(_fp(plan), _fp(other)) == ["trials"]
    assert marker.growth(_fp(plan), _fp(other)) is None
    # a marker written before extensions existed does not know its budget: refused as before
    old = {k: v for k, v in _fp(plan).items() if k not in ("grow_hash", "num_samples")}
    assert marker.differences(old, _fp(_with(plan, num_samples=4))) == ["trials"]


def test_a_finished_run_is_not_done_for_a_plan_that_grows_it(tmp_path):
    from hpoc.runtime import before

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    marker.write(exp, _fp(plan), 0)
    (exp / "summary.json").write_text(json.dumps(
        {"interrupted": False, "plan_hash": plan_hash(plan), "num_trials": 2,
         "status_counts": {"TERMINATED": 2}, "trials": []}))
    assert before.verdict(plan, 0)[0] == before.DONE
    assert before.verdict(_with(plan, num_samples=4), 0) == (before.GO, "")


def test_a_study_once_extended_stays_extended_for_its_later_resumes(tmp_path):
    """Tune's saved Tuner keeps the first run's searcher: an interrupted extension resumed
    with the same plan needs the plan's searcher too."""
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    more = _with(plan, num_samples=4)
    exp = tmp_path / "exp"
    marker.write(exp, _fp(plan), 0)
    assert not marker.extended(marker.read(exp), _fp(plan))
    assert marker.extended(marker.read(exp), _fp(more))
    marker.write(exp, _fp(more), 0)  # the extension's run
    assert marker.growth(marker.read(exp), _fp(more)) is None
    assert marker.extended(marker.read(exp), _fp(more))
    marker.write(exp, _fp(more), 0)  # a resume of it
    assert marker.read(exp)["extended"] is True


def test_a_population_study_is_not_extended(tmp_path):
    from hpoc.runtime.exits import StudyError
    from hpoc.runtime.extend import refuse_population

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 4})
    plan["scheduler"] = {"name": "pbt", "time_attr": "training_iteration", "options": {}}
    with pytest.raises(StudyError, match=r"extends the study \(num_samples 2 → 4\), but a "
                                         r"`scheduler pbt` study cannot be extended"):
        refuse_population(plan, tmp_path, {"num_samples": (2, 4)})


@pytest.mark.parametrize("interrupted", [False, True])
def test_resume_off_extends_a_run_that_ended_but_resumes_nothing_unfinished(tmp_path, interrupted):
    from hpoc.runtime.exits import StudyError
    from hpoc.runtime.prior import prior_run
    from runtime_plans import saved_state

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2},
                     resume={"enabled": False})
    exp = saved_state(tmp_path / "exp", ["TERMINATED", "TERMINATED" if not interrupted else "RUNNING"])
    marker.write(exp, _fp(plan), 0)
    (exp / "summary.json").write_text(json.dumps({"interrupted": interrupted, "trials": []}))

    def prior():
        return prior_run(exp, _fp(_with(plan, num_samples=4)), False, False, io.StringIO())

    if interrupted:
        with pytest.raises(StudyError, match="holds an unfinished run and resume is disabled"):
            prior()
    else:
        assert prior() == "restore"


def _moved(tmp_path, interrupted):
    """A study that ran in /scratch/proj and was moved with its project to /project/proj
    (`mv`): its marker names the old place. Returns (the plan it ran, where it is now)."""
    from runtime_plans import saved_state

    old, new = tmp_path / "scratch" / "proj", tmp_path / "project" / "proj"
    ran = make_plan(old, old / "results", trials={"num_samples": 2})
    exp = saved_state(new / "results" / ran["storage"]["name"],
                      ["TERMINATED", "RUNNING" if interrupted else "TERMINATED"])
    marker.write(exp, _fp(ran), 0)
    (exp / "summary.json").write_text(json.dumps(
        {"interrupted": interrupted, "plan_hash": plan_hash(ran), "num_trials": 2, "trials": []}))
    return ran, new


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_moved_study_whose_budget_is_raised_is_extended_where_it_is_now(tmp_path, interrupted):
    """`mv` and a raised `num_samples` in one step was refused ("the plans differ in `source`,
    `storage`, `trials`": undo that change), and a finished study moved unchanged was only
    "done" without recording its new place: it could not be extended after a move at all."""
    from hpoc.runtime import before
    from hpoc.runtime.prior import prior_run
    from hpoc.submit import previous_run

    ran, new = _moved(tmp_path, interrupted)
    here = make_plan(new, new / "results", trials={"num_samples": 2})
    more = _with(here, num_samples=4)
    exp = Path(more["storage"]["path"]) / more["storage"]["name"]
    assert prior_run(exp, _fp(here), False, True, io.StringIO()) == ("restore" if interrupted else "done")
    assert prior_run(exp, _fp(more), False, True, io.StringIO()) == "restore"
    assert before.verdict(more, 0) == (before.GO, "")
    assert previous_run(more) == ("resume", set())
    seen = marker.Seen(marker.here(marker.read(exp), _fp(more), exp), _fp(more))
    assert seen.grown == {"num_samples": (2, 4)} and seen.extended
    assert marker.moved(seen.recorded, seen.fp, exp) == tmp_path / "scratch" / "proj" / "results" / "toy"


def test_a_moved_study_with_another_change_is_told_that_change_alone(tmp_path):
    """Moved and cut, or moved and its space edited: the refusal named `source` and `storage`
    too and said "undo that change", which a `mv` cannot be; undoing the edit resumes it."""
    from hpoc.runtime.exits import StudyError
    from hpoc.runtime.prior import prior_run

    ran, new = _moved(tmp_path, interrupted=True)
    here = make_plan(new, new / "results", trials={"num_samples": 2})
    exp = Path(here["storage"]["path"]) / here["storage"]["name"]
    with pytest.raises(StudyError) as err:
        prior_run(exp, _fp(_with(here, num_samples=1)), False, True, io.StringIO())
    assert str(err.value).startswith(f"{exp} holds a run of 2 trial(s) (`trials.num_samples`), and this "
                                     "plan asks for 1 trial(s): a study can be extended, not cut"), err.value
    edited = make_plan(new, new / "results", trials={"num_samples": 2}, space={"constants": {"epochs": 9}})
    with pytest.raises(StudyError) as err:
        prior_run(exp, _fp(edited), False, True, io.StringIO())
    said = str(err.value)
    assert "the plans differ in `space` (it ran in " in said and "`source`" not in said, said
    assert "undo that change to resume" in said, said


# ---------------------------------------------------------------- a real run, extended


@pytest.fixture
def _ray_env(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def _run(plan):
    progress, out = io.StringIO(), io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=out))
    return code, progress.getvalue() + out.getvalue()


def _trials(plan):
    summary = json.loads((Path(plan["storage"]["path"]) / plan["storage"]["name"]
                          / "summary.json").read_text())
    return {t["trial_id"]: t for t in summary["trials"]}


def _counting_reads(monkeypatch):
    """The directories whose marker is read from now on, once per read."""
    reads, real = [], marker.read

    def read(exp):
        reads.append(exp)
        return real(exp)

    monkeypatch.setattr(marker, "read", read)
    return reads


@pytest.mark.ray
@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_a_finished_study_runs_only_the_trials_a_raised_num_samples_adds(tmp_path, _ray_env, capsys,
                                                                         monkeypatch, algorithm):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2},
                     search={"algorithm": algorithm, "options": {"seed": 0}},
                     space={"constants": {"epochs": 1, "batch_size": 32}})
    code, said = _run(plan)
    assert code == EXIT_OK, said
    first = _trials(plan)
    assert len(first) == 2

    reads = _counting_reads(monkeypatch)
    code, said = _run(_with(plan, num_samples=4))
    assert code == EXIT_OK, said
    assert "extending the study" in said and "(num_samples 2 → 4)" in said, said
    assert len(reads) == 1, reads  # the marker, read once per start and passed down
    grown = _trials(plan)
    assert len(grown) == 4 and set(first) < set(grown), grown
    assert all(t["status"] == "TERMINATED" for t in grown.values()), grown
    for trial_id, trial in first.items():  # kept, not run again
        rows = (Path(grown[trial_id]["path"]) / "result.json").read_text().splitlines()
        assert len(rows) == 1 and grown[trial_id]["config"] == trial["config"]
    # four distinct configs: the new trials are not the first two again
    assert len({json.dumps(t["config"], sort_keys=True) for t in grown.values()}) == 4

    code, said = _run(_with(plan, num_samples=4))  # the extended study ran to the end
    assert code == EXIT_OK and "already ran to the end" in said, said

    capsys.readouterr()
    code, said = _run(_with(plan, num_samples=3))
    said += capsys.readouterr().err
    assert code == EXIT_SPEC and "holds a run of 4 trial(s)" in said, said
    assert len(_trials(plan)) == 4


@pytest.mark.ray
def test_a_study_started_by_an_hpoc_from_before_a_key_resumes_after_the_upgrade(tmp_path, _ray_env):
    """The upgraded hpoc compiles the unchanged spec with keys the run's plan lacked, at
    what their absence meant: the same study, extended, not "a different plan"."""
    workdir = write_toy(tmp_path / "study")
    old = make_plan(workdir, tmp_path / "results", trials={"num_samples": 2},
                    space={"constants": {"epochs": 1, "batch_size": 32}})
    assert "find_unused_parameters" not in old["resources"]  # as plans were before the key
    code, said = _run(old)
    assert code == EXIT_OK, said
    first = _trials(old)

    upgraded = copy.deepcopy(old)
    upgraded["resources"].update(find_unused_parameters=None, reuse_workers=False)
    upgraded["trials"]["time_limit_s"] = None
    code, said = _run(_with(upgraded, num_samples=4))
    assert code == EXIT_OK and "different plan" not in said, said
    assert "extending the study" in said and "(num_samples 2 → 4)" in said, said
    grown = _trials(old)
    assert len(grown) == 4 and set(first) < set(grown), grown
    for trial_id in first:  # kept, not run again
        assert len((Path(grown[trial_id]["path"]) / "result.json").read_text().splitlines()) == 1
    code, said = _run(_with(upgraded, num_samples=4))
    assert code == EXIT_OK and "already ran to the end" in said, said


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupted_extension_resumes_to_the_new_total(tmp_path):
    """Tune's saved Tuner keeps the first run's searcher (1 trial): resumed with it, the
    extension ended after the trial it had been running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hpoc.plan import dumps

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", trials={"num_samples": 1, "max_concurrent": 1},
                     space={"constants": {"epochs": 4, "batch_size": 32}},
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 0.5}}})
    exp = tmp_path / "results" / "toy"
    plan_file = tmp_path / "plan.json"
    env = dict(os.environ, RAY_memory_monitor_refresh_ms="0", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "hpoc.runtime", str(plan_file), "--local", "--cpus", "2"]

    plan_file.write_text(dumps(plan))
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == EXIT_OK, first.stderr

    plan_file.write_text(dumps(_with(plan, num_samples=3)))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in exp.glob("trial_*/result.json") if p.read_text().strip()]) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "no new trial reported"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 75, err
    assert "extending the study" in err

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == EXIT_OK, again.stderr
    assert "resuming the interrupted run" in again.stderr
    assert [t["status"] for t in _trials(plan).values()] == ["TERMINATED"] * 3


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_its_time_budget_ended_runs_its_other_trials_with_a_longer_one(tmp_path, _ray_env):
    """Tune ends the whole experiment at `time_budget`: running trials stop where they are
    and the rest never start. The run says so instead of looking like a short study; a
    longer budget then runs the trials it never started."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 1.5}}},
                     space={"constants": {"epochs": 1, "batch_size": 32}},
                     trials={"num_samples": 4, "max_concurrent": 1, "time_budget_s": 4})
    code, said = _run(plan)
    # (on a loaded machine the first trial may not even report within the budget)
    assert code in (EXIT_OK, EXIT_FAILED), said
    ran = len(_trials(plan))
    assert ran < 4
    # the run's line counts trials as summary.json, `hpoc status` and `hpoc results` do
    assert re.search(rf"time budget of 4 s reached after {ran}( of 4)? trial\(s\): trials still running", said), said

    code, said = _run(_with(plan, time_budget_s=300))
    assert code == EXIT_OK, said
    assert "extending the study" in said and "(time_budget 4 s → 300 s)" in said, said
    assert "reached" not in said, said
    assert len(_trials(plan)) == 4


def _saved_state(exp, budget_s):
    """An experiment state as Tune saves it, with a time budget of `budget_s` left."""
    from ray.tune.stopper import TimeoutStopper
    from ray.tune.utils.serialization import TuneFunctionEncoder

    exp.mkdir(parents=True)
    stopper = json.loads(json.dumps(TimeoutStopper(budget_s), cls=TuneFunctionEncoder))
    doc = {"runner_data": {"_stopper": stopper, "_should_stop_experiment": True}}
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(doc))


def test_the_added_time_is_added_once_when_the_driver_dies_before_its_marker(tmp_path):
    """The driver adds the time to Ray's saved state before it writes the marker that says
    the study has the new budget: a driver killed in between left the marker's old budget,
    and the next run added the time a second time."""
    pytest.importorskip("ray")
    from hpoc.runtime.extend import add_time
    from hpoc.runtime.tuner import budget_left

    exp = tmp_path / "exp"
    _saved_state(exp, 10.0)
    add_time(exp, 60, 120)
    assert budget_left(exp) == pytest.approx(70.0)
    add_time(exp, 60, 120)  # the next run: the marker still says 60 s
    assert budget_left(exp) == pytest.approx(70.0)
    add_time(exp, 120, 180)  # a later extension adds its own difference
    assert budget_left(exp) == pytest.approx(130.0)
    add_time(exp, 180, None)
    assert budget_left(exp) == float("inf")


# ---------------------------------------------------------------- a run that starts over


def _started_from(plan, exp, fresh=False):
    """(mode, the marker as the driver passes it down) for a run of `plan` in `exp`."""
    from hpoc.runtime import study

    mode, _, seen = study._prior(plan, RunOptions(fresh=fresh), exp, _fp(plan), io.StringIO())
    return mode, seen


def test_fresh_over_an_extended_study_starts_a_study_that_is_not(tmp_path):
    from runtime_plans import saved_state

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    more = _with(plan, num_samples=4)
    exp = saved_state(Path(plan["storage"]["path"]) / plan["storage"]["name"], ["TERMINATED"] * 2)
    marker.write(exp, _fp(plan), 0)
    marker.write(exp, _fp(more), 0)  # the extension's run, stopped
    mode, seen = _started_from(more, exp)
    assert mode == "restore" and seen.extended  # its resume builds the search from the plan
    mode, seen = _started_from(more, exp, fresh=True)
    assert mode == "aside" and seen.recorded is None and not seen.extended and seen.grown is None


def test_a_raised_budget_over_a_first_run_that_saved_nothing_starts_a_study_that_is_not_extended(tmp_path):
    """Only the marker of a run stopped before Tune first saved: the new Tuner holds this
    plan's budget, so its resumes are plain resumes (`test_a_population_study_started_over_…`)."""
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    marker.write(exp, _fp(plan), 0)
    mode, seen = _started_from(_with(plan, num_samples=4), exp)
    assert mode == "fresh" and not seen.extended and seen.grown is None


def _sigterm_once_a_trial_reported(exp: Path) -> None:
    """SIGTERM to this process (the driver) once a trial reported: a job stopped mid-run."""
    import os
    import signal
    import threading
    import time

    def later():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(p.read_text().strip() for p in exp.glob("trial_*/result.json")):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    threading.Thread(target=later, daemon=True).start()


@pytest.mark.ray
@pytest.mark.slow
def test_a_population_study_started_over_a_first_run_that_saved_nothing_resumes(tmp_path, _ray_env):
    """A first run stopped before Tune first saved (a job cancelled during start-up) leaves
    only its marker: the next run, with a raised num_samples, starts a new Tuner with this
    plan's budget. It was recorded as an extension, so its resume rebuilt the search, which
    a population study cannot: that run could never be resumed."""
    from hpoc.runtime.study import EXIT_INTERRUPTED

    workdir = write_toy(tmp_path / "study")
    pbt = {"name": "pbt", "time_attr": "training_iteration",
           "options": {"perturbation_interval": 2, "hyperparam_mutations": {
               "lr": {"domain": "loguniform", "args": {"lower": 1e-3, "upper": 3e-2, "base": 10}}},
               "synch": False}}
    plan = make_plan(workdir, tmp_path / "results", scheduler=pbt, trials={"num_samples": 2},
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 0.5}}},
                     space={"constants": {"epochs": 3, "batch_size": 32}}, checkpoint={"keep": 4})
    exp = tmp_path / "results" / "toy"
    marker.write(exp, _fp(plan), 0)  # all the first run left
    grown = _with(plan, num_samples=3)

    _sigterm_once_a_trial_reported(exp)
    code, said = _run(grown)
    assert code == EXIT_INTERRUPTED, said
    assert "extending" not in said and not marker.read(exp).get("extended"), said

    code, said = _run(grown)
    assert code == EXIT_OK, said
    assert "resuming the interrupted run" in said, said
    assert [t["status"] for t in _trials(plan).values()] == ["TERMINATED"] * 3


def test_an_extension_of_a_grid_is_also_said_in_trials():
    """`num_samples 1 → 2` of a 3-point grid runs 3 more trials, not 1: a reader counts trials."""
    from hpoc.runtime.marker import grown_words

    grid = {"search": {"algorithm": "grid"}, "trials": {"num_samples": 2},
            "space": {"params": [{"name": "lr", "domain": "grid", "args": {"values": [0.1, 0.01, 0.001]}}],
                      "constants": {}}}
    grown = {"num_samples": (1, 2), "time_budget_s": (60, 120)}
    assert grown_words(grown, grid) == "num_samples 1 → 2 × a 3-point grid = 3 → 6 trials, time_budget 60 s → 120 s"
    optuna = dict(grid, search={"algorithm": "optuna"})
    assert grown_words(grown, optuna) == grown_words(grown) == "num_samples 1 → 2, time_budget 60 s → 120 s"


def test_an_extension_killed_before_its_summary_is_not_done(tmp_path):
    """kill -9 of an extension's driver leaves the first run's summary (not interrupted) beside
    the extension's marker: the study has trials left, so running it again resumes them."""
    from hpoc.runtime import before
    from hpoc.runtime import summary as summary_mod

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 2})
    more = _with(plan, num_samples=4)
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    marker.write(exp, _fp(plan), 0)
    first = {"interrupted": False, "plan_hash": plan_hash(plan), "num_trials": 2, "planned": 2,
             "status_counts": {"TERMINATED": 2}, "trials": []}
    (exp / "summary.json").write_text(json.dumps(first))
    marker.write(exp, _fp(more), 0)  # the extension's run started, then was killed
    assert not summary_mod.finished(first, marker.read(exp), plan_hash(more), _fp(more))
    assert before.verdict(more, 0) == (before.GO, "")
    # the extension's own summary, once it ends, is a finished run again
    (exp / "summary.json").write_text(json.dumps(dict(first, plan_hash=plan_hash(more), planned=4)))
    assert before.verdict(more, 0)[0] == before.DONE
