"""`--retry-errored`: a finished study's errored trials run again once their bug is fixed;
its finished trials are kept (a real local Ray, 2 CPUs)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from hpoc.runtime import rerun
from hpoc.runtime.study import EXIT_OK, EXIT_SPEC, RunOptions, run_study
from runtime_plans import make_plan, param, saved_state, write_toy

FLAKY = textwrap.dedent('''
    from toy import ToyTrainer

    class FlakyTrainer(ToyTrainer):
        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            if BUG and self.config["hidden"] == 16 and epoch is not None and epoch + 1 == 2:
                raise RuntimeError("a bug for hidden=16")
''')


@pytest.fixture(autouse=True)
def _ray_env(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(rerun.ENV, raising=False)


def _run(plan, **kw):
    progress, out = io.StringIO(), io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=out, **kw))
    return code, progress.getvalue() + out.getvalue()


def _flaky_plan(tmp_path, bug=True, hidden=(8, 16)):
    workdir = write_toy(tmp_path / "study")
    (workdir / "flaky.py").write_text(f"BUG = {bug}\n" + FLAKY, encoding="utf-8")
    return make_plan(workdir, tmp_path / "results", trials={"num_samples": 1, "max_concurrent": 2},
                     space={"params": [param("hidden", "grid", values=list(hidden))],
                            "constants": {"epochs": 3, "batch_size": 32, "lr": 0.01}},
                     pipeline={"trainer": {"target": "flaky:FlakyTrainer", "args": {}}})


def _trials(plan):
    summary = json.loads((Path(plan["storage"]["path"]) / "toy" / "summary.json").read_text())
    return {t["config"]["hidden"]: t for t in summary["trials"]}


def _epochs(trial):
    rows = (Path(trial["path"]) / "result.json").read_text().splitlines()
    return [json.loads(row)["epoch"] for row in rows]


@pytest.mark.ray
def test_only_the_errored_trials_run_again_from_scratch(tmp_path, capsys):
    plan = _flaky_plan(tmp_path)
    code, text = _run(plan)
    assert code == EXIT_OK, text
    before = _trials(plan)
    assert {h: t["status"] for h, t in before.items()} == {8: "TERMINATED", 16: "ERROR"}
    kept = {h: (Path(before[h]["path"]) / "result.json").read_bytes() for h in (8,)}
    code, text = _run(plan)  # not fixed, not asked: the finished study says how to retry
    assert "--retry-errored" in text and "1 errored trial(s)" in text

    (Path(plan["source"]["workdir"]) / "flaky.py").write_text("BUG = False\n" + FLAKY)  # the fix
    code, text = _run(plan, retry_errored=rerun.SCRATCH)
    assert code == EXIT_OK, text
    assert "running its 1 errored trial(s) again from scratch" in text
    after = _trials(plan)
    assert {h: t["status"] for h, t in after.items()} == dict.fromkeys((8, 16), "TERMINATED")
    assert {h: t["trial_id"] for h, t in after.items()} == {h: t["trial_id"] for h, t in before.items()}
    # not run again: not one report more
    assert (Path(after[8]["path"]) / "result.json").read_bytes() == kept[8]
    retried = after[16]
    assert _epochs(retried) == [1, 2, 3] and retried["error"] is None  # from epoch 1 again
    old = Path(retried["path"]) / "before-retry-1"
    assert "a bug for hidden=16" in (old / "error.txt").read_text()
    assert [json.loads(r)["epoch"] for r in (old / "result.json").read_text().splitlines()] == [1, 2]
    from hpoc.results import load

    shown = {t.config["hidden"]: t for t in load(plan["storage"]["path"] + "/toy").trials}
    assert shown[16].status == "TERMINATED" and shown[16].error is None and shown[16].epochs == 3

    code, text = _run(plan, retry_errored=rerun.SCRATCH)  # nothing left to retry
    assert code == EXIT_OK and "no errored trial: nothing to retry" in text
    assert _trials(plan)[16]["path"] == retried["path"] and _epochs(retried) == [1, 2, 3]
    other = make_plan(Path(plan["source"]["workdir"]), tmp_path / "results",
                      trials={"num_samples": 1, "max_concurrent": 1},  # (a larger num_samples extends it)
                      space=plan["space"], pipeline=plan["pipeline"])
    code, text = _run(other, retry_errored=rerun.SCRATCH)  # another plan: still refused
    assert code == EXIT_SPEC and "the plans differ in `trials`" in capsys.readouterr().err


@pytest.mark.ray
def test_from_checkpoint_an_errored_trial_continues_after_its_last_checkpoint(tmp_path):
    plan = _flaky_plan(tmp_path, hidden=[16])  # only the trial that fails
    code, text = _run(plan)
    (trial,) = _trials(plan).values()
    assert trial["status"] == "ERROR" and _epochs(trial) == [1, 2], text
    first = (Path(trial["path"]) / "result.json").read_text().splitlines()
    (Path(plan["source"]["workdir"]) / "flaky.py").write_text("BUG = False\n" + FLAKY)
    code, text = _run(plan, retry_errored=rerun.CHECKPOINT)
    assert code == EXIT_OK and "again from their last checkpoint" in text, text
    (trial,) = _trials(plan).values()
    assert trial["status"] == "TERMINATED" and trial["error"] is None
    rows = (Path(trial["path"]) / "result.json").read_text().splitlines()
    assert rows[:2] == first and [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]  # epoch 3 only
    assert sorted(p.name for p in (Path(trial["path"]) / "before-retry-1").iterdir()) == [
        "error.pkl", "error.txt"]  # its reports and checkpoints stay where they were


@pytest.mark.ray
def test_retry_errored_refuses_a_study_that_never_ran(tmp_path, capsys):

    plan = _flaky_plan(tmp_path)
    code, _ = _run(plan, retry_errored=rerun.SCRATCH)
    assert code == EXIT_SPEC and "holds no earlier run of this study" in capsys.readouterr().err
    assert not (tmp_path / "results" / "toy" / "summary.json").exists()


STALE = textwrap.dedent('''
    import uuid
    from toy import ToyTrainer

    class Stale(ToyTrainer):
        def train_step(self, batch):
            if BUG:
                raise OSError(f"stale file handle {uuid.uuid4()}")  # another message each attempt
            return super().train_step(batch)
''')


@pytest.mark.ray
def test_a_trial_the_time_budget_cut_short_in_its_retry_runs_again(tmp_path):
    """Ray saved it TERMINATED, as finished: --retry-errored could not run it again, and
    only `--fresh` (every trial) would. Before, such a trial also showed no error anywhere:
    `hpoc results` showed it as stopped early, as if nothing had failed."""
    from hpoc.results import load_plan, rank
    from hpoc.results.table import render_errors

    workdir = write_toy(tmp_path / "study")
    (workdir / "stale.py").write_text("BUG = True\n" + STALE, encoding="utf-8")
    # A budget of 10 s ran out on a loaded machine before the trial's first attempt started.
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": "stale:Stale", "args": {}}},
                     space={"params": [], "constants": {"epochs": 2, "batch_size": 32}},
                     trials={"num_samples": 1, "max_concurrent": 1, "time_budget_s": 20},
                     failure={"max_retries": 1000, "fail_fast": 0})
    code, text = _run(plan)
    (trial,) = json.loads((Path(plan["storage"]["path"]) / "toy" / "summary.json").read_text())["trials"]
    assert (trial["status"], trial["stopped"], trial.get("retry_cut")) == ("TERMINATED", "time budget", True), text
    assert "OSError: stale file handle" in trial["error"]
    assert "being retried after an error were stopped before the retry reported" in text
    assert "OSError: stale file handle" in render_errors(rank(load_plan(plan)))
    (workdir / "stale.py").write_text("BUG = False\n" + STALE, encoding="utf-8")  # the fix
    code, text = _run(plan, retry_errored=rerun.SCRATCH)
    assert code == EXIT_OK and "running its 1 errored trial(s) again from scratch" in text, text
    (after,) = json.loads((Path(plan["storage"]["path"]) / "toy" / "summary.json").read_text())["trials"]
    assert after["trial_id"] == trial["trial_id"] and after["status"] == "TERMINATED", text
    assert after["error"] is None and not after.get("retry_cut") and after["epochs"] == 2, text


# ---------------------------------------------------------------- without Ray


def _finished(plan, statuses, counts=None):
    """A run of `plan` that ran to the end: Ray's state has `statuses`; its summary counts
    `counts` (by default the same)."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker
    from hpoc.runtime.shards import experiment_dir

    exp = experiment_dir(plan, 0)
    saved_state(exp, statuses)
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    counts = counts or {s: statuses.count(s) for s in set(statuses)}
    (exp / "summary.json").write_text(json.dumps(
        {"study": "toy", "plan_hash": plan_hash(plan), "interrupted": False, "metrics": [],
         "num_trials": len(statuses), "status_counts": counts, "trials": [], "best": None,
         "wall_s": 1.0}))
    return exp


