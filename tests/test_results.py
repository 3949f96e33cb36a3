"""`hpoc results` and hpoc.results on real Ray Tune experiment directories."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.results import ResultsError, load, rank
from hpoc.results.model import Metric, Results, Trial
from hpoc.results.rank import param_names

from results_dirs import age, closed, run_lock, summary as write_summary, trial_dir
from results_fixtures import make_plan, study_data, write_plan

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    return study_data(tmp_path_factory)


def summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def cli(capsys, *argv):
    code = main(["results", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def ray_trial_dirs(exp: Path) -> dict[str, Path]:
    """trial_id -> directory, read straight from Ray's files (the id is in the name too)."""
    import re

    dirs = {}
    for params in exp.rglob("params.json"):
        dirs[re.search(r"_([0-9a-f]{5}_\d{5})_", params.parent.name).group(1)] = params.parent
    return dirs


def result_lines(trial_dir: Path) -> list[str]:
    file = trial_dir / "result.json"
    return file.read_text().splitlines() if file.exists() else []


# ------------------------------------------------------------------ the data itself

def test_generated_data_has_what_the_tests_need(data):
    s = summary(data.single)
    assert s["status_counts"].get("ERROR", 0) >= 1
    epochs = [t["epochs"] for t in s["trials"] if t["status"] == "TERMINATED"]
    assert 6 in epochs and any(e < 6 for e in epochs), "ASHA stopped no trial early"
    print(f"generating the Ray studies took {data.gen_seconds:.1f} s")


# ------------------------------------------------------------------ loading

def test_load_one_shard_matches_ray_files(data):
    results = load(data.build_single)
    s = summary(data.single)
    assert results.study == "fmnist"
    assert [m.name for m in results.metrics] == ["val_loss", "val_accuracy"]
    assert results.max_epochs == 6
    by_id = {t.trial_id: t for t in results.trials}
    assert set(by_id) == {t["trial_id"] for t in s["trials"]}
    dirs = ray_trial_dirs(data.single)
    for entry in s["trials"]:
        trial = by_id[entry["trial_id"]]
        assert trial.status == entry["status"]
        assert trial.epochs == entry["epochs"]
        assert trial.config == json.loads((dirs[trial.trial_id] / "params.json").read_text())
        lines = result_lines(dirs[trial.trial_id])
        assert len(trial.history) == len(lines)
        if lines:
            assert trial.value("val_loss") == pytest.approx(json.loads(lines[-1])["val_loss"])
        assert trial.stopped_early == (entry["status"] == "TERMINATED" and entry["epochs"] < 6)
        if entry["status"] == "ERROR" and trial.config["batch_size"] == 128:
            assert trial.error == "RuntimeError: loss diverged (nan) at epoch 3"
            assert 'raise RuntimeError("loss diverged' in trial.error_text
            assert "\x1b" not in trial.error_text  # Ray's terminal colours are stripped
        elif entry["status"] != "ERROR":
            assert trial.error is None


def test_load_accepts_build_dir_plan_file_and_experiment_dir(data):
    ids = {t.trial_id for t in load(data.build_single).trials}
    assert {t.trial_id for t in load(data.build_single / "plan.json").trials} == ids
    from_dir = load(data.single)
    assert {t.trial_id for t in from_dir.trials} == ids
    # Without a plan the objective comes from summary.json.
    assert from_dir.metrics == [Metric("val_loss", "min")]
    assert from_dir.plan is None


def test_best_trial_is_the_one_ray_picks(data):
    results = load(data.build_single)
    ranking = rank(results)
    assert ranking.metric == "val_loss" and ranking.mode == "min"
    assert ranking.best.trial_id == summary(data.single)["best"]["trial_id"]
    values = [ranking.value(t) for t in ranking.trials]
    ok = [v for t, v in zip(ranking.trials, values) if t.status != "ERROR" and v is not None]
    assert ok == sorted(ok) and values[: len(ok)] == ok
    # Then the errored trials (by value), then trials that reported nothing.
    rest = [(t.status, v) for t, v in zip(ranking.trials, values)][len(ok):]
    failed = [v for status, v in rest if status == "ERROR" and v is not None]
    assert failed and [v for _, v in rest[: len(failed)]] == sorted(failed)
    assert all(v is None for _, v in rest[len(failed):])


def test_sharded_study_is_merged(data):
    results = load(data.build_sharded)
    s0, s1 = summary(data.sharded / "shard-0"), summary(data.sharded / "shard-1")
    assert results.sharded and [s.index for s in results.shards] == [0, 1]
    assert len(results.trials) == s0["num_trials"] + s1["num_trials"]
    assert {t.shard for t in results.trials} == {0, 1}
    assert {t.trial_id for t in results.trials if t.shard == 1} == \
        {t["trial_id"] for t in s1["trials"]}
    best = rank(results).best
    candidates = [s0["best"], s1["best"]]
    expected = min(candidates, key=lambda b: b["metrics"]["val_loss"])
    assert best.trial_id == expected["trial_id"]
    # Also loadable from the study directory alone (shard-* subdirectories).
    assert len(load(data.sharded).trials) == len(results.trials)


def test_partial_experiment_reads_ray_files_and_warns(data, capsys):
    results = load(data.build_partial)
    assert any("no summary.json" in w for w in results.warnings)
    assert {t.trial_id for t in results.trials} == set(ray_trial_dirs(data.partial))
    running = [t for t in results.trials if t.status == "RUNNING"]
    # The trial whose last line was cut: 4 whole reports, not marked done.
    assert [t.epochs for t in running if t.history] == [4]
    # The trial with no result.json at all: known from params.json, no history.
    assert any(not t.history for t in results.trials)
    assert not any(t.stopped_early for t in running)
    code, out, err = cli(capsys, data.build_partial)
    assert code == 0
    assert "warning:" in err and "no summary.json" in err
    assert "running" in out


# ------------------------------------------------------------------ clear errors

def test_missing_directory_is_a_clear_error(tmp_path, capsys):
    code, out, err = cli(capsys, tmp_path / "nope")
    assert code == 2 and out == ""
    assert "no such file or directory" in err and "Traceback" not in err


def test_a_directory_deleted_while_it_is_read_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """`hpoc run --fresh` (or a clean-up) moves the experiment away while `hpoc results`,
    `report` or `status` reads it: an error naming it, not a FileNotFoundError traceback."""
    import importlib
    import shutil

    load_mod = importlib.import_module("hpoc.results.load")
    exp = tmp_path / "exp"
    trial_dir(exp, "a0000_00000", {"lr": 0.1}, [{"loss": 1.0}])
    scan = load_mod._experiment_states

    def deleted_meanwhile(path, *args, **kw):
        shutil.rmtree(exp, ignore_errors=True)
        return scan(path, *args, **kw)

    monkeypatch.setattr(load_mod, "_experiment_states", deleted_meanwhile)
    code, out, err = cli(capsys, exp)
    assert code == 2 and out == "", err
    assert f"{exp} disappeared while its results were read" in err and "Traceback" not in err


def test_empty_directory_is_a_clear_error(tmp_path, capsys):
    code, _, err = cli(capsys, tmp_path)
    assert code == 2
    assert "no trials found" in err and "Traceback" not in err


def test_plan_whose_study_never_ran(tmp_path, capsys):
    build = tmp_path / "build"
    write_plan(build, make_plan(tmp_path / "storage", "never"))
    code, _, err = cli(capsys, build)
    assert code == 2
    assert "no results yet for study `never`" in err and "hpoc run" in err
    # A job may be queued, or have failed before its first trial (`sbatch job.sbatch`): say where to look.
    assert f"`hpoc status {build}` shows its jobs, queued or failed)" in err


def test_a_spec_whose_study_never_ran_points_status_at_the_spec(tmp_path, capsys):
    """It said `hpoc status DIR` with the spec's directory, which holds every study run
    beside it: status refused it, asking which one."""
    spec = tmp_path / "study.hpo"
    spec.write_text('study "never"\npipeline { trainer = t:T }\n')
    code, _, err = cli(capsys, spec)
    assert code == 2 and "no results yet for study `never`" in err
    assert f"`hpoc status {spec}` shows its jobs, queued or failed)" in err


def test_a_misspelt_path_names_the_one_meant(tmp_path, capsys):
    build = tmp_path / "build"
    write_plan(build, make_plan(tmp_path / "storage", "never"))
    code, _, err = cli(capsys, tmp_path / "biuld")
    assert code == 2 and f"= help: did you mean `{build}`?" in err


def test_results_in_a_study_directory_not_run_yet_names_the_study(tmp_path, capsys, monkeypatch):
    """`hpoc results` (or `.`) beside study.hpo said "no trials found ... or this is not an
    experiment directory", as if the directory were not the study's."""
    (tmp_path / "study.hpo").write_text('study "never"\npipeline { trainer = t:T }\n')
    monkeypatch.chdir(tmp_path)
    for argv in ([], ["."]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and "no results yet for study `never`" in err, err
        assert "`hpoc status study.hpo` shows its jobs" in err


def test_bad_plan_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("{not json")
    code, _, err = cli(capsys, tmp_path)
    assert code == 2 and "not a readable plan file" in err


# ------------------------------------------------------------------ table

def test_table_ranks_trials_and_prints_best_config(data, capsys):
    code, out, err = cli(capsys, data.build_single)
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.lstrip().startswith("#"))
    for col in ("trial", "status", "epochs", "val_loss", "val_accuracy", "batch_size",
                "optimizer.lr", "optimizer.name", "dropout"):
        assert col in header.split()
    assert "epochs" not in header.split()[5:]  # constants are not columns
    best = rank(load(data.build_single)).best
    first_row = lines[lines.index(header) + 2].split()
    assert first_row[:2] == ["1", best.trial_id]
    assert "stopped early" in out and "error" in out
    assert "RuntimeError: loss diverged" in out
    # The best config round-trips through both printed forms.
    block = out[out.index("config (JSON):") + len("config (JSON):"):
                out.index("config (key = value):")]
    assert json.loads(block) == best.config
    kv = out[out.index("config (key = value):"):].splitlines()[1:]
    pairs = dict(line.strip().split(" = ", 1) for line in kv if " = " in line)
    assert json.loads(pairs["optimizer.lr"]) == best.config["optimizer"]["lr"]
    assert json.loads(pairs["optimizer.name"]) == best.config["optimizer"]["name"]


