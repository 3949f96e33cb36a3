"""`hpoc status` on local runs: a spec reads its storage, an experiment directory works, and
a live run (its lock file) shows as running. No Ray, no SLURM: hand-made directories."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from hpoc.cli import main

from results_dirs import TINY_SPEC as SPEC
from results_dirs import age, closed, run_lock, summary, trial_dir
from results_fixtures import make_plan, write_plan


def sbatch_array(tmp_path: Path, shards: int, num_samples: int) -> tuple[Path, Path, dict]:
    """A study of `shards` array tasks compiled into BUILD and run with `sbatch job.sbatch`:
    (its storage, BUILD, the plan)."""
    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "arr", shards=shards)
    plan["trials"]["num_samples"] = num_samples
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    return storage, build, plan


def status(capsys, *argv) -> tuple[int, str, str]:
    code = main(["status", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def finished_local_run(tmp_path: Path) -> Path:
    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    for i, acc in enumerate((0.5, 0.7, 0.6)):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1 / 10 ** i, "epochs": 2},
                  [{"val_accuracy": acc}] * 2)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"}
                          for i in range(3)], metric="val_accuracy", mode="max")
    return exp


def test_a_spec_reads_the_storage_it_names_not_a_build_dir(tmp_path, capsys, monkeypatch):
    finished_local_run(tmp_path)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./build/tiny here: a local run writes none
    code, out, err = status(capsys, tmp_path / "study.hpo", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["state"] == "finished" and doc["totals"]["done"] == 3
    assert doc["best"]["value"] == 0.7 and doc["build_dir"] is None
    # A stale build directory of another storage changes nothing.
    write_plan(elsewhere / "build" / "tiny", make_plan(tmp_path / "stale", "tiny"))
    doc = json.loads(status(capsys, tmp_path / "study.hpo", "--json")[1])
    assert doc["totals"]["done"] == 3 and doc["build_dir"] is None


def test_an_experiment_directory_is_accepted(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "study `tiny`: finished; budget unknown (read without a plan)" in out
    assert "best so far: trial aaaaa_00001 (shard 0) val_accuracy=0.7" in out
    assert out.endswith(f"next: results: hpoc results {exp}; report: hpoc report {exp} -o report.html\n")


def test_the_best_trial_is_the_one_hpoc_results_ranks_first(tmp_path, capsys, monkeypatch):
    """Tied on the objective, `hpoc status` and `hpoc results` name the same best trial,
    whatever order the trials were read in."""
    import hpoc.results
    from hpoc.results.rank import rank

    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    for i, acc in enumerate((0.5, 0.7, 0.7)):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1, "epochs": 2}, [{"val_accuracy": acc}] * 2)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in range(3)],
            metric="val_accuracy", mode="max")
    load = hpoc.results.load

    def reversed_load(path):
        results = load(path)
        results.trials.reverse()
        return results

    monkeypatch.setattr(hpoc.results, "load", reversed_load)
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert doc["best"]["trial_id"] == rank(reversed_load(exp)).best.trial_id == "aaaaa_00001"
    assert doc["shards"][0]["best"]["trial_id"] == "aaaaa_00001"


def test_a_finished_study_with_errored_trials_says_how_to_run_only_those_again(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "ERROR" if i else "TERMINATED"}
                          for i in range(3)], metric="val_accuracy", mode="max")
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0, err
    # no `slurm` block: `hpoc submit` would run it on this machine too, not on SLURM
    assert out.endswith(f"next: 2 errored trial(s): once what made them fail is fixed, `hpoc run "
                        f"{tmp_path / 'study.hpo'} --local --retry-errored` runs only those again "
                        "(finished trials are kept)\n")


def test_trials_stopped_at_their_time_limit_are_named(tmp_path, capsys):
    from hpoc.runtime import timelimit

    exp = finished_local_run(tmp_path)
    timelimit.record(str(next(exp.glob("*aaaaa_00002*"))), 60)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "1 of the done trial(s) stopped at their time limit (`trials.time_limit`)" in out
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert [s["time_limit"] for s in doc["shards"]] == [1] and doc["totals"]["done"] == 3


YAML_TINY = """ray_training_pipeline:
  class_path: itwinai.pipeline.Pipeline
  init_args:
    steps:
      - class_path: trainer.MyTrainer
        init_args:
          config:
            train_loop_config: {lr: {type: loguniform, min: 0.0001, max: 0.1}, epochs: 2}
            tune_config: {num_samples: 3, search_alg: {name: random, metric: val_accuracy, mode: max}}
            run_config: {name: tiny, storage_path: results, stop: {time_total_s: 60}}
"""


def test_a_yaml_studys_time_limit_is_named_as_its_config_writes_it(tmp_path, capsys):
    """`hpoc status config.yaml` said "stopped at their time limit (`trials.time_limit`)", a
    key the config does not have: it is `run_config.stop.time_total_s`."""
    from hpoc.runtime import timelimit

    exp = finished_local_run(tmp_path)
    (tmp_path / "config.yaml").write_text(YAML_TINY)
    timelimit.record(str(next(exp.glob("*aaaaa_00002*"))), 60)
    code, out, err = status(capsys, tmp_path / "config.yaml")
    assert code == 0, err
    assert "1 of the done trial(s) stopped at their time limit (`run_config.stop.time_total_s`)" in out


def test_a_yaml_studys_unranked_line_names_its_time_limit_as_its_config_writes_it(tmp_path, capsys):
    """`hpoc results config.yaml` of a study whose one trial hung: "... reached their time
    limit (`trials.time_limit`)", a key the config does not have."""
    from hpoc.runtime import timelimit

    exp = tmp_path / "results" / "tiny"
    timelimit.record(str(trial_dir(exp, "aaaaa_00000", {"lr": 0.01, "epochs": 2}, [])), 60)
    summary(exp, "tiny", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}], metric="val_accuracy", mode="max")
    (tmp_path / "config.yaml").write_text(YAML_TINY)
    main(["results", str(tmp_path / "config.yaml")])
    out, err = capsys.readouterr()
    said = "reached their time limit (`run_config.stop.time_total_s`) before their first report"
    assert said in out and said in err and "trials.time_limit" not in out + err, out + err


def test_trials_whose_retry_the_time_budget_cut_short_are_named(tmp_path, capsys):
    """Such a trial counts as done: without a line, its failure was seen nowhere in status."""
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"},
                          {"trial_id": "aaaaa_00001", "status": "TERMINATED"},
                          {"trial_id": "aaaaa_00002", "status": "TERMINATED", "stopped": "time budget",
                           "error": "OSError: stale file handle", "retry_cut": True}], metric="val_accuracy", mode="max")
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "1 of the done trial(s) failed and were being retried when the time budget or their " \
           "time limit stopped them: `hpoc results` shows their errors" in out
    assert out.endswith("next: 1 errored trial(s) (1 cut short in their retry): once what made them fail is "
                        "fixed, `hpoc run SPEC --local --retry-errored` (or `hpoc submit SPEC --retry-errored`; "
                        "SPEC: the study file that ran it) runs only those again (finished trials are kept)\n"), out


def test_a_live_run_counts_as_its_driver_sees_it_now(tmp_path, capsys):
    """Ray saves its state every few seconds; the driver writes the statuses it sees when
    one changes, and status reads those: PBT had paused a trial Ray's state had running."""
    exp = finished_local_run(tmp_path)
    (exp / "summary.json").unlink()
    state = {"trial_data": [[json.dumps({"trial_id": f"aaaaa_0000{i}", "status": "RUNNING",
                                         "config": {}}), json.dumps({})] for i in range(3)]}
    (exp / "experiment_state-2026.json").write_text(json.dumps(state))
    age(exp / "experiment_state-2026.json", 20)
    started = time.time() - 60
    run_lock(exp, started=started)

    def driver_view(run_started: float, written: float) -> None:
        (exp / ".hpoc-trials.json").write_text(json.dumps({
            "run_started": run_started, "written": written,
            "trials": {"aaaaa_00000": "TERMINATED", "aaaaa_00001": "PAUSED", "aaaaa_00002": "RUNNING"}}))

    driver_view(started, time.time())
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert [doc["totals"][c] for c in ("done", "running", "paused")] == [1, 1, 1]
    driver_view(started - 3600, time.time())  # an earlier run's (Ray copied it back: a new mtime)
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert [doc["totals"][c] for c in ("done", "running", "paused")] == [0, 3, 0]
    driver_view(started, time.time() - 40)  # written before Ray's state was saved
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert [doc["totals"][c] for c in ("done", "running", "paused")] == [0, 3, 0]


def test_a_missing_path_is_a_clear_error(tmp_path, capsys):
    code, _, err = status(capsys, tmp_path / "nope")
    assert code == 2 and "no such file or directory" in err


def test_a_live_local_run_is_running_despite_an_older_interrupted_summary(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "PAUSED"} for i in range(3)],
            interrupted=True, metric="val_accuracy", mode="max")
    age(exp / "summary.json", 600)
    for i in range(3):  # resumed: two trials train, one has not reported since
        trial = next(exp.glob(f"*aaaaa_0000{i}*"))
        (trial / "result.json").write_text(
            json.dumps({"training_iteration": 1, "trial_id": f"aaaaa_0000{i}",
                        "val_accuracy": 0.5, "done": False}) + "\n")
        if i == 2:
            age(trial / "result.json", 600)
    run_lock(exp, started=time.time() - 60)
    build = tmp_path / "build"
    plan = make_plan(tmp_path / "results", "tiny")
    plan["trials"]["num_samples"] = 3
    write_plan(build, plan)
    for target in (build, exp):
        code, out, err = status(capsys, target, "--json")
        doc = json.loads(out)
        assert code == 0, err
        assert doc["state"] == "running"
        assert (doc["totals"]["running"], doc["totals"]["pending"]) == (2, 1)
        assert doc["shards"][0]["run"]["host"]
    code, out, _ = status(capsys, build)
    assert "runs in progress:\n  shard 0  pid" in out and "this machine" in out


def test_an_extension_killed_without_its_lock_is_interrupted_not_finished(tmp_path, capsys):
    """The first run's summary (not interrupted) beside the marker of an extension that was
    killed (its lock gone since): status said `finished` with trials running and pending."""
    exp = tmp_path / "results" / "grown"
    trial_dir(exp, "ggggg_00000", {"lr": 0.01}, [{"val_accuracy": 0.5}] * 3)
    trial_dir(exp, "ggggg_00001", {"lr": 0.1}, [{"val_accuracy": 0.7}], done=False)
    summary(exp, "grown", [{"trial_id": "ggggg_00000", "status": "TERMINATED"}],
            metric="val_accuracy", mode="max", plan_hash="sha256:first")
    marker = exp / ".hpoc-plan.json"
    marker.write_text(json.dumps({"plan_hash": "sha256:grown", "shard": 0, "extended": True}))
    code, out, err = status(capsys, exp, "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["state"] == "interrupted"
    assert (doc["totals"]["done"], doc["totals"]["running"], doc["totals"]["paused"]) == (1, 0, 1)
    marker.write_text(json.dumps({"plan_hash": "sha256:first", "shard": 0, "extended": True}))
    assert json.loads(status(capsys, exp, "--json")[1])["state"] == "finished"  # its own run's


def test_a_trial_that_started_but_has_not_reported_is_running_not_pending(tmp_path, capsys):
    """Before its first report in this run (and before Ray saves its state) a trial the
    driver started counted as pending: a study whose trials all build slow models read as
    `running 0, pending 3` while two of them ran."""
    from hpoc.files import mark_started

    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "PAUSED"} for i in range(3)],
            interrupted=True, metric="val_accuracy", mode="max")
    age(exp / "summary.json", 600)
    for i in range(3):  # each reported an epoch in the run before
        trial = next(exp.glob(f"*aaaaa_0000{i}*"))
        (trial / "result.json").write_text(
            json.dumps({"training_iteration": 1, "trial_id": f"aaaaa_0000{i}",
                        "val_accuracy": 0.5, "done": False}) + "\n")
        age(trial / "result.json", 600)
    run_lock(exp, started=time.time() - 60)
    for i in (0, 1):  # resumed by the driver, still building its model
        mark_started(str(next(exp.glob(f"*aaaaa_0000{i}*"))))
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert (doc["totals"]["running"], doc["totals"]["pending"]) == (2, 1)