def test_the_environment_variable_says_how_to_retry(monkeypatch):
    assert rerun.mode_from_env({}) is None
    for value, mode in [("1", rerun.SCRATCH), ("scratch", rerun.SCRATCH), ("True", rerun.SCRATCH),
                        ("checkpoint", rerun.CHECKPOINT), ("0", None), ("", None)]:
        assert rerun.mode_from_env({rerun.ENV: value}) == mode, value
    with pytest.raises(rerun.RetryError, match="HPOC_RETRY_ERRORED='latest' is not a valid value"):
        rerun.mode_from_env({rerun.ENV: "latest"})


def test_the_job_check_before_ray_goes_on_for_errored_trials_when_asked(tmp_path, monkeypatch, capsys):
    from hpoc.plan import dumps
    from hpoc.runtime import __main__ as entry
    from hpoc.runtime.before import DONE, GO

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    ask = [str(plan_file), "--shard", "0", "--before-ray"]
    _finished(plan, ["TERMINATED", "ERROR"])
    assert entry.main(ask) == DONE  # as before: the job ends, nothing to do
    monkeypatch.setenv(rerun.ENV, "1")  # HPOC_RETRY_ERRORED=1 sbatch build/s/job.sbatch
    assert entry.main(ask) == GO
    monkeypatch.delenv(rerun.ENV)
    assert entry.main([*ask, "--retry-errored", "--from-checkpoint"]) == GO
    _finished(plan, ["ERROR", "ERROR"])  # every trial failed: retrying is what is left to do
    assert entry.main([*ask, "--retry-errored"]) == GO
    _finished(plan, ["TERMINATED", "TERMINATED"])
    capsys.readouterr()
    assert entry.main([*ask, "--retry-errored"]) == DONE
    assert "no errored trial: nothing to retry" in capsys.readouterr().err
    monkeypatch.setenv(rerun.ENV, "sometimes")
    assert entry.main(ask) == 2 and "is not a valid value" in capsys.readouterr().err