def test_sharded_table_has_a_shard_column(data, capsys):
    code, out, _ = cli(capsys, data.build_sharded)
    assert code == 0
    header = next(ln for ln in out.splitlines() if ln.lstrip().startswith("#"))
    assert header.split()[:4] == ["#", "trial", "shard", "status"]
    assert "across 2 shards" in out
    results = load(data.build_sharded)
    counts = f"{sum(not t.stopped_early and t.status == 'TERMINATED' for t in results.trials)}" \
        " completed"
    assert counts in out.splitlines()[0]


def test_top_and_status_filters(data, capsys):
    results = load(data.build_single)
    errors = [t.trial_id for t in results.trials if t.status == "ERROR"]
    stopped = [t.trial_id for t in results.trials if t.stopped_early]
    code, out, _ = cli(capsys, data.build_single, "--csv", "--status", "error")
    assert code == 0
    assert sorted(r["trial_id"] for r in csv.DictReader(io.StringIO(out))) == sorted(errors)
    code, out, _ = cli(capsys, data.build_single, "--csv", "--status", "stopped,error")
    assert sorted(r["trial_id"] for r in csv.DictReader(io.StringIO(out))) == \
        sorted(errors + stopped)
    code, out, _ = cli(capsys, data.build_single, "--csv", "--top", "2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["rank"] for r in rows] == ["1", "2"]
    assert rows[0]["trial_id"] == rank(results).best.trial_id
    code, _, err = cli(capsys, data.build_single, "--status", "eror")
    assert code == 2 and "did you mean `error`" in err


def test_sort_by_other_metrics(data, capsys):
    code, out, err = cli(capsys, data.build_single, "--csv", "--sort", "val_accuracy")
    assert code == 0 and err == ""
    rows = [r for r in csv.DictReader(io.StringIO(out))
            if r["status"] != "ERROR" and r["val_accuracy"]]
    acc = [float(r["val_accuracy"]) for r in rows]
    assert acc == sorted(acc, reverse=True)  # objective says max
    code, out, err = cli(capsys, data.build_single, "--csv", "--sort", "train_loss", "--desc")
    assert code == 0 and err == ""
    loss = [float(r["train_loss"]) for r in csv.DictReader(io.StringIO(out))
            if r["status"] != "ERROR" and r["train_loss"]]
    assert loss == sorted(loss, reverse=True)
    code, _, err = cli(capsys, data.build_single, "--sort", "train_loss")
    assert code == 0 and "not an objective metric" in err
    code, _, err = cli(capsys, data.build_single, "--sort", "val_acc")
    assert code == 2 and "did you mean `val_accuracy`" in err


def test_scope_best_ranks_by_best_epoch(data):
    results = load(data.build_single)
    ranking = rank(results, scope="best")
    checked = 0
    for trial in ranking.trials:
        values = [r["val_loss"] for r in trial.history if "val_loss" in r]
        if values:
            assert ranking.value(trial) == pytest.approx(min(values))
            checked += 1
    assert checked >= 2


# ------------------------------------------------------------------ exports

def test_json_export(data, capsys):
    code, out, _ = cli(capsys, data.build_sharded, "--json", "--history")
    assert code == 0
    doc = json.loads(out)
    results = load(data.build_sharded)
    assert doc["study"] == "fmnist-sharded"
    assert doc["num_trials"] == len(results.trials) == len(doc["trials"])
    assert doc["objective"][0] == {"name": "val_loss", "mode": "min"}
    assert doc["best"]["trial_id"] == rank(results).best.trial_id
    assert [t["rank"] for t in doc["trials"]] == list(range(1, len(doc["trials"]) + 1))
    assert {t["shard"] for t in doc["trials"]} == {0, 1}
    for record in doc["trials"]:
        trial = next(t for t in results.trials
                     if t.trial_id == record["trial_id"] and t.shard == record["shard"])
        assert record["params"]["optimizer.lr"] == trial.config["optimizer"]["lr"]
        assert [h.get("val_loss") for h in record["history"]] == \
            [r.get("val_loss") for r in trial.history]
        assert record["stopped_early"] == trial.stopped_early


def test_csv_export(data, capsys):
    code, out, _ = cli(capsys, data.build_single, "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    results = load(data.build_single)
    assert len(rows) == len(results.trials)
    assert {"val_loss", "config/optimizer.lr", "config/batch_size", "error"} <= set(rows[0])
    by_id = {t.trial_id: t for t in results.trials}
    for row in rows:
        trial = by_id[row["trial_id"]]
        assert float(row["config/optimizer.lr"]) == trial.config["optimizer"]["lr"]
        value = trial.value("val_loss")
        assert row["val_loss"] == ("" if value is None else repr(value))
        assert row["stopped_early"] == str(trial.stopped_early).lower()


# ------------------------------------------------------------------ units

def _trial(tid, status, config, losses, shard=0):
    hist = [{"training_iteration": i + 1, "val_loss": v, "timestamp": 100 + i}
            for i, v in enumerate(losses)]
    return Trial(tid, status, config, hist, shard=shard)


def test_param_columns_without_plan_are_the_varying_keys():
    trials = [_trial("a", "TERMINATED", {"lr": 0.1, "epochs": 3, "opt": {"name": "sgd"}}, [1]),
              _trial("b", "TERMINATED", {"lr": 0.2, "epochs": 3, "opt": {"name": "sgd"}}, [2])]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])
    assert param_names(results) == ["lr"]


def test_unknown_scope_and_bad_top_are_errors():
    results = Results("s", Path("."), [Metric("val_loss", "min")],
                      [_trial("a", "TERMINATED", {}, [1.0])], [])
    with pytest.raises(ResultsError):
        rank(results, scope="median")
    with pytest.raises(ResultsError):
        rank(results, top=0)


def test_no_best_when_every_trial_failed():
    results = Results("s", Path("."), [Metric("val_loss", "min")],
                      [_trial("a", "ERROR", {}, [1.0]), _trial("b", "ERROR", {}, [0.5])], [])
    ranking = rank(results)
    assert ranking.best is None
    assert [t.trial_id for t in ranking.trials] == ["b", "a"]


def test_identical_errors_of_many_trials_are_listed_once_with_a_count():
    from hpoc.results.table import render_errors

    trials = [_trial(f"t{i}", "ERROR", {}, [1.0 + i]) for i in range(5)] + [_trial("k", "ERROR", {}, [9.0])]
    for t in trials:
        t.error = "RuntimeError: expected target dtype to be Long or Byte, but got Float"
    trials[-1].error = "KeyError: 'label'"
    ranking = rank(Results("s", Path("."), [Metric("val_loss", "min")], trials, []))
    assert render_errors(ranking).splitlines() == [
        "errors:",
        "  5 trials (t0, t1, t2, …): RuntimeError: expected target dtype to be Long or Byte, but got Float",
        "  k: KeyError: 'label'"]


def test_a_trial_that_failed_the_same_way_twice_names_the_users_error_not_hpocs_class():
    """The run's progress line said "failed the same way twice: ValueError: ... at trainer.py:6";
    `hpoc results` said "hpoc.runtime.trainer.TrainerError: failed the same way twice: ..."."""
    from hpoc.results.load import _error_line

    text = ("Failure # 2 (occurred at 2026-11-29_10-49-30)\nTraceback (most recent call last):\n"
            '  File "/x/hpoc/runtime/trial.py", line 9, in run\n'
            "hpoc.runtime.trainer.TrainerError: failed the same way twice: ValueError: hidden=8 is too "
            "small at /s/trainer.py:6; not retried again\n")
    assert _error_line(text) == ("failed the same way twice: ValueError: hidden=8 is too small at "
                                 "/s/trainer.py:6; not retried again")
    kept = "ValueError: hpoc.x.TrainerError: kept"  # only hpoc's own class at the start goes
    assert _error_line(f"Traceback ...\n{kept}\n") == kept
    # the run's own line (runtime.summary.error_line), not Ray's words that say nothing alone
    gone = "RuntimeError: Unable to set up cluster storage with the following settings:\nStorageContext<...>"
    assert _error_line(gone).startswith("the study's experiment directory is gone or cannot be written")


def test_bookkeeping_keys_are_not_metrics():
    trial = Trial("a", "TERMINATED", {}, [
        {"epoch": 1, "training_iteration": 1, "val_loss": 0.5, "config/lr": 0.1,
         "time_total_s": 1.0, "checkpoint_dir_name": "checkpoint_000000"}])
    results = Results("s", Path("."), [Metric("val_loss", "min")], [trial], [])
    assert results.metric_names() == ["val_loss"]


def test_a_metric_named_with_a_slash_is_a_metric_but_hpocs_perf_keys_are_not():
    """`minimize "val/err"`: `hpoc results` said no trial reported it, and ranked nothing."""
    trial = Trial("a", "TERMINATED", {}, [
        {"epoch": 1, "training_iteration": 1, "val/err": 0.5, "config/lr": 0.1, "perf/train_s": 1.0}])
    results = Results("s", Path("."), [Metric("val/err", "min")], [trial], [])
    assert results.metric_names() == ["val/err"]


def test_shards_alike_are_warned_about_once_as_ranges(tmp_path, capsys):
    """A 200-task array half way through printed a warning per shard not started and per
    shard still running: a hundred lines before the table."""
    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=30))
    for k in range(20):
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 2, done=k < 10)
        if k < 10:
            write_summary(exp, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "TERMINATED"}],
                          best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5}}, shard=k)
    code, out, err = cli(capsys, build, "--no-best")
    assert code == 0, err
    warned = err.strip().splitlines()
    assert len(warned) == 2, err
    assert warned[0].startswith(f"hpoc results: warning: shards 10-19 of {storage / 'arr'}: no summary.json")
    assert warned[1] == f"hpoc results: warning: shards 20-29 of {storage / 'arr'}: no directory yet (not started?)"
    assert "across 20 of 30 shards" in out  # as `hpoc status` counts them: the plan's
    from hpoc.plan import load as load_plan_file
    from hpoc.results import load_plan
    from hpoc.results.html import _meta

    assert " · 20 of 30 shards · " in _meta(load_plan(load_plan_file(build / "plan.json")), "")


