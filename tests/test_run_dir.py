"""What a run finds in its experiment directory: which plan ran there, and whether another
run is using it (no Ray started)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hpoc.commands.run import load_plan
from hpoc.plan import content_hash
from hpoc.runtime import before, marker, runlock
from hpoc.runtime.prior import prior_run
from hpoc.runtime.study import RunOptions, StudyError, experiment_dir, plan_hash, run_study
from hpoc.submit import SubmitError, check_previous
from runtime_plans import make_plan, saved_state, write_toy

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
    return prior_run(exp, fp, False, True, io.StringIO())


def test_comments_layout_and_the_walltime_do_not_change_the_plan_a_run_resumes(spec, tmp_path):
    first = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(first, exp)
    text = spec.read_text()
    spec.write_text("# lr sweep for the paper\n" + text.replace("time", "time   ", 1) + "\n\n")
    edited = load_plan(str(spec))
    edited["slurm"]["time"] = "02:00:00"  # a longer walltime for the rest of the study
    edited["failure"]["fail_fast"] = 0  # it stopped the study; the errors come with some configs
    assert edited["content_hash"] != first["content_hash"]
    assert marker.fingerprint(edited, "x")["run_hash"] == marker.fingerprint(first, "y")["run_hash"]
    assert _prior(edited, exp) == "done"  # not "holds a run of a different plan"
    del edited["failure"]["fail_fast"]  # a run by an hpoc before the option
    assert marker.fingerprint(edited, "x")["run_hash"] == marker.fingerprint(first, "y")["run_hash"]


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


def _older(plan, *paths):
    """`plan` as an hpoc from before the keys at `paths` compiled the same spec."""
    out = json.loads(json.dumps(plan))
    for path in paths:
        del out[path[0]][path[1]]
    out["content_hash"] = content_hash(out)
    return out


def test_a_run_of_an_hpoc_from_before_a_key_resumes_when_the_key_holds_what_its_absence_meant(spec, tmp_path):
    plan = load_plan(str(spec))
    assert plan["resources"]["find_unused_parameters"] is None and plan["trials"]["time_limit_s"] is None
    exp = experiment_dir(plan, 0)
    _finished_run(_older(plan, ("resources", "find_unused_parameters"), ("trials", "time_limit_s")), exp)
    assert _prior(plan, exp) == "done"  # not "holds a run of a different plan"
    assert before.verdict(plan, 0)[0] == before.DONE  # a resubmitted job brings no Ray up
    # and back: the run's plan has a key this hpoc's lacks, at what its absence means
    _finished_run(plan, exp)
    assert _prior(_older(plan, ("resources", "find_unused_parameters")), exp) == "done"


def test_a_key_one_plan_lacks_at_another_value_is_said_as_an_upgrade_not_a_change(spec, tmp_path):
    plan = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(_older(plan, ("resources", "find_unused_parameters")), exp)
    plan["resources"]["find_unused_parameters"] = True
    plan["content_hash"] = content_hash(plan)
    with pytest.raises(StudyError, match="different plan") as err:
        _prior(plan, exp)
    said = str(err.value)
    assert "another hpoc version" in said and "`resources.find_unused_parameters`" in said, said
    assert "undo that change" not in said and "with the hpoc version that started it" in said, said
    plan["resources"]["find_unused_parameters"] = None
    plan["space"]["constants"]["dropout"] = 0.1  # a key of the spec's own: an edit, not an upgrade
    plan["content_hash"] = content_hash(plan)
    with pytest.raises(StudyError, match="the plans differ in `space`") as err:
        _prior(plan, exp)
    assert "another hpoc version" not in str(err.value) and "undo that change" in str(err.value)


def test_a_marker_without_the_plan_body_does_not_claim_the_spec_changed(spec, tmp_path):
    plan = load_plan(str(spec))
    exp = tmp_path / "exp"
    _finished_run(plan, exp)
    recorded = json.loads((exp / marker.PLAN_MARKER).read_text())
    del recorded["body"]  # as hpoc wrote markers before they kept it
    (exp / marker.PLAN_MARKER).write_text(json.dumps(recorded))
    assert _prior(plan, exp) == "done"
    plan["search"]["options"]["seed"] = 7
    plan["content_hash"] = content_hash(plan)
    with pytest.raises(StudyError) as err:
        _prior(plan, exp)
    said = str(err.value)
    assert "the plans differ in `search` (a change to the spec, or an hpoc that compiles it differently)" in said
    assert "undo that change" not in said and "hpoc version that started it" in said, said


def test_every_key_added_over_time_says_in_the_schema_what_its_absence_means():
    from hpoc.plan.validate import absent_means, schema

    documented: list[tuple[str, ...]] = []

    def walk(node, path):
        if isinstance(node, dict):
            if "Absent in plans from before" in str(node.get("description", "")):
                documented.append(path)
            for key, sub in (node.get("properties") or {}).items():
                walk(sub, path + (key,))
            for sub in node.get("anyOf") or []:
                walk(sub, path)

    walk(schema(), ())
    assert ("resources", "find_unused_parameters") in documented
    means = absent_means()
    assert sorted(documented) == sorted(means), (documented, means)
    for path, value in means.items():  # the words and the value agree
        node = schema()
        for key in path:
            node = next(n for n in [node, *node.get("anyOf", [])] if key in n.get("properties", {}))["properties"][key]
        assert node["description"].endswith(f"Absent in plans from before this key: "
                                            f"{json.dumps(value).strip(chr(34))}."), path


def test_a_run_stopped_before_tune_saved_any_trial_starts_again(spec, tmp_path):
    """A job cancelled during its start-up leaves tuner.pkl and no experiment state: resumed
    from it, shard 1 of a random search ran 1 of its 2 trials and ended as finished."""
    plan = load_plan(str(spec))
    exp = tmp_path / "exp"
    exp.mkdir()
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    (exp / "tuner.pkl").write_bytes(b"")
    assert _prior(plan, exp) == "fresh"
    saved_state(exp, ["PENDING"])
    assert _prior(plan, exp) == "restore"


@pytest.mark.parametrize("where, name", [("tuner", "trial_name"), ("tuner", "trial_dirname"),
                                         ("watch", "_as_seen"), ("watch", "_make_events"),
                                         ("watch", "_make_quiet")])
def test_a_run_saved_by_an_older_hpoc_finds_its_callbacks_again(where, name):
    """Ray pickles the trial-name creators and the callbacks into the experiment (tuner.pkl)
    by module and name, and `Tuner.restore` unpickles them: a run interrupted while they
    lived in hpoc.runtime.study resumes after an upgrade only if that name still leads to them."""
    import importlib
    import pickle

    saved = f"chpoc.runtime.study\n{name}\n.".encode()  # as a tuner.pkl refers to it
    assert pickle.loads(saved) is getattr(importlib.import_module(f"hpoc.runtime.{where}"), name)


def test_a_project_moved_after_its_run_resumes_from_where_it_is_now(spec, tmp_path):
    """`mv /scratch/me/proj /project/me/proj`, results inside: the plans differ in their
    absolute paths alone, and the run was refused ("run it from /scratch/me/proj again")."""
    ran = load_plan(str(spec))
    moved = tmp_path / "project" / "digits"
    shutil.move(str(spec.parent), moved)
    plan = load_plan(str(moved / "study.hpo"))
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    _finished_run(ran, exp)
    assert _prior(plan, exp) == "done"
    fp = marker.fingerprint(plan, plan_hash(plan))
    assert marker.moved(marker.read(exp), fp, exp) == Path(ran["storage"]["path"]) / "digits"
    assert check_previous(plan, fresh=False) == "done"
    assert before.verdict(plan, 0)[0] == before.DONE


def test_a_project_moved_with_a_symlink_left_in_its_place_resumes(spec, tmp_path):
    """`mv` then `ln -s` back: run from the link, the spec's directory is the resolved path
    (the shell's cwd), and the refusal said to run it from the link's path: where it ran."""
    old = spec.parent
    ran = load_plan(str(spec))
    moved = tmp_path / "project" / "digits"
    shutil.move(str(old), moved)
    old.symlink_to(moved)
    plan = load_plan(str(moved / "study.hpo"))
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    _finished_run(ran, exp)
    assert _prior(plan, exp) == "done"


def test_only_the_results_moved_and_storage_path_edited_resume(spec, tmp_path):
    ran = load_plan(str(spec))
    elsewhere = tmp_path / "work" / "results"
    spec.write_text(spec.read_text().replace('path = "results"', f'path = "{elsewhere}"'))
    plan = load_plan(str(spec))
    assert plan["storage"]["path"] == str(elsewhere), plan["storage"]
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    _finished_run(ran, exp)
    assert _prior(plan, exp) == "done"


@pytest.mark.parametrize("storage", ["relative", "absolute"])
def test_a_moved_study_whose_spec_raises_num_samples_is_extended(spec, tmp_path, storage):
    """Moved and `num_samples` raised in one step, the storage relative to the project (moved
    with it) or absolute (its results moved and `storage.path` edited to their new place):
    refused with "undo that change", which a `mv` cannot be."""
    if storage == "absolute":
        spec.write_text(spec.read_text().replace('path = "results"', f'path = "{tmp_path / "scratch"}"'))
    ran = load_plan(str(spec))
    exp = Path(ran["storage"]["path"]) / ran["storage"]["name"]
    _finished_run(ran, saved_state(exp, ["TERMINATED"]))
    if storage == "absolute":
        elsewhere = tmp_path / "project" / "results"
        elsewhere.parent.mkdir()
        shutil.move(str(exp.parent), elsewhere)
        spec.write_text(spec.read_text().replace(str(tmp_path / "scratch"), str(elsewhere)))
    else:
        shutil.move(str(spec.parent), tmp_path / "project")
        spec = tmp_path / "project" / spec.name
    spec.write_text(spec.read_text().replace("num_samples    = 6", "num_samples    = 8"))
    plan = load_plan(str(spec))
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    assert _prior(plan, exp) == "restore"
    assert check_previous(plan, fresh=False) == "resume"
    assert before.verdict(plan, 0) == (before.GO, "")


def test_a_moved_project_whose_spec_names_its_old_storage_by_an_absolute_path_is_told(spec, tmp_path, capsys):
    """`mv` of the project, results inside, with `storage.path` an absolute path into it: the
    plan names the old place, and the run started the study over there, recreating it, while
    its results lay in the project."""
    old = spec.parent
    spec.write_text(spec.read_text().replace('path = "results"', f'path = "{old / "out" / "results"}"'))
    ran = load_plan(str(spec))
    _finished_run(ran, saved_state(Path(ran["storage"]["path"]) / "digits", ["TERMINATED"]))
    shutil.move(str(old), tmp_path / "project")
    plan = load_plan(str(tmp_path / "project" / "study.hpo"))
    exp = Path(plan["storage"]["path"]) / "digits"
    assert exp == old / "out" / "results" / "digits"
    with pytest.raises(StudyError) as err:
        _prior(plan, exp)
    there = tmp_path / "project" / "out" / "results" / "digits"
    assert str(err.value) == (
        f"{exp} holds no run, and {there} holds this study's run, made in {old}: the project moved "
        f"with its results, and `storage.path` still names the old place\n  help: set `storage.path` "
        f"to \"out/results\" (relative to the spec, it moves with the project) to resume it there, or "
        f"pass --fresh to start the study over under {old / 'out' / 'results'}"), err.value
    assert prior_run(exp, marker.fingerprint(plan, plan_hash(plan)), True, True, io.StringIO()) == "fresh"
    with pytest.raises(SubmitError, match="`storage.path` still names the old place"):
        check_previous(plan, fresh=False)
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    said = capsys.readouterr().err
    assert code == 2 and "`storage.path` still names the old place" in said and not old.exists(), said



def test_a_moved_project_whose_old_storage_names_a_link_to_where_it_ran_is_told(spec, tmp_path):
    """`storage.path` by a link's name (`$SCRATCH/proj/out`, /scratch a link to
    /lustre/scratch) and the spec's directory by the shell's resolved cwd: the run records
    both, and after a `mv` of the project the study started over at the old place."""
    lustre = tmp_path / "lustre"
    lustre.mkdir()
    (tmp_path / "scratch").symlink_to(lustre)
    old = lustre / "digits"
    shutil.move(str(spec.parent), old)
    storage = tmp_path / "scratch" / "digits" / "out"  # the link's name
    (old / "study.hpo").write_text((old / "study.hpo").read_text().replace('path = "results"', f'path = "{storage}"'))
    ran = load_plan(str(old / "study.hpo"))
    assert ran["source"]["workdir"] == str(old) and ran["storage"]["path"] == str(storage)
    _finished_run(ran, saved_state(old / "out" / "digits", ["TERMINATED"]))
    shutil.move(str(old), tmp_path / "project")
    plan = load_plan(str(tmp_path / "project" / "study.hpo"))
    with pytest.raises(StudyError, match="`storage.path` still names the old place"):
        _prior(plan, storage / "digits")

def test_another_checkout_over_the_same_results_is_refused_with_where_the_run_ran(spec, tmp_path):
    """Another copy of the project (maybe other code) whose `storage.path` names the first
    one's results: the experiment directory did not move, so it is not resumed."""
    old = spec.parent
    ran = load_plan(str(spec))
    exp = Path(ran["storage"]["path"]) / ran["storage"]["name"]
    _finished_run(ran, exp)
    other = tmp_path / "checkout"
    shutil.copytree(old, other)
    text = (other / "study.hpo").read_text()
    (other / "study.hpo").write_text(text.replace('path = "results"', f'path = "{ran["storage"]["path"]}"'))
    plan = load_plan(str(other / "study.hpo"))
    assert plan["storage"] == ran["storage"] and plan["source"]["workdir"] == str(other)
    with pytest.raises(StudyError, match="different plan") as err:
        _prior(plan, exp)
    said = str(err.value)
    assert f"it ran in {old}: moved or copied since?" in said, said
    # the first checkout is still there: not a move to undo
    assert f"help: {old} is another checkout of the project, and this is its run: resume it from there, " \
           "give this checkout's spec a `storage.name` of its own to run a study beside it, or pass --fresh " \
           "to start the study over here (that checkout's run is moved aside, not resumed)" in said, said
    assert "undo that change" not in said and "move the project back" not in said, said
    with pytest.raises(SubmitError, match=f"{old} is another checkout of the project"):
        check_previous(plan, fresh=False)
    gone = tmp_path / "gone"  # a project moved away since: moving it back resumes the run
    assert marker.moved_help(str(gone)).startswith(f"only its location changed: to resume it, run it from "
                                                   f"{gone} again (move the project back)")