def test_a_study_that_failed_fast_says_why_before_how_to_resume(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    why = ("all of the first 3 trials to end failed with the same error, and no trial reported "
           "`val_accuracy`\n  KeyError: 'label'\n  --> /s/train.py:9")
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "ERROR"} for i in range(3)],
            interrupted=True, metric="val_accuracy", mode="max", stopped=why)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "next: shard 0 stopped itself: all of the first 3 trials to end failed with the same " \
           "error, and no trial reported `val_accuracy` (KeyError: 'label'); " \
           "fix the trainer, then resume\nnext: resume: " in out
    # results and the report say it in the same words (they said nothing of the stop)
    said = "shard 0 stopped itself: all of the first 3 trials to end failed with the same error, " \
           "and no trial reported `val_accuracy` (KeyError: 'label')"
    assert f"hpoc results: {said}\n" in main_err(capsys, "results", exp)
    assert main(["report", str(exp), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
    assert (tmp_path / "r.html").read_text().count(html.escape(said)) == 1


def test_shards_that_failed_fast_alike_are_one_next_step(tmp_path, capsys, monkeypatch):
    """A broken trainer stops every task of an array: status said `shard K stopped itself`
    once per shard, 200 lines with the same error."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=30))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    for k in range(30):
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}], done=False,
                  error="KeyError: 'label'")
        error = "KeyError: 'label'" if k != 29 else "OSError: disk full"
        summary(exp, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "ERROR"}], interrupted=True,
                stopped=f"the first trial of shard {k} to end failed, and no trial of shard {k} "
                        f"reported `val_loss`\n  {error}", shard=k)
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0, err
    said = [line for line in out.splitlines() if "stopped" in line and line.startswith("next:")]
    assert said[:2] == [
        "next: shards 0-28 stopped themselves on KeyError: 'label' (shard 0: the first trial of shard 0 "
        "to end failed, and no trial of shard 0 reported `val_loss`); fix the trainer, then resume",
        "next: shard 29 stopped itself: the first trial of shard 29 to end failed, and no trial of "
        "shard 29 reported `val_loss` (OSError: disk full); fix the trainer, then resume"], out


def test_shards_stopped_by_a_full_disk_are_not_one_step_with_a_failed_fast_one(tmp_path, capsys, monkeypatch):
    """Shards were grouped by the second line of their stop's words: a full disk's (one line)
    joined a one-line fail-fast stop, and all took the first shard's advice."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=3))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    for k in range(3):
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}], done=False, error="E")
        path = summary(exp, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "ERROR"}], interrupted=True,
                       stopped=f"shard {k} stopped", shard=k)
        data = json.loads(path.read_text())
        data["stop"] = {"kind": "fail_fast", "at": None} if k == 0 else {"kind": "disk_full", "at": "/scratch/me"}
        path.write_text(json.dumps(data))
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0, err
    said = [line for line in out.splitlines() if "stopped" in line and line.startswith("next:")]
    assert said[0].startswith("next: shard 0 stopped itself") and said[0].endswith("fix the trainer, then resume"), out
    assert said[1].startswith("next: shards 1-2 stopped themselves") and \
        "free space and files under /scratch/me" in said[1], out


def test_a_study_stopped_by_a_full_disk_says_to_make_room_not_to_fix_the_trainer(tmp_path, capsys):
    """The run's own stop said to free space; status said "fix the trainer, then resume"."""
    exp = finished_local_run(tmp_path)
    why = f"trial aaaaa_00001: no space left on a device writing under {exp} (0.0 MiB and 9 inodes free)"
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in range(3)],
            interrupted=True, metric="val_accuracy", mode="max", stopped=why)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert f"next: shard 0 stopped itself: {why}; free space and files under {exp} (or ask for a " \
           "larger quota), then resume\nnext: resume: " in out, out
    assert "fix the trainer" not in out
    # a state an earlier hpoc let Ray save in place as the disk filled is cut short: no resume
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    state.write_text('{"trial_data": [["a"')
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert f"next: shard 0 stopped itself: {why}; free space and files under {exp} (or ask for a " \
           f"larger quota), then pass --fresh to start the study over: {state} is cut short (20 bytes; " \
           "a disk full or over its quota as Ray saved it in place, under an hpoc before its saves were " \
           "replaced whole), so the run cannot resume " \
           "(`hpoc results` still reads its trials)\n" in out, out
    assert "next: resume" not in out


@pytest.mark.parametrize("kind", ["disk_full", "fail_fast"])
def test_status_advises_from_the_stops_kind_not_its_words(tmp_path, capsys, kind):
    """status told a full disk from fail fast by parsing `stopped`'s words: reworded, a full
    disk got "fix the trainer" (and words that looked like a full disk got "free space")."""
    exp = finished_local_run(tmp_path)
    words = {"disk_full": "trial aaaaa_00001: the disk filled up",
             "fail_fast": f"trial aaaaa_00001: no space left on a device writing under {exp}"}[kind]
    path = summary(exp, "tiny", [{"trial_id": "aaaaa_00001", "status": "TERMINATED"}],
                   interrupted=True, metric="val_accuracy", mode="max", stopped=words)
    data = json.loads(path.read_text())
    data["stop"] = {"kind": kind, "at": "/scratch/me" if kind == "disk_full" else None}
    path.write_text(json.dumps(data))
    code, out, err = status(capsys, exp)
    assert code == 0, err
    fix = ("free space and files under /scratch/me (or ask for a larger quota)" if kind == "disk_full"
           else "fix the trainer")
    assert f"next: shard 0 stopped itself: {words}; {fix}, then resume\n" in out, out
    assert json.loads(status(capsys, exp, "--json")[1])["shards"][0]["stop"] == data["stop"]


def test_a_study_that_failed_fast_in_its_splitter_says_to_fix_the_splitter(tmp_path, capsys, monkeypatch):
    """It said "fix the trainer" whichever step's code raised the error."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "split")
    plan["pipeline"]["splitter"] = {"target": "prep:Split", "args": {}}
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    exp = storage / "split"
    trial_dir(exp, "aaaaa_00000", {"dropout": 0.1}, [], done=False, error="ValueError: shape")
    summary(exp, "split", [{"trial_id": "aaaaa_00000", "status": "ERROR"}], interrupted=True,
            stopped="the first trial to end failed, and no trial reported `val_loss`\n"
                    "  ValueError: shape\n  --> /s/prep.py:9")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "(ValueError: shape); fix the splitter `prep:Split`, then resume" in out, out


def test_a_study_stopped_by_a_module_missing_on_the_nodes_says_to_install_it(tmp_path, capsys, monkeypatch):
    """The stop's "install it" was in error.txt only: status said "fix the trainer"."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "mod")
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    exp = storage / "mod"
    trial_dir(exp, "aaaaa_00000", {"dropout": 0.1}, [], done=False, error="PipelineError: no timm")
    summary(exp, "mod", [{"trial_id": "aaaaa_00000", "status": "ERROR"}], interrupted=True,
            stopped="the first trial to end failed, and no trial reported `val_loss`\n"
                    "  trainer `t:T`: importing `t` failed: No module named 'timm'\n"
                    "  help: install `timm` in the environment the study runs in")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "; install `timm` in the environment the study runs in, then resume" in out, out


def test_another_hosts_lock_gives_way_to_an_ended_job(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    (exp / "summary.json").unlink()
    run_lock(exp, pid=1, host="gpu-node-7", started=time.time() - 60)
    build = tmp_path / "build"
    plan = make_plan(tmp_path / "results", "tiny")
    plan["trials"]["num_samples"] = 3
    write_plan(build, plan)
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["state"] == "running" and doc["shards"][0]["run"]["host"] == "gpu-node-7"
    # The same lock, but the job that ran the driver is gone (killed: the lock stayed).
    (build / "jobs.json").write_text(json.dumps([{"cluster": "local", "submitted": 0,
                                                  "jobs": [{"shard": 0, "job_id": "999999999"}]}]))
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["state"] == "interrupted" and doc["shards"][0]["run"] is None


def test_an_sbatch_array_killed_then_requeued_shows_its_jobs_and_the_next_step(
        tmp_path, capsys, monkeypatch):
    """`sbatch build/job.sbatch` records no job: status found none, counted the killed
    shard's trial as running, and never said how to resume."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=2, num_samples=4)
    done = storage / "arr" / "shard-0"
    for i in (0, 2):
        trial_dir(done, f"aaaaa_0000{i}", {"dropout": 0.1 * i}, [{"val_loss": 0.5 - 0.1 * i}] * 6)
    # As the driver writes it: its trials reported, so it names the best (without one, a
    # summary says no trial reported the objective, which status repeated for this shard).
    summary(done, "arr", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in (0, 2)],
            best={"trial_id": "aaaaa_00002", "metrics": {"val_loss": 0.3}})
    killed = storage / "arr" / "shard-1"
    trial_dir(killed, "bbbbb_00001", {"dropout": 0.2}, [{"val_loss": 0.6}] * 2, done=False)
    lock = run_lock(killed, pid=2 ** 22 + 12345, started=time.time() - 60, shard=1)
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "slurm_job": "700"}))

    fake_squeue(monkeypatch, tmp_path / "bin", [])  # scancel'ed: SLURM is done with it
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "study `arr`: interrupted" in out and "\njobs:" not in out
    assert "1      interrupted  0     0        1       1        0" in out  # nothing runs; its trial paused
    assert "no trial reported" not in out  # shard 0's trials did
    assert f"next: resume: `sbatch --array=1 {build}/job.sbatch`" in out

    (build / "arr-700_1.err").write_text("")  # it ran before: requeued, not submitted with --begin
    fake_squeue(monkeypatch, tmp_path / "bin",  # requeued: held by SLURM for a while
                [f"700_1|PENDING|0:00||BeginTime|1|{build}/job.sbatch",
                 f"701|RUNNING|0:10|node2|None|N/A|{tmp_path}/elsewhere/job.sbatch"])
    code, out, err = status(capsys, build)
    assert "jobs:\n  shard 1  job 700_1  PENDING  0:00  (BeginTime)\n" in out and "701" not in out
    assert "study `arr`: queued" in out and "1      pending " in out
    assert "next: job 700_1 waits for its begin time" in out
    assert "scontrol update JobId=700_1 StartTime=now" in out and "next: resume" not in out
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["shards"][1]["job"]["job_id"] == "700_1" and len(doc["next"]) == 1
    # SLURM requeued it after a node failure: its last run's .err says so
    lost = "hpoc: SLURM lost node2 of this job (down: Not responding) and ends the job: a requeued job, …"
    (build / "arr-700_1.err").write_text(f"[hpoc] 00:00:11 | 0/4 trials\nhpoc: terminated (SIGTERM)\n{lost}\n")
    code, out, err = status(capsys, build)
    assert f"next: job 700_1 waits for its begin time: SLURM holds a requeued job about 2 minutes " \
        f"(`scontrol update JobId=700_1 StartTime=now` starts it sooner); its last run ended: {lost}\n" in out, out
    fake_squeue(monkeypatch, tmp_path / "bin",  # submitted twice: the running job counts
                [f"702_1|RUNNING|0:40|node1|None|1|{build}/job.sbatch",
                 f"703_1|PENDING|0:00||Resources|1|{build}/job.sbatch"])
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["shards"][1]["job"]["job_id"] == "702_1"


def test_array_tasks_slurm_requeued_together_are_one_step(tmp_path, capsys, monkeypatch):
    """A lost node requeues the tasks it ran together: a `waits for its begin time` step
    per task."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=30, num_samples=30)
    lost = "hpoc: SLURM lost node2 of this job (down: Not responding) and ends the job"
    (build / "arr-700_4.err").write_text(f"{lost}\n")
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"700_{k}|PENDING|0:00||BeginTime|{k}|{build}/job.sbatch" for k in range(4, 28)])
    out = status(capsys, build)[1]
    said = [line for line in out.splitlines() if "begin time" in line]
    assert said == ["next: 24 jobs (700_[4-27]) wait for their begin time: SLURM holds a requeued job "
                    "about 2 minutes (`scontrol update JobId=700_[4-27] StartTime=now` starts them "
                    f"sooner); the first one's last run ended: {lost}"], out