def test_the_cli_refuses_what_does_not_go_together(tmp_path, monkeypatch, capsys):
    from hpoc.cli import main

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    plan_file = tmp_path / "plan.json"
    from hpoc.plan import dumps

    plan_file.write_text(dumps(plan))
    for args, said in [(["--from-checkpoint"], "--from-checkpoint only goes with --retry-errored"),
                       (["--retry-errored", "--fresh"], "pass one of them")]:
        for command in ("run", "submit"):
            assert main([command, str(plan_file), *args]) == 2, (command, args)
            assert said in capsys.readouterr().err
    monkeypatch.setenv(rerun.ENV, "maybe")
    assert main(["run", str(plan_file), "--local"]) == 2
    assert "HPOC_RETRY_ERRORED='maybe'" in capsys.readouterr().err


def test_a_study_that_never_ran_has_nothing_to_retry(tmp_path):
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker
    from hpoc.runtime.prior import prior_run
    from hpoc.runtime.study import StudyError

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    fp = marker.fingerprint(plan, plan_hash(plan))
    exp = tmp_path / "results" / "toy"
    with pytest.raises(StudyError, match="holds no earlier run of this study"):
        prior_run(exp, fp, False, True, io.StringIO(), retry=rerun.SCRATCH)
    assert prior_run(exp, fp, False, True, io.StringIO()) == "fresh"


def test_the_driver_refuses_retry_with_fresh_too(tmp_path, capsys):
    """run_study's callers pass no CLI: the driver refuses what the CLI refuses."""
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    code = run_study(plan, RunOptions(local=True, fresh=True, retry_errored=rerun.SCRATCH))
    assert code == EXIT_SPEC
    assert "pass one of them" in capsys.readouterr().err


def test_submit_sends_only_the_shards_with_errored_trials(tmp_path):
    from hpoc.submit import previous_run

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    _finished(plan, ["TERMINATED", "ERROR"])
    assert previous_run(plan) == ("done", {0})
    assert previous_run(plan, rerun.SCRATCH) == ("resume", set())
    _finished(plan, ["TERMINATED"])
    assert previous_run(plan, rerun.SCRATCH) == ("done", {0})