def test_the_same_checkout_by_another_name_over_an_absolute_storage_resumes(spec, tmp_path):
    """/scratch a link to /lustre/scratch: `hpoc run /scratch/me/proj/study.hpo` once and
    `hpoc run study.hpo` from the shell there (its cwd the resolved path) compile to two
    workdirs, one directory. With `storage.path` absolute the run was refused as "another
    checkout of the project" (resume it from there: it is here)."""
    scratch = tmp_path / "scratch"
    spec.write_text(spec.read_text().replace('path = "results"', f'path = "{scratch}"'))
    link = tmp_path / "alias"
    link.symlink_to(spec.parent)
    ran = load_plan(str(link / "study.hpo"))
    exp = Path(ran["storage"]["path"]) / ran["storage"]["name"]
    _finished_run(ran, saved_state(exp, ["TERMINATED"]))
    plan = load_plan(str(spec))
    assert plan["source"]["workdir"] != ran["source"]["workdir"] and plan["storage"] == ran["storage"]
    assert _prior(plan, exp) == "done"
    assert check_previous(plan, fresh=False) == "done"
    assert before.verdict(plan, 0)[0] == before.DONE
    fp = marker.fingerprint(plan, plan_hash(plan))
    assert marker.moved(marker.here(marker.read(exp), fp, exp), fp, exp) is None  # nothing moved
    plan["trials"]["num_samples"] += 1  # and a raised budget extends it
    fp = marker.fingerprint(plan, plan_hash(plan))
    assert marker.growth(marker.here(marker.read(exp), fp, exp), fp) is not None

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