def test_a_job_submitted_with_begin_is_not_said_to_be_requeued(tmp_path, capsys, monkeypatch):
    """`sbatch --begin=now+3600 build/job.sbatch` pends for BeginTime too, but never ran:
    status said "SLURM holds a requeued job about 2 minutes" of a job that waits an hour.
    A requeued job has its last run's .err; one that never ran has none."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=2, num_samples=2)
    fake_squeue(monkeypatch, tmp_path / "bin", [f"700_1|PENDING|0:00||BeginTime|1|{build}/job.sbatch"])
    out = status(capsys, build)[1]
    said = [line for line in out.splitlines() if "begin time" in line]
    assert said == ["next: job 700_1 waits for the begin time it was submitted with (`--begin`; "
                    "`squeue -j 700_1 -o %S` says when): `scontrol update JobId=700_1 StartTime=now` "
                    "starts it now"], out
    (build / "arr-700_1.err").write_text("hpoc: terminated (SIGTERM)\n")  # it ran, and was requeued
    out = status(capsys, build)[1]
    assert "next: job 700_1 waits for its begin time: SLURM holds a requeued job about 2 minutes" in out, out


def _shard_0_done(storage, bin_dir, monkeypatch) -> None:
    """Shard 0 of study `arr` ran to the end, shard 1 never started; SLURM knows no job."""
    from submit_support import fake_squeue

    done = storage / "arr" / "shard-0"
    trial_dir(done, "aaaaa_00000", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
    summary(done, "arr", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}])
    fake_squeue(monkeypatch, bin_dir, [])


def test_a_shard_cancelled_before_it_started_and_old_job_records_of_another_storage(
        tmp_path, capsys, monkeypatch):
    """jobs.json outlives a recompile into the same build dir: its jobs were shown for the
    new study's shards ("job 688_1 (unknown to SLURM)"), and finished + never started
    read as `mixed`."""
    storage, build, plan = sbatch_array(tmp_path, shards=2, num_samples=4)
    (build / "jobs.json").write_text(json.dumps([{
        "cluster": "slurm", "submitted": 0, "study_id": "0123456789ab",
        "jobs": [{"job_id": "688_0", "shard": 0}, {"job_id": "688_1", "shard": 1}]}]))
    _shard_0_done(storage, tmp_path / "bin", monkeypatch)
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "688" not in out and "study `arr`: interrupted" in out
    assert f"next: resume: `sbatch --array=1 {build}/job.sbatch`" in out


def test_next_step_commands_quote_a_build_dir_with_a_space(tmp_path, capsys, monkeypatch):
    """The next-step lines are commands to paste: `sbatch my build/job.sbatch` ran
    `my` with arguments."""
    storage, build = tmp_path / "results", tmp_path / "my build"
    plan = make_plan(storage, "arr", shards=2)
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    _shard_0_done(storage, tmp_path / "bin", monkeypatch)
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert f"next: resume: `sbatch --array=1 '{build}/job.sbatch'`" in out, out


def test_the_retry_hint_is_the_command_the_study_was_started_with(tmp_path):
    from hpoc.commands.status_next import _retry_command

    build = tmp_path / "build"
    build.mkdir()
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    status = {"build_dir": str(build), "shards": [{"shard": 0}, {"shard": 1}]}
    assert _retry_command(status, [1], "x") == f"`HPOC_RETRY_ERRORED=1 sbatch --array=1 {build}/job.sbatch`"
    status["submitted_by_hpoc"] = True
    assert _retry_command(status, [1], "x") == f"`hpoc submit {build} --retry-errored`"


def test_the_retry_hint_of_a_build_whose_path_says_sbatch(tmp_path):
    """The hint is built, not patched: a path with "sbatch" in it is still `hpoc submit`."""
    from hpoc.commands.status_next import _retry_command

    build = tmp_path / "sbatch-runs"
    build.mkdir()
    status = {"build_dir": str(build), "shards": [{"shard": 0}], "submitted_by_hpoc": True}
    assert _retry_command(status, [0], "x") == f"`hpoc submit {build} --retry-errored`"


def _fake_scontrol(bin_dir: Path, states: dict[str, str]) -> None:
    """`scontrol show job -o ID` that knows `states` (job id -> state) and nothing else."""
    cases = "".join(f'  {job}) echo "JobId={job} JobState={state} RunTime=00:00:02 NodeList=node1";;\n'
                    for job, state in states.items())
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\ncase "$4" in\n{cases}  *) exit 1;;\nesac\n')
    (bin_dir / "scontrol").chmod(0o755)


def test_an_sbatch_job_that_failed_before_its_study_started_says_why(tmp_path, capsys, monkeypatch):
    """Such a job is in no queue once it ended: status said "not started" and nothing
    else, the why being in the job's .err beside plan.json."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    head = ("hpoc: the Ray head step exited before it answered: ModuleNotFoundError: No module "
            f"named 'ray'; its log: {build}/logs/936/ray-node1.log")
    (build / "tiny-935.err").write_text("hpoc: slurm.setup failed (exit 127) at: module load X\n")
    (build / "tiny-936.err").write_text(f"{head}\n")
    (build / "tiny-preflight-937.err").write_text("hpoc: not this one\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"936": "FAILED"})
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "jobs:\n  shard 0  job 936  FAILED  00:00:02\n" in out and "0      not started" in out
    assert f"next: job 936 FAILED: {head} (its output: {build}/tiny-936.err)\n" in out
    assert out.endswith(f"next: submit it again: `sbatch {build}/job.sbatch`\n"), out
    _fake_scontrol(tmp_path / "bin", {})  # SLURM has forgotten it: the file still says why
    assert "job 936  ENDED\n" in status(capsys, build)[1]
    # A later job ran to the end (the study finished, or it had nothing to do): no failure shown.
    (build / "tiny-1001.err").write_text("[hpoc] 00:00:18 | 2/2 trials finished\n")
    _fake_scontrol(tmp_path / "bin", {"1001": "COMPLETED"})
    out = status(capsys, build)[1]
    assert "jobs:" not in out and "936" not in out and "next: job" not in out


def array_with_a_failed_shard(tmp_path, error: str | None, err_log: str) -> Path:
    """The build dir of a 2-shard array (job 800) whose shard 0 finished and whose shard 1's
    one trial errored (`error` in its summary), its .err saying `err_log`."""
    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=2))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    for k, status_ in ((0, "TERMINATED"), (1, "ERROR")):
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_0000{k}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
        path = summary(exp, "arr", [{"trial_id": f"aaaaa_0000{k}", "status": status_,
                                     **({"error": error} if k and error else {})}])
        counted = {**json.loads(path.read_text()), "status_counts": {status_: 1},
                   "best": {"trial_id": "aaaaa_00000"} if k == 0 else None}
        path.write_text(json.dumps(counted))
        (build / f"arr-800_{k}.err").write_text(err_log if k else "")
    return build


def test_a_failed_array_task_whose_shard_ran_to_the_end_is_shown(tmp_path, capsys, monkeypatch):
    """Every trial of shard 1 errored: its driver ran to the end and exited 1, SLURM has the
    task FAILED, and status showed no `jobs:` line for it, only the errored count."""
    from submit_support import fake_squeue

    build = array_with_a_failed_shard(tmp_path, None, "ValueError: boom\n[hpoc] 1 trial(s) errored\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"800_0": "COMPLETED", "800_1": "FAILED"})
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "study `arr`: finished" in out
    assert "jobs:\n  shard 1  job 800_1  FAILED  00:00:02\n" in out and "800_0" not in out, out
    assert f"next: job 800_1 FAILED: ValueError: boom (its output: {build}/arr-800_1.err)" in out
    assert f"`HPOC_RETRY_ERRORED=1 sbatch --array=1 {build}/job.sbatch` runs only those again" in out
    _fake_scontrol(tmp_path / "bin", {})  # SLURM has forgotten: its driver failed all the same
    assert "jobs:\n  shard 1  job 800_1  ENDED\n" in status(capsys, build)[1]


def test_a_job_that_is_completing_is_still_running_not_mixed(tmp_path, capsys, monkeypatch):
    """At its time limit a job is COMPLETING for up to KillWait: the study read `mixed`."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [f"965|COMPLETING|1:05|node1|TimeLimit|N/A|{build}/job.sbatch"])
    out = status(capsys, build)[1]
    assert out.startswith("study `tiny`: running;") and "job 965  COMPLETING  1:05  (TimeLimit)" in out


def submitted_job_log(tmp_path) -> tuple[Path, Path]:
    """(build dir, .err log) of a study `hpoc submit` sent as job 968 (shard 0)."""
    from hpoc.submit.params import study_id

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "tiny")
    write_plan(build, plan)
    (build / "jobs.json").write_text(json.dumps([{"cluster": "slurm", "submitted": 0, "study_id": study_id(plan),
                                                  "jobs": [{"job_id": "968", "shard": 0}]}]))
    log = build / "logs" / "968" / "968_0_log.err"
    log.parent.mkdir(parents=True)
    return build, log


def test_an_hpoc_submit_job_that_failed_says_why_from_its_log(tmp_path, capsys, monkeypatch):
    from submit_support import fake_squeue

    build, log = submitted_job_log(tmp_path)
    log.write_text("slurm_script: line 20: module: command not found\n"
                   "hpoc: slurm.setup failed (exit 127) at: module load Stages/2025 Python\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"968": "FAILED"})
    out = status(capsys, build)[1]
    assert ("next: job 968 FAILED: hpoc: slurm.setup failed (exit 127) at: module load Stages/2025 Python "
            f"(its output: {log})\n"
            # submitting it again alone fails the same way
            "next: fix that `slurm.setup` line in the spec (the nodes run it as written: `module avail`, "
            "`module spider` on a login node show the site's names), compile and submit again\n") in out, out
    # The nodes' python without submitit: Python's words, and what to change.
    no_submitit = ("/usr/bin/python3: Error while finding module specification for 'submitit.core._submit' "
                   "(ModuleNotFoundError: No module named 'submitit')")
    log.write_text(f"{no_submitit}\nsrun: error: node1: task 0: Exited with exit code 1\n")
    out = status(capsys, build)[1]
    assert (f"next: job 968 FAILED: {no_submitit} (its output: {log})\n"
            "next: the python on the nodes lacks it: set `slurm.python`") in out, out


def test_a_job_that_failed_on_a_spec_setting_is_resubmitted_from_the_spec(tmp_path, capsys, monkeypatch):
    """A `slurm.setup` line or `slurm.python` to fix: the last step said "submit it again:
    `hpoc submit BUILD`", which sends the plan as compiled, with the same mistake."""
    from submit_support import fake_squeue

    build, log = submitted_job_log(tmp_path)
    spec = tmp_path / "results" / "study.hpo"  # make_plan's source
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"968": "FAILED"})
    for why in ("hpoc: slurm.setup failed (exit 127) at: module load Stages/2025",
                "hpoc: error: python3 on node1 cannot run hpoc (ModuleNotFoundError: No module named 'ray'): "
                "set slurm.python to the python of the environment hpoc is installed in",
                "hpoc: the Ray head step exited before it answered: cannot start ray head: the plan gives each "
                "node 1 GPU(s) (slurm.gpu_request = none), but node1 has no GPU device (/dev/nvidia*, "
                "/dev/dri/renderD*): …; choose a GPU partition, or set slurm.gpu_request = gres or per_node"):
        log.write_text(f"{why}\n")
        out = status(capsys, build)[1]
        assert out.endswith(f"next: once the spec is fixed, submit it again from the spec: "
                            f"`hpoc submit {spec} -o {build}`\n"), out
    # a cancelled job: nothing in the spec to fix, the build is submitted again as it is
    log.write_text("slurmstepd: error: *** JOB 968 ON node1 CANCELLED AT 2026-01-01T00:00:00 ***\n")
    assert status(capsys, build)[1].endswith(f"next: submit it again: `hpoc submit {build}`\n")
    # `sbatch BUILD/job.sbatch`: compile the fixed spec into the build, then sbatch it
    storage, build = tmp_path / "r2", tmp_path / "b2"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    (build / "tiny-940.err").write_text("hpoc: slurm.setup failed (exit 127) at: module load X\n")
    _fake_scontrol(tmp_path / "bin", {"940": "FAILED"})
    assert status(capsys, build)[1].endswith(
        f"next: once the spec is fixed, compile it again: `hpoc compile {storage}/study.hpo -o {build}`, "
        f"then submit it: `sbatch {build}/job.sbatch`\n")


def test_a_job_whose_storage_path_cannot_be_written_is_sent_to_the_spec(tmp_path, capsys, monkeypatch):
    """`storage.path` under a file, or not writable: the driver stops before any trial, and
    status said "submit it again: `sbatch …`", which runs the same plan into the same path."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "r", tmp_path / "b"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"941": "FAILED"})
    for why in (f"error: storage path {storage}/f/results: {storage}/f exists and is not a directory",
                # the job's check before Ray says it so
                f"hpoc: error: storage path {storage}/f/results: {storage}/f exists and is not a directory",
                f"error: storage path {storage}/results (its nearest existing parent {storage}) is not writable: Permission denied"):
        (build / "tiny-941.err").write_text(f"{why}\n")
        out = status(capsys, build)[1]
        assert (f"next: job 941 FAILED: {why} (its output: {build}/tiny-941.err)\n"
                "next: set `storage.path` in the spec to a directory the nodes can write (or make that "
                "one writable), compile and submit again\n"
                f"next: once the spec is fixed, compile it again: `hpoc compile {storage}/study.hpo -o {build}`, "
                f"then submit it: `sbatch {build}/job.sbatch`\n") in out, out


def test_an_hpoc_submit_job_slurm_requeued_says_why_its_last_run_ended(tmp_path, capsys, monkeypatch):
    """As for job.sbatch: a job SLURM requeued after a node failure waits for its begin time."""
    from submit_support import fake_squeue

    build, log = submitted_job_log(tmp_path)
    lost = "hpoc: error: SLURM lost node2 (down: test) and ended the job; the study stopped: …"
    log.write_text(f"{lost}\nsrun: error: node1: task 0: Exited with exit code 1\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [f"968|PENDING|0:00||BeginTime|N/A|{log.parent}/968_submission.sh"])
    out = status(capsys, build)[1]
    assert f"starts it sooner); its last run ended: {lost}\n" in out, out


def test_an_interrupted_run_of_a_study_without_resume_is_started_over_not_resumed(tmp_path, capsys, monkeypatch):
    """A node failure ended the job of a study with resume off: status said `resume: sbatch
    …/job.sbatch`, and that job refused the unfinished run that resume may not continue."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "noresume")
    plan["resume"]["enabled"] = False
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    exp = storage / "noresume"
    trial_dir(exp, "ccccc_00001", {"dropout": 0.2}, [{"val_loss": 0.6}] * 2, done=False)
    run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0 and "interrupted" in out, out + err
    assert "next: resume:" not in out, out
    assert (f"next: resume is off in the study, so its unfinished run cannot go on: `hpoc submit {build} --fresh` "
            "starts it over (the run so far is moved aside)\n") in out, out