@pytest.mark.parametrize("statuses, counts", [
    (["TERMINATED", "TERMINATED"], {"TERMINATED": 1, "ERROR": 1}),
    (["TERMINATED", "ERROR"], {"TERMINATED": 2}),
    (["TERMINATED", "ERROR"], None),
])
def test_the_driver_the_job_check_and_submit_agree_on_what_to_retry(tmp_path, monkeypatch, statuses,
                                                                     counts):
    """All three read Ray's saved state (rerun.errored), the driver once: a summary that counts
    otherwise sent a job whose driver had nothing to retry, or none for one that had."""
    from hpoc import files
    from hpoc.runtime import study
    from hpoc.runtime.before import GO, verdict
    from hpoc.submit import previous_run

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    _finished(plan, statuses, counts)
    reads = []
    monkeypatch.setattr(rerun, "saved_trials", lambda path: reads.append(path) or files.saved_trials(path))

    def retrying(plan, exp):  # the driver chose to restore: stop before Ray
        raise study.StudyError("retrying")

    monkeypatch.setattr(study, "refuse_synch_population", retrying)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    code, text = _run(plan, retry_errored=rerun.SCRATCH)
    driver = "error: retrying" in err.getvalue()
    assert driver == ("ERROR" in statuses) and len(reads) == 1, text + err.getvalue()
    assert (verdict(plan, 0, rerun.SCRATCH)[0] == GO) == driver
    assert (previous_run(plan, rerun.SCRATCH)[1] == set()) == driver
    if not driver:
        assert code == EXIT_OK and "no errored trial: nothing to retry" in text
    (_finished(plan, statuses, counts) / "tuner.pkl").unlink()  # nothing Ray could restore
    assert verdict(plan, 0, rerun.SCRATCH)[0] != GO and previous_run(plan, rerun.SCRATCH)[1] == {0}


def test_a_submitted_job_asks_its_driver_to_retry(tmp_path, monkeypatch):
    from hpoc.submit import job, make_job, prepare

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    sub = prepare(plan, tmp_path / "plan.json", "local")
    ran = []

    class Driver:
        def __init__(self, cmd, env):
            ran.append(cmd)
            self.pid = 0

        def poll(self):
            return 0

    monkeypatch.setattr(job.subprocess, "Popen", Driver)
    for retry, flags in [(None, []), (rerun.SCRATCH, ["--retry-errored"]),
                         (rerun.CHECKPOINT, ["--retry-errored", "--from-checkpoint"])]:
        make_job(plan, sub, retry)(0)
        assert [a for a in ran[-1] if a.startswith("--retry") or a == "--from-checkpoint"] == flags


def test_a_retried_trial_leaves_what_it_had_in_before_retry(tmp_path):
    exp = tmp_path / "exp"
    saved_state(exp, ["TERMINATED", "ERROR", "ERROR"])
    for i in range(3):
        trial = exp / f"trial_{i}"
        (trial / "checkpoint_000000").mkdir(parents=True)
        for name in ("result.json", "progress.csv", "error.txt", "params.json"):
            (trial / name).write_text(name)
    (exp / "train" / "t2" / "checkpoint_0").mkdir(parents=True)  # a multi-worker trial's Train run
    errored = rerun.errored(exp)
    assert errored == {"t1": exp / "trial_1", "t2": exp / "trial_2"}
    rerun.set_aside(exp, {"t1": errored["t1"]}, scratch=False)  # from its checkpoint
    assert sorted(p.name for p in (exp / "trial_1" / "before-retry-1").iterdir()) == ["error.txt"]
    assert (exp / "trial_1" / "checkpoint_000000").is_dir()
    rerun.set_aside(exp, {"t2": errored["t2"]}, scratch=True)
    assert sorted(p.name for p in (exp / "trial_2" / "before-retry-1").iterdir()) == [
        "checkpoint_000000", "error.txt", "progress.csv", "result.json", "train-run"]
    assert sorted(p.name for p in (exp / "trial_2").iterdir()) == ["before-retry-1", "params.json"]
    assert not (exp / "train" / "t2").exists()
    assert sorted(p.name for p in (exp / "trial_0").iterdir()) == [  # a finished trial: untouched
        "checkpoint_000000", "error.txt", "params.json", "progress.csv", "result.json"]