# ---------------------------------------------------------------- the run lock


def _lock_file(exp, **info):
    exp.mkdir(parents=True, exist_ok=True)
    base = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "shard": 0}
    (exp / runlock.LOCK).write_text(json.dumps(dict(base, **info)))


@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_run_on_this_host_keeps_its_lock(tmp_path, other_process):
    exp = tmp_path / "exp"
    _lock_file(exp, pid=other_process.pid)
    with pytest.raises(runlock.Busy) as err:
        runlock.Lock(exp, 0).acquire(print)
    assert f"is in use by another `hpoc run` (pid {other_process.pid} on " in str(err.value)
    assert str(exp / ".hpoc-run.json") in str(err.value)  # how to proceed if it is wrong


def test_a_dead_or_recycled_pid_leaves_a_stale_lock_that_is_taken_over(tmp_path, other_process):
    exp = tmp_path / "exp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # a lock older than the live process that has its pid now: pid reuse, not the holder
    for info in ({"pid": dead.pid}, {"pid": other_process.pid, "started": time.time() - 3600}):
        _lock_file(exp, **info)
        notes = []
        lock = runlock.Lock(exp, 3)
        lock.acquire(notes.append)
        assert "taking over the lock of a run that is no longer running" in notes[0]
        held = json.loads((exp / runlock.LOCK).read_text())
        assert held["pid"] == os.getpid() and held["shard"] == 3
        assert set(held) >= {"pid", "host", "started", "shard"}
        lock.release()
        assert not (exp / runlock.LOCK).exists()


