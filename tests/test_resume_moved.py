"""A study resumed after its project (spec, trainer, results) was moved: `mv
/scratch/me/proj /project/me/proj` on a cluster whose scratch is purged. Real local Ray."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hpoc.plan import dumps
from runtime_plans import make_plan, write_toy
from study_jobs import wait_for

pytestmark = pytest.mark.ray


def _plan(project: Path, shards: int = 2) -> dict:
    """The plan the project's spec compiles to where the project is (its absolute paths):
    sharded, an Optuna study sharing a journal; else a random search of 3 trials, 2 at once,
    so that the resumed run makes a trial of its own (the interrupted one made only 2)."""
    search = {"algorithm": "optuna", "options": {"seed": 0, "sampler": "tpe"}} if shards > 1 else \
        {"algorithm": "random", "options": {"seed": 0}}
    return make_plan(write_toy(project / "study"), project / "results", search=search,
                     shards={"count": shards, "parallel": shards},
                     trials={"num_samples": 2 if shards > 1 else 3, "max_concurrent": 2},
                     space={"constants": {"epochs": 4, "batch_size": 32}},
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 1.0}}})


def _run(plan: dict, where: Path, **kw) -> subprocess.Popen:
    plan_file = where / "plan.json"
    plan_file.write_text(dumps(plan))
    env = dict(os.environ, RAY_memory_monitor_refresh_ms="0", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "hpoc.runtime", str(plan_file), "--local",
                             "--cpus", "2", "--shard", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _epochs(trial_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()]


@pytest.mark.parametrize("shards", [1, 2])
def test_a_moved_project_resumes_its_interrupted_study_where_it_is_now(tmp_path, shards):
    """It was refused ("run it from /scratch/me/proj again"), and Tune's saved Optuna searcher
    held the journal's old absolute path: a resumed shard would append to it. A trial the
    resumed run made was put in the old directory (Tune's restored searcher makes trials
    from the first run's experiment, storage included) and errored there."""
    old, new = tmp_path / "scratch" / "proj", tmp_path / "project" / "proj"
    shard = "shard-0" if shards > 1 else ""
    exp = old / "results" / "toy" / shard
    proc = _run(_plan(old, shards), tmp_path)
    try:
        wait_for(lambda: any(p.read_text().strip() for p in exp.glob("trial_*/result.json")),
                  180, "a reported epoch")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err  # interrupted: it resumes
    assert not json.loads((exp / "summary.json").read_text())["status_counts"].get("TERMINATED") == 2
    journal = old / "results" / "toy" / "optuna.journal"
    asked = journal.read_bytes() if shards > 1 else b""

    new.parent.mkdir(parents=True)
    shutil.move(str(old), new)
    old.write_text("moved\n")  # a file: nothing can be written under the old path again
    proc = _run(_plan(new, shards), tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming the interrupted run" in err, err
    assert f"{new / 'results' / 'toy' / shard} was {exp} when it ran: it resumes where it is now" in err, err
    assert old.read_text() == "moved\n" and not (tmp_path / "scratch" / "proj.prev").exists()

    moved = new / "results" / "toy"
    summary = json.loads((moved / shard / "summary.json").read_text())
    trials = 2 if shards > 1 else 3
    assert summary["interrupted"] is False and summary["status_counts"] == {"TERMINATED": trials}, summary
    assert len(list((moved / shard).glob("trial_*"))) == trials
    for trial in (moved / shard).glob("trial_*"):
        assert _epochs(trial) == [1, 2, 3, 4], trial  # continued from its checkpoint
    if shards == 1:
        return
    journal = (moved / "optuna.journal").read_bytes()
    assert journal.startswith(asked) and len(journal) > len(asked)  # the study told where it is now
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(moved / "optuna.journal")))
    study = optuna.load_study(study_name="toy", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


def test_another_checkout_over_the_same_results_is_refused(tmp_path, capsys):
    """The experiment directory did not move: another copy of the project (maybe other code)
    pointing at the same results is not resumed, and the run says where it ran."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker
    from hpoc.runtime.study import RunOptions, run_study

    project = tmp_path / "proj"
    ran = _plan(project)
    exp = project / "results" / "toy" / "shard-0"
    marker.write(exp, marker.fingerprint(ran, plan_hash(ran)), 0)
    (exp / "tuner.pkl").write_bytes(b"")
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    other = make_plan(write_toy(tmp_path / "checkout" / "study"), project / "results",
                      **{k: ran[k] for k in ("search", "shards", "trials", "space", "pipeline")})
    progress = io.StringIO()
    code = run_study(other, RunOptions(local=True, num_cpus=2, shard=0, progress=progress, out=io.StringIO()))
    said = progress.getvalue() + capsys.readouterr().err
    assert code == 2, said
    assert "different plan" in said, said
    assert f"{project / 'study'} is another checkout of the project, and this is its run: resume it from there" \
        in said, said


def test_a_finished_study_moved_since_is_extended_where_it_is_now(tmp_path, capsys):
    """A study that ran to the end, moved with its project, then `num_samples` raised: the
    run was refused ("undo that change"), and run unchanged first it said only "already ran
    to the end", recording no new place, so the extension stayed refused."""
    from hpoc.plan import content_hash
    from hpoc.runtime.study import RunOptions, run_study

    def plan(project: Path, trials: int) -> dict:
        made = make_plan(write_toy(project / "study"), project / "results",
                         search={"algorithm": "random", "options": {"seed": 0}},
                         trials={"num_samples": trials, "max_concurrent": 1},
                         space={"constants": {"epochs": 1, "batch_size": 32}})
        made["content_hash"] = content_hash(made)
        return made

    def run(made: dict) -> tuple[int, str]:
        progress, out = io.StringIO(), io.StringIO()
        code = run_study(made, RunOptions(local=True, num_cpus=2, progress=progress, out=out))
        return code, progress.getvalue() + out.getvalue() + capsys.readouterr().err

    old, new = tmp_path / "scratch" / "proj", tmp_path / "project" / "proj"
    code, said = run(plan(old, 1))
    assert code == 0, said
    new.parent.mkdir(parents=True)
    shutil.move(str(old), new)
    old.write_text("moved\n")  # a file: nothing can be written under the old path again
    code, said = run(plan(new, 1))
    assert code == 0 and "already ran to the end" in said, said
    code, said = run(plan(new, 2))
    assert code == 0, said
    assert "extending the study" in said and "(num_samples 1 → 2)" in said, said
    assert f"was {old / 'results' / 'toy'} when it ran: it resumes where it is now" in said, said
    exp = new / "results" / "toy"
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 2}, summary
    assert len(list(exp.glob("trial_*"))) == 2 and old.read_text() == "moved\n"
    from hpoc.cli import main

    (new / "plan.json").write_text(dumps(plan(new, 2)))
    assert main(["status", str(new / "plan.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["state"] == "finished" and doc["totals"]["done"] == 2 and doc["budget"] == 2, doc