def test_an_interrupted_run_retries_its_errored_trials_as_asked(tmp_path):
    """The plan's `resume.retry_errored` retries an interrupted run's errored trials from
    their checkpoint; --retry-errored does so even without it, and from scratch by default."""
    exp = tmp_path / "exp"
    saved_state(exp, ["PAUSED", "ERROR"])
    for i in range(2):
        (exp / f"trial_{i}").mkdir()
        (exp / f"trial_{i}" / "error.txt").write_text("old")
    said, errored = [], rerun.errored(exp)
    assert errored == {"t1": exp / "trial_1"}
    assert rerun.prepare(exp, "restore", None, False, errored, said.append) == (None, set())
    assert said == [] and (exp / "trial_1" / "error.txt").exists()  # stays errored, as it was
    assert rerun.prepare(exp, "restore", None, True, errored, said.append) == (rerun.CHECKPOINT, set())
    assert said == ["[hpoc] its 1 errored trial(s) run again from their last checkpoint"]
    assert (exp / "trial_1" / "before-retry-1" / "error.txt").exists()
    assert (exp / "trial_0" / "error.txt").exists()  # not an errored trial: untouched
    assert rerun.prepare(exp, "restore", rerun.SCRATCH, False, errored, said.append) == (
        rerun.SCRATCH, {"t1"})
    saved_state(exp, ["PAUSED"])
    assert rerun.prepare(exp, "restore", rerun.SCRATCH, True, rerun.errored(exp), said.append) == (
        None, set())
    assert said[-1] == "[hpoc] no errored trial to retry"


def test_a_shard_where_no_trial_succeeded_suggests_the_retry_before_starting_over(tmp_path, capsys):
    """Its job said only `--fresh`, which discards the run, while `hpoc status` named
    --retry-errored: after a fix, the retry is what a user wants."""
    from hpoc.cli import main
    from hpoc.plan import dumps
    from hpoc.runtime.before import FAILED, verdict

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    _finished(plan, ["ERROR", "ERROR"])
    code, why = verdict(plan, 0)
    assert code == FAILED and "no trial succeeded" in why
    assert "--retry-errored` runs its 2 errored trial(s) again (`HPOC_RETRY_ERRORED=1 sbatch`" in why
    assert why.index("--retry-errored") < why.index("to start over: `hpoc submit")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    assert main(["submit", str(plan_file), "--cluster", "local", "--dry-run"]) == 0
    assert "(--retry-errored runs its errored trials again, --fresh starts over)" in capsys.readouterr().out


def _cut_short(plan):
    """A finished run whose only failed trial was being retried when the time budget
    stopped it: Ray saved it TERMINATED; summary.json keeps its error (retry_cut)."""
    exp = _finished(plan, ["TERMINATED", "TERMINATED"])
    summary = json.loads((exp / "summary.json").read_text())
    summary["trials"] = [{"trial_id": "t0", "status": "TERMINATED"},
                         {"trial_id": "t1", "status": "TERMINATED", "stopped": "time budget",
                          "error": "RuntimeError: a bug", "retry_cut": True}]
    (exp / "summary.json").write_text(json.dumps(summary))
    return exp


def test_a_trial_cut_short_in_its_retry_is_retried_like_an_errored_one(tmp_path, monkeypatch, capsys):
    """`hpoc results` shows such a trial's error, but Ray saved it as finished: --retry-errored
    said only that it could not run it again, and named `--fresh` (the whole study)."""
    from hpoc.cli import main
    from hpoc.files import newest_state, saved_trials
    from hpoc.plan import dumps
    from hpoc.runtime import study
    from hpoc.runtime.before import GO, verdict
    from hpoc.submit import previous_run

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    exp = _cut_short(plan)
    assert rerun.errored(exp) == {"t1": exp / "trial_1"}
    assert verdict(plan, 0, rerun.SCRATCH)[0] == GO  # the job's check before Ray
    assert previous_run(plan, rerun.SCRATCH) == ("resume", set())  # hpoc submit sends the shard
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(dumps(plan))
    assert main(["submit", str(plan_file), "--cluster", "local", "--retry-errored", "--dry-run"]) == 0
    assert "no shard has an errored trial" not in capsys.readouterr().out

    def retrying(plan, exp):  # the driver chose to restore: stop before Ray
        raise study.StudyError("retrying")

    monkeypatch.setattr(study, "refuse_synch_population", retrying)
    code, text = _run(plan, retry_errored=rerun.SCRATCH)
    assert "error: retrying" in capsys.readouterr().err, text
    # the restore finds it errored in Ray's own record, which outlives the summary
    said = []
    assert rerun.prepare(exp, "retry", rerun.SCRATCH, False, rerun.errored(exp), said.append) == (
        rerun.SCRATCH, {"t1"})
    assert "running its 1 errored trial(s) again from scratch (1 of them failed and were being " \
           "retried when the time budget or their time limit stopped them)" in said[0]
    assert [t["status"] for t, _ in saved_trials(newest_state(exp))] == ["TERMINATED", "ERROR"]