def test_one_shard_directory_keeps_its_shard_number(data):
    results = load(data.sharded / "shard-1")
    assert {t.shard for t in results.trials} == {1}
    assert len(results.trials) == summary(data.sharded / "shard-1")["num_trials"]


def test_shards_that_have_not_started_are_reported(data, tmp_path, capsys):
    build = tmp_path / "three"
    write_plan(build, make_plan(data.storage, "fmnist-sharded", shards=3))
    code, out, err = cli(capsys, build, "--no-best")
    assert code == 0
    assert "shard 2:" in err and "does not exist yet" in err
    assert "across 2 of 3 shards" in out  # as `hpoc status` counts them: the plan's


def test_an_empty_shard_directory_is_not_counted_as_started(tmp_path, capsys):
    """A job that made its `shard-1/` and died before its driver began: "across 2 of 3
    shards" with one shard's trials, where `hpoc status` has shard 1 "not started"."""
    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=3))
    exp = storage / "arr" / "shard-0"
    trial_dir(exp, "aaaaa_00000", {"dropout": 0.1}, [{"val_loss": 0.5}] * 2)
    write_summary(exp, "arr", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}],
                  best={"trial_id": "aaaaa_00000", "metrics": {"val_loss": 0.5}}, shard=0)
    (storage / "arr" / "shard-1").mkdir()
    code, out, err = cli(capsys, build, "--no-best")
    assert code == 0, err
    assert "across 1 of 3 shards" in out, out
    assert f"shard 1: {storage / 'arr' / 'shard-1'} holds no run yet (not started?)" in err, err
    from hpoc.plan import load as load_plan_file
    from hpoc.results import load_plan
    from hpoc.results.html import _meta

    assert " · 1 of 3 shards · " in _meta(load_plan(load_plan_file(build / "plan.json")), "")


def test_history_without_json_is_refused(tmp_path, capsys):
    code, out, err = cli(capsys, tmp_path, "--csv", "--history")
    assert code == 2 and out == "" and "--history only applies to --json" in err


# ------------------------------------------------------------------ hand-made directories

def test_json_plan_hash_comes_from_summary_without_a_plan(tmp_path, capsys):
    exp = tmp_path / "results" / "digits"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    write_summary(exp, "digits", [], plan_hash="sha256:feed")
    code, out, _ = cli(capsys, exp, "--json")
    assert code == 0 and json.loads(out)["plan_hash"] == "sha256:feed"


def test_a_trial_stopped_at_its_time_limit_says_so(tmp_path, capsys):
    """It ended TERMINATED, like a completed one: the table says why it has fewer epochs."""
    from hpoc.runtime import timelimit

    exp = tmp_path / "results" / "digits"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": 0.4}])
    slow = trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val_loss": 0.6}])
    timelimit.record(str(slow), 30)
    code, out, _ = cli(capsys, exp)
    assert code == 0
    assert "1 completed, 1 time limit" in out
    row = next(line for line in out.splitlines() if "aaaaa_00001" in line)
    assert "time limit" in row
    code, out, _ = cli(capsys, exp, "--json")
    labels = {t["trial_id"]: t["label"] for t in json.loads(out)["trials"]}
    assert labels == {"aaaaa_00000": "completed", "aaaaa_00001": "time limit"}
    # `stopped` is the scheduler's or a stop criterion's; the time limit has its own filter
    kept = {s: [r["trial_id"] for r in csv.DictReader(io.StringIO(cli(capsys, exp, "--csv", "--status", s)[1]))]
            for s in ("stopped", "time-limit", "time-budget", "terminated")}
    assert kept == {"stopped": [], "time-limit": ["aaaaa_00001"], "time-budget": [],
                    "terminated": ["aaaaa_00000", "aaaaa_00001"]}
    code, out, _ = cli(capsys, exp, "--json", "--status", "time-limit")
    assert code == 0 and [t["trial_id"] for t in json.loads(out)["trials"]] == ["aaaaa_00001"]
    code, out, _ = cli(capsys, exp, "--json", "--status", "completed,time limit")
    assert [t["trial_id"] for t in json.loads(out)["trials"]] == ["aaaaa_00000", "aaaaa_00001"]


def test_an_experiment_dir_alone_shows_the_configs_with_the_studys_constants(tmp_path, capsys):
    """Ray records only the sampled values; the run's plan marker records the space, so the
    best config read from the experiment directory pastes back whole (`epochs` included)."""
    from hpoc.compiler import compile_source
    from hpoc.runtime import marker

    space = compile_source('study "d"\npipeline { trainer = t:T }\n'
                           "space { lr = loguniform(1e-3, 1e-1), epochs = 6 }\n", "d.hpo", str(tmp_path))["space"]
    exp = tmp_path / "results" / "d"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.01}, [{"val_loss": 0.5}])
    write_summary(exp, "d", [])
    code, out, _ = cli(capsys, exp)
    assert code == 0 and "epochs = 6" not in out  # an older run: no space recorded
    marker.write(exp, {"plan_hash": "sha256:abc", "run_hash": "sha256:abc", "parts": {}, "body": {"space": space}}, 0)
    assert load(exp).trials[0].config == {"lr": 0.01, "epochs": 6}
    code, out, _ = cli(capsys, exp)
    assert code == 0 and "epochs = 6" in out and "lr = 0.01" in out


def test_a_run_that_quit_at_once_is_read_from_one_read_of_its_marker(tmp_path, monkeypatch):
    """Without a plan the marker gives the space, and that hpoc's driver ran there (no lock,
    no summary: it quit at once, so nothing trains its trials): each was a read of its own."""
    from hpoc.compiler import compile_source
    from hpoc.runtime import marker

    space = compile_source('study "d"\npipeline { trainer = t:T }\n'
                           "space { lr = loguniform(1e-3, 1e-1), epochs = 6 }\n", "d.hpo", str(tmp_path))["space"]
    exp = tmp_path / "results" / "d"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.01}, [{"val_loss": 0.5}], done=False)
    marker.write(exp, {"plan_hash": "sha256:abc", "run_hash": "sha256:abc", "parts": {}, "body": {"space": space}}, 0)
    reads, real = [], marker.read
    monkeypatch.setattr(marker, "read", lambda path: reads.append(path) or real(path))
    results = load(exp)
    assert results.trials[0].config == {"lr": 0.01, "epochs": 6}
    assert results.trials[0].status != "RUNNING" and reads == [exp], (results.trials[0].status, reads)


def test_csv_writes_nan_for_a_diverged_trial_and_nothing_for_a_missing_value(tmp_path, capsys):
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": float("nan")}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val_loss": 0.3, "val_acc": 0.9}])
    trial_dir(exp, "aaaaa_00002", {"lr": 0.3}, [{"val_loss": 0.4}])
    write_summary(exp, "s", [])
    code, out, _ = cli(capsys, exp, "--csv")
    rows = {r["trial_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0
    assert rows["aaaaa_00000"]["val_loss"] == "nan"
    assert rows["aaaaa_00001"]["val_loss"] == "0.3"
    assert rows["aaaaa_00002"]["val_acc"] == ""


def test_json_keeps_a_diverged_metric_as_null_and_leaves_out_a_missing_one(tmp_path, capsys):
    """Strict JSON has no NaN; dropping the key as for a metric never reported would make a
    diverged trial look like one that does not report the objective."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": float("nan")}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val_loss": 0.3, "val_acc": 0.9}])
    write_summary(exp, "s", [])
    code, out, _ = cli(capsys, exp, "--json", "--history")
    trials = {t["trial_id"]: t for t in json.loads(out)["trials"]}  # strict: no NaN token
    assert code == 0 and "NaN" not in out
    assert trials["aaaaa_00000"]["metrics"] == {"val_loss": None}
    assert [r["val_loss"] for r in trials["aaaaa_00000"]["history"]] == [0.5, None]
    assert trials["aaaaa_00001"]["metrics"] == {"val_loss": 0.3, "val_acc": 0.9}


def test_counts_of_trials_and_errors_read_as_words_and_data_keeps_its_keys(tmp_path, capsys):
    """It said "3 trials (1 completed, 2 error)" and "1 trials (1 error)"."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    for k in (1, 2):
        trial_dir(exp, f"aaaaa_0000{k}", {"lr": 0.1 / 10 ** k}, [], done=False, error="KeyError: 'label'")
    write_summary(exp, "s", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}]
                  + [{"trial_id": f"aaaaa_0000{k}", "status": "ERROR"} for k in (1, 2)])
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "study `s`: 3 trials (1 completed, 2 errors)" in out, out
    code, out, _ = cli(capsys, exp, "--csv")
    assert sorted(r["status"] for r in csv.DictReader(io.StringIO(out))) == ["ERROR", "ERROR", "TERMINATED"]
    one = tmp_path / "one"
    trial_dir(one, "aaaaa_00000", {"lr": 0.1}, [], done=False, error="KeyError: 'label'")
    write_summary(one, "s", [{"trial_id": "aaaaa_00000", "status": "ERROR"}])
    code, out, _ = cli(capsys, one, "--no-best")
    assert "study `s`: 1 trial (1 error)" in out, out