def test_another_hosts_lock_is_live_until_its_job_restarts_or_its_heartbeat_stops(
        tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue: it cannot tell
    _lock_file(exp, host="node-elsewhere", pid=1, slurm_job="42", slurm_restart=0)
    with pytest.raises(runlock.Busy, match="another run \\(a SLURM job\\) \\(pid 1 on node-elsewhere, SLURM job 42"):
        runlock.Lock(exp, 0).acquire(print)
    # the same job requeued after its node crashed
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    notes = []
    lock = runlock.Lock(exp, 0)
    lock.acquire(notes.append)
    assert "earlier start of this SLURM job (42)" in notes[0]
    assert json.loads((exp / runlock.LOCK).read_text())["slurm_restart"] == 1
    lock.release()
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")  # an array task: squeue says 41_1
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    lock = runlock.Lock(exp, 0)
    lock.acquire(notes.append)
    assert json.loads((exp / runlock.LOCK).read_text())["slurm_task"] == "41_1"
    lock.release()
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    # a new job after a crash: squeue says the old one has ended
    monkeypatch.delenv("SLURM_JOB_ID")
    (tmp_path / "squeue").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    (tmp_path / "squeue").chmod(0o755)
    _lock_file(exp, host="node-elsewhere", pid=1, slurm_job="42")
    assert runlock.holder(exp) is None
    # no SLURM job to ask about: live until the heartbeat is old
    _lock_file(exp, host="node-elsewhere", pid=1)
    assert runlock.holder(exp)["host"] == "node-elsewhere"
    old = time.time() - runlock.STALE_S - 60
    os.utime(exp / runlock.LOCK, (old, old))
    assert runlock.holder(exp) is None


def test_hpoc_run_refuses_a_live_run_and_fresh_does_not_move_it(tmp_path, other_process, capsys):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    exp = experiment_dir(plan, 0)
    _lock_file(exp, pid=other_process.pid)
    (exp / "experiment_state-x.json").write_text("{}")
    for fresh in (False, True):
        code = run_study(plan, RunOptions(local=True, fresh=fresh, progress=io.StringIO(),
                                          out=io.StringIO()))
        err = capsys.readouterr().err
        assert code == 2 and f"in use by another `hpoc run` (pid {other_process.pid}" in err
        assert err.count("\n") == 2  # the error and how to proceed
    assert sorted(p.name for p in exp.iterdir()) == [".hpoc-run.json", "experiment_state-x.json"]
    assert [p.name for p in exp.parent.iterdir()] == ["toy"]  # nothing moved aside


def test_a_run_refused_by_a_live_lock_says_so_before_importing_the_studys_code(
        tmp_path, other_process, capsys):
    """A trainer that imports torch and Lightning takes many seconds: not before the refusal."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "heavy.py").write_text("import pathlib\npathlib.Path(__file__).with_name('imported').touch()\n"
                                      "from toy import ToyTrainer as Heavy\n")
    plan = make_plan(workdir, tmp_path / "results", pipeline={"trainer": {"target": "heavy:Heavy", "args": {}}})
    _lock_file(experiment_dir(plan, 0), pid=other_process.pid)
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    assert code == 2 and "in use by another `hpoc run`" in capsys.readouterr().err
    assert not (workdir / "imported").exists()


def test_a_run_that_fails_early_leaves_no_lock_and_no_empty_directory(tmp_path, capsys):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"getter": {"target": "toy:ToyGetter", "args": {"nope": 1}}})
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    assert code == 2 and "getter `toy:ToyGetter`" in capsys.readouterr().err
    assert not (tmp_path / "results" / "toy").exists()


@pytest.mark.parametrize("file", ["results", "results/toy"])
def test_a_storage_path_or_experiment_dir_that_is_a_file_is_named_not_a_lock_error(
        tmp_path, capsys, file):
    """Not `error: .../.hpoc-run.json: Not a directory` from releasing a lock never taken."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text("not a directory")
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{tmp_path / file} exists and is not a directory" in err
    assert ".hpoc-run.json" not in err
    assert (tmp_path / file).read_text() == "not a directory"


def test_a_lock_being_written_is_read_once_complete_and_never_as_pid_none(
        tmp_path, other_process, monkeypatch):
    """Two jobs of one shard start together: one reads the lock the other is still writing
    (an exclusive create, then the write, where the filesystem has no hard links)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / runlock.LOCK).write_text("")
    writer = threading.Timer(0.3, _lock_file, (exp,), {"pid": other_process.pid})
    writer.start()
    with pytest.raises(runlock.Busy) as err:
        runlock.Lock(exp, 0).acquire(print)
    writer.join()
    assert f"(pid {other_process.pid} on {socket.gethostname()}, since " in str(err.value)
    # one that stays damaged is named as such, not as "pid None on None, since 1970"
    monkeypatch.setattr(runlock, "PARTIAL_WAIT_S", 0.2)
    (exp / runlock.LOCK).write_text('{"pid": ')
    with pytest.raises(runlock.Busy) as err:
        runlock.Lock(exp, 0).acquire(print)
    assert "None" not in str(err.value) and "1970" not in str(err.value)
    assert f"its run lock {exp / runlock.LOCK} is incomplete" in str(err.value)


@pytest.mark.parametrize("links", [True, False])
def test_a_new_lock_appears_whole(tmp_path, monkeypatch, links):
    """Created complete (hard-linked in), or where links fail, created exclusively and
    written: either way, with no private file left behind."""
    exp = tmp_path / "exp"
    seen = []
    real_link = os.link

    def link(src, dst):
        seen.append(Path(src).read_text())  # the content is there before the name is
        if not links:
            raise PermissionError(1, "Operation not permitted")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    lock = runlock.Lock(exp, 2)
    lock.acquire(print)
    assert json.loads(seen[0])["pid"] == os.getpid()
    held = json.loads((exp / runlock.LOCK).read_text())
    assert held["pid"] == os.getpid() and held["shard"] == 2
    assert sorted(p.name for p in exp.iterdir()) == [runlock.LOCK]
    lock.release()
    assert not (exp / runlock.LOCK).exists()


def test_releasing_a_lock_never_taken_touches_nothing(tmp_path):
    (tmp_path / "exp").write_text("a file")
    runlock.Lock(tmp_path / "exp" / "shard-0", 0).release()  # no NotADirectoryError
    assert runlock.read(tmp_path / "exp") is None
    assert (tmp_path / "exp").read_text() == "a file"


def test_hpoc_submit_refuses_while_a_local_run_is_live(spec, other_process):
    plan = load_plan(str(spec))
    exp = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    _lock_file(exp, pid=other_process.pid)
    for fresh in (False, True):
        with pytest.raises(SubmitError, match="in use by another `hpoc run`"):
            check_previous(plan, fresh=fresh)
    assert (exp / runlock.LOCK).exists()


def test_a_local_runs_temp_dir_honours_hpoc_tmp_when_ray_fits_there(tmp_path, monkeypatch):
    from hpoc.runtime import session

    monkeypatch.delenv("HPOC_TMP", raising=False)
    assert session.temp_root() == "/tmp"
    short = tempfile.mkdtemp(prefix="h", dir="/tmp")  # pytest's tmp_path is too long for Ray
    try:
        monkeypatch.setenv("HPOC_TMP", short)
        assert session.temp_root() == short
    finally:
        os.rmdir(short)
    monkeypatch.setenv("HPOC_TMP", str(tmp_path / "missing"))
    with pytest.raises(session.SessionError, match="is not a writable directory"):
        session.temp_root()
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setenv("HPOC_TMP", str(deep))
    with pytest.raises(session.SessionError, match="too long: Ray's socket paths"):
        session.temp_root()


def test_a_relative_hpoc_tmp_is_taken_from_the_working_directory(monkeypatch):
    """Ray refused it: `temp_dir must be absolute path or None`."""
    from hpoc.runtime import session

    short = tempfile.mkdtemp(prefix="h", dir="/tmp")
    try:
        os.mkdir(os.path.join(short, "t"))
        monkeypatch.chdir(short)
        monkeypatch.setenv("HPOC_TMP", "t")
        assert session.temp_root() == os.path.join(short, "t")
    finally:
        shutil.rmtree(short)


def test_a_run_knows_when_it_started_from_its_own_lock_only(tmp_path, other_process):
    """summary.json records it (`run_started`): readers tell which run wrote the summary
    even when Ray has copied the file since (its mtime moves)."""
    exp = tmp_path / "exp"
    lock = runlock.Lock(exp, 0)
    lock.acquire(print)
    started = json.loads((exp / runlock.LOCK).read_text())["started"]
    assert runlock.own_start(exp) == started
    lock.release()
    assert runlock.own_start(exp) is None
    _lock_file(exp, pid=other_process.pid)
    assert runlock.own_start(exp) is None


def test_a_job_of_a_plan_whose_spec_was_edited_since_says_it_runs_the_plan_as_compiled(spec, capsys):
    """Edit the spec, forget to recompile, `sbatch build/job.sbatch`: the job ran the old
    plan (other trials, other epochs) without a word."""
    from hpoc.runtime import before

    plan = load_plan(str(spec))
    spec.write_text(spec.read_text().replace("study \"digits\"", "# a comment\nstudy \"digits\""))
    assert before.edited_spec(plan) is None  # the same plan: nothing to say
    spec.write_text(spec.read_text().replace("num_samples    = 6", "num_samples    = 9"))
    assert before.main(plan, 0) == before.GO
    err = capsys.readouterr().err
    assert err.startswith(f"hpoc: warning: {spec} was edited since this plan was compiled from it (they "
                          "differ in `trials`): this job runs the plan as compiled; to run the edited spec, "
                          f"compile it again (`hpoc compile {spec} -o BUILD`"), err
    spec.write_text("study {")
    assert "no longer compiles" in before.edited_spec(plan)
    spec.unlink()
    assert before.edited_spec(plan) is None


def test_status_and_submit_of_a_build_say_its_spec_was_edited_too(spec, tmp_path, capsys):
    """Only the job said it, in its log, once it ran: `hpoc status BUILD` and `hpoc submit
    BUILD` on the login node were silent about an edited spec."""
    from hpoc.cli import main

    build = tmp_path / "build"
    assert main(["compile", str(spec), "-o", str(build)]) == 0
    spec.write_text(spec.read_text().replace("num_samples    = 6", "num_samples    = 9"))
    capsys.readouterr()
    edited = f"{spec} was edited since this plan was compiled from it (they differ in `trials`): "
    assert main(["status", str(build)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {edited}its jobs run the plan as compiled; to run the edited spec, compile it " \
           f"again (`hpoc compile {spec} -o {build}`" in out, out
    assert main(["submit", str(build), "--cluster", "local", "--dry-run"]) == 0
    assert f"hpoc: warning: {edited}the jobs run the plan as compiled" in capsys.readouterr().err
    assert main(["status", str(spec)]) == 0  # compiled now: nothing older to differ from
    assert "was edited" not in capsys.readouterr().out


def test_a_job_asks_before_ray_whether_its_shard_has_anything_to_do(spec, other_process, capsys):
    """A resubmitted array's finished task, or the study submitted twice, brought a whole Ray
    cluster up only for the driver to stop at once (job.sbatch now asks first)."""
    from hpoc.runtime import __main__ as entry
    from hpoc.runtime.before import BUSY, DONE, FAILED, GO, verdict

    plan = load_plan(str(spec))
    exp = experiment_dir(plan, 0)
    assert verdict(plan, 0) == (GO, "")  # nothing ran yet
    exp.mkdir(parents=True)
    _finished_run(plan, exp)
    code, why = verdict(plan, 0)
    assert code == DONE and "already ran to the end" in why
    assert f"to start over: `hpoc submit {spec} --fresh`, or move {exp} aside and resubmit" in why
    assert "; --fresh" not in why  # a job has no --fresh of its own
    failed = json.loads((exp / "summary.json").read_text())
    (exp / "summary.json").write_text(json.dumps({**failed, "status_counts": {"ERROR": 1}}))
    code, why = verdict(plan, 0)  # ended, every trial failed: the job fails as the driver would
    assert code == FAILED and "no trial succeeded" in why
    (exp / "summary.json").write_text(json.dumps({"interrupted": True}))
    assert verdict(plan, 0)[0] == GO  # interrupted: the job resumes it
    _lock_file(exp, pid=other_process.pid)
    code, why = verdict(plan, 0)
    assert code == BUSY and f"pid {other_process.pid}" in why
    plan_file = spec.parent / "plan.json"
    plan_file.write_text(json.dumps(plan))
    assert entry.main([str(plan_file), "--shard", "0", "--before-ray"]) == BUSY
    assert "hpoc: error: " in capsys.readouterr().err


# ---------------------------------------------------------------- a job's claim before Ray


def test_a_lock_is_judged_by_squeue_whoever_submitted_its_job(tmp_path, monkeypatch):
    """An experiment directory shared by a group: the lock's job may be another user's, which
    `squeue -u me` never lists. It is asked for by id alone; only squeue's "invalid job id"
    (the job has left the controller) says it ended, a failure to answer says nothing."""
    exp, bin_dir = tmp_path / "exp", tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    squeue = bin_dir / "squeue"

    def says(body: str) -> None:
        squeue.write_text(f'#!/bin/sh\necho "$@" >"$0.args"\n{body}\n')
        squeue.chmod(0o755)

    _lock_file(exp, host="node-elsewhere", pid=1, slurm_job="42")
    says('case " $* " in *" -u "*) ;; *" -j 42 "*) echo RUNNING;; esac')  # another user's job
    assert runlock.holder(exp)["slurm_job"] == "42"
    assert " -u " not in f" {(bin_dir / 'squeue.args').read_text().strip()} "
    says('echo "slurm_load_jobs error: Socket timed out on send/recv operation" >&2; exit 1')
    assert runlock.holder(exp)["slurm_job"] == "42"
    says('echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    assert runlock.holder(exp) is None


def _as_job(monkeypatch, job, restart=0):
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restart))
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


def _squeue_says(monkeypatch, bin_dir, running):
    """squeue on PATH: every job RUNNING, or none known (None: no squeue at all)."""
    bin_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(bin_dir))
    if running is None:
        return
    body = "echo RUNNING" if running else "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
    (bin_dir / "squeue").write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / "squeue").chmod(0o755)


def test_two_jobs_of_one_shard_before_ray_only_one_claims_it(spec, other_process, monkeypatch, capsys):
    """Two sbatch of one shard starting together both brought a Ray cluster up: the check
    before Ray only read the lock, and only the driver (after bring-up) took it."""
    from hpoc.runtime import __main__ as entry
    from hpoc.runtime.before import BUSY, GO

    plan = load_plan(str(spec))
    plan_file = spec.parent / "plan.json"
    plan_file.write_text(json.dumps(plan))
    exp = experiment_dir(plan, 0)
    args = [str(plan_file), "--shard", "0", "--before-ray", "--claim", str(other_process.pid)]
    _as_job(monkeypatch, "101")
    assert entry.main(args) == GO
    held = json.loads((exp / runlock.LOCK).read_text())
    assert held["claim"] is True and held["pid"] == other_process.pid and held["slurm_job"] == "101"
    assert [Path(d) for d in held["made"]] == [exp.parent, exp]  # the claim made them
    _as_job(monkeypatch, "102")  # the same script submitted again, started the same second
    capsys.readouterr()
    assert entry.main(args) == BUSY
    err = capsys.readouterr().err
    assert "in use by another run (a SLURM job starting its Ray cluster) (pid " \
           f"{other_process.pid} on {socket.gethostname()}, SLURM job 101" in err, err
    assert json.loads((exp / runlock.LOCK).read_text())["slurm_job"] == "101"
    monkeypatch.delenv("SLURM_JOB_ID")  # a local `hpoc run` of the study is refused too
    with pytest.raises(runlock.Busy):
        runlock.Lock(exp, 0).acquire(print)


def test_the_driver_of_the_claiming_job_takes_the_claim_over(tmp_path, other_process, monkeypatch):
    exp = tmp_path / "results" / "exp"
    _as_job(monkeypatch, "101", restart=2)
    runlock.claim(exp, 0, other_process.pid, print)
    lock = runlock.Lock(exp, 0)
    lock.acquire(print)  # the claim is live for everyone else, and the driver's own
    held = json.loads((exp / runlock.LOCK).read_text())
    assert held["pid"] == os.getpid() and "claim" not in held and held["slurm_restart"] == 2
    assert runlock.release_claim(exp) is False  # the teardown leaves the driver's lock alone
    assert (exp / runlock.LOCK).exists()
    lock.release()  # a driver that stops early leaves nothing: the claim's directories go too
    assert not (tmp_path / "results").exists()
    runlock.claim(exp, 0, other_process.pid, print)
    _as_job(monkeypatch, "101", restart=1)  # not this start's claim (nor an earlier one's)
    with pytest.raises(runlock.Busy):
        runlock.Lock(exp, 0).acquire(print)


def test_a_claim_no_driver_took_is_released_by_its_own_job_only(tmp_path, other_process, monkeypatch):
    """Ray's bring-up failed: the teardown frees the shard at once, not when the claim
    turns stale."""
    exp = tmp_path / "results" / "exp"
    _as_job(monkeypatch, "101")
    runlock.claim(exp, 0, other_process.pid, print)
    _as_job(monkeypatch, "102")
    assert runlock.release_claim(exp) is False and (exp / runlock.LOCK).exists()
    _as_job(monkeypatch, "101")
    assert runlock.release_claim(exp) is True
    assert not (tmp_path / "results").exists()  # and the directories it made
    exp.mkdir(parents=True)
    _lock_file(exp, pid=other_process.pid, slurm_job="101", slurm_restart=0)  # a driver's
    assert runlock.release_claim(exp) is False and (exp / runlock.LOCK).exists()


def test_a_claim_is_stale_once_its_job_is_gone(tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _as_job(monkeypatch, "101")
    runlock.claim(exp, 0, dead.pid, print)  # this host: its job script is gone
    _as_job(monkeypatch, "102")
    notes = []
    runlock.claim(exp, 0, os.getpid(), notes.append)
    assert "process " in notes[0] and "is gone" in notes[0]
    # another host: no heartbeat, so live while squeue says its job runs, however old
    old = time.time() - runlock.STALE_S - 60
    _lock_file(exp, host="node-elsewhere", pid=1, slurm_job="101", slurm_restart=0, claim=True)
    os.utime(exp / runlock.LOCK, (old, old))
    _squeue_says(monkeypatch, tmp_path / "bin", running=True)
    assert runlock.holder(exp)["slurm_job"] == "101"
    _squeue_says(monkeypatch, tmp_path / "bin", running=False)  # its job ended
    assert runlock.holder(exp) is None
    (tmp_path / "bin" / "squeue").unlink()  # squeue cannot tell: the heartbeat rule
    assert runlock.holder(exp) is None
    os.utime(exp / runlock.LOCK)
    assert runlock.holder(exp)["slurm_job"] == "101"
    _as_job(monkeypatch, "101", restart=1)  # its own job, requeued
    assert runlock.holder(exp) is None


def test_a_job_in_a_pid_namespace_of_its_own_keeps_its_claim_while_it_runs(tmp_path, monkeypatch):
    """A job in a container with its own PID namespace: its job script's pid means nothing
    on the host, so its claim is live while SLURM runs the job, not "process gone"."""
    exp = tmp_path / "exp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(exp, pid=dead.pid, slurm_job="101", slurm_restart=0, claim=True)
    _squeue_says(monkeypatch, tmp_path / "bin", running=True)
    _as_job(monkeypatch, "102")
    with pytest.raises(runlock.Busy, match="SLURM job 101"):
        runlock.claim(exp, 0, os.getpid(), print)
    _squeue_says(monkeypatch, tmp_path / "bin", running=False)  # the job ended
    notes = []
    runlock.claim(exp, 0, os.getpid(), notes.append)
    assert f"process {dead.pid} is gone" in notes[0]


def test_no_claim_outside_a_slurm_job(spec, other_process, monkeypatch):
    """Only a SLURM job's driver takes a claim over: a claim anywhere else would lock the
    study against its own driver."""
    from hpoc.runtime.before import GO, main

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    plan = load_plan(str(spec))
    assert main(plan, 0, other_process.pid) == GO
    assert runlock.read(experiment_dir(plan, 0)) is None


def test_a_finished_study_with_errored_trials_says_they_are_not_retried(spec, tmp_path):
    """The user fixes the trainer after some trials failed and runs the study again: it said
    only "already ran to the end", as if the errored trials were done with."""
    from hpoc.runtime.study import RunOptions, run_study

    plan = load_plan(str(spec))
    exp = experiment_dir(plan, 0)
    exp.mkdir(parents=True)
    _finished_run(plan, exp)
    saved_state(exp, ["TERMINATED", "ERROR", "ERROR"])  # what --retry-errored would run again
    summary = json.loads((exp / "summary.json").read_text())
    (exp / "summary.json").write_text(json.dumps({**summary, "num_trials": 3, "wall_s": 1.0, "metrics": [],
                                                  "status_counts": {"TERMINATED": 1, "ERROR": 2}}))
    progress = io.StringIO()
    assert run_study(plan, RunOptions(local=True, progress=progress, out=io.StringIO())) == 0
    assert (f"already ran to the end in {exp} with 2 errored trial(s); a finished study does not retry "
            "them: pass --retry-errored to run only those again (after fixing what failed), or "
            "--fresh to run every trial again") in progress.getvalue()


def test_fresh_moves_the_earlier_run_aside_only_once_the_data_has_loaded_and_ray_is_up(tmp_path, monkeypatch, capsys):
    """`hpoc run --fresh` moved the earlier run aside, then the getter failed: the user was
    left with only `<name>.prev-*` and no run."""
    from hpoc.runtime import session

    workdir = write_toy(tmp_path / "study")
    (workdir / "broken.py").write_text(
        "class Getter:\n    def execute(self):\n        raise FileNotFoundError('data/train.npz')\n")
    good = make_plan(workdir, tmp_path / "results")
    exp = experiment_dir(good, 0)
    exp.mkdir(parents=True)
    _finished_run(good, exp)
    broken = make_plan(workdir, tmp_path / "results",
                       pipeline={"getter": {"target": "broken:Getter", "args": {}}})
    progress = io.StringIO()
    assert run_study(broken, RunOptions(local=True, fresh=True, progress=progress, out=io.StringIO())) == 2
    assert "data/train.npz" in capsys.readouterr().err and "moved the previous run" not in progress.getvalue()
    assert (exp / "summary.json").exists() and not list(exp.parent.glob("*.prev-*"))
    assert not (exp / runlock.LOCK).exists()

    def no_ray(**_):  # a Ray that cannot start leaves the earlier run in place too
        raise session.SessionError("no Ray in this test")

    monkeypatch.setattr(session, "start_local", no_ray)
    run_study(good, RunOptions(local=True, fresh=True, progress=io.StringIO(), out=io.StringIO()))
    assert (exp / "summary.json").exists() and not list(exp.parent.glob("*.prev-*"))

    import hpoc.runtime.study as study

    class Up:  # the data loaded and Ray is up: now the earlier run goes aside
        local, neighbours = True, []

        def close(self):
            pass

    import ray

    monkeypatch.setattr(session, "start_local", lambda **_: Up())
    monkeypatch.setattr(study, "_tune", lambda *a: 0)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Resources": {"CPU": 0.5}}])  # no room for one trial
    assert run_study(good, RunOptions(local=True, fresh=True, progress=io.StringIO(), out=io.StringIO())) == 2
    assert "one trial needs 1 worker(s)" in capsys.readouterr().err
    assert (exp / "summary.json").exists() and not list(exp.parent.glob("*.prev-*"))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Resources": {"CPU": 64}}])
    progress = io.StringIO()
    run_study(good, RunOptions(local=True, fresh=True, progress=progress, out=io.StringIO()))
    (aside,) = exp.parent.glob(f"{exp.name}.prev-*")
    assert f"moved the previous run to {aside}" in progress.getvalue()
    assert (aside / "summary.json").exists() and not (aside / runlock.LOCK).exists()


def test_a_yaml_configs_run_errors_name_its_keys(spec, tmp_path, capsys, monkeypatch):
    """`run_config.name` and `num_workers` to the user of a YAML config, not .hpo's
    `storage.name` and `workers`; a .hpo study's errors keep its own words. The runtime
    reads those words from the plan (`source.words`), not from the YAML front end."""
    import sys

    import hpoc.runtime.study as study
    from yaml_configs import seed, write

    def refuse(*_):
        raise StudyError("this `scheduler pbt` study has `synch = true`\n"
                         "  help: change `storage.name`, or lower `workers`")

    monkeypatch.setattr(study, "_run", refuse)
    yaml_plan, hpo_plan = load_plan(str(write(tmp_path / "cfg", seed()))), load_plan(str(spec))
    assert yaml_plan["source"]["words"]["storage.name"] == "run_config.name"
    monkeypatch.setitem(sys.modules, "hpoc.yaml", None)  # importing it fails
    assert run_study(yaml_plan, RunOptions(progress=io.StringIO(), out=io.StringIO())) == 2
    assert ("this `scheduler: {name: pbt}` study has `synch: true`\n"
            "  help: change `run_config.name`, or lower `num_workers`") in capsys.readouterr().err
    for plan in (hpo_plan, {**yaml_plan, "source": {**yaml_plan["source"], "words": None}}):
        assert plan["source"]["words"] is None
        assert run_study(plan, RunOptions(progress=io.StringIO(), out=io.StringIO())) == 2
        assert "help: change `storage.name`, or lower `workers`" in capsys.readouterr().err

def test_runs_moved_aside_within_one_second_get_names_of_their_own(tmp_path):
    from hpoc.files import aside_path, moved_aside_from

    exp = tmp_path / "digits"
    names = []
    for _ in range(3):  # faster than the clock's second: each still finds a free name
        exp.mkdir()
        (exp / "summary.json").write_text("{}")
        aside = aside_path(exp)
        exp.rename(aside)
        names.append(aside.name)
    assert len(set(names)) == 3
    assert all(moved_aside_from(tmp_path / n) == exp for n in names)


def test_an_old_plan_of_a_moved_project_says_its_spec_directory_is_gone(tmp_path):
    """`hpoc run build/digits/plan.json` after `mv`: the plan names the old directory, and the
    error was only "no module named `data` (searched /scratch/me/proj and the Python path)"."""
    from hpoc.runtime.pipeline import PipelineError, import_target

    gone = tmp_path / "scratch" / "proj"
    with pytest.raises(PipelineError) as err:
        import_target("data:DigitsGetter", str(gone), "getter")
    said = str(err.value)
    assert f"help: {gone}, the spec's directory when this plan was compiled, does not exist here" in said, said
    with pytest.raises(PipelineError) as err:  # a directory that is there: a typo, not a move
        import_target("nosuchmodule:X", str(tmp_path), "getter")
    assert "help" not in str(err.value)


def test_the_driver_refuses_a_plan_whose_spec_directory_is_gone(tmp_path, capsys):
    """Run from the moved project with the plan compiled before the move: it ran the study
    with the current directory's code and wrote its results under the old path, recreating it."""
    plan = make_plan(tmp_path / "scratch" / "proj", tmp_path / "scratch" / "proj" / "results")
    code = run_study(plan, RunOptions(local=True, progress=io.StringIO(), out=io.StringIO()))
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"the spec's directory {tmp_path / 'scratch' / 'proj'} (`source.workdir` of this plan) " \
           "does not exist here" in err, err
    assert not (tmp_path / "scratch").exists()


def test_submitting_the_old_build_of_a_moved_project_is_refused_before_any_job(spec, tmp_path):
    """`hpoc submit build/digits` after `mv`: the dry run showed nothing amiss, and every job
    it sent failed on the old paths."""
    import hpoc
    from hpoc.cli import main

    assert main(["compile", str(spec), "-o", str(spec.parent / "build" / "digits")]) == 0
    moved = tmp_path / "project" / "digits"
    shutil.move(str(spec.parent), moved)
    with pytest.raises(SubmitError, match=f"the spec's directory {spec.parent} .* does not exist here"):
        hpoc.submit(moved / "build" / "digits", cluster="local", dry_run=True)


@pytest.mark.parametrize("kind", ["missing", "a file", "not searchable", "not writable"])
def test_a_local_run_and_a_job_refuse_the_same_hpoc_tmp_in_the_same_words(tmp_path, monkeypatch, kind):
    """A directory hpoc cannot make its own in (mkdir needs write and search permission)
    is refused by a local run and by a job's node alike, naming HPOC_TMP as it was set."""
    from hpoc.runtime import session
    from hpoc.runtime.node import NodeError, job_dir

    short = tempfile.mkdtemp(prefix="h", dir="/tmp")  # room for Ray's socket paths
    try:
        base = os.path.join(short, "t")
        if kind == "a file":
            open(base, "w").close()
        elif kind != "missing":
            os.mkdir(base)
            denied = os.X_OK if kind == "not searchable" else os.W_OK
            real = os.access  # root passes any mode bits: refuse as a user's would be
            monkeypatch.setattr(os, "access", lambda p, m, **kw: False if (
                os.fspath(p).rstrip("/") == base and m & denied) else real(p, m, **kw))
        said = base + "/"
        monkeypatch.setenv("HPOC_TMP", said)
        with pytest.raises(session.SessionError) as local:
            session.temp_root()
        with pytest.raises(NodeError) as job:
            job_dir({"SLURM_JOB_ID": "77", "HPOC_TMP": said}, "hpoc-77")
        assert str(local.value) == str(job.value) == f"HPOC_TMP={said} is not a writable directory"
    finally:
        shutil.rmtree(short)


def test_a_job_whose_python_lacks_ray_is_not_sent_on_to_bring_ray_up(spec, monkeypatch, capsys):
    """`pip install hpoc` without its `runtime` extra, as the nodes' python3: the check before
    Ray said GO (it imports no Ray), the head step then died on `No module named 'ray'` and
    `hpoc status` advised submitting again. Now it answers none of its codes, so the job
    script's own import check ends the job naming `slurm.python` (test_render_slurm)."""
    import importlib.util

    from hpoc.runtime import __main__ as entry
    from hpoc.runtime.before import BUSY, DONE, FAILED, GO

    plan = load_plan(str(spec))
    plan_file = spec.parent / "plan.json"
    plan_file.write_text(json.dumps(plan))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    code = entry.main([str(plan_file), "--shard", "0", "--before-ray", "--claim", str(os.getpid())])
    assert code not in (GO, DONE, BUSY, FAILED)
    assert not experiment_dir(plan, 0).exists()  # no claim taken


def test_a_lock_held_by_a_slurm_job_names_the_scancel_that_stops_it(tmp_path):
    """The study submitted twice: the second job said "wait for it to end or stop it",
    the first job's id in the line above but not how to stop it."""
    from hpoc.runtime import runlock

    info = {"pid": 4242, "host": "node1", "started": time.time(), "slurm_job": "159"}
    assert "stop it (`scancel 159`; it can be resumed)" in runlock.describe(tmp_path, info)
    said = runlock.describe(tmp_path, {**info, "slurm_job": "514", "slurm_task": "514_3"})
    assert "stop it (`scancel 514_3`; it can be resumed)" in said
    said = runlock.describe(tmp_path, {"pid": 4242, "host": "laptop", "started": time.time()})
    assert "stop it (it can be resumed)" in said  # `hpoc run`: Ctrl-C or kill, as ever


def test_a_job_whose_storage_path_lies_under_a_file_stops_before_ray(tmp_path, monkeypatch, capsys):
    """`storage.path` under a file: the job brought its Ray cluster up (every node), and only
    then did the driver say the storage could not be written."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    (tmp_path / "afile").write_text("")
    plan = make_plan(tmp_path, tmp_path / "afile" / "results")
    assert before.main(plan, 0, claim_pid=os.getpid()) == before.STORAGE
    assert capsys.readouterr().err == (f"hpoc: error: storage path {tmp_path}/afile/results: "
                                       f"{tmp_path}/afile exists and is not a directory\n")


def test_the_summary_names_the_slurm_job_run_that_wrote_it(tmp_path, monkeypatch):
    """hpoc status ties a time limit's SIGUSR2 to its job by these: without them the summary of
    an earlier job was said of the job submitted since."""
    from hpoc.runtime import summary

    plan = {"study": {"name": "s"}, "space": {"params": [], "constants": {}},
            "objective": {"metrics": [{"name": "loss", "mode": "min"}]}}

    def built() -> dict:
        return summary.build(plan, 0, [], wall_s=1.0, interrupted=True, experiment_dir=tmp_path, plan_hash="h")

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert "slurm_job" not in built()
    _as_job(monkeypatch, "979", restart=2)
    assert (built()["slurm_job"], built()["slurm_restart"]) == ("979", 2) and "slurm_task" not in built()
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "700")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert built()["slurm_task"] == "700_1"