def test_an_interrupted_study_whose_last_job_failed_on_its_setup_resumes_from_the_spec(tmp_path, capsys, monkeypatch):
    """The resume after a job that ended on a `slurm.setup` line said `resume: sbatch
    BUILD/job.sbatch`: the build as compiled, the same line in it."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    trial_dir(storage / "tiny", "ccccc_00001", {"dropout": 0.2}, [{"val_loss": 0.6}] * 2, done=False)
    run_lock(storage / "tiny", pid=2 ** 22 + 12345, started=time.time() - 60)
    (build / "tiny-941.err").write_text("hpoc: slurm.setup failed (exit 127) at: module load X\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"941": "FAILED"})
    out = status(capsys, build)[1]
    assert (f"next: once the spec is fixed, compile it again: `hpoc compile {storage}/study.hpo -o {build}`, "
            f"then resume: `sbatch {build}/job.sbatch` (finished trials are kept; ") in out, out


def test_an_hpoc_submit_job_slurm_has_forgotten_has_ended(tmp_path, capsys, monkeypatch):
    """Minutes after it finished, a submitted job read "job 206  (unknown to SLURM)", while
    an sbatch job of the same age reads ENDED."""
    from submit_support import fake_squeue

    from hpoc.submit.params import study_id

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "tiny")
    write_plan(build, plan)
    (build / "jobs.json").write_text(json.dumps([{"cluster": "slurm", "submitted": 0, "study_id": study_id(plan),
                                                  "jobs": [{"job_id": "206", "shard": 0}]}]))
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {})
    out = status(capsys, build)[1]
    assert "  shard 0  job 206  ENDED\n" in out and "unknown to SLURM" not in out, out


def test_the_resume_command_keeps_the_arrays_limit_of_shards_at_once(tmp_path, capsys, monkeypatch):
    """`sbatch --array=0-2 job.sbatch` replaces the script's `--array=0-3%2`: the stopped
    shards all ran at once, past `parallel`."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "arr", shards=4)
    plan["shards"]["parallel"] = 2
    plan["trials"]["num_samples"] = 4
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    done = storage / "arr" / "shard-3"
    trial_dir(done, "aaaaa_00003", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
    summary(done, "arr", [{"trial_id": "aaaaa_00003", "status": "TERMINATED"}])
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    out = status(capsys, build)[1]
    assert f"next: resume: `sbatch --array=0-2%2 {build}/job.sbatch`" in out


@pytest.mark.parametrize("lines, why", [
    (["[hpoc] loading data", "error: trainer `t:T`: importing `t` failed: ImportError: libcudart.so.12",
      "[hpoc] 00:00:01 | 0/2 trials finished"], "error: trainer `t:T`: importing `t` failed: ImportError: libcudart.so.12"),
    (["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"], "ValueError: bad"),
    (["slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-29T02:48:03 DUE TO TIME LIMIT ***",
      "hpoc: terminated (SIGTERM)", "hpoc: signal during teardown: finishing it first"],
     "slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-29T02:48:03 DUE TO TIME LIMIT ***"),
    (["[hpoc] 00:00:18 | 2/2 trials finished"], None),
    # the job's own requeue at the walltime: status said "its last run ended: slurmstepd-n1:
    # error: *** … CANCELLED … DUE TO JOB REQUEUE ***", an error that was none
    (["[hpoc] SIGUSR2: stopping; checkpoints are kept and running the plan again resumes",
      "slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-29T17:26:58 DUE TO JOB REQUEUE ***",
      "hpoc: signal during teardown: finishing it first"], None),
    (["hpoc: SLURM lost node2 of this job (down: Not responding) and ends the job: …",
      "slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-29T17:26:58 DUE TO JOB REQUEUE ***"],
     "hpoc: SLURM lost node2 of this job (down: Not responding) and ends the job: …"),
    # the job stopped requeueing itself (runtime/walltime.py)
    (["[hpoc] 00:09:50 | 0/2 trials finished | 2 running", "hpoc: time limit near (SIGUSR2): asking the study "
      "to checkpoint and stop", "error: the walltime stopped 3 runs in a row before any trial reported an "
      "epoch: not requeued, as the next run would do the same", "  help: raise `slurm.time`",
      "hpoc: signal during teardown: finishing it first"],
     "error: the walltime stopped 3 runs in a row before any trial reported an epoch: not requeued, as "
     "the next run would do the same"),
    # The job went on after the warning; what failed next is why it ended.
    (["hpoc: warning: the check before Ray failed (exit 2); starting anyway",
      "/usr/bin/python3: Error while finding module specification for 'hpoc.runtime.cluster' "
      "(ModuleNotFoundError: No module named 'hpoc.runtime.cluster')"],
     "/usr/bin/python3: Error while finding module specification for 'hpoc.runtime.cluster' "
     "(ModuleNotFoundError: No module named 'hpoc.runtime.cluster')"),
    (["/var/spool/job00012/slurm_script: line 96: /opt/env/bin/python: No such file or directory"],
     "/var/spool/job00012/slurm_script: line 96: /opt/env/bin/python: No such file or directory")])
def test_the_line_that_says_why_a_job_ended(tmp_path, lines, why):
    from hpoc.commands import joblogs

    (tmp_path / "x.err").write_text("\n".join(lines) + "\n")
    assert joblogs.why(str(tmp_path / "x.err")) == why


def test_a_job_that_will_never_start_says_which_setting_to_change(tmp_path, capsys, monkeypatch):
    """sbatch takes a job that asks for more nodes or time than the partition allows (the
    default EnforcePartLimits=NO) and it pends forever: status showed `(PartitionNodeLimit)`
    and nothing else."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [f"979|PENDING|0:00||PartitionNodeLimit|N/A|{build}/job.sbatch"])
    out = status(capsys, build)[1]
    assert ("next: job 979 will not start as asked (PartitionNodeLimit: more nodes than the partition "
            "allows): `scancel 979`, change `nodes` in the spec's `slurm` block, compile and submit again") in out
    fake_squeue(monkeypatch, tmp_path / "bin", [f"980|PENDING|0:00||Resources|N/A|{build}/job.sbatch"])
    assert "next:" not in status(capsys, build)[1]  # waiting for nodes: nothing to do
    # `cpus_per_node = 8` on 2-CPU nodes: no node of the partition can ever run it; and `nodes = 5`
    # on a partition of 3 nodes without a MaxNodes, which said only to change CPUs, GPUs or memory
    fake_squeue(monkeypatch, tmp_path / "bin", [f"981|PENDING|0:00||PartitionConfig|N/A|{build}/job.sbatch"])
    assert ("next: job 981 will not start as asked (PartitionConfig: more nodes than the partition has, or more "
            "CPUs, GPUs or memory than a node of it has): `scancel 981`, change `nodes`, `cpus_per_node`, "
            "`gpus_per_node` or `mem` in the spec's `slurm` block, compile and submit again") in status(capsys, build)[1]


def test_a_held_job_says_how_to_release_it(tmp_path, capsys, monkeypatch):
    """`--hold` in `slurm.extra` (or `scontrol hold`): status showed `(JobHeldUser)` and
    nothing else; a dependency that can never be met, the same."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [f"982|PENDING|0:00||JobHeldUser|N/A|{build}/job.sbatch"])
    assert "next: job 982 is held (JobHeldUser: `--hold`, or `scontrol hold`): `scontrol release 982` " \
        "lets it start" in status(capsys, build)[1]
    _, array, _ = sbatch_array(tmp_path / "array", shards=2, num_samples=2)  # an array's tasks: one step
    fake_squeue(monkeypatch, tmp_path / "bin", [f"990_{k}|PENDING|0:00||JobHeldUser|{k}|{array}/job.sbatch"
                                                for k in range(2)])
    said = [line for line in status(capsys, array)[1].splitlines() if "is held" in line or "are held" in line]
    assert said == ["next: jobs 990_[0-1] are held (JobHeldUser: `--hold`, or `scontrol hold`): "
                    "`scontrol release 990_[0-1]` lets them start"], said
    fake_squeue(monkeypatch, tmp_path / "bin", [f"983|PENDING|0:00||DependencyNeverSatisfied|N/A|{build}/job.sbatch"])
    assert ("next: job 983 will not start as asked (DependencyNeverSatisfied: a `--dependency` that can never be "
            "met): `scancel 983`, change `extra` in the spec's `slurm` block, compile and submit again") \
        in status(capsys, build)[1]


def test_array_tasks_that_will_never_start_are_one_step(tmp_path, capsys, monkeypatch):
    """Every task of a 200-task array asking for more time than the partition allows pends
    for it: a step per task, each with its own scancel."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=200, num_samples=200)
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"800_{k}|PENDING|0:00||PartitionTimeLimit|{k}|{build}/job.sbatch" for k in range(200) if k != 7]
                + [f"812_7|PENDING|0:00||PartitionTimeLimit|7|{build}/job.sbatch"])  # resubmitted
    out = status(capsys, build)[1]
    said = [line for line in out.splitlines() if "will not start" in line]
    assert said == ["next: 200 jobs (800_[0-6,8-199] 812_7) will not start as asked (PartitionTimeLimit: a longer "
                    "time limit than the partition allows): `scancel 800_[0-6,8-199] 812_7`, change `time` in "
                    "the spec's `slurm` block, compile and submit again"], out


def test_the_newest_job_output_of_each_shard_is_found(tmp_path):
    from hpoc.commands import joblogs

    for name in ("arr-700_0.err", "arr-700_1.err", "arr-702_1.err", "arr-99_1.err", "arr-preflight-703_0.err",
                 "other-704_0.err", "arr-705_0.out"):
        (tmp_path / name).write_text("")
    found = joblogs.newest(tmp_path, "arr")
    assert {k: v["job_id"] for k, v in found.items()} == {0: "700_0", 1: "702_1"}
    assert found[1]["err"] == str(tmp_path / "arr-702_1.err")
    assert joblogs.newest(tmp_path / "missing", "arr") == {}


def test_another_specs_run_in_the_same_storage_is_not_shown_as_this_studys(tmp_path, capsys):
    """Two specs with the same storage: status of the one that never ran showed the other's
    trials as its own, `finished`, and `next: results` - not a word of the other plan."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    other = SPEC.replace("grid(0.1, 0.01, 0.001)", "grid(0.5, 0.05, 0.005)")
    (tmp_path / "other.hpo").write_text(other)
    from hpoc.results.source import spec_plan

    ran = spec_plan(tmp_path / "other.hpo")
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0, err
    assert f"\nwarning: {exp} holds a run of a different plan (" in out
    assert "the plans differ in `space`; the trials shown are that run's\n" in out
    assert out.endswith("next: this plan cannot run there: give the spec a `storage.name` of its own, "
                        "or move that run aside with `--fresh`\n"), out
    doc = json.loads(status(capsys, tmp_path / "study.hpo", "--json")[1])
    assert "holds a run of a different plan" in doc["other_plan"]
    # The spec that ran reads its own run as before.
    out = status(capsys, tmp_path / "other.hpo")[1]
    assert "warning:" not in out and "next: results:" in out


def test_a_run_of_an_hpoc_from_before_a_key_is_this_studys_in_status_as_in_run(tmp_path, capsys):
    from hpoc.plan import plan_hash
    from hpoc.results.source import spec_plan
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    ran = spec_plan(tmp_path / "study.hpo")
    del ran["resources"]["find_unused_parameters"], ran["content_hash"]  # an hpoc before the key
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0 and "warning:" not in out and "next: results:" in out, out
    ran["resources"]["pin_memory"] = True  # a key of another hpoc's plans, not of this one's
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert "another hpoc version: it has `resources.pin_memory`, which this hpoc's plans lack" in out, out
    assert out.endswith("next: this hpoc cannot resume that run: resume it with the hpoc version that "
                        "started it, or move that run aside with `--fresh`\n"), out


def test_a_study_whose_job_was_cancelled_before_it_started_says_how_to_start_it(tmp_path, capsys, monkeypatch):
    """scancel during bring-up: `not started`, the job CANCELLED, and no `next:` line."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    (build / "tiny-98.err").write_text("slurmstepd-node1: error: *** JOB 98 ON node1 CANCELLED AT "
                                       "2026-11-29T08:24:02 ***\nhpoc: terminated (SIGTERM)\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"98": "CANCELLED"})
    out = status(capsys, build)[1]
    assert "job 98  CANCELLED" in out and "0      not started" in out
    assert out.endswith(f"next: submit it again: `sbatch {build}/job.sbatch`\n"), out
    # While a job of it is queued, there is nothing to do but wait.
    fake_squeue(monkeypatch, tmp_path / "bin", [f"99|PENDING|0:00||Resources|N/A|{build}/job.sbatch"])
    assert "next:" not in status(capsys, build)[1]


def test_the_hints_for_a_config_read_with_a_pipe_key_keep_it():
    """A config with several HPO pipelines needs `--pipe-key` on every command that reads it."""
    from hpoc.commands.status_next import _retry_command
    from hpoc.yaml import PIPE_KEY

    status = {"build_dir": None, "shards": [{"shard": 0}]}
    token = PIPE_KEY.set("hpo_training_pipeline")
    try:
        assert _retry_command(status, [0], "config.yaml") == (
            "`hpoc run config.yaml --pipe-key hpo_training_pipeline --local --retry-errored` "
            "(or `hpoc submit config.yaml --pipe-key hpo_training_pipeline --retry-errored`)")
    finally:
        PIPE_KEY.reset(token)
    assert _retry_command(status, [0], "config.yaml") == (
        "`hpoc run config.yaml --local --retry-errored` (or `hpoc submit config.yaml --retry-errored`)")


def test_a_study_never_started_says_how_to_submit_it(tmp_path, capsys, monkeypatch):
    """Compiled and never submitted, or its job cancelled while it pended (which leaves no
    output): status said "not started" and nothing to do."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "my build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    out = status(capsys, build)[1]
    assert "0      not started" in out and "jobs:" not in out
    assert out.endswith(f"next: submit it: `sbatch '{build}/job.sbatch'`\n"), out


def test_a_failed_array_task_whose_err_says_nothing_gets_its_why_from_the_summary(
        tmp_path, capsys, monkeypatch):
    """The trials' errors go to their own error.txt: a shard whose every trial failed can
    leave an .err with no error line, and its job had no `why` where other failed jobs do."""
    from submit_support import fake_squeue

    build = array_with_a_failed_shard(tmp_path, "Traceback (most recent call last):\n  ...\nValueError: boom",
                                      "[hpoc] 00:00:09 | 1/1 trials finished\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {"800_0": "COMPLETED", "800_1": "FAILED"})
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert (f"next: job 800_1 FAILED: shard 1: every trial failed (1 of 1): ValueError: boom "
            f"(its output: {build}/arr-800_1.err)") in out, out


def test_an_experiment_directory_is_not_offered_to_hpoc_run(tmp_path, capsys):
    """`hpoc run` takes a spec or a plan: `hpoc run results/tiny --local --retry-errored`, as
    status of an experiment directory said, fails."""
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "ERROR" if i else "TERMINATED"}
                          for i in range(3)], metric="val_accuracy", mode="max")
    out = status(capsys, exp)[1]
    assert f"hpoc run {exp}" not in out and f"hpoc submit {exp}" not in out
    assert "`hpoc run SPEC --local --retry-errored` (or `hpoc submit SPEC --retry-errored`; " \
           "SPEC: the study file that ran it)" in out
    (exp / "summary.json").unlink()  # interrupted
    out = status(capsys, exp)[1]
    assert f"hpoc run {exp}" not in out and "`hpoc run SPEC --local`" in out