def test_a_trial_that_reported_nothing_is_no_reports_not_completed(tmp_path, capsys):
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": 0.4}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01}, [])
    write_summary(exp, "s", [{"trial_id": "aaaaa_00001", "status": "TERMINATED"},
                             {"trial_id": "aaaaa_00000", "status": "TERMINATED"}])
    code, out, _ = cli(capsys, exp, "--no-best")
    assert code == 0 and "(1 completed, 1 no reports)" in out
    assert [ln.split()[2:4] for ln in out.splitlines() if "aaaaa_00001" in ln] == [["no", "reports"]]
    code, out, _ = cli(capsys, exp, "--csv")
    rows = {r["trial_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["aaaaa_00001"]["label"] == "no reports"
    assert rows["aaaaa_00000"]["label"] == "completed"
    code, out, _ = cli(capsys, exp, "--json")
    assert [t["label"] for t in json.loads(out)["trials"]] == ["completed", "no reports"]
    code, out, _ = cli(capsys, exp, "--json", "--status", "completed")
    assert [t["trial_id"] for t in json.loads(out)["trials"]] == ["aaaaa_00000"]
    code, out, _ = cli(capsys, exp, "--json", "--status", "no-reports")
    assert [t["trial_id"] for t in json.loads(out)["trials"]] == ["aaaaa_00001"]


def test_before_the_first_report_both_entry_points_show_the_table(tmp_path, capsys):
    """A plan names the objective, but no trial has reported yet: table and a warning."""
    storage = tmp_path / "storage"
    plan = make_plan(storage, "slow")
    for i in range(2):
        trial_dir(storage / "slow", f"aaaaa_0000{i}", {"batch_size": 32, "dropout": 0.1 * i}, [],
                  done=False)
    write_plan(tmp_path / "build", plan)
    for target in (tmp_path / "build", storage / "slow"):
        code, out, err = cli(capsys, target)
        assert code == 0, err
        assert "2 trials (2 running)" in out
        assert "no summary.json" in err
    code, _, err = cli(capsys, tmp_path / "build")
    assert "no trial has reported the objective metric `val_loss` yet" in err
    code, _, err = cli(capsys, tmp_path / "build", "--sort", "val_acc")
    assert code == 2 and "no trial reported a metric `val_acc`" in err
    code, out, _ = cli(capsys, tmp_path / "build", "--json")
    assert code == 0 and json.loads(out)["best"] is None


SPEC = '''study "tiny"
pipeline { trainer = trainer:Trainer }
space { lr = grid(0.1, 0.01)
        epochs = 2 }
objective maximize val_accuracy
search grid
storage { path = "results", name = "tiny" }
'''


def test_a_spec_is_read_from_the_storage_it_names(tmp_path, capsys, monkeypatch):
    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1, "epochs": 2}, [{"val_accuracy": 0.5}] * 2)
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01, "epochs": 2}, [{"val_accuracy": 0.7}] * 2)
    write_summary(exp, "tiny", [], metric="val_accuracy", mode="max")
    monkeypatch.chdir(tmp_path / "results")  # the spec's storage is relative to the spec
    code, out, err = cli(capsys, tmp_path / "study.hpo", "--no-best")
    assert code == 0, err
    assert "study `tiny`: 2 trials (2 completed)" in out
    assert "ranked by val_accuracy" in out
    assert out.index("aaaaa_00001") < out.index("aaaaa_00000")
    assert main(["report", str(tmp_path / "study.hpo"), "-o", str(tmp_path / "r.html"),
                 "--no-png"]) == 0


def test_results_of_another_plan_under_the_same_name_are_flagged(tmp_path, capsys, monkeypatch):
    from hpoc.results.source import find_plan
    from hpoc.runtime import marker

    spec = tmp_path / "study.hpo"
    spec.write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1, "epochs": 2}, [{"val_accuracy": 0.5}] * 2)
    write_summary(exp, "tiny", [], metric="val_accuracy", mode="max")
    plan, _ = find_plan(spec)
    marker.write(exp, marker.fingerprint(plan, plan["content_hash"]), 0)
    spec.write_text("# a comment changes nothing that runs\n" + SPEC)
    code, _, err = cli(capsys, spec, "--no-best")
    assert code == 0 and "different plan" not in err, err
    spec.write_text(SPEC.replace("grid(0.1, 0.01)", "grid(0.5, 0.05)"))
    code, out, err = cli(capsys, spec, "--no-best")
    assert code == 0 and "aaaaa_00000" in out
    assert "holds a run of a different plan" in err and "the plans differ in `space`" in err, err


def test_a_spec_that_does_not_compile_says_so(tmp_path, capsys):
    (tmp_path / "study.hpo").write_text("study \"x\"\nspace { lr = bogus(1) }\n")
    code, _, err = cli(capsys, tmp_path / "study.hpo")
    assert code == 2 and "the spec does not compile" in err and "JSON" not in err


def _finished_study(storage: Path, name: str, n: int) -> Path:
    exp = storage / name
    for i in range(n):
        trial_dir(exp, f"bbbbb_0000{i}", {"lr": i}, [{"val_loss": 1.0 / (i + 1)}])
    write_summary(exp, name, [])
    return exp


def test_a_storage_path_holding_several_studies_is_refused(tmp_path, capsys):
    storage = tmp_path / "results"
    _finished_study(storage, "flaky", 3)
    _finished_study(storage, "allfail", 2)
    code, out, err = cli(capsys, storage)
    assert code == 2 and out == ""
    assert "holds 2 studies: allfail, flaky; pass one of them" in err
    assert main(["report", str(storage), "-o", str(tmp_path / "r.html")]) == 2


def test_a_study_with_trials_but_no_summary_is_one_of_the_studies_listed(tmp_path, capsys):
    """A run killed before Ray saved its state leaves trial folders only: `hpoc results
    <storage>` showed the other study as the only one."""
    storage = tmp_path / "results"
    _finished_study(storage, "flaky", 3)
    trial_dir(storage / "killed", "ccccc_00000", {"lr": 1}, [{"val_loss": 0.4}], done=False)
    code, out, err = cli(capsys, storage)
    assert code == 2 and out == ""
    assert ("holds 2 studies: flaky, killed (trial folders only: no summary.json or Ray state); "
            "pass one of them") in err
    assert main(["status", str(storage)]) == 2
    assert "killed (trial folders only" in capsys.readouterr().err


def test_a_study_with_trial_folders_only_is_shown_when_it_is_the_one(tmp_path, capsys):
    storage = tmp_path / "results"
    trial_dir(storage / "killed", "ccccc_00000", {"lr": 1}, [{"val_loss": 0.4}], done=False)
    code, out, err = cli(capsys, storage, "--no-best")
    assert code == 0 and "1 trial" in out
    assert "holds one study, killed: showing it" in err


def test_a_storage_path_holding_one_study_reads_it(tmp_path, capsys):
    storage = tmp_path / "results"
    _finished_study(storage, "flaky", 3)
    code, out, err = cli(capsys, storage, "--no-best")
    assert code == 0 and "study `flaky`: 3 trials (3 completed)" in out
    assert "holds one study, flaky: showing it" in err and "no summary.json" not in err


def test_runs_that_fresh_moved_aside_are_not_other_studies(tmp_path, capsys):
    """After one `hpoc run --fresh`, `hpoc results .` in the spec's directory was refused:
    "holds 2 studies: results/flaky, results/flaky.prev-…"."""
    _finished_study(tmp_path / "results", "flaky", 3)
    _finished_study(tmp_path / "results", "flaky.prev-20261129-073710", 2)
    code, out, err = cli(capsys, tmp_path, "--no-best")
    assert code == 0 and "study `flaky`: 3 trials" in out
    assert (f"{tmp_path} holds one study, results/flaky: showing it (not its 1 earlier run(s) "
            "that `--fresh` moved aside)") in err


def test_the_specs_own_directory_reads_the_study_below_it(tmp_path, capsys):
    _finished_study(tmp_path / "results", "flaky", 3)
    (tmp_path / "study.hpo").write_text(SPEC)
    code, out, err = cli(capsys, tmp_path, "--no-best")
    assert code == 0 and "study `flaky`: 3 trials" in out
    assert f"{tmp_path} holds one study, results/flaky: showing it" in err


# ------------------------------------------------------------------ a run in progress

def _resumed_study(tmp_path: Path) -> Path:
    """An interrupted run's summary.json (trials paused), then a resumed run that trains."""
    exp = tmp_path / "results" / "other"
    a = trial_dir(exp, "ccccc_00000", {"lr": 0.001}, [{"val_loss": 0.9}] * 3, done=False)
    b = trial_dir(exp, "ccccc_00001", {"lr": 0.01}, [{"val_loss": 0.8}] * 2, done=False)
    c = trial_dir(exp, "ccccc_00002", {"lr": 0.1}, [{"val_loss": 0.7}] * 2, done=False)
    old = write_summary(exp, "other", [{"trial_id": t, "status": "PAUSED"}
                                       for t in ("ccccc_00000", "ccccc_00001", "ccccc_00002")],
                        interrupted=True)
    for path in (old, c / "result.json"):
        age(path, 600)  # c has not reported since the resume
    run_lock(exp, started=time.time() - 60)
    return exp