def test_a_summary_older_than_rays_state_does_not_name_trials_to_retry(tmp_path):
    """A later run (its driver killed before it wrote its summary) saved a newer state:
    the trial the old summary had cut short may have finished since."""
    import os

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    exp = _cut_short(plan)
    state = next(exp.glob("experiment_state-*.json"))
    later = (exp / "summary.json").stat().st_mtime + 10
    os.utime(state, (later, later))
    assert rerun.errored(exp) == {}


def test_a_retry_of_a_finished_run_reads_its_summary_once(tmp_path, monkeypatch):
    from hpoc.runtime import summary as summary_mod

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")
    _cut_short(plan)
    reads = []
    read = summary_mod.read
    monkeypatch.setattr(summary_mod, "read", lambda d: reads.append(d) or read(d))
    monkeypatch.setattr("hpoc.runtime.rerun.read", summary_mod.read, raising=False)
    from hpoc.runtime import study

    def retrying(plan, exp):  # the driver chose to restore: stop before Ray
        raise study.StudyError("retrying")

    monkeypatch.setattr(study, "refuse_synch_population", retrying)
    _run(plan, retry_errored=rerun.SCRATCH)
    assert len(reads) == 1
    _finished(plan, ["TERMINATED"])
    reads.clear()
    code, text = _run(plan, retry_errored=rerun.SCRATCH)  # nothing to retry: said from that read
    assert code == EXIT_OK and "nothing to retry" in text and len(reads) == 1


@pytest.mark.ray
def test_a_retried_trial_logs_its_new_attempt_beside_the_errored_one(tmp_path):
    """A trial run again from scratch kept its MLflow run, where first-write-wins left out
    its new epochs up to where the errored attempt had stopped. The new attempt has a run
    of its own, whole; the errored one stays, tagged superseded."""
    from mlflow.tracking import MlflowClient

    from hpoc.runtime import tracking

    plan = _flaky_plan(tmp_path)
    plan["loggers"] = [{"kind": "mlflow", "experiment_name": None, "log_freq": "epoch", "tracking_uri": None}]
    assert _run(plan)[0] == EXIT_OK
    (Path(plan["source"]["workdir"]) / "flaky.py").write_text("BUG = False\n" + FLAKY)
    code, text = _run(plan, retry_errored=rerun.SCRATCH)
    assert code == EXIT_OK, text
    client = MlflowClient(tracking.mlflow_uri(plan, plan["loggers"][0]))
    exp = client.get_experiment_by_name(plan["study"]["name"])
    trials = [r for r in client.search_runs([exp.experiment_id]) if "hpoc.trial" in r.data.tags]
    (old,) = [r for r in trials if "hpoc.superseded_by" in r.data.tags]
    (new,) = [r for r in trials if r.info.run_id == old.data.tags["hpoc.superseded_by"]]
    assert len(trials) == 3  # hidden=8's run, and hidden=16's two attempts
    assert new.data.tags["hpoc.trial"] == old.data.tags["hpoc.trial"] and new.data.tags["hpoc.attempt"] == "2"
    assert (old.info.status, new.info.status) == ("FAILED", "FINISHED")
    assert new.data.metrics and all(
        sorted(m.step for m in client.get_metric_history(new.info.run_id, key)) == [0, 1, 2]
        for key in new.data.metrics)


def test_a_multi_worker_retry_resumed_from_its_train_checkpoint_fails_at_the_same_point(tmp_path, monkeypatch):
    """A 2-worker trial that raised in epoch 1 after reporting epoch 0 was retried twice, not
    once: its checkpoint lies in its Ray Train run (Tune's `trial.checkpoint` is None), so the
    retry, which resumed at epoch 1 and failed before reporting, counted as failing at 0."""
    from types import SimpleNamespace

    from hpoc.runtime import watch

    monkeypatch.setattr(watch.STATE, "experiment", str(tmp_path))
    (tmp_path / "train" / "t1" / "checkpoint_000000").mkdir(parents=True)
    trial = SimpleNamespace(trial_id="t1", checkpoint=None, last_result={"training_iteration": 1})
    assert watch._failed_after(trial) == 1  # as the first attempt's, which had reported once
    trial.trial_id = "t2"  # no checkpoint, no report in this attempt: before the first report
    assert watch._failed_after(trial) == 0