def test_a_build_dir_of_another_plan_version_shows_the_trials_of_its_storage(tmp_path, capsys):
    exp = finished_local_run(tmp_path)
    plan = {**make_plan(tmp_path / "results", "tiny"), "plan_version": 0}
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "plan.json").write_text(json.dumps(plan))
    code, out, err = status(capsys, tmp_path / "build")
    assert code == 0, err
    assert "study `tiny`: finished" in out
    assert f"warning: {tmp_path / 'build' / 'plan.json'}: plan_version 0 is not supported" in out
    assert f"its trials are read without it, from {exp}" in out


def test_a_local_study_whose_every_trial_failed_says_with_what(tmp_path, capsys):
    """No job to take a `why` from: status showed `errored 3` and the retry hint, never the error."""
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "ERROR",
                           "error": "Traceback (most recent call last):\nKeyError: 'label'"}
                          for i in range(3)], metric="val_accuracy", mode="max")
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert "\nshard 0: every trial failed (3 of 3): KeyError: 'label'\n" in out, out


def test_shards_in_which_every_trial_failed_alike_are_one_line(tmp_path, capsys):
    """A trainer that fails every trial failed every shard of an array: a line per shard."""
    exp = tmp_path / "arr"
    for k in range(30):
        shard = exp / f"shard-{k}"
        trial_dir(shard, f"aaaaa_{k:05d}", {"lr": 0.1}, [{"val_loss": 0.5}], done=False,
                  error="ValueError: boom")
        path = summary(shard, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "ERROR",
                                       "error": "ValueError: boom"}], shard=k)
        path.write_text(json.dumps({**json.loads(path.read_text()), "status_counts": {"ERROR": 1}}))
    code, out, err = status(capsys, exp)
    assert code == 0, err
    said = [line for line in out.splitlines() if "ValueError: boom" in line]
    assert said == ["shards 0-29: every trial failed (1 of 1): ValueError: boom"], out


def test_a_summary_without_counts_is_read_without_a_traceback(tmp_path, capsys):
    """A summary.json of another shape (no `num_trials`, `status_counts`) gave an internal error."""
    exp = finished_local_run(tmp_path)
    (exp / "summary.json").write_text(json.dumps(
        {"study": "tiny", "trials": [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}]}))
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "study `tiny`: finished" in out and "failed" not in out


def test_an_empty_experiment_directory_is_a_study_not_started(tmp_path, capsys):
    """An experiment directory that holds nothing yet was an error ("no trials found")."""
    exp = tmp_path / "results" / "tiny"
    exp.mkdir(parents=True)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert out.startswith("study `tiny`: not started; budget unknown (read without a plan)\n")
    assert out.endswith("next: start it: `hpoc run SPEC --local` or `hpoc submit SPEC` (SPEC: the study file "
                        "whose storage this is)\n")
    run_lock(exp)  # a run that has not started a trial yet
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert doc["state"] == "running" and doc["shards"][0]["run"]["pid"] == 1
    (exp / ".hpoc-trials.json").write_text('{"aaaaa_00000": "PENDING"}')  # its driver's first view
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert doc["state"] == "running"
    (exp / "notes.txt").write_text("not a study")  # something else: still said to be no experiment
    code, _, err = status(capsys, exp)
    assert code == 2 and "no trials found" in err


def test_a_run_killed_before_its_first_trial_leaves_a_study_not_started(tmp_path, capsys):
    """`kill -9` of `hpoc run` as Ray began: its plan marker, its dead lock and Ray's first
    files, no trial. `hpoc status DIR` said "no trials found ... or this is not an hpoc/Ray
    Tune experiment directory" (exit 2), where `hpoc status SPEC` said not started."""
    from hpoc.compiler import compile_path
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    plan = compile_path(tmp_path / "study.hpo").plan
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    run_lock(exp, pid=2 ** 22 + 1)  # above any pid_max: its process is gone
    (exp / "tuner.pkl").write_bytes(b"\x80\x04.")
    (exp / ".validate_storage_marker").write_text("")
    for target in (exp, tmp_path / "results", tmp_path / "study.hpo"):
        code, out, err = status(capsys, target)
        assert code == 0, err
        assert out.startswith("study `tiny`: not started") and "next: start it" in out, out


def test_trials_a_scheduler_paused_are_paused_not_pending(tmp_path, capsys):
    """PBT pauses trials while others catch up: status counted them as pending, where
    `hpoc results` labels them paused."""
    exp = finished_local_run(tmp_path)
    summary(exp, "tiny", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"},
                          {"trial_id": "aaaaa_00001", "status": "PAUSED"},
                          {"trial_id": "aaaaa_00002", "status": "PAUSED"}], metric="val_accuracy", mode="max")
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert doc["totals"] == {"done": 1, "running": 0, "paused": 2, "pending": 0, "errored": 0}
    out = status(capsys, exp)[1]
    assert "shard  state     done  running  paused  pending  errored  best val_accuracy\n" in out
    (tmp_path / "other").mkdir()
    finished_local_run(tmp_path / "other")  # no paused trial: no column for them
    out = status(capsys, tmp_path / "other" / "results" / "tiny")[1]
    assert "shard  state     done  running  pending  errored  best val_accuracy\n" in out


def test_a_study_of_many_shards_lists_the_ones_to_look_at_and_counts_the_rest(
        tmp_path, capsys, monkeypatch):
    """A 30-shard study printed a row (and a job line) per shard: the one shard that needs
    attention was lost among the finished ones."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=30, num_samples=30)
    for k in range(30):
        shard = storage / "arr" / f"shard-{k}"
        trial_dir(shard, f"aaaaa_{k:05d}", {"dropout": 0.01 * k}, [{"val_loss": 0.5 - 0.01 * k}] * 6)
        if k != 7:  # shard 7's driver was killed: no summary
            summary(shard, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "TERMINATED"}],
                    best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5 - 0.01 * k}})
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    code, out, err = status(capsys, build)
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines() if re.match(r"(\d+|all) ", line)]
    assert rows == ["7", "all"]
    assert "… 29 more shard(s) not listed: 29 finished (--all lists every shard)" in out
    code, out, err = status(capsys, build, "--all")
    assert sum(bool(re.match(r"\d+ ", line)) for line in out.splitlines()) == 30

    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"800_{k}|PENDING|0:00||Priority|{k}|{build}/job.sbatch" for k in range(30)])
    code, out, err = status(capsys, build)
    jobs = [line for line in out.splitlines() if line.startswith("  shard ")]
    assert len(jobs) == 20 and any(job.startswith("  shard 7  job 800_7  ") for job in jobs)
    assert "… 10 more job(s) not listed: 10 PENDING" in out


def test_the_shards_and_jobs_listed_first_are_the_ones_to_act_on(tmp_path, capsys, monkeypatch):
    """Of a 60-task array, 25 shards finished with an errored trial each and filled the 20
    rows; the 5 whose jobs failed, the ones to act on, were only counted. Their jobs came
    after 20 pending ones."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=60, num_samples=60)
    failed = range(55, 60)
    for k in [*range(25), *failed]:
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 2, done=k < 25,
                  error="ValueError: nan" if k < 25 else None)
        if k < 25:
            summary(exp, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "ERROR"}], shard=k,
                    best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5}})
        else:
            (build / f"arr-800_{k}.err").write_text("OSError: [Errno 122] Disk quota exceeded\n")
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"800_{k}|PENDING|0:00||JobArrayTaskLimit|{k}|{build}/job.sbatch" for k in range(25, 55)])
    _fake_scontrol(tmp_path / "bin", {f"800_{k}": "FAILED" for k in failed})
    code, out, err = status(capsys, build)
    assert code == 0, err
    acted_on = {str(k) for k in failed}
    rows = [line.split()[0] for line in out.splitlines() if re.match(r"\d+ ", line)]
    assert acted_on <= set(rows) and len(rows) == 20, out
    jobs = [line.split()[1] for line in out.splitlines() if line.startswith("  shard ")]
    assert acted_on <= set(jobs) and len(jobs) == 20, out
    # the finished shards past the rows have errored trials: the count says so
    assert "… 40 more shard(s) not listed: 25 finished with errored trials, 15 pending (" in out, out


def test_the_jobs_listed_are_those_of_the_shards_listed(tmp_path, capsys, monkeypatch):
    """An array running 10 tasks at a time listed its 10 running shards in the table and 20
    of its pending jobs above it: two different sets of shards on one screen."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=200, num_samples=200)
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"900_{k}|RUNNING|0:05|n{k}|None|{k}|{build}/job.sbatch" for k in range(10)]
                + [f"900_{k}|PENDING|0:00||JobArrayTaskLimit|{k}|{build}/job.sbatch" for k in range(10, 200)])
    out = status(capsys, build)[1]
    rows = [line.split()[0] for line in out.splitlines() if re.match(r"\d+ ", line)]
    jobs = [line.split()[1] for line in out.splitlines() if line.startswith("  shard ")]
    assert jobs == rows == [str(k) for k in range(20)], out
    assert "… 180 more job(s) not listed: 180 PENDING" in out


def test_the_next_step_for_many_shards_names_their_array_indices_as_ranges(tmp_path, capsys, monkeypatch):
    """A 1000-shard array not started yet said `sbatch --array=0,1,2,…,999`: 4,000
    characters to paste, and longer than sbatch's own limit on some sites."""
    from submit_support import fake_squeue

    fake_squeue(monkeypatch, tmp_path / "bin", [])  # none queued (squeue answers)
    storage, build, plan = sbatch_array(tmp_path, shards=300, num_samples=300)
    for k in (3, 4, 5, 9):  # ran to the end; the others never started
        shard = storage / "arr" / f"shard-{k}"
        trial_dir(shard, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
        summary(shard, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "TERMINATED"}],
                best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5}})
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert f"sbatch --array=0-2,6-8,10-299 {build}/job.sbatch`" in out, out


def test_shards_stopped_while_others_run_are_named_as_ranges(tmp_path, capsys, monkeypatch):
    """A 200-task array whose tasks 2-149 were cancelled while two ran said `shard(s) 2, 3,
    4, …, 149 stopped`: the command after it gave them as a range."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=200, num_samples=200)
    for k in range(200):
        shard = storage / "arr" / f"shard-{k}"
        trial_dir(shard, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6, done=k >= 150)
        if k >= 150:
            summary(shard, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "TERMINATED"}],
                    best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5}})
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"800_{k}|RUNNING|0:10|node{k}|None|{k}|{build}/job.sbatch" for k in (0, 1)])
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert (f"next: shard(s) 2-149 stopped: once the other jobs end, "
            f"`sbatch --array=2-149 {build}/job.sbatch` resumes them") in out, out


def test_many_jobs_that_failed_alike_are_one_next_step(tmp_path, capsys, monkeypatch):
    """Every task of a 30-shard array failed on the same import: status gave 30 `next:`
    lines saying the same thing, and the advice after each."""
    from submit_support import fake_squeue

    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "arr", shards=30))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    for k in range(30):
        exp = storage / "arr" / f"shard-{k}"
        trial_dir(exp, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
        path = summary(exp, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "ERROR"}])
        path.write_text(json.dumps({**json.loads(path.read_text()),
                                    "status_counts": {"ERROR": 1}}))
        (build / f"arr-800_{k}.err").write_text("ValueError: boom\n[hpoc] 1 trial(s) errored\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    _fake_scontrol(tmp_path / "bin", {f"800_{k}": "FAILED" for k in range(30)})
    code, out, err = status(capsys, build)
    assert code == 0, err
    said = [line for line in out.splitlines() if line.startswith("next:") and "boom" in line]
    assert said == [f"next: 30 jobs (800_[0-29]) FAILED: ValueError: boom "
                    f"(the first one's output: {build}/arr-800_0.err)"], out


def test_a_local_study_does_not_ask_squeue(tmp_path, capsys, monkeypatch):
    """A study without a `slurm` block (no job script, nothing submitted to SLURM) has no
    SLURM jobs: a squeue that could not be asked told it to wait for one before resuming."""
    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "here"))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "squeue").write_text("#!/bin/sh\necho 'no configuration' >&2\nexit 1\n")
    (tmp_path / "bin" / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert "squeue" not in out, out


def test_a_queue_squeue_cannot_be_asked_is_not_taken_for_an_empty_one(tmp_path, capsys, monkeypatch):
    """squeue failing (no SLURM_CONF in this shell, the controller down) read as "no jobs":
    status suggested `sbatch --array=1` for a shard whose job was in fact queued."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=2, num_samples=4)
    _shard_0_done(storage, tmp_path / "bin", monkeypatch)
    said = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    (tmp_path / "bin" / "squeue").write_text(f"#!/bin/sh\necho '{said}' >&2\nexit 1\n")
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert f"squeue could not be asked ({said})" in out, out
    assert "sbatch" not in out and "hpoc submit" not in out
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["squeue_error"] == said