def test_json_and_csv_paths_are_absolute_when_given_a_relative_directory(tmp_path, capsys,
                                                                        monkeypatch):
    """The JSON and CSV are read by scripts elsewhere, or later: a path relative to where
    `hpoc results` ran would point nowhere."""
    exp = tmp_path / "results" / "rel"
    trial_dir(exp, "eeeee_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "results/rel", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["root"] == str(exp)
    assert doc["shards"][0]["path"] == str(exp)
    assert Path(doc["trials"][0]["path"]).is_absolute()
    code, out, _ = cli(capsys, "results/rel", "--csv")
    assert Path(next(csv.DictReader(io.StringIO(out)))["path"]).is_absolute()


def _two_objective_study(tmp_path: Path) -> Path:
    """min val_loss, max val_acc: a and b trade one for the other, c is beaten by a on
    both, d failed (its values would beat everyone's)."""
    exp = tmp_path / "results" / "mo"
    trial_dir(exp, "fffff_00000", {"lr": 0.1}, [{"val_loss": 0.5, "val_acc": 0.8}])
    trial_dir(exp, "fffff_00001", {"lr": 0.2}, [{"val_loss": 0.3, "val_acc": 0.7}])
    trial_dir(exp, "fffff_00002", {"lr": 0.3}, [{"val_loss": 0.6, "val_acc": 0.75}])
    trial_dir(exp, "fffff_00003", {"lr": 0.4}, [{"val_loss": 0.1, "val_acc": 0.9}],
              error="RuntimeError: boom")
    path = write_summary(exp, "mo", [])
    doc = json.loads(path.read_text())
    doc["metrics"] = [{"name": "val_loss", "mode": "min"}, {"name": "val_acc", "mode": "max"}]
    path.write_text(json.dumps(doc))
    return exp


def test_several_objectives_show_the_pareto_front_not_only_the_first_metrics_best(
        tmp_path, capsys):
    exp = _two_objective_study(tmp_path)
    code, out, _ = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["best"]["trial_id"] == "fffff_00001"
    assert doc["pareto_front"] == ["fffff_00000", "fffff_00001"]
    code, out, _ = cli(capsys, exp, "--no-best")
    front = out[out.index("Pareto front of val_loss (min), val_acc (max): 2 trial(s)"):]
    assert [ln.split()[0] for ln in front.splitlines()[1:]] == ["fffff_00001", "fffff_00000"]
    assert main(["report", str(exp), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert 'id="plot-pareto-front"' in html and "<h2>Pareto front</h2>" in html


def test_one_objective_has_no_pareto_front(tmp_path, capsys):
    exp = tmp_path / "results" / "one"
    trial_dir(exp, "fffff_00000", {"lr": 0.1}, [{"val_loss": 0.5, "val_acc": 0.8}])
    trial_dir(exp, "fffff_00001", {"lr": 0.2}, [{"val_loss": 0.3, "val_acc": 0.7}])
    code, out, _ = cli(capsys, exp, "--json")
    assert json.loads(out)["pareto_front"] == []
    code, out, _ = cli(capsys, exp)
    assert "Pareto" not in out


def test_a_finished_study_whose_trials_all_failed_does_not_say_yet(tmp_path, capsys):
    """"Not reported yet" promises more to come; a study that ended has none."""
    exp = tmp_path / "results" / "broken"
    for i in range(2):
        trial_dir(exp, f"eeeee_0000{i}", {"lr": 0.1 * (i + 1)}, [], error="RuntimeError: boom")
    write_summary(exp, "broken", [{"trial_id": f"eeeee_0000{i}", "status": "ERROR"}
                                  for i in range(2)])
    code, out, err = cli(capsys, exp)
    assert code == 0 and "errors:" in out
    assert "every trial failed (2 of 2): `errors:` says why; rows" in err
    assert " yet" not in err
    assert main(["report", str(exp), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "No plot: no trial reported a metric." in html and " yet" not in html


def test_an_interrupted_runs_started_trials_are_paused_not_pending(tmp_path, capsys):
    """Ctrl-C: Ray hands its running trials back as PENDING, so the summary says so. One
    that started (a report, or its attempt's start marker) waits for the next run from
    where it got to: paused, unlike a trial that never began."""
    from hpoc.files import STARTED

    exp = tmp_path / "results" / "cut"
    trial_dir(exp, "ddddd_00000", {"lr": 0.001}, [{"val_loss": 0.9}], done=False)
    began = trial_dir(exp, "ddddd_00001", {"lr": 0.01}, [], done=False)
    (began / STARTED).touch()
    write_summary(exp, "cut", [{"trial_id": t, "status": "PENDING"}
                               for t in ("ddddd_00000", "ddddd_00001", "ddddd_00002")],
                  interrupted=True)
    code, out, _ = cli(capsys, exp, "--json")
    assert code == 0
    assert {t["trial_id"]: t["status"] for t in json.loads(out)["trials"]} == {
        "ddddd_00000": "PAUSED", "ddddd_00001": "PAUSED", "ddddd_00002": "PENDING"}
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "(2 paused, 1 pending)" in out


def test_a_live_run_makes_an_older_summary_stale(tmp_path, capsys):
    exp = _resumed_study(tmp_path)
    code, out, err = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert code == 0
    assert {t["trial_id"]: t["status"] for t in doc["trials"]} == {
        "ccccc_00000": "RUNNING", "ccccc_00001": "RUNNING", "ccccc_00002": "PENDING"}
    assert doc["shards"][0]["run"]["pid"] == 1  # the run_lock fixture's holder
    assert doc["shards"][0]["complete"] is False
    assert "a run is in progress (pid" in err
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "(2 running, 1 pending)" in out and "running now: pid" in out


def test_a_dead_run_lock_is_not_a_live_run(tmp_path, capsys):
    exp = _resumed_study(tmp_path)
    run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)  # no such process
    code, out, err = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert doc["shards"][0]["run"] is None
    assert "summary.json is from an earlier run" in err
    # Nothing trains: the trials Ray last saw running wait for the next run.
    assert {t["status"] for t in doc["trials"]} == {"PAUSED"}


def test_a_killed_runs_trials_are_paused_not_running(tmp_path, capsys):
    """scancel / a hard kill: no summary.json, the driver's lock stays behind, Ray's last
    state says RUNNING. Nothing runs, so results must not say so."""
    exp = tmp_path / "results" / "killed"
    trial_dir(exp, "ddddd_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "ddddd_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False)
    lock = run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "slurm_job": "679",
                                "slurm_task": "678_1"}))  # an array task: its own job id
    code, out, err = cli(capsys, exp, "--no-best")
    assert code == 0 and "(1 completed, 1 paused)" in out and "running" not in out
    assert "(SLURM job 678_1" in err and "running the same plan again resumes them" in err


def test_a_killed_run_of_a_study_with_resume_off_is_not_said_to_resume(tmp_path, capsys):
    """`resume { enabled = false }` (a job's time limit, scancel): running the plan again
    refuses the unfinished run, so results must not promise it resumes."""
    plan = make_plan(tmp_path / "storage", "once")
    plan["resume"]["enabled"] = False
    write_plan(tmp_path / "build", plan)
    exp = tmp_path / "storage" / "once"
    trial_dir(exp, "eeeee_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "eeeee_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False)
    run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)
    for target in (tmp_path / "build", exp):  # the plan's word, or the one its run recorded
        if target == exp:
            (exp / ".hpoc-plan.json").write_text(json.dumps({"plan_hash": "sha256:abc", "shard": 0,
                                                             "body": plan}))
        code, out, err = cli(capsys, target, "--no-best")
        assert code == 0 and "1 paused)" in out, out
        assert "resumes them" not in err and "resume is off in the study" in err and "--fresh" in err, err


def test_a_run_stopped_at_once_leaves_its_trials_paused_not_running(tmp_path, capsys):
    """A second Ctrl-C: the driver removes its lock and exits without a summary.json; Ray's
    last state said RUNNING, and results and status said so of trials nothing trained."""
    exp = tmp_path / "results" / "twice"
    trial_dir(exp, "fffff_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "fffff_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False)
    code, out, err = cli(capsys, exp, "--no-best")
    assert "(1 completed, 1 running)" in out  # a bare Ray Tune directory: nothing tells
    (exp / ".hpoc-plan.json").write_text(json.dumps({"plan_hash": "sha256:abc", "shard": 0}))
    code, out, err = cli(capsys, exp, "--no-best")
    assert code == 0 and "(1 completed, 1 paused)" in out and "running" not in out
    assert "the last run stopped at once" in err and "running the same plan again resumes them" in err


def test_a_summary_of_another_plan_than_the_last_run_started_is_stale_without_a_lock(tmp_path, capsys):
    """An extension (num_samples raised) killed with -9, whose lock went since: the first
    run's summary (not interrupted) is not the last run's, whose trials Ray left RUNNING;
    results said `running` and status `finished` of trials nothing trains."""
    exp = tmp_path / "results" / "grown"
    trial_dir(exp, "ggggg_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "ggggg_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False)
    write_summary(exp, "grown", [{"trial_id": "ggggg_00000", "status": "TERMINATED"}],
                  plan_hash="sha256:first")
    (exp / ".hpoc-plan.json").write_text(json.dumps({"plan_hash": "sha256:grown", "shard": 0,
                                                     "extended": True}))
    code, out, err = cli(capsys, exp, "--no-best")
    assert code == 0 and "(1 completed, 1 paused)" in out and "running" not in out
    assert "summary.json is from an earlier run" in err and "resumes them" in err
    (exp / ".hpoc-plan.json").write_text(json.dumps({"plan_hash": "sha256:first", "shard": 0,
                                                     "extended": True}))
    code, out, err = cli(capsys, exp, "--no-best")  # the marker's own run's summary: current
    assert code == 0 and "earlier run" not in err


def test_an_earlier_runs_summary_is_stale_even_when_ray_copied_it_since(tmp_path, capsys):
    """Seen on SLURM: walltime stop (summary: interrupted, trials paused), requeued run
    finishes trials, scancel. Ray had copied its staging folder, the old summary.json
    included, over the storage: its mtime was newer than the lock, so results trusted it
    and showed trials that had finished as `paused`."""
    exp = tmp_path / "results" / "requeued"
    trial_dir(exp, "eeeee_00000", {"lr": 0.01}, [{"val_loss": 0.4}] * 3)  # done since
    old = write_summary(exp, "requeued", [{"trial_id": "eeeee_00000", "status": "PAUSED"}],
                        interrupted=True)
    lock = run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)  # killed
    old.write_text(json.dumps({**json.loads(old.read_text()),
                               "run_started": time.time() - 600}))  # fresh mtime
    code, out, err = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert code == 0 and "summary.json is from an earlier run" in err
    assert [t["status"] for t in doc["trials"]] == ["TERMINATED"]
    # The run that holds the lock wrote it: it is current, whatever its mtime.
    started = json.loads(lock.read_text())["started"]
    old.write_text(json.dumps({**json.loads(old.read_text()), "run_started": started}))
    age(old, 600)
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert [t["status"] for t in doc["trials"]] == ["PAUSED"]


def test_a_run_lock_on_another_host_counts_as_live(tmp_path, capsys):
    exp = _resumed_study(tmp_path)
    run_lock(exp, pid=1, host="node-that-is-not-here", started=time.time() - 60)
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "running now: pid 1 on node-that-is-not-here" in out


def test_a_plan_marker_without_pid_is_no_lock(tmp_path, capsys):
    exp = _resumed_study(tmp_path)
    (exp / ".hpoc-run.json").write_text(json.dumps({"plan_hash": "sha256:abc", "shard": 0}))
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "(3 paused)" in out and "running now" not in out


