"""`hpoc run` / `python -m hpoc.runtime` argument handling (no Ray started)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.commands.run import load_plan
from hpoc.errors import HpocError
from hpoc.plan import dumps
from hpoc.runtime.__main__ import main as runtime_main
from hpoc.runtime.study import experiment_dir
from runtime_plans import make_plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_run_takes_a_spec_a_plan_file_or_a_build_directory(tmp_path):
    from_spec = load_plan(str(EXAMPLES / "digits" / "study.hpo"))
    build = tmp_path / "build"
    build.mkdir()
    (build / "plan.json").write_text(dumps(from_spec))
    # the same study from every entry point: same hash, so runs resume across them
    assert load_plan(str(build / "plan.json")) == from_spec
    assert load_plan(str(build)) == from_spec
    with pytest.raises(HpocError, match="no such file"):
        load_plan(str(tmp_path / "missing.hpo"))
    # as `hpoc submit` says it (hpoc.plan.plan_file): it was compiled, "not a study file"
    with pytest.raises(HpocError, match="a directory without a plan.json, so no build directory"):
        load_plan(str(tmp_path))


def test_a_broken_spec_is_reported_like_hpoc_check_does(tmp_path, capsys):
    spec = tmp_path / "study.hpo"
    spec.write_text('study "x"\nspace { lr = loguniform(1e-3) }\n')
    assert main(["run", str(spec), "--local"]) == 2
    err = capsys.readouterr().err
    assert "study.hpo:" in err and "Traceback" not in err


def test_experiment_directories_per_shard(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "res")
    assert experiment_dir(plan, 0) == tmp_path / "res" / "toy"
    sharded = make_plan(tmp_path, tmp_path / "res", shards={"count": 3, "parallel": 3})
    assert experiment_dir(sharded, 2) == tmp_path / "res" / "toy" / "shard-2"


def test_runtime_entry_point_refuses_bad_plans_and_shards(tmp_path, capsys):
    bad = tmp_path / "plan.json"
    bad.write_text('{"plan_version": 99}')
    assert runtime_main([str(bad)]) == 2
    assert "plan_version 99 is not supported" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(dumps(make_plan(tmp_path, tmp_path / "res")))
    assert runtime_main([str(good), "--shard", "3", "--local"]) == 2
    assert "shard 3 does not exist: the study has 1 shard(s)" in capsys.readouterr().err


def test_a_shard_the_study_lacks_is_an_hpoc_error_with_the_shards_it_has(tmp_path, capsys):
    """`hpoc run --shard 2` of a one-shard study said "error: shard 2 does not exist" with
    neither the `hpoc:` prefix of every other refusal nor what to run instead."""
    good = tmp_path / "plan.json"
    good.write_text(dumps(make_plan(tmp_path, tmp_path / "res")))
    assert main(["run", str(good), "--local", "--shard", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpoc: error: shard 2 does not exist: the study has 1 shard(s) (0..0)\n"), err
    assert "help: leave out --shard: a study that is not sharded (`slurm { array { shards = N } }`) " \
        "runs as shard 0" in err, err
    sharded = tmp_path / "sharded.json"
    sharded.write_text(dumps(make_plan(tmp_path, tmp_path / "res", shards={"count": 3, "parallel": 3})))
    assert main(["run", str(sharded), "--local", "--shard", "-1"]) == 2
    assert "help: pass --shard 0 to 2" in capsys.readouterr().err
    assert runtime_main([str(sharded), "--shard", "3", "--local"]) == 2  # as the job script runs it
    assert "help: pass --shard 0 to 2" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-2", "0", "two"])
def test_cpus_must_be_a_positive_count(value, capsys):
    """Ray would fail with 'Resource quantities must be nonnegative' (or take 0 as all)."""
    with pytest.raises(SystemExit) as info:
        main(["run", "study.hpo", "--local", "--cpus", value])
    assert info.value.code == 2
    assert "argument --cpus:" in capsys.readouterr().err


# ---- a local run beside a SLURM job of the same experiment ------------------------------


@pytest.fixture
def spec_and_build(tmp_path):
    """The digits study copied to tmp_path and compiled into tmp_path/build."""
    import shutil

    study = tmp_path / "digits"
    shutil.copytree(EXAMPLES / "digits", study, ignore=shutil.ignore_patterns("results", "build"))
    assert main(["compile", str(study / "study.hpo"), "-o", str(tmp_path / "build")]) == 0
    return study / "study.hpo", tmp_path / "build"


@pytest.fixture
def ran(monkeypatch):
    """Whether `hpoc run` went on to run the study (it is not run)."""
    import hpoc.runtime.study

    calls = []
    monkeypatch.setattr(hpoc.runtime.study, "run_study", lambda plan, opts: calls.append(opts) or 0)
    return calls


def test_a_local_run_refuses_while_a_slurm_job_will_run_the_same_experiment(
        spec_and_build, tmp_path, monkeypatch, capsys, ran):
    """It used to start silently: then either it was refused (the job held the shard) or the
    queued job, once started, exited at once as a failed job."""
    from submit_support import fake_squeue

    spec, build = spec_and_build
    other = tmp_path / "other"
    (other / "logs").mkdir(parents=True)
    (other / "plan.json").write_text(dumps(make_plan(tmp_path, tmp_path / "elsewhere")))
    rows = [f"690|RUNNING|0:10|node2|None|N/A|{other / 'logs' / '.submission_file_x.sh'}",  # other storage
            f"691|PENDING|0:00||Priority|N/A|{build / 'preflight.sbatch'}",  # brings up Ray only
            f"692|COMPLETING|0:10|node1|None|N/A|{build / 'job.sbatch'}",  # its driver has stopped
            f"693|RUNNING|0:10|node1|None|N/A|/home/me/other.sbatch"]
    fake_squeue(monkeypatch, tmp_path / "bin", rows)
    capsys.readouterr()
    assert main(["run", str(spec), "--local"]) == 0 and len(ran) == 1
    fake_squeue(monkeypatch, tmp_path / "bin", [*rows, f"682|PENDING|0:00||Priority|N/A|{build / 'job.sbatch'}"])
    assert main(["run", str(spec), "--local"]) == 2 and len(ran) == 1
    err = capsys.readouterr().err
    exp = experiment_dir(load_plan(str(spec)), 0)
    assert f"hpoc: error: SLURM job(s) 682 (PENDING) will run this study in {exp}, where this run " \
           "would write: whichever comes second stops at once" in err, err
    assert "help: wait for the job(s) or `scancel` them" in err and "pass --force" in err
    assert main(["run", str(build), "--local", "--force"]) == 0 and len(ran) == 2
    monkeypatch.setenv("SLURM_JOB_ID", "682")  # `hpoc run` inside that very job
    assert main(["run", str(spec), "--local"]) == 0 and len(ran) == 3
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a job's driver, not a local run
    assert main(["run", str(spec)]) == 0 and len(ran) == 4
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no squeue: it cannot tell
    assert main(["run", str(spec), "--local"]) == 0 and len(ran) == 5


def test_only_jobs_of_the_same_shard_count(tmp_path):
    """job.sbatch's array task is its shard; `hpoc submit` records its jobs' shards (a
    resubmission's array task 0 may be shard 2); a job it did not record may run any."""
    from hpoc.submit.queue import experiment_jobs

    plan = make_plan(tmp_path, tmp_path / "results", shards={"count": 3, "parallel": 3})
    build = tmp_path / "build"
    (build / "logs" / "50_0").mkdir(parents=True)
    (build / "plan.json").write_text(dumps(plan))
    (build / "jobs.json").write_text('[{"jobs": [{"job_id": "50_0", "shard": 2}]}]')

    def job(job_id, task, script):
        return {"job_id": job_id, "state": "PENDING", "task": task, "script": str(build / script)}

    jobs = [job("40_1", 1, "job.sbatch"), job("40_2", 2, "job.sbatch"),
            job("50_0", 0, "logs/50_0/.submission_file_a.sh"), job("51", None, "logs/.submission_file_b.sh")]
    assert [j["job_id"] for j in experiment_jobs(plan, 2, jobs)] == ["40_2", "50_0", "51"]
    assert [j["job_id"] for j in experiment_jobs(plan, 0, jobs)] == ["51"]


def test_jobs_json_is_read_once_per_build(tmp_path, monkeypatch):
    """A submitit array shows in squeue task by task: one jobs.json read for all of them."""
    import hpoc.submit
    from hpoc.submit.queue import experiment_jobs

    plan = make_plan(tmp_path, tmp_path / "results", shards={"count": 3, "parallel": 3})
    build = tmp_path / "build"
    (build / "logs").mkdir(parents=True)
    (build / "plan.json").write_text(dumps(plan))
    reads = []
    monkeypatch.setattr(hpoc.submit, "read_jobs", lambda b: reads.append(b) or
                        [{"jobs": [{"job_id": f"60_{k}", "shard": k} for k in range(3)]}])
    jobs = [{"job_id": f"60_{k}", "state": "PENDING", "task": k,
             "script": str(build / "logs" / ".submission_file_a.sh")} for k in range(3)]
    assert [j["job_id"] for j in experiment_jobs(plan, 1, jobs)] == ["60_1"]
    assert len(reads) == 1


def test_a_hung_squeue_holds_a_local_run_up_only_briefly(tmp_path, monkeypatch):
    """Every local run asks squeue first; a controller that does not answer must not stall
    it for squeue's 30 s."""
    from hpoc.submit import queue

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\nexec sleep 30\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(queue, "LOCAL_CHECK_S", 0.5)
    started = time.monotonic()
    assert queue.experiment_jobs({"storage": {"path": str(tmp_path), "name": "s"},
                                  "shards": {"count": 1}}, 0) == []
    assert time.monotonic() - started < 10