def test_a_job_squeue_cannot_be_asked_about_is_not_called_ended(tmp_path, capsys, monkeypatch):
    """With squeue failing, a submitted job that neither squeue nor scontrol could answer for
    was shown ENDED, with its log's last error as why it ended: a job that may be running."""
    from submit_support import fake_squeue

    build, log = submitted_job_log(tmp_path)
    log.write_text("hpoc: error: shard 0 failed (study driver exit status 1); see this job's log\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    said = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    (tmp_path / "bin" / "squeue").write_text(f"#!/bin/sh\necho '{said}' >&2\nexit 1\n")
    _fake_scontrol(tmp_path / "bin", {})
    code, out, err = status(capsys, build)
    assert code == 0, err
    assert f"squeue could not be asked ({said})" in out, out
    assert "job 968 ended" not in out and "shard 0 failed" not in out, out


def test_a_finished_study_whose_spec_raises_num_samples_has_the_added_trials_to_run(tmp_path, capsys):
    from hpoc.compiler import compile_path
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    plan = compile_path(tmp_path / "study.hpo").plan
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    (tmp_path / "study.hpo").write_text(SPEC + "trials { num_samples = 2 }\n")
    code, out, err = status(capsys, tmp_path / "study.hpo", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["budget"] == 6
    # its own word: nothing interrupted it, and the next step is to run it again, not resume
    assert doc["state"] == "extended" and doc["shards"][0]["state"] == "extended"
    assert doc["totals"]["done"] == 3 and doc["totals"]["pending"] == 3
    spec = tmp_path / "study.hpo"
    assert doc["next"] == [f"the spec extends the study (num_samples 1 → 2 × a 3-point grid = 3 → 6 trials): run the study again as "
                           f"you started it (`hpoc run {spec} --local`, `hpoc submit`): it runs the "
                           "added trials (those that ran are kept)"], doc["next"]
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert "study `tiny`: extended; budget 6 trial(s)" in out and "interrupted" not in out, out


def test_status_reads_a_shards_marker_once(tmp_path, capsys, monkeypatch):
    """Loading the results read it for another plan's run and for what this plan extends,
    and status again for the shard's state: three reads of one file on a shared filesystem."""
    from hpoc.compiler import compile_path
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    plan = compile_path(tmp_path / "study.hpo").plan
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    (tmp_path / "study.hpo").write_text(SPEC + "trials { num_samples = 2 }\n")
    reads, real = [], marker.read
    monkeypatch.setattr(marker, "read", lambda path: reads.append(path) or real(path))
    doc = json.loads(status(capsys, tmp_path / "study.hpo", "--json")[1])
    assert doc["shards"][0]["state"] == "extended" and doc["shards"][0]["grown"] == "num_samples 1 → 2 × a 3-point grid = 3 → 6 trials"
    assert reads == [exp], reads


def test_a_study_is_extended_only_when_every_shard_ran_to_its_end():
    """Shards extended and finished: the study is extended (a resubmission runs the added
    trials); with a shard that stopped or never started it is interrupted, as before."""
    from hpoc.commands.status import _overall

    assert _overall(["extended", "finished"]) == _overall(["extended", "extended"]) == "extended"
    assert _overall(["extended", "interrupted"]) == "interrupted"
    assert _overall(["extended", "not started"]) == "interrupted"
    assert _overall(["extended", "running"]) == "running"


def test_an_extended_study_whose_job_is_queued_shows_the_job_and_no_second_submission(
        tmp_path, capsys, monkeypatch):
    """The job that runs the added trials pends: its shard read `extended` (the old run's
    summary says finished, its marker the old budget) and `next:` said to submit it again."""
    import copy

    from submit_support import fake_squeue

    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    exp, build = finished_local_run(tmp_path), tmp_path / "build"
    plan = make_plan(tmp_path / "results", "tiny")
    ran = copy.deepcopy(plan)
    ran["trials"]["num_samples"] = 3
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["state"] == "extended", doc["state"]  # nothing queued: the user's step
    fake_squeue(monkeypatch, tmp_path / "bin", [f"990|PENDING|0:00||Resources|N/A|{build}/job.sbatch"])
    doc = json.loads(status(capsys, build, "--json")[1])
    assert doc["state"] == "queued" and doc["shards"][0]["state"] == "pending", doc["shards"][0]
    assert doc["shards"][0]["grown"] == "num_samples 3 → 8" and doc["totals"]["pending"] == 5
    assert not any("sbatch" in step or "submit" in step for step in doc["next"]), doc["next"]


def test_a_study_run_again_by_sbatch_names_that_job_and_resumes_the_same_way(tmp_path, capsys, monkeypatch):
    """Submitted by `hpoc submit` (659), run again by `sbatch BUILD/job.sbatch` (660): status
    named 659 once 660 had completed, and its next step said `hpoc submit` either way."""
    from submit_support import fake_squeue

    from hpoc.submit.params import study_id

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "tiny")
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    (build / "jobs.json").write_text(json.dumps([{"cluster": "slurm", "submitted": 0, "study_id": study_id(plan),
                                                  "jobs": [{"job_id": "659", "shard": 0}]}]))
    trial_dir(storage / "tiny", "aaaaa_00000", {"dropout": 0.1}, [{"val_loss": 0.5}] * 2, done=False)
    (build / "tiny-660.err").write_text("hpoc: terminated (SIGTERM)\n")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    for state in ("CANCELLED", "COMPLETED"):
        _fake_scontrol(tmp_path / "bin", {"659": "COMPLETED", "660": state})
        out = status(capsys, build)[1]
        assert f"  shard 0  job 660  {state}" in out and "659" not in out, out
        assert f"next: resume: `sbatch {build}/job.sbatch`" in out, out
    # Submitted by hpoc again since (661): that is how it goes on.
    (build / "jobs.json").write_text(json.dumps([{"cluster": "slurm", "submitted": 0, "study_id": study_id(plan),
                                                  "jobs": [{"job_id": "661", "shard": 0}]}]))
    _fake_scontrol(tmp_path / "bin", {"661": "COMPLETED", "660": "COMPLETED"})
    out = status(capsys, build)[1]
    assert "job 661  COMPLETED" in out and f"next: resume: `hpoc submit {build}`" in out, out


def test_results_of_an_extended_study_say_it_has_trials_still_to_run(tmp_path, capsys):
    """`hpoc results` ranked the trials that ran and said nothing of those the raised
    `num_samples` adds, where status says `extended`."""
    from hpoc.compiler import compile_path
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    plan = compile_path(tmp_path / "study.hpo").plan
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    assert "extended" not in main_err(capsys, "results", tmp_path / "study.hpo")
    (tmp_path / "study.hpo").write_text(SPEC + "trials { num_samples = 2 }\n")
    said = [line for line in main_err(capsys, "results", tmp_path / "study.hpo").splitlines() if "extended" in line]
    assert said == [f"hpoc results: the study is extended (num_samples 1 → 2 × a 3-point grid = 3 → 6 trials): its added trials have not run "
                    f"yet (`hpoc status {tmp_path / 'study.hpo'}` says how to run them)"], said


def main_err(capsys, *argv) -> str:
    assert main([*map(str, argv)]) == 0
    return capsys.readouterr().err


def test_a_study_its_time_budget_ended_says_so_and_how_to_extend_it(tmp_path, capsys):
    """6 of 500 trials ran and status said `finished` with nothing pending: not that the
    time budget stopped it, nor that a longer one runs the rest."""
    exp = finished_local_run(tmp_path)
    path = exp / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "planned": 500, "budget_reached_s": 3600}))
    words = "time budget of 1 h reached after 3 of 500 trial(s)"
    spec = tmp_path / "study.hpo"
    out = status(capsys, spec)[1]
    assert out.count(words) == 1 and f"ended: {words}\n" in out, out
    assert ("next: raise `trials.time_budget` (or `trials.num_samples`) in the spec and run the study "
            "again to extend it (the trials that ran are kept)") in out, out
    assert json.loads(status(capsys, spec, "--json")[1])["shards"][0]["ended"] == words
    said = [line for line in main_err(capsys, "results", spec).splitlines() if "time budget" in line]
    assert said == [f"hpoc results: {words}"], said
    assert main(["report", str(spec), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
    assert (tmp_path / "r.html").read_text().count(words) == 1


def test_a_run_a_signal_stopped_says_which_alike_in_status_and_results(tmp_path, capsys):
    """status said `interrupted` and results nothing, whether the job's time limit (which
    requeues it) or a scancel stopped it."""
    exp = finished_local_run(tmp_path)
    path = exp / "summary.json"
    for signum, words in (("SIGTERM", "stopped by a signal (SIGTERM): running it again resumes it"),
                          ("SIGUSR2", "stopped at its job's time limit (SIGUSR2): the job requeues itself and resumes")):
        path.write_text(json.dumps({**json.loads(path.read_text()), "interrupted": True, "signal": signum}))
        out = status(capsys, exp)[1]
        assert out.count(words) == 1 and f"ended: {words}\n" in out, out
        assert f"hpoc results: {words}\n" in main_err(capsys, "results", exp)


def test_shards_their_time_budget_ended_are_one_line_in_status_and_results(tmp_path, capsys, monkeypatch):
    """Every task of a 30-task array reached its time budget: status and results said
    `ended: shard K: time budget … reached after …` thirty times."""
    from submit_support import fake_squeue

    storage, build, plan = sbatch_array(tmp_path, shards=30, num_samples=3000)
    for k in range(30):
        shard = storage / "arr" / f"shard-{k}"
        trial_dir(shard, f"aaaaa_{k:05d}", {"dropout": 0.1}, [{"val_loss": 0.5}] * 6)
        summary(shard, "arr", [{"trial_id": f"aaaaa_{k:05d}", "status": "TERMINATED"}],
                best={"trial_id": f"aaaaa_{k:05d}", "metrics": {"val_loss": 0.5}})
        path = shard / "summary.json"
        budget = 3600 if k != 7 else 60  # shard 7 was given another budget
        path.write_text(json.dumps({**json.loads(path.read_text()), "planned": 100, "budget_reached_s": budget}))
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    out = status(capsys, build)[1]
    ended = [line for line in out.splitlines() if line.startswith("ended: ")]
    assert ended == ["ended: shards 0-6, 8-29: time budget of 1 h reached",
                     "ended: shard 7: time budget of 1 min reached after 1 of 100 trial(s)"], out
    said = [line for line in main_err(capsys, "results", build).splitlines() if "time budget" in line]
    assert said == ["hpoc results: shards 0-6, 8-29: time budget of 1 h reached",
                    "hpoc results: shard 7: time budget of 1 min reached after 1 of 100 trial(s)"], said


def test_a_study_its_searcher_ended_early_says_so_alike_and_asks_for_no_rerun(tmp_path, capsys):
    """3 of 500 trials ran because bayesopt had nothing new to suggest: status said
    `finished` with no reason, and a larger budget would only restore a searcher that
    suggests nothing."""
    exp = finished_local_run(tmp_path)
    path = exp / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "planned": 500, "search_ended": "bayesopt"}))
    words = ("the search ended: `search bayesopt` had no new configuration to suggest (it suggested one "
             "configuration more than `patience` times: it has converged) after 3 of 500 trial(s)")
    spec = tmp_path / "study.hpo"
    out = status(capsys, spec)[1]
    assert out.count(words) == 1 and f"ended: {words}\n" in out, out
    assert "raise `trials" not in out and "pending" not in out.split("ended:")[0], out
    said = [line for line in main_err(capsys, "results", spec).splitlines() if "search ended" in line]
    assert said == [f"hpoc results: {words}"], said
    assert main(["report", str(spec), "-o", str(tmp_path / "r.html"), "--no-png"]) == 0
    assert (tmp_path / "r.html").read_text().count(html.escape(words)) == 1


def test_a_time_budget_that_ended_every_trial_before_its_first_report_is_not_blamed_on_the_trainer(
        tmp_path, capsys):
    """A 10 s budget stopped both trials before their first epoch: the run said so, but
    status, results and its table asked whether the trainer calls `self.report`."""
    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    trials = []
    for i in range(2):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1, "epochs": 2}, [])
        trials.append({"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED", "metrics": {}})
    path = summary(exp, "tiny", trials, metric="val_accuracy", mode="max")
    path.write_text(json.dumps({**json.loads(path.read_text()), "status_counts": {"TERMINATED": 2},
                                "planned": 3, "budget_reached_s": 10}))
    said = "the time budget (`trials.time_budget`, 10 s) ended the study before any did"
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert said in out and "self.report" not in out, out
    main(["results", str(exp)])
    out, err = capsys.readouterr()
    assert said in err and said in out and "self.report" not in out + err, out + err