def test_a_live_run_trusts_ray_state_saved_during_it(tmp_path, capsys):
    """Ray's state written after the run started knows best (a trial the cap holds back
    is PAUSED); only an older state is second-guessed."""
    exp = _resumed_study(tmp_path)
    trial = {"trial_id": "ccccc_00002", "status": "PAUSED", "config": {"lr": 0.1}}
    (exp / "experiment_state-2024.json").write_text(
        json.dumps({"trial_data": [[json.dumps(trial), json.dumps({})]]}))
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert {t["trial_id"]: t["status"] for t in doc["trials"]}["ccccc_00002"] == "PAUSED"
    age(exp / "experiment_state-2024.json", 600)
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert {t["trial_id"]: t["status"] for t in doc["trials"]}["ccccc_00002"] == "PENDING"


@pytest.mark.parametrize("saved_as", ["PENDING", "PAUSED"])
def test_a_trial_started_since_ray_last_saved_its_state_is_running(tmp_path, capsys, saved_as):
    """Ray saves its state every few seconds: a trial it saved PENDING (or PAUSED by PBT)
    that has started since ran on the live progress line, and `hpoc status` called it pending."""
    exp = _resumed_study(tmp_path)
    trial = {"trial_id": "ccccc_00002", "status": saved_as, "config": {"lr": 0.1}}
    state = exp / "experiment_state-2024.json"
    state.write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps({})]]}))
    age(state, 30)  # saved during the run (started 60 s ago)
    c = next(exp.glob("*ccccc_00002*"))
    (c / ".hpoc-started").touch()  # hpoc's driver marks each start (files.STARTED)
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert {t["trial_id"]: t["status"] for t in doc["trials"]}["ccccc_00002"] == "RUNNING"
    age(c / ".hpoc-started", 45)  # the start Ray's state already knew of
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert {t["trial_id"]: t["status"] for t in doc["trials"]}["ccccc_00002"] == saved_as


def test_a_trial_started_before_ray_wrote_its_files_is_running(tmp_path, capsys):
    """The first seconds of a trial: the driver marked its start in the directory Ray made,
    which holds no params.json or result.json yet; the saved state still says PENDING."""
    exp = _resumed_study(tmp_path)
    trial = {"trial_id": "ccccc_00003", "status": "PENDING", "config": {"lr": 1.0},
             "relative_logdir": "trainable_ccccc_00003_3"}
    state = exp / "experiment_state-2024.json"
    state.write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps({})]]}))
    age(state, 30)
    (exp / "trainable_ccccc_00003_3").mkdir()
    (exp / "trainable_ccccc_00003_3" / ".hpoc-started").touch()
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert {t["trial_id"]: t["status"] for t in doc["trials"]}["ccccc_00003"] == "RUNNING"


def test_a_trial_being_retried_after_an_error_is_not_errored(tmp_path, capsys):
    """`failure.max_retries`: Tune retries a failed trial, and its first attempt's error.txt
    stays. While the retry ran (the live line: running), status and results said errored."""
    exp = tmp_path / "results" / "flaky"
    c = trial_dir(exp, "ddddd_00000", {"lr": 0.1}, [], done=False, error="RuntimeError: first attempt")
    run_lock(exp, started=time.time() - 60)
    age(c / "error.txt", 20)
    (c / ".hpoc-started").touch()  # the retry's start (files.STARTED)
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert [(t["status"], t["error"]) for t in doc["trials"]] == [("RUNNING", "RuntimeError: first attempt")]
    assert main(["status", str(exp)]) == 0
    assert "0      running  0     1        0        0" in capsys.readouterr().out
    (c / "error.txt").touch()  # the retry failed too
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert [t["status"] for t in doc["trials"]] == ["ERROR"]


def test_dict_valued_choice_stays_whole_and_the_best_config_pastes_back(tmp_path, capsys):
    """A `choice` of maps is one parameter: its column, `params` and CSV cell hold the map
    (not `-` beside keys no parameter has), and the `key = value` block is .hpo that checks."""
    from hpoc.compiler import compile_source

    storage = tmp_path / "storage"
    plan = make_plan(storage, "maps")
    plan["space"]["params"].append({"name": "optimizer.betas", "domain": "choice", "condition": None,
                                    "args": {"categories": [{"b1": 0.9, "b2": 0.999}, None]}})
    config = {"batch_size": 32, "dropout": 0.25, "epochs": 6,
              "optimizer": {"name": "adam", "lr": 1e-05, "betas": {"b1": 0.9, "b2": 0.999}}}
    trial_dir(storage / "maps", "aaaaa_00000", config, [{"val_loss": 0.5}])
    write_plan(tmp_path / "build", plan)
    code, out, err = cli(capsys, tmp_path / "build")
    assert code == 0, err
    header, _, row = out.splitlines()[3:6]
    assert (header.split()[-1], row.split()[-1]) == ("optimizer.betas", '{"b1":0.9,"b2":0.999}')
    kv = out[out.index("config (key = value):"):].splitlines()[1:]
    assert "optimizer.betas = { b1 = 0.9, b2 = 0.999 }" in [line.strip() for line in kv]
    spec = 'study "s"\npipeline { trainer = t:T }\nspace {\n' + "\n".join(kv) + "\n}\n"
    assert compile_source(spec, "s.hpo", str(tmp_path))["space"]["constants"] == {
        "batch_size": 32, "dropout": 0.25, "epochs": 6, "optimizer.name": "adam",
        "optimizer.lr": 1e-05, "optimizer.betas": {"b1": 0.9, "b2": 0.999}}
    code, out, _ = cli(capsys, tmp_path / "build", "--json")
    assert json.loads(out)["trials"][0]["params"]["optimizer.betas"] == {"b1": 0.9, "b2": 0.999}
    code, out, _ = cli(capsys, tmp_path / "build", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert json.loads(rows[0]["config/optimizer.betas"]) == {"b1": 0.9, "b2": 0.999}



def test_a_config_value_no_spec_can_write_does_not_break_the_best_trial(tmp_path, capsys):
    """A NaN in the best config (Ray's JSON keeps it) made `hpoc results` fail with
    "nan cannot be written in a .hpo file"; its `key = value` line falls back to JSON."""
    storage = tmp_path / "storage"
    plan = make_plan(storage, "nan")
    config = {"batch_size": 32, "dropout": float("nan"), "epochs": 6}
    trial_dir(storage / "nan", "aaaaa_00000", config, [{"val_loss": 0.5}])
    write_plan(tmp_path / "build", plan)
    code, out, err = cli(capsys, tmp_path / "build")
    assert code == 0, err
    kv = [line.strip() for line in out[out.index("config (key = value):"):].splitlines()[1:]]
    assert "dropout = NaN  # not expressible in a .hpo file" in kv and "epochs = 6" in kv


def test_a_tie_goes_to_the_earlier_trial_as_the_run_said(tmp_path):
    """Searchers give trials random hex ids: ranked by id, `hpoc results` named another best
    trial than the run's own summary (the first trial to reach the value) on a tie."""
    exp = tmp_path / "exp"
    for index, trial_id in enumerate(["ffff0000", "0000aaaa", "8888bbbb"]):
        path = exp / f"trial_{index:05d}_{trial_id}"
        path.mkdir(parents=True)
        (path / "params.json").write_text(json.dumps({"lr": 0.1 * (index + 1)}))
        row = {"training_iteration": 1, "trial_id": trial_id, "done": True,
               "val_accuracy": 0.5 if index == 2 else 0.9}
        (path / "result.json").write_text(json.dumps(row) + "\n")
    write_summary(exp, "s", [], metric="val_accuracy", mode="max")
    ranking = rank(load(exp))
    assert ranking.best.trial_id == "ffff0000"
    assert [t.trial_id for t in ranking.trials] == ["ffff0000", "0000aaaa", "8888bbbb"]
    # without an objective, "rows are in trial order": the order they were made
    assert [t.trial_id for t in load(exp).trials] == ["ffff0000", "0000aaaa", "8888bbbb"]


def test_the_table_shows_nan_for_a_diverged_trial_and_a_dash_for_a_missing_value(tmp_path, capsys):
    """Both were "-": a diverged trial looked like one that never reported the metric."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": float("nan")}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val_loss": 0.3}, {"val_loss": 0.2}])
    trial_dir(exp, "aaaaa_00002", {"lr": float("inf")}, [{"val_loss": 0.1}, {"val_loss": float("-inf")}])
    trial_dir(exp, "aaaaa_00003", {"lr": 0.3}, [{"val_acc": 0.8}, {"val_acc": 0.9}])
    write_summary(exp, "s", [])
    code, out, _ = cli(capsys, exp, "--no-best")
    cells = {line.split()[1]: line.split()[-2:] for line in out.splitlines() if "aaaaa_" in line}
    assert code == 0
    assert cells == {"aaaaa_00001": ["0.2", "0.2"], "aaaaa_00000": ["nan", "0.1"],
                     "aaaaa_00002": ["-inf", "inf"], "aaaaa_00003": ["-", "0.3"]}, out


def test_an_objective_every_trial_reported_as_nan_keeps_its_column(tmp_path, capsys):
    """Every trial diverged: the table, --csv and --json dropped the objective's column
    (where one NaN among finite values shows `nan`), the warning listed the reported metrics
    without it, and `--sort` of it said no trial reported it."""
    exp = tmp_path / "exp"
    for i in range(2):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1 * (i + 1)},
                  [{"val_loss": 0.5, "val_accuracy": float("nan")}])
    write_summary(exp, "s", [], metric="val_accuracy", mode="max")
    code, out, err = cli(capsys, exp, "--no-best")
    header = next(line for line in out.splitlines() if line.startswith("#"))
    assert code == 0 and "val_accuracy" in header.split(), out
    assert all(line.split()[4] == "nan" for line in out.splitlines() if "aaaaa_" in line), out
    assert "no trial reported a finite `val_accuracy`: 2 trial(s) reported NaN or inf" in err
    assert "reported metrics: val_loss)" not in err
    rows = list(csv.DictReader(io.StringIO(cli(capsys, exp, "--csv")[1])))
    assert [r["val_accuracy"] for r in rows] == ["nan", "nan"]
    doc = json.loads(cli(capsys, exp, "--json")[1])
    assert [t["metrics"]["val_accuracy"] for t in doc["trials"]] == [None, None]
    code, out, err = cli(capsys, exp, "--sort", "val_accuracy", "--no-best")
    assert code == 0 and "val_accuracy" in out, err


def test_an_experiment_directory_judges_stopped_early_by_the_plan_its_run_recorded(tmp_path, capsys):
    """Read without the spec, an ASHA study whose finished trials all stopped at a rung said
    `completed 2/2`: the full length came from the trials, though the run's plan marker
    records `epochs = 6`."""
    exp = tmp_path / "exp"
    for i in range(2):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1 * (i + 1)},
                  [{"val_loss": 0.5}, {"val_loss": 0.4 + i / 10}])
    write_summary(exp, "s", [])
    code, out, _ = cli(capsys, exp, "--no-best")
    assert "(2 completed)" in out  # nothing says how long a trial runs
    body = make_plan(tmp_path / "storage", "s")
    (exp / ".hpoc-plan.json").write_text(json.dumps({"plan_hash": "sha256:abc", "shard": 0,
                                                     "body": body}))
    code, out, _ = cli(capsys, exp, "--no-best")
    assert code == 0 and "(2 stopped early)" in out and " 2/6 " in out, out


def test_the_table_lines_up_wide_values_and_shows_control_characters_escaped(tmp_path, capsys):
    """A CJK value takes two columns, and a value or error with an escape sequence must not
    recolour or clear the terminal it is printed to."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1, "opt": "数字", "z": 1}, [{"val_loss": 0.5}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2, "opt": "\x1b[31mred", "z": 2}, [{"val_loss": 0.3}],
              error="RuntimeError: \x1b[2Jboom")
    write_summary(exp, "s", [])
    code, out, _ = cli(capsys, exp, "--no-best")
    assert code == 0 and "\x1b" not in out, out
    assert "\\x1b[31mred" in out
    from hpoc.errors import cells

    rows = [line for line in out.splitlines() if line[:1].isdigit() or line.startswith("#")]
    ends = {cells(line[: line.rindex("z")] if line.startswith("#") else line[:-1]) for line in rows}
    assert len(ends) == 1, out  # the last column starts at the same place on every line


def test_a_run_that_starts_while_results_are_read_is_seen_with_its_lock(tmp_path, capsys, monkeypatch):
    """The lock was read once, before the summary: a run that started in between (Ray then
    copies the old summary.json back over the storage) left the earlier run's summary read
    as the current one - trials paused, no run in progress."""
    from hpoc.results import live

    exp = _resumed_study(tmp_path)
    real, calls = live.read_lock, []

    def read_lock(path):  # the first look comes just before the run takes its lock
        calls.append(path)
        return None if len(calls) == 1 else real(path)

    monkeypatch.setattr(live, "read_lock", read_lock)
    code, out, err = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["shards"][0]["run"] is not None and doc["shards"][0]["complete"] is False
    assert {t["status"] for t in doc["trials"]} == {"RUNNING", "PENDING"}


def test_a_summary_caught_half_written_is_read_again(tmp_path, capsys, monkeypatch):
    """A summary.json read while it was being copied was "unreadable, ignored" and the
    finished study's statuses came from Ray's files alone."""
    import importlib

    load = importlib.import_module("hpoc.results.load")  # the package's `load` is a function
    exp = tmp_path / "results" / "done"
    trial_dir(exp, "eeeee_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "eeeee_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False)
    write_summary(exp, "done", [{"trial_id": "eeeee_00000", "status": "TERMINATED"},
                                {"trial_id": "eeeee_00001", "status": "ERROR", "error": "OSError: disk"}])
    real, reads = load._read_summary, []

    def half_then_whole(path, warnings):
        reads.append(path)
        if len(reads) == 1:
            warnings.append(f"{path / 'summary.json'}: unreadable, ignored (Expecting value)")
            return None
        return real(path, warnings)

    monkeypatch.setattr(load, "_read_summary", half_then_whole)
    code, out, err = cli(capsys, exp, "--json")
    doc = json.loads(out)
    assert "unreadable" not in err
    assert {t["trial_id"]: t["status"] for t in doc["trials"]} == {
        "eeeee_00000": "TERMINATED", "eeeee_00001": "ERROR"}


def test_an_error_of_hpocs_own_trainer_error_is_its_sentence(tmp_path, capsys):
    """`hpoc results` showed `hpoc.runtime.trainer.TrainerError: failed the same way twice:
    ...` where the run's own line says the sentence alone."""
    exp = tmp_path / "results" / "twice"
    trial_dir(exp, "ggggg_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    trial_dir(exp, "ggggg_00001", {"lr": 0.1}, [{"val_loss": 0.7}], done=False,
              error='  File "/s/train.py", line 18, in train_step\nhpoc.runtime.trainer.TrainerError: '
                    "failed the same way twice: ValueError: bad batch at /s/train.py:18; not retried again")
    code, out, err = cli(capsys, exp)
    assert code == 0, err
    assert "  ggggg_00001: failed the same way twice: ValueError: bad batch at /s/train.py:18; " \
           "not retried again" in out, out


def test_csv_and_json_carry_the_same_config_constants_included(tmp_path, capsys):
    """`epochs` is a constant of the study: --json's params had it, the CSV's columns did not."""
    storage = tmp_path / "storage"
    write_plan(tmp_path / "build", make_plan(storage, "consts"))
    for i, lr in enumerate((0.01, 0.001)):
        trial_dir(storage / "consts", f"aaaaa_0000{i}",
                  {"batch_size": 32, "dropout": 0.1, "epochs": 6,
                   "optimizer": {"name": "adam", "lr": lr}}, [{"val_loss": 0.5 - i / 10}])
    doc = json.loads(cli(capsys, tmp_path / "build", "--json")[1])
    rows = list(csv.DictReader(io.StringIO(cli(capsys, tmp_path / "build", "--csv")[1])))
    for record, row in zip(doc["trials"], rows):
        assert {k[len("config/"):]: v for k, v in row.items() if k.startswith("config/")} == \
            {k: str(v) for k, v in record["params"].items()}
    assert rows[0]["config/epochs"] == "6"


@pytest.mark.parametrize("statuses, losses, said", [
    (("ERROR", "ERROR"), ([0.5], []), "no best trial: every trial failed (2 of 2): the errors say why"),
    (("TERMINATED", "ERROR"), ([float("nan")], [0.5]),
     "no best trial: no trial reported a finite `val_loss`: 1 trial(s) reported NaN or inf "
     "(training diverged? try a smaller learning rate)"),
    (("RUNNING", "PENDING"), ([], []), "no best trial: no trial has reported the objective metric `val_loss` yet"),
    # as the run's own report says it (hpoc/unranked.py): not "yet", the trainer's doing
    (("TERMINATED", "ERROR"), ([], [0.5]),
     "no best trial: no trial reported the objective metric `val_loss`: 1 trial(s) ended without reporting "
     "once (does the trainer's `train()` call `self.report(metrics, epoch=epoch)` every epoch?)"),
])
def test_no_best_trial_says_why(statuses, losses, said):
    """It said "no finished trial reported `val_loss`" whether every trial had failed, the
    only one that finished diverged, or none had reported yet."""
    trials = [Trial(f"t{i}", s, {"lr": 0.1},
                    [{"training_iteration": j + 1, "val_loss": v} for j, v in enumerate(vs)])
              for i, (s, vs) in enumerate(zip(statuses, losses))]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])
    from hpoc.results.table import render_best

    assert render_best(results, rank(results)) == said


def test_a_build_dir_of_another_plan_version_is_read_from_the_storage_it_names(tmp_path, capsys):
    """A study compiled by an older hpoc: its trials are where its plan said, but `hpoc results
    BUILD` stopped at "plan_version 0 is not supported" and showed nothing."""
    storage = tmp_path / "storage"
    plan = {**make_plan(storage, "old"), "plan_version": 0}
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "plan.json").write_text(json.dumps(plan))
    trial_dir(storage / "old", "ddddd_00000", {"lr": 0.01}, [{"val_loss": 0.5}])
    write_summary(storage / "old", "old", [{"trial_id": "ddddd_00000", "status": "TERMINATED"}])
    code, out, err = cli(capsys, tmp_path / "build")
    assert code == 0, err
    assert "ddddd_00000" in out
    assert (f"plan_version 0 is not supported by this hpoc (expects 1): its trials are read "
            f"without it, from {storage / 'old'}") in err


def test_a_summary_that_is_not_an_object_is_said_unreadable_not_missing(tmp_path, capsys):
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    (exp / "summary.json").write_text("[1, 2]")
    code, _, err = cli(capsys, exp)
    assert code == 0
    assert f"{exp / 'summary.json'}: unreadable, ignored (not a JSON object)" in err
    assert "no summary.json" not in err and "no readable summary.json: the study" in err


def test_a_trials_own_directory_points_at_its_study(tmp_path, capsys):
    """A path pasted from the best trial's `directory:` line said "no trials found" in it."""
    exp = tmp_path / "exp"
    trial = trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    code, _, err = cli(capsys, trial)
    assert code == 2
    assert f"{trial} is one trial's directory; its study is the one above: {exp}" in err


def test_a_killed_runs_directory_is_ranked_by_the_objective_its_marker_records(tmp_path, capsys):
    """A driver killed before its summary.json (scancel, kill -9) leaves the plan marker: read
    as an experiment directory, the study is still ranked by its objective, not trial order."""
    from hpoc.compiler import compile_source
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = compile_source('study "d"\npipeline { trainer = t:T }\n'
                          "space { lr = loguniform(1e-3, 1e-1), epochs = 2 }\n"
                          "objective maximize val_accuracy\n", "d.hpo", str(tmp_path))
    exp = tmp_path / "results" / "d"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.01}, [{"val_accuracy": 0.5}] * 2)
    trial_dir(exp, "aaaaa_00001", {"lr": 0.02}, [{"val_accuracy": 0.9}] * 2)
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    results = load(exp)
    assert [(m.name, m.mode) for m in results.metrics] == [("val_accuracy", "max")]
    code, out, err = cli(capsys, exp)
    assert code == 0 and "names no objective" not in err
    assert "best trial: aaaaa_00001" in out and out.startswith("study `d`")