def test_a_spec_never_run_says_how_to_start_it(tmp_path, capsys):
    """`hpoc status study.hpo` before any run: "not started" and nothing to do, where a build
    directory's status said how to submit it."""
    (tmp_path / "study.hpo").write_text(SPEC)
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert "0      not started" in out
    spec = tmp_path / "study.hpo"
    assert out.endswith(f"next: start it: `hpoc run {spec} --local` (the spec has no `slurm` block: "
                        "`hpoc submit` would run it on this machine too; add one to submit it to SLURM)\n"), out
    (tmp_path / "study.hpo").write_text(SPEC + "slurm { nodes = 1\n time = 00:10:00 }\n")
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert out.endswith(f"next: start it: `hpoc run {spec} --local` (or `hpoc submit {spec}`)\n"), out


def test_errors_that_differ_only_in_their_numbers_are_one_error(tmp_path, capsys):
    """Two trials of widths 16 and 32 failed on one shape mistake: status said the first
    error "(and 1 other error(s))", as if a second thing were wrong."""
    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    trials = []
    for i, width in enumerate((16, 32)):
        error = f"RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x13 and 12x{width})"
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1, "epochs": 2}, [], error=error)
        trials.append({"trial_id": f"aaaaa_0000{i}", "status": "ERROR", "error": error})
    path = summary(exp, "tiny", trials, metric="val_accuracy", mode="max")
    path.write_text(json.dumps({**json.loads(path.read_text()), "status_counts": {"ERROR": 2}}))
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert ("shard 0: every trial failed (2 of 2): RuntimeError: mat1 and mat2 shapes cannot be "
            "multiplied (64x13 and 12x16)\n") in out, out


def test_a_build_directory_copied_elsewhere_warns_that_its_storage_is_the_clusters(tmp_path, capsys):
    """A build directory copied off the cluster: its study showed `not started`, nothing else."""
    build = tmp_path / "laptop" / "build"
    write_plan(build, make_plan(tmp_path / "cluster" / "results", "s", workdir=tmp_path / "cluster"))
    code, out, _ = status(capsys, build)
    assert code == 0
    assert f"\nwarning: the plan was compiled in {tmp_path / 'cluster'}, which is not here" in out, out


def test_a_study_it_cannot_read_is_not_said_to_be_not_started(tmp_path, capsys, monkeypatch):
    """Another user's study on a shared filesystem, its directory closed: status said `not
    started` and how to start it."""
    exp = tmp_path / "storage" / "s"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    build = tmp_path / "build"
    write_plan(build, make_plan(tmp_path / "storage", "s", workdir=tmp_path))
    closed(monkeypatch, exp)
    code, out, err = status(capsys, build)
    assert code == 2 and "not started" not in out and f"{exp}: permission denied" in err, (out, err)


def test_an_experiment_directory_takes_its_budget_from_the_runs_marker(tmp_path, capsys):
    """Read without a plan, an interrupted study said `budget unknown` and counted none of
    the trials it never began as pending, though its run recorded its plan."""
    from hpoc.compiler import compile_source
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = compile_source('study "d"\npipeline { trainer = t:T }\n'
                          "space { lr = loguniform(1e-3, 1e-1), epochs = 2 }\n"
                          "trials { num_samples = 5 }\nsearch random\n", "d.hpo", str(tmp_path))
    exp = tmp_path / "results" / "d"
    for i in range(2):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.01 * (i + 1)}, [{"val_loss": 0.5}] * 2)
    summary(exp, "d", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in range(2)],
            interrupted=True)
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert out.startswith("study `d`: interrupted; budget 5 trial(s) (random)\n"), out
    doc = json.loads(status(capsys, exp, "--json")[1])
    assert doc["budget"] == 5 and doc["totals"]["pending"] == 3, doc["totals"]


def test_an_interrupted_local_run_without_resume_is_started_over_where_it_ran(tmp_path, capsys):
    """A spec with neither `resume` nor a `slurm` block, run with `hpoc run --local`: status
    said `hpoc submit study.hpo --fresh`, which runs the study on this machine all the same."""
    (tmp_path / "study.hpo").write_text(SPEC + "resume { enabled = false }\n")
    exp = tmp_path / "results" / "tiny"
    trial_dir(exp, "ccccc_00001", {"lr": 0.1, "epochs": 2}, [{"val_accuracy": 0.6}], done=False)
    run_lock(exp, pid=2 ** 22 + 12345, started=time.time() - 60)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0 and "interrupted" in out, out + err
    assert (f"next: resume is off in the study, so its unfinished run cannot go on: `hpoc run "
            f"{tmp_path / 'study.hpo'} --local --fresh` starts it over (the run so far is moved aside)\n") in out, out


def _moved_here(tmp_path) -> None:
    """A finished run whose marker says it ran from `scratch/` (the project moved since)."""
    from hpoc.plan import plan_hash
    from hpoc.results.source import spec_plan
    from hpoc.runtime import marker

    old = tmp_path / "scratch"
    old.mkdir()
    (old / "study.hpo").write_text(SPEC)
    ran = spec_plan(old / "study.hpo")
    exp = finished_local_run(tmp_path)
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)


def test_a_study_moved_since_its_run_is_that_study(tmp_path, capsys):
    """`mv` of the whole project, results inside: the run resumes where it is now, so
    status shows it as this spec's, without a warning of another plan."""
    _moved_here(tmp_path)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0, err
    assert "warning" not in out and "moved or copied" not in out, out


def test_a_study_moved_since_its_run_whose_spec_raises_num_samples_is_extended(tmp_path, capsys):
    """Moved with its project, then `num_samples` raised: status warned of another plan ("the
    plans differ in `source`, `storage`, `trials`") and said to undo the change or --fresh."""
    _moved_here(tmp_path)
    (tmp_path / "study.hpo").write_text(SPEC + "trials { num_samples = 2 }\n")
    code, out, err = status(capsys, tmp_path / "study.hpo", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["state"] == "extended" and doc["totals"]["pending"] == 3, doc
    assert doc["next"][0].startswith("the spec extends the study (num_samples 1 → 2"), doc["next"]
    code, out, err = main(["results", str(tmp_path / "study.hpo")]), *capsys.readouterr()
    assert code == 0 and "different plan" not in out + err, out + err
    assert "extended" in err, err


def test_a_moved_project_whose_spec_names_its_old_storage_by_an_absolute_path_is_told(tmp_path, capsys):
    """`mv` of the project, results inside, its spec naming the storage by an absolute path into
    it: status said "not started; next: start it", which started the study over at the old place."""
    from hpoc.plan import plan_hash
    from hpoc.results.source import spec_plan
    from hpoc.runtime import marker

    old, new = tmp_path / "scratch", tmp_path / "project"
    old.mkdir()
    (old / "study.hpo").write_text(SPEC.replace('path = "results"', f'path = "{old / "results"}"'))
    ran = spec_plan(old / "study.hpo")
    exp = finished_local_run(old)
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    (old / "study.hpo").write_text(SPEC.replace('path = "results"', f'path = "{old / "results"}"'))
    shutil.move(str(old), new)
    code, out, err = status(capsys, new / "study.hpo")
    assert code == 0, err
    assert (f"next: {old / 'results' / 'tiny'} holds no run, and {new / 'results' / 'tiny'} holds this "
            "study's run") in out and "set `storage.path` to \"results\"" in out and "start it" not in out, out
    code, out, err = main(["results", str(new / "study.hpo")]), *capsys.readouterr()
    assert code == 2 and "set `storage.path` to \"results\"" in err, err


def test_another_checkout_over_a_studys_results_is_told_where_it_resumes_not_only_fresh(tmp_path, capsys):
    """Another copy of the project whose spec names the same storage: status's next step was
    "give the spec a `storage.name` of its own, or move that run aside with `--fresh`", as for
    another spec's run."""
    from hpoc.plan import plan_hash
    from hpoc.results.source import spec_plan
    from hpoc.runtime import marker

    exp = finished_local_run(tmp_path)
    old = tmp_path / "scratch"
    old.mkdir()
    (old / "study.hpo").write_text(SPEC.replace('path = "results"', f'path = "{tmp_path / "results"}"'))
    ran = spec_plan(old / "study.hpo")
    assert ran["storage"]["path"] == str(tmp_path / "results"), ran["storage"]
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0, err
    assert f"it ran in {old}: moved or copied since?" in out, out
    assert out.endswith(f"next: {old} is another checkout of the project, and this is its run: resume it "
                        "from there, give this checkout's spec a `storage.name` of its own to run a study beside "
                        "it, or pass --fresh to start the study over here (that checkout's run is moved aside, "
                        "not resumed)\n"), out


def test_status_with_no_argument_shows_the_study_of_the_current_directory(tmp_path, capsys, monkeypatch):
    """`hpoc status` typed in a study's directory: its study file, and advice that names it."""
    monkeypatch.chdir(tmp_path)
    code, out, err = status(capsys)
    assert code == 2 and "no study in the current directory" in err and "Traceback" not in err
    (tmp_path / "study.hpo").write_text(SPEC)
    code, out, err = status(capsys)
    assert code == 0, err
    assert out.startswith("study `tiny`: not started") and "`hpoc run study.hpo --local`" in out
    code, out, err = status(capsys, ".")
    assert code == 0 and "`hpoc run study.hpo --local`" in out
    trial = tmp_path / "results" / "tiny" / "trial_a"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text("{}")
    monkeypatch.chdir(trial)  # typed in one trial's directory: pointed to its study, as with `.`
    code, out, err = status(capsys)
    assert code == 2 and "is one trial's directory; its study is the one above" in err


def test_an_empty_directory_given_as_dot_is_named(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "tiny"
    exp.mkdir()
    monkeypatch.chdir(exp)
    code, out, err = status(capsys, ".")
    assert code == 0, err
    assert out.startswith("study `tiny`: not started")


def test_a_misspelt_path_names_the_one_meant(tmp_path, capsys):
    (tmp_path / "study.hpo").write_text(SPEC)
    code, _, err = status(capsys, tmp_path / "stduy.hpo")
    assert code == 2 and f"= help: did you mean `{tmp_path / 'study.hpo'}`?" in err


def test_a_job_id_slurm_could_not_be_asked_about_says_so(tmp_path, capsys, monkeypatch):
    """"not found, or not a job hpoc submitted" hid that SLURM was never reached (no
    SLURM_CONF on this node, or no scontrol at all)."""
    monkeypatch.chdir(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    code, _, err = status(capsys, "4242")
    assert code == 2 and "SLURM cannot be asked here (no `scontrol`)" in err
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 'scontrol: fatal: Could not establish a "
                                      "configuration source' >&2\nexit 1\n")
    (bin_dir / "scontrol").chmod(0o755)
    code, _, err = status(capsys, "4242")
    assert code == 2 and "`scontrol` could not be asked (scontrol: fatal: Could not establish" in err
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\n"
                                      "exit 1\n")  # asked, and it knows no such job
    code, _, err = status(capsys, "4242")
    assert code == 2 and "job 4242: not found, or not a job hpoc submitted" in err


def test_an_sbatch_job_slurm_forgot_is_found_by_its_log(tmp_path, capsys, monkeypatch):
    """`sbatch build/job.sbatch`, and later `hpoc status JOBID`: once the controller forgot the
    job (MinJobAge, no accounting) it was "not a job hpoc submitted", though its .err lies
    beside plan.json, named after it (only `hpoc submit`'s records were looked at)."""
    from submit_support import fake_squeue

    monkeypatch.chdir(tmp_path)
    storage, build = tmp_path / "results", tmp_path / "build"
    write_plan(build, make_plan(storage, "tiny"))
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    for name in ("tiny-950.err", "tiny-960_0.err", "tiny-960_1.err"):
        (build / name).write_text("")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id "
                                               "specified' >&2\nexit 1\n")
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    for job in ("950", "960", "960_1"):
        code, out, err = status(capsys, job)
        assert code == 0 and out.startswith("study `tiny`: "), (job, err)
    code, _, err = status(capsys, "96")  # another job's id is no prefix of it
    assert code == 2 and "job 96: not found" in err


def test_a_forgotten_job_id_two_builds_have_logs_of_is_not_guessed(tmp_path, capsys, monkeypatch):
    """Job ids restart on another cluster (or after a controller reinstall): two builds here
    each held a `<study>-950.err`, and `hpoc status 950` showed the first one by name."""
    from submit_support import fake_squeue

    monkeypatch.chdir(tmp_path)
    for name in ("alpha", "beta"):
        build = tmp_path / "build" / name
        write_plan(build, make_plan(tmp_path / "results", name))
        (build / "job.sbatch").write_text("#!/bin/bash\n")
        (build / f"{name}-950.err").write_text("")
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    (tmp_path / "bin" / "scontrol").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id "
                                               "specified' >&2\nexit 1\n")
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    monkeypatch.chdir(tmp_path / "build")
    code, out, err = status(capsys, "950")
    assert code == 2 and out == "", out
    assert ("job 950: the logs of several builds name it (alpha, beta); pass the study's build "
            "directory instead") in err, err