def test_a_report_whose_iteration_is_not_a_number_counts_by_its_position(tmp_path, capsys):
    exp = tmp_path / "exp"
    path = trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    with open(path / "result.json", "a", encoding="utf-8") as fh:
        fh.write('{"training_iteration": "x", "val_loss": 0.4, "trial_id": "aaaaa_00000"}\n')
    write_summary(exp, "s", [])
    for fmt in ((), ("--json",), ("--csv",)):
        code, out, err = cli(capsys, exp, *fmt)
        assert code == 0 and "Traceback" not in err, (fmt, err)
    assert load(exp).trials[0].epochs == 2


def test_a_one_trial_directory_shows_only_the_searched_parameters_its_marker_records(tmp_path, capsys):
    """Without a plan, hyperparameters are the config keys that vary: one trial varies none,
    so its constants were columns too (`epochs` beside the epochs column)."""
    from hpoc.compiler import compile_source
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = compile_source('study "d"\npipeline { trainer = t:T }\n'
                          'space { lr = loguniform(1e-3, 1e-1), mode = "ok", epochs = 3 }\n',
                          "d.hpo", str(tmp_path))
    exp = tmp_path / "results" / "d.prev-20260101-000000"  # a run `--fresh` moved aside
    trial_dir(exp, "aaaaa_00000", {"lr": 0.01}, [{"val_loss": 0.5}] * 3)
    write_summary(exp, "d", [])
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    assert param_names(load(exp)) == ["lr"]
    code, out, _ = cli(capsys, exp, "--no-best")
    header = out.splitlines()[3].split()
    assert code == 0 and header.count("epochs") == 1 and "mode" not in header, header


def test_a_trials_own_directory_given_as_dot_names_its_study(tmp_path, capsys, monkeypatch):
    """`hpoc results .` inside a trial's directory said its study was "the one above: ."."""
    exp = tmp_path / "exp"
    trial = trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    monkeypatch.chdir(trial)
    code, _, err = cli(capsys, ".")
    assert code == 2 and f"its study is the one above: {exp}" in err, err


def test_a_status_filter_that_keeps_no_trial_says_which_statuses_there_are(tmp_path, capsys):
    """`--status running` of a finished study printed a header over no rows, and nothing else."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val_loss": 0.4}], error="RuntimeError: x")
    write_summary(exp, "s", [])
    code, out, err = cli(capsys, exp, "--status", "running", "--no-best")
    assert code == 0
    assert "no trial is running" in err and "completed: 1, error: 1" in err, err
    assert "#  trial" not in out


def test_a_moved_study_is_its_own_and_another_checkout_is_told_where_it_ran(tmp_path, capsys):
    """A project moved from the cluster's scratch: its run's plan differs from the spec's only
    in its paths. It is the same study (it resumes there: docs/resume.md), so its results come
    without a warning. Another checkout over the same storage is not: the warning said no more
    than `source`, and now says where the run ran."""
    from hpoc.compiler import compile_source
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    def study(storage: str) -> str:
        return ('study "d"\npipeline { trainer = t:T }\nspace { lr = loguniform(1e-3, 1e-1), epochs = 1 }\n'
                f'storage {{ path = "{storage}", name = "d" }}\n')

    old, new = tmp_path / "scratch" / "proj", tmp_path / "home" / "proj"
    for storage, exp in (("results", new / "results" / "d"), (str(tmp_path / "shared"), tmp_path / "shared" / "d")):
        ran = compile_source(study(storage), "d.hpo", str(old))
        trial_dir(exp, "aaaaa_00000", {"lr": 0.01}, [{"val_loss": 0.5}])
        write_summary(exp, "d", [])
        marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
        new.mkdir(parents=True, exist_ok=True)
        (new / "d.hpo").write_text(study(storage))
        code, out, err = cli(capsys, new / "d.hpo")
        assert code == 0 and "aaaaa_00000" in out, err
        if storage == "results":  # moved with its results: the same study
            assert "plans differ" not in err and "moved or copied" not in err, err
        else:  # the same results under another checkout
            assert f"it ran in {old}: moved or copied since?" in err, err


def test_a_build_directory_copied_elsewhere_says_where_it_was_compiled(tmp_path, capsys):
    """A build directory copied off the cluster names storage under a directory this machine
    lacks: "no results yet ... run the study first" alone sent its reader to run it again."""
    plan = make_plan(tmp_path / "cluster" / "results", "s", workdir=tmp_path / "cluster")
    build = tmp_path / "laptop" / "build"
    write_plan(build, plan)
    code, _, err = cli(capsys, build)
    assert code == 2 and f"note: the plan was compiled in {tmp_path / 'cluster'}, which is not here" in err


def test_a_metric_named_with_a_slash_is_a_metric(tmp_path, capsys):
    """`objective minimize "val/loss"` (TensorBoard's and Lightning's naming): the study ran,
    then the driver said no trial reported it (exit 1) and results ranked nothing by it;
    only Ray's flattened keys (`config/lr`) are not metrics."""
    from hpoc.runtime.summary import best_entry, user_metrics

    report = {"training_iteration": 1, "val/loss": 0.5, "config/lr": 0.1, "train_loss": 0.4}
    assert user_metrics(report) == {"val/loss": 0.5, "train_loss": 0.4}
    entries = [{"trial_id": "a", "config": {}, "metrics": user_metrics(report), "epochs": 1,
                "status": "TERMINATED"}]
    assert best_entry(entries, "val/loss", "min")["trial_id"] == "a"
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val/loss": 0.5, "config/lr": 0.1}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.2}, [{"val/loss": 0.3, "config/lr": 0.2}])
    write_summary(exp, "s", [], metric="val/loss")
    assert load(exp).metric_names() == ["val/loss"]
    code, out, err = cli(capsys, exp, "--csv")
    assert code == 0 and "no trial reported" not in err, err
    assert out.splitlines()[0].split(",").count("val/loss") == 1 and "config/lr,error" in out


@pytest.mark.parametrize("recorded", [
    {"plan_hash": "x", "space": "x"}, {"plan_hash": "x", "space": {"params": "x"}},
    {"plan_hash": "x", "body": [1]}, {"plan_hash": "x", "body": {"objective": 5, "study": 3}},
    {"plan_hash": "x", "body": {"objective": {"metrics": [5, {"name": 7}]}, "study": {"name": 3}}},
    {"plan_hash": "x", "space": {"params": [{"name": "lr"}, {"name": "x", "args": 3}]}}])
def test_a_plan_marker_of_another_shape_is_read_as_none(tmp_path, capsys, recorded):
    """The marker is read for the objective, the study's name and its space: one edited by
    hand or cut short must not make a traceback of the results."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    (exp / ".hpoc-plan.json").write_text(json.dumps(recorded))
    code, out, err = cli(capsys, exp)
    assert code == 0 and "Traceback" not in err and out.startswith("study `exp`"), err
    assert main(["report", str(exp), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0


def test_an_unreadable_directory_in_the_study_is_skipped(tmp_path, capsys, monkeypatch):
    """A colleague's results on a shared filesystem, one directory in them not readable by
    the group: results, status and report died with a PermissionError traceback."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    write_summary(exp, "s", [])
    (exp / "private").mkdir()
    real = Path.iterdir

    def iterdir(self):
        if self.name == "private":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    code, out, err = cli(capsys, exp, "--no-best")
    assert code == 0 and "aaaaa_00000" in out, err
    assert main(["status", str(exp)]) == 0


def test_an_unreadable_study_directory_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    closed(monkeypatch, exp)
    code, _, err = cli(capsys, exp)
    assert code == 2 and f"{exp}: permission denied" in err, err


def test_the_plan_marker_keeps_the_space_once_and_old_markers_still_name_it(tmp_path):
    """The marker held the plan's space twice: in `space` and in `body` (the plan it hashes)."""
    from hpoc.compiler import compile_source
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = compile_source('study "d"\npipeline { trainer = t:T }\n'
                          "space { lr = loguniform(1e-3, 1e-1), depth = choice(2, 4), epochs = 2 }\n",
                          "d.hpo", str(tmp_path))
    exp = tmp_path / "results" / "d"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.01, "depth": 2}, [{"val_loss": 0.5}] * 2)
    write_summary(exp, "d", [])
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    written = json.loads((exp / marker.PLAN_MARKER).read_text())
    assert "space" not in written and written["body"]["space"] == plan["space"]
    assert marker.recorded_space(written) == plan["space"]
    assert param_names(load(exp)) == ["lr", "depth"]
    # a marker of an hpoc before the plan's body: its own `space`
    old = {"plan_hash": written["plan_hash"], "shard": 0, "space": plan["space"]}
    (exp / marker.PLAN_MARKER).write_text(json.dumps(old))
    assert marker.recorded_space(old) == plan["space"] and param_names(load(exp)) == ["lr", "depth"]
    assert marker.recorded_space({"plan_hash": "x", "body": {"space": "cut"}}) is None


def test_results_ask_squeue_once_of_a_run_locks_job(tmp_path, capsys, monkeypatch):
    """Each shard's lock is read twice (a run starting in between), and a lock of another
    node asked squeue whether its job runs each time: one answer a job per `hpoc results`."""
    from hpoc.runtime import runlock

    exp = _resumed_study(tmp_path)
    lock = run_lock(exp, pid=4242, host="node1", started=time.time() - 60)
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), slurm_job="979")))
    asked = []
    monkeypatch.setattr(runlock, "_ask_running", lambda job: asked.append(job) or True)
    code, out, err = cli(capsys, exp, "--json")
    assert code == 0, err
    assert json.loads(out)["shards"][0]["run"] is not None  # its job runs: a run in progress
    assert asked == ["979"], asked