def test_a_study_directory_after_its_run_is_read_through_its_spec(tmp_path, capsys, monkeypatch):
    """`hpoc status` beside study.hpo read results/tiny without the plan ("budget unknown"),
    while before the run it read the spec; an edited spec that names another storage
    leaves the directory read as it is."""
    finished_local_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = status(capsys)
    assert code == 0, err
    assert out.startswith("study `tiny`: finished; budget 3 trial(s) (grid)\n")
    (tmp_path / "study.hpo").write_text(SPEC.replace('name = "tiny"', 'name = "renamed"'))
    code, out, err = status(capsys)
    assert code == 0 and "read without a plan" in out


def test_a_directory_of_builds_names_them_or_shows_its_one(tmp_path, capsys, monkeypatch):
    """`hpoc compile alpha.hpo` and `hpoc compile beta.hpo` write build/alpha and build/beta:
    `hpoc status build` said "no trials found in build" (not an experiment directory)."""
    storage = tmp_path / "results"
    for name in ("alpha", "beta"):
        write_plan(tmp_path / "build" / name, make_plan(storage, name))
    code, out, err = status(capsys, tmp_path / "build")
    assert code == 2 and out == ""
    assert err == (f"hpoc: error: {tmp_path}/build holds 2 build directories: {tmp_path}/build/alpha, "
                   f"{tmp_path}/build/beta; pass one of them\n")
    assert main(["results", str(tmp_path / "build")]) == 2
    assert "holds 2 build directories" in capsys.readouterr().err
    (tmp_path / "build" / "beta" / "plan.json").unlink()
    monkeypatch.chdir(tmp_path / "build")
    code, out, err = status(capsys)  # in it, as in a study's directory
    assert code == 0 and out.startswith("study `alpha`"), out + err
    # A project's directory is read as before, a build beside its specs taken for no study
    (tmp_path / "alpha.hpo").write_text(SPEC)
    (tmp_path / "beta.hpo").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    code, out, err = status(capsys)
    assert code == 2 and "no study in the current directory" in err, out + err


def test_trials_that_never_reported_the_objective_name_the_spec_s_objective_as_a_fix(tmp_path, capsys):
    """`minimize val_mse` over a loop that reports `val_loss`: every trial failed, and status
    said "once what made them fail is fixed, `... --retry-errored`", which a changed objective
    (another plan) refuses."""
    (tmp_path / "study.hpo").write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    error = ("hpoc.runtime.returns.TrainerError: the trainer reported `train_loss`, `val_loss` but not "
             "`val_accuracy`, the objective's metric")
    trials = []
    for i in range(2):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1, "epochs": 2}, [], error=error)
        trials.append({"trial_id": f"aaaaa_0000{i}", "status": "ERROR", "error": error})
    path = summary(exp, "tiny", trials, metric="val_accuracy", mode="max")
    path.write_text(json.dumps({**json.loads(path.read_text()), "status_counts": {"ERROR": 2}}))
    out = status(capsys, tmp_path / "study.hpo")[1]
    assert ("next: 2 errored trial(s): report `val_accuracy` from the trainer (or name a metric it reports in "
            "the spec's `objective` and run with --fresh: another objective is another plan); then "
            "`hpoc run") in out, out


def test_a_full_disk_stop_under_retry_errored_false_says_to_resume_with_retry_errored(tmp_path, capsys):
    """A plain resume keeps the trials the full disk failed failed there; the run's own stop
    said --fresh (every finished trial lost). Both now say the retry that keeps them."""
    (tmp_path / "study.hpo").write_text(SPEC + "resume { retry_errored = false }\n")
    exp = tmp_path / "results" / "tiny"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1, "epochs": 2}, [{"val_accuracy": 0.5}] * 2)
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01, "epochs": 2}, [{"val_accuracy": 0.6}], done=False,
              error=f"OSError: [Errno 122] Disk quota exceeded: '{exp}/x'")
    why = f"trial aaaaa_00001: disk quota exceeded writing under {exp}"
    summary(exp, "tiny", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"},
                          {"trial_id": "aaaaa_00001", "status": "ERROR"}],
            interrupted=True, metric="val_accuracy", mode="max", stopped=why)
    code, out, err = status(capsys, tmp_path / "study.hpo")
    assert code == 0, err
    assert f"next: shard 0 stopped itself: {why}; free space and files under {exp} (or ask for a larger " \
           "quota), then resume with --retry-errored --from-checkpoint (HPOC_RETRY_ERRORED=checkpoint " \
           "for a job script): a plain resume keeps the trials the full disk failed failed " \
           "(`resume.retry_errored = false`)\n" in out, out


def test_a_state_held_back_long_is_a_warning(tmp_path, capsys):
    """The driver's line of a state held back save after save (whole_upload.HELD)."""
    from hpoc.runtime.whole_upload import HELD

    exp = finished_local_run(tmp_path)
    (exp / HELD).write_text("the experiment state was not saved for the last 9 saves (12 min): x\n")
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert "\nwarning: the experiment state was not saved for the last 9 saves (12 min): x\n" in out
    (exp / HELD).unlink()
    assert "warning" not in status(capsys, exp)[1]


def _time_limited(tmp_path: Path, ago: float, restart: int) -> tuple[Path, Path, Path, dict, float]:
    """A study of job.sbatch (`slurm.time` 00:20:00) whose run of job 979 (SLURM restart
    `restart`), started `ago` s before, its time limit stopped: (build, exp, summary path,
    summary, started)."""
    import slurm_plans

    storage, build = tmp_path / "results", tmp_path / "build"
    plan = make_plan(storage, "tiny")
    plan["slurm"] = dict(slurm_plans.BASE["slurm"], time="00:20:00", time_s=1200, gpus_per_node=0)
    write_plan(build, plan)
    (build / "job.sbatch").write_text("#!/bin/bash\n")
    exp = storage / "tiny"
    exp.mkdir(parents=True)
    started = time.time() - ago
    path = summary(exp, "tiny", [{"trial_id": "aaaaa_00000", "status": "PAUSED"}], interrupted=True)
    data = dict(json.loads(path.read_text()), signal="SIGUSR2", run_started=started, wall_s=1180.0,
                slurm_job="979", slurm_restart=restart)
    path.write_text(json.dumps(data))
    return build, exp, path, data, started


def test_a_job_requeued_at_its_time_limit_says_so_while_it_waits_and_runs(tmp_path, capsys, monkeypatch):
    """A job stopped at its time limit (SIGUSR2) requeues itself; status showed it PENDING or
    RUNNING with paused trials and never said why, so users wondered whether to raise
    `slurm.time`. The summary's `signal` and the last run's lock (SLURM_RESTART_COUNT) say it."""
    from submit_support import fake_squeue

    build, exp, path, data, started = _time_limited(tmp_path, 1300, restart=1)
    lock = run_lock(exp, pid=999999, host="node1", started=started)  # the ended run's, left behind
    info = json.loads(lock.read_text())
    info.update(slurm_job="979", slurm_restart=1)
    lock.write_text(json.dumps(info))
    at = time.strftime("%H:%M", time.localtime(started + 1180.0))
    fake_squeue(monkeypatch, tmp_path / "bin", [f"979|PENDING|0:00||BeginTime|N/A|{build}/job.sbatch"])
    out = status(capsys, build)[1]
    assert (f"run 2 of job 979 reached its time limit (`slurm.time` 00:20:00) at {at} and the job "
            f"requeued itself (requeue 2 of at most 100): trials resume from their checkpoints") in out, out
    # the requeued run has started: the line stays until it ends
    run_lock(exp, pid=1, host="node2", started=time.time() - 30)
    info = json.loads(lock.read_text())
    info.update(slurm_job="979", slurm_restart=2)
    lock.write_text(json.dumps(info))
    fake_squeue(monkeypatch, tmp_path / "bin", [f"979|RUNNING|0:30|node2|None|N/A|{build}/job.sbatch"])
    out = status(capsys, build)[1]
    assert f"run 2 of job 979 reached its time limit (`slurm.time` 00:20:00) at {at}" in out, out
    # a summary another signal interrupted is not a time limit
    data["signal"] = "SIGTERM"
    path.write_text(json.dumps(data))
    assert "time limit" not in status(capsys, build)[1]


def test_an_array_tasks_requeue_is_counted_from_its_lock_by_the_task_name(tmp_path):
    """An array task's summary names its own job id (`slurm_job` 701) and the task as squeue
    shows it (`slurm_task` 700_1): the task is matched by the latter; a local run is never
    requeued; a later run of the task that left its lock and no summary was not the time limit's."""
    from hpoc.commands.status import _requeued
    from hpoc.results.live import read_lock

    path = summary(tmp_path, "arr", [], interrupted=True)
    data = dict(json.loads(path.read_text()), signal="SIGUSR2", run_started=1000.0, wall_s=50.0,
                slurm_job="701", slurm_task="700_1", slurm_restart=0)
    lock = run_lock(tmp_path, pid=999999, host="node1", started=1000.0)
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), slurm_job="701", slurm_task="700_1",
                                    slurm_restart=0)))
    assert _requeued(data, {"cluster": "slurm", "job_id": "700_1"}, read_lock(tmp_path)) == {"at": 1050.0, "restart": 0}
    assert _requeued(data, {"cluster": "slurm", "job_id": "702_1"}, read_lock(tmp_path)) is None
    assert _requeued(data, {"cluster": "local", "job_id": "4242"}, read_lock(tmp_path)) is None
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), started=2000.0, slurm_restart=1)))
    assert _requeued(data, {"cluster": "slurm", "job_id": "700_1"}, read_lock(tmp_path)) is None
    assert _requeued(data, {"cluster": "slurm", "job_id": "700_1"}, read_lock(tmp_path), alive=True) == {"at": 1050.0, "restart": 0}


def test_a_time_limit_of_another_job_is_not_said_of_the_job_submitted_since(tmp_path, capsys, monkeypatch):
    """Job 979 stopped at its time limit and was not requeued (no progress, or its requeues
    spent); the study, submitted again as job 1005, waited with "the last run of job 1005
    reached its time limit ... and the job requeued itself", and once it ran "run 0 of job
    1005 ... (requeue 0 of at most 100)": summary.json was job 979's."""
    from submit_support import fake_squeue

    build, exp, path, data, started = _time_limited(tmp_path, 5000, restart=0)
    fake_squeue(monkeypatch, tmp_path / "bin", [f"1005|PENDING|0:00||Priority|N/A|{build}/job.sbatch"])
    assert "time limit" not in status(capsys, build)[1]
    lock = run_lock(exp, pid=1, host="node2", started=time.time() - 30)
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), slurm_job="1005", slurm_restart=0)))
    fake_squeue(monkeypatch, tmp_path / "bin", [f"1005|RUNNING|0:30|node2|None|N/A|{build}/job.sbatch"])
    assert "time limit" not in status(capsys, build)[1]
    # job 979's own requeue is said, with its run and count from the summary
    fake_squeue(monkeypatch, tmp_path / "bin", [f"979|PENDING|0:00||BeginTime|N/A|{build}/job.sbatch"])
    lock.unlink()
    assert "run 1 of job 979 reached its time limit" in status(capsys, build)[1]


def test_the_requeue_line_asks_squeue_nothing_of_its_own(tmp_path, capsys, monkeypatch):
    """Every task of an array stops at its time limit at once: status read each shard's lock
    again for the requeue line, and a lock of another node asked squeue whether its job
    runs (256 shards: 256 more squeue calls). The lock status read already says it."""
    from submit_support import fake_squeue

    from hpoc.runtime import runlock

    build, exp, path, data, started = _time_limited(tmp_path, 1300, restart=1)
    lock = run_lock(exp, pid=999999, host="node1", started=started)
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), slurm_job="979", slurm_restart=1)))
    fake_squeue(monkeypatch, tmp_path / "bin", [f"979|PENDING|0:00||BeginTime|N/A|{build}/job.sbatch"])
    asked = []
    real = runlock._slurm_job_running
    monkeypatch.setattr(runlock, "_slurm_job_running", lambda job: asked.append(job) or real(job))
    out = status(capsys, build)[1]
    assert "run 2 of job 979 reached its time limit" in out, out
    alone = len(asked)
    data["signal"] = "SIGTERM"  # no requeue line: the lock asked as often without it
    path.write_text(json.dumps(data))
    asked.clear()
    assert "time limit" not in status(capsys, build)[1]
    assert alone == len(asked), (alone, len(asked))


def test_status_asks_squeue_once_of_each_run_locks_job(tmp_path, capsys, monkeypatch):
    """status and the results it reads each read a shard's lock twice (a run starting in
    between), and a lock of another node asked squeue whether its job runs each time: 4
    calls a shard, 1,024 for an array of 256 running tasks. One answer a job per status."""
    from hpoc.runtime import runlock

    exp = finished_local_run(tmp_path)
    lock = run_lock(exp, pid=4242, host="node1", started=time.time() - 30)
    lock.write_text(json.dumps(dict(json.loads(lock.read_text()), slurm_job="979", slurm_restart=0)))
    asked = []
    monkeypatch.setattr(runlock, "_ask_running", lambda job: asked.append(job) or True)
    code, out, err = status(capsys, exp)
    assert code == 0, err
    assert asked == ["979"], asked
    assert runlock.holder(exp) is not None and asked == ["979", "979"]  # a driver's look asks afresh
