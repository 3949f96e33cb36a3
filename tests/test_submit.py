"""`hpoc submit`: the plan -> submitit mapping, dry runs, and real jobs (local SLURM, local)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hpoc.submit import SubmitError
from hpoc.submit.params import describe, extra_parameters
from slurm_plans import FULL_SITE, plan
from submit_support import (fake_squeue, hpoc, log_tail, ray_processes, reports, squeue_ids, summary, wait_done,
                            write_study)


# ---------------------------------------------------------------- the mapping (no cluster)


def test_a_full_site_plan_maps_onto_submitit_parameters():
    p = plan(**FULL_SITE)
    sub = describe(p, "/p/project/hpo/build/plan.json", "slurm")
    params = sub.parameters
    assert sub.executor == "SlurmExecutor" and sub.folder == "/p/project/hpo/build/logs/%j"
    assert (params["nodes"], params["ntasks_per_node"], params["cpus_per_task"]) == (4, 1, 32)
    assert params["gres"] == "gpu:4" and params["mem"] == "256G"
    assert (params["partition"], params["account"], params["qos"], params["constraint"]) == \
        ("booster", "hpo-proj", "normal", "gpu&ib")
    assert params["time"] == 24 * 60  # minutes, as submitit counts walltime
    assert params["signal_delay_s"] == 300  # resume.grace_s
    assert params["additional_parameters"] == {"exclusive": True, "mail-type": "END", "requeue": True}
    # srun does not inherit --cpus-per-task; the GPUs go to the step too
    assert params["srun_args"] == ["--export=ALL", "--kill-on-bad-exit=0", "--cpus-per-task=32", "--gres=gpu:4"]
    assert params["array_parallelism"] == 2 and sub.shards == [0, 1, 2, 3] and sub.array
    # site setup first, then the spec's environment (quoted), the NIC, the workdir
    setup = params["setup"]
    assert setup[0] == "cd '/p/project/hpo/my study'"  # relative paths in setup lines: the spec's directory's
    assert setup[4:8] == ["module load Stages/2025 Python", "source /p/project/hpo/venv/bin/activate",
                          "set +e", "trap - EXIT"]
    assert "export MSG='it'\"'\"'s a $test'" in setup
    assert "export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0" in setup
    cds = [i for i, line in enumerate(setup) if line == "cd '/p/project/hpo/my study'"]
    assert cds[-1] > setup.index("export NCCL_DEBUG=WARN")  # again after the setup lines, which may cd
    # the interpreter runs in the container, with the workdir, the build directory (submitit's
    # pickles, which the job reads in there), storage and the job directory's base bound, as in job.sbatch
    assert sub.python.startswith("apptainer exec $hpoc_gpu_flag \"${hpoc_tmp_bind[@]}\" --bind '/p/project/hpo/my study' "
                                 "--bind /p/project/hpo/build --bind /p/scratch/hpo/ray_results ")
    assert sub.python.endswith("'/p/images/torch ray.sif' python3")
    assert params["comment"].startswith("hpoc:") and len(params["comment"]) == 17


def test_gpu_type_asks_submitit_for_typed_gpus():
    p = plan(**FULL_SITE)
    p["slurm"]["gpu_type"] = "h100_80gb"
    params = describe(p, "/p/project/hpo/build/plan.json", "slurm").parameters
    assert params["gres"] == "gpu:h100_80gb:4" and "--gres=gpu:h100_80gb:4" in params["srun_args"]


@pytest.mark.parametrize("request_, kind, job, step", [
    ("per_node", None, {"gpus_per_node": 4}, "--gpus-per-node=4"),
    ("per_node", "mi250", {"gpus_per_node": "mi250:4"}, "--gpus-per-node=mi250:4"),
    ("none", None, {}, None),
])
def test_gpu_request_chooses_submitits_gpu_option(request_, kind, job, step, tmp_path, monkeypatch):
    """As job.sbatch: the job and its srun step ask the same way; under `none` not at all, and
    the Ray nodes are told the plan's count (SLURM tells them none)."""
    from submitit.slurm.slurm import _make_sbatch_string

    from hpoc.submit import job as job_mod

    p = plan(**FULL_SITE)
    p["slurm"].update(gpu_request=request_, gpu_type=kind)
    params = describe(p, "/p/project/hpo/build/plan.json", "slurm").parameters
    assert {k: params[k] for k in ("gres", "gpus_per_node") if k in params} == job
    assert [a for a in params["srun_args"] if "gpu" in a] == ([step] if step else [])
    script = _make_sbatch_string(command="python x", folder="/f", **params).splitlines()
    asks = [line.split()[0] for line in script if "--gres" in line or "--gpus" in line]
    assert asks == (["#SBATCH", "srun"] if step else [])
    assert not step or (f"#SBATCH {step}" in script and f" {step} python x" in script[-1])
    started = []
    monkeypatch.setattr(job_mod.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    job_mod._start_node("worker", tmp_path / "j", "n1", p["slurm"], tmp_path / "log", {}, address="a:1")
    assert (started[0][started[0].index("--gpus") + 1] == "4") if request_ == "none" else "--gpus" not in started[0]


def test_resume_off_means_no_signal_and_no_requeue():
    """Not even SLURM's own after a node failure (JobRequeue=1, the default, requeues any batch
    job): the run it started would refuse the unfinished run resume may not continue."""
    params = describe(plan(resume={"enabled": False}), "/b/plan.json", "slurm").parameters
    assert "signal_delay_s" not in params
    assert params["additional_parameters"] == {"no-requeue": True}
    params = describe(plan(resume={"enabled": False}, slurm={"extra": ["--requeue"]}), "/b/plan.json",
                      "slurm").parameters
    assert params["additional_parameters"] == {"requeue": True}  # the site's own choice


def test_a_percent_in_the_build_directory_is_refused_before_sbatch():
    """sbatch read `%x` in submitit's --output as the job name: the job failed to launch
    (JobLaunchFailure) with no log at all, and status could say nothing but FAILED."""
    with pytest.raises(SubmitError) as refused:
        describe(plan(), "/p/my study %x/build/s/plan.json", "slurm")
    assert str(refused.value).startswith("the build directory /p/my study %x/build/s contains `%`")
    assert "-o DIR" in str(refused.value)
    assert describe(plan(), "/p/my study %x/build/s/plan.json", "local").cluster == "local"


def test_a_build_directory_the_container_cannot_bind_is_refused_before_sbatch():
    """The container binds the build directory (the job reads submitit's pickles there);
    apptainer reads `,` and `:` in --bind as separators."""
    with pytest.raises(SubmitError, match=r"the build directory /p/a:b cannot be bound into the container"):
        describe(plan(**FULL_SITE), "/p/a:b/plan.json", "slurm")
    assert describe(plan(), "/p/a:b/plan.json", "slurm").python == "python3"  # no container: fine


def test_the_local_executor_runs_one_node_with_the_time_limit():
    sub = describe(plan(slurm={"nodes": 3, "time_s": 90}), "/b/plan.json", "local")
    assert sub.executor == "LocalExecutor"
    assert sub.parameters["timeout_min"] == 2 and sub.parameters["nodes"] == 1
    assert any("ignored" in n for n in sub.notes)


def test_a_study_without_slurm_block_cannot_go_to_slurm():
    with pytest.raises(SubmitError, match="no `slurm` block") as info:
        describe(plan(slurm=None), "/b/plan.json", "slurm")
    assert info.value.exit_code == 2
    assert describe(plan(slurm=None), "/b/plan.json", "local").executor == "LocalExecutor"


def test_extra_flags_must_be_long_options():
    assert extra_parameters(["--exclusive", "--mail-user=a@b.c"]) == {"exclusive": True, "mail-user": "a@b.c"}
    with pytest.raises(SubmitError):
        extra_parameters(["-N 2"])


def test_a_directory_without_a_plan_is_not_called_missing(tmp_path):
    from hpoc.submit import load_target

    with pytest.raises(SubmitError) as info:
        load_target(tmp_path)
    assert str(info.value) == (f"{tmp_path}: a directory without a plan.json, so no build directory "
                               "(a .hpo spec, a build directory or a plan.json)")
    with pytest.raises(SubmitError, match="no such file"):
        load_target(tmp_path / "missing.hpo")
    (tmp_path / "study.hpo").write_text("")  # a study's directory: its spec is what was meant
    with pytest.raises(SubmitError) as info:
        load_target(tmp_path)
    assert str(info.value).endswith(f"\n  = help: did you mean `{tmp_path / 'study.hpo'}`?")
    with pytest.raises(SubmitError) as info:
        load_target(tmp_path / "stduy.hpo")
    assert str(info.value).endswith(f"\n  = help: did you mean `{tmp_path / 'study.hpo'}`?")


@pytest.mark.parametrize("flag", ["--reservation='maint window'", "--reservation maint_w", "--hint nomultithread",
                                  '--mail-user="a b"', "--exclusive"])
def test_extra_flags_reach_sbatch_as_job_sbatch_writes_them(flag):
    """sbatch splits an #SBATCH line into words as a shell does. job.sbatch writes the element
    as given; submitit's script quoted the value again (`--reservation=\'\'"\'"\'maint window...`,
    read by sbatch as the name `'maint window'` with its quotes) and took `--reservation
    maint_w` for an option named `reservation maint-w`."""
    from submitit.slurm.slurm import _make_sbatch_string

    def words(line):  # as sbatch reads `#SBATCH ...`: `--name value` is `--name=value`
        w = shlex.split(line)
        return ["=".join(w)] if len(w) == 2 else w

    params = extra_parameters([flag])
    script = _make_sbatch_string(command="x", folder="/f", additional_parameters=params)
    name = flag[2:].split("=")[0].split()[0]
    [line] = [ln for ln in script.splitlines() if ln.startswith(f"#SBATCH --{name}")]
    assert words(line.removeprefix("#SBATCH ")) == words(flag), line


def test_hpoc_submit_is_callable_as_documented(tmp_path):
    import hpoc

    spec = write_study(tmp_path / "s", "callable", slurm=False)
    sub = hpoc.submit(spec, cluster="local", dry_run=True, out=tmp_path / "build")
    import hpoc.submit  # binds the module to the name; still callable

    again = hpoc.submit(spec, cluster="local", dry_run=True, out=tmp_path / "build")
    assert sub.parameters == again.parameters and sub.plan_path == str(tmp_path / "build" / "plan.json")
    assert not (tmp_path / "build").exists()  # a dry run writes nothing


def test_submit_refuses_to_recompile_a_plan_a_queued_job_will_read(tmp_path, monkeypatch, capsys):
    from hpoc.cli import main

    spec = write_study(tmp_path / "s", "queued")
    build = tmp_path / "build"
    assert main(["compile", str(spec), "-o", str(build)]) == 0
    fake_squeue(monkeypatch, tmp_path / "bin",
                [f"77_1|PENDING|0:00||BeginTime|1|{build / 'logs' / '.submission_file_x.sh'}"])
    spec.write_text(spec.read_text().replace("num_samples    = 3", "num_samples    = 4"))
    before = (build / "plan.json").read_text()
    capsys.readouterr()
    assert main(["submit", str(spec), "-o", str(build), "--cluster", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "is read by SLURM job(s) 77_1 (PENDING)" in err and "or pass --force" in err
    assert (build / "plan.json").read_text() == before


def test_resubmitting_a_sharded_study_sends_only_its_unfinished_shards(tmp_path, monkeypatch, capsys):
    """After one array task was cancelled, `hpoc submit` again sent every shard: the finished
    one's job brought a Ray cluster up only to learn there was nothing to do."""
    import hpoc.submit as submit_mod
    from hpoc.plan import load
    from hpoc.runtime import marker
    from hpoc.runtime.shards import study_root

    spec = write_study(tmp_path / "s", "resub", shards=3, parallel=3, search="random", num_samples=6)
    found = submit_mod.load_target(spec, tmp_path / "build")
    found.write()
    plan = load(found.plan_path)
    fp = marker.fingerprint(plan, plan["content_hash"])
    for k in range(3):
        marker.write(study_root(plan) / f"shard-{k}", fp, k)
    (study_root(plan) / "shard-1" / "summary.json").write_text(json.dumps(
        {"study": "resub", "plan_hash": plan["content_hash"], "interrupted": False}))
    from hpoc.cli import main

    assert main(["submit", str(found.plan_path.parent), "--dry-run", "--cluster", "local"]) == 0
    out = capsys.readouterr().out
    assert "shards:     2\n" in out and "note: shard(s) 1 ran to the end: not submitted again" in out
    assert submit_mod.submit(found.plan_path.parent, cluster="local", dry_run=True).shards == [0, 2]  # the API too
    sent = []

    class Executor:
        def submit(self, job, shard):
            sent.append([shard])
            return type("Job", (), {"job_id": "9"})()

        def map_array(self, job, shards):
            sent.append(list(shards))
            return [type("Job", (), {"job_id": f"9_{i}"})() for i in range(len(shards))]

    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Executor())
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    sub = submit_mod.prepare(plan, found.plan_path, "slurm")
    jobs = submit_mod.send(plan, sub, build=found)
    assert sent == [[0, 2]] and len(jobs) == 2 and sub.shards == [0, 2]
    assert "shard(s) 1 ran to the end: not submitted again" in capsys.readouterr().out
    records = json.loads((tmp_path / "build" / "jobs.json").read_text())
    assert records[-1]["jobs"] == [{"job_id": "9_0", "shard": 0}, {"job_id": "9_1", "shard": 2}]
    for k in (0, 2):
        shutil.copy(study_root(plan) / "shard-1" / "summary.json", study_root(plan) / f"shard-{k}")
    capsys.readouterr()
    assert main(["submit", str(found.plan_path.parent), "--dry-run", "--cluster", "local"]) == 0
    assert "is complete; nothing would be submitted" in capsys.readouterr().out
    assert submit_mod.submit(found.plan_path.parent, cluster="local", dry_run=True).shards == []


# ---------------------------------------------------------------- dry run (real sbatch around)


@pytest.mark.slurm
def test_dry_run_prints_exactly_what_would_be_sent_and_submits_nothing(tmp_path):
    spec = write_study(tmp_path / "s", "dry", nodes=2, shards=2, parallel=1, num_samples=4)
    before = squeue_ids()
    run = hpoc("submit", str(spec), "--dry-run", "-o", str(tmp_path / "build"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "dry run: nothing submitted" in out and "cluster:    slurm" in out
    assert "shards:     2 as one job array, 1 at a time" in out
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --mem=1G", "#SBATCH --time=10", "#SBATCH --signal=USR2@30",
                 "#SBATCH --requeue", "#SBATCH --array=0-1%1", "#SBATCH --job-name=dry"):
        assert line in out.splitlines(), line
    srun = next(ln for ln in out.splitlines() if ln.startswith("srun "))
    assert "--cpus-per-task=1" in shlex.split(srun)
    assert "--wckey" not in out  # submitit's default wckey, refused where wckeys are enforced
    assert squeue_ids() == before
    assert not (tmp_path / "build").exists() and not (tmp_path / "s" / "results").exists()


# ---------------------------------------------------------------- real jobs


@pytest.mark.slurm
@pytest.mark.slow
def test_a_two_node_study_completes_on_the_local_slurm_cluster(tmp_path):
    spec = write_study(tmp_path / "s", "twonode", nodes=2, num_samples=3, max_concurrent=2)
    run = hpoc("submit", str(spec), "-o", str(tmp_path / "build"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.split("job ")[1].split()[0]
    logs = tmp_path / "build" / "logs" / job_id
    assert f"logs {logs}/" in run.stdout
    # While it is queued or running, a second submission would run the same shard twice;
    # a refused one leaves the plan the job reads alone, even from an edited spec.
    plan_text = (tmp_path / "build" / "plan.json").read_text()
    spec.write_text(spec.read_text().replace("num_samples    = 3", "num_samples    = 4"))
    twice = hpoc("submit", str(spec), "-o", str(tmp_path / "build"), cwd=tmp_path)
    assert twice.returncode == 2 and f"already has job(s) {job_id}" in twice.stderr
    assert (tmp_path / "build" / "plan.json").read_text() == plan_text
    (record,) = wait_done([job_id], 300, tmp_path / "build")
    assert record["JobState"] == "COMPLETED", log_tail(logs)
    out = (logs / f"{job_id}_0_log.out").read_text()
    assert "hpoc: cluster ready nodes=2 cpus=2 gpus=0" in out
    assert "hpoc: study driver exited with status 0" in out
    ray_logs = sorted(logs.glob("ray-*.log"))  # one per node, named after it
    assert len(ray_logs) == 2 and all("hpoc: ray " in p.read_text() for p in ray_logs)
    exp = tmp_path / "s" / "results" / "twonode"
    s = summary(exp)
    assert s["status_counts"] == {"TERMINATED": 3} and s["interrupted"] is False
    assert all([r["epoch"] for r in rows] == [1, 2] for rows in reports(exp).values())
    # nothing of the job is left: Ray processes, node-local dir, token rendezvous
    assert ray_processes(record["JobId"]) == []
    assert not Path(f"/tmp/hpoc-{job_id}").exists()
    assert [p.name for p in logs.glob(".hpoc-rdv*/*")] == ["done"]  # no token, no address
    # status of a finished study, by build directory and by job id
    status = hpoc("status", str(tmp_path / "build"), "--json", cwd=tmp_path)
    data = json.loads(status.stdout)
    assert data["state"] == "finished" and data["totals"] == {"done": 3, "running": 0, "paused": 0,
                                                              "pending": 0, "errored": 0}
    assert data["shards"][0]["job"]["state"] == "COMPLETED"
    assert data["best"]["value"] == max(t["metrics"]["val_accuracy"] for t in s["trials"])
    by_id = hpoc("status", job_id, cwd=tmp_path)
    assert by_id.returncode == 0 and "study `twonode`: finished" in by_id.stdout
    # a finished study is not submitted again
    again = hpoc("submit", str(tmp_path / "build"), cwd=tmp_path)
    assert again.returncode == 0 and "nothing submitted" in again.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_cluster_local_runs_the_same_jobs_on_this_machine(tmp_path):
    spec = write_study(tmp_path / "s", "localrun", num_samples=2, max_concurrent=1, slurm=False)
    run = hpoc("submit", str(spec), "--cluster", "local", "-o", str(tmp_path / "build"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr + log_tail(tmp_path / "build")
    assert "submitted study `localrun` (local)" in run.stdout
    assert "shard 0: job " in run.stderr and ": finished" in run.stderr
    s = summary(tmp_path / "s" / "results" / "localrun")
    assert s["status_counts"] == {"TERMINATED": 2}
    records = json.loads((tmp_path / "build" / "jobs.json").read_text())
    assert records[-1]["cluster"] == "local" and records[-1]["jobs"][0]["shard"] == 0
    status = json.loads(hpoc("status", str(tmp_path / "build"), "--json", cwd=tmp_path).stdout)
    assert status["state"] == "finished" and status["shards"][0]["job"]["state"] == "ENDED"
    assert status["totals"]["done"] == 2


def test_local_jobs_keep_this_machines_gpus(monkeypatch):
    from hpoc.submit import params as P

    assert P.local_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == [2, 3]
    assert P.local_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setattr(P, "local_gpus", lambda env=None: [2, 3])
    sub = describe(plan(slurm={"gpus_per_node": 1}), "/b/plan.json", "local")
    assert sub.parameters["gpus_per_node"] == 1 and sub.parameters["visible_gpus"] == [2, 3]
    monkeypatch.setattr(P, "local_gpus", lambda env=None: [])
    assert "gpus_per_node" not in describe(plan(), "/b/plan.json", "local").parameters


@pytest.mark.parametrize("on_term", ["exit 143", ":"])
def test_a_lost_head_stops_the_driver_at_once(tmp_path, monkeypatch, on_term):
    # The head's process ends while the study runs: the job stops its driver and says so,
    # rather than letting it wait out Ray's GCS reconnect timeout. A driver that does not
    # stop on SIGTERM (the real one hangs in Tune's cleanup without the GCS) is killed soon.
    import subprocess
    import sys
    import time

    from hpoc.submit.job import StudyJob, StudyJobError

    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/bash\necho $$ >{tmp_path}/driver.pid\ntrap 'echo term >{tmp_path}/got; {on_term}' TERM\n"
                    "while :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    head = subprocess.Popen(["sleep", "1"])
    t0 = time.monotonic()
    with pytest.raises(StudyJobError, match=r"the Ray head stopped \(see .*ray-node1.log\)"):
        StudyJob(str(tmp_path / "plan.json"))._run_driver(0, {}, local=False, head=head,
                                                           head_log=tmp_path / "ray-node1.log")
    assert time.monotonic() - t0 < 10
    assert (tmp_path / "got").read_text() == "term\n"  # the driver was stopped, not left behind
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "driver.pid").read_text()), 0)


def test_a_cancelled_job_says_so_rather_than_blaming_the_ray_head(tmp_path, monkeypatch, capsys):
    """scancel (preemption, scontrol requeue) sends SIGTERM to every process of the job:
    the Ray head ended with it, and the job's last line sent the user to the head's log for
    a Ray failure ("the Ray head stopped (see ray-node1.log)") after submitit's warnings."""
    import signal
    import subprocess
    import sys

    from hpoc.submit.job import StudyJob, StudyJobError

    fake = tmp_path / "python"
    fake.write_text("#!/bin/bash\ntrap 'exit 143' TERM\nwhile :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCONT)
    job = StudyJob(str(tmp_path / "plan.json"))
    try:
        job._note_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # SLURM may send it more than once
    finally:
        head = subprocess.Popen(["sleep", "0.5"])
        try:
            with pytest.raises(StudyJobError) as failed:
                job._run_driver(0, {}, local=False, head=head, head_log=tmp_path / "ray-node1.log")
        finally:
            signal.signal(signal.SIGTERM, before[0])
            signal.signal(signal.SIGCONT, before[1])
    assert str(failed.value).startswith("terminated (SIGTERM: scancel, a preemption or `scontrol requeue`)")
    assert "ray-node1.log" not in str(failed.value)
    assert capsys.readouterr().err.count("hpoc: terminated (SIGTERM): stopping the study") == 1


def test_a_job_slurm_ends_for_a_lost_node_names_the_node(tmp_path, monkeypatch, capsys):
    """As job.sbatch: a node SLURM marked down ends the job with scancel's SIGTERM, and the
    log said only `terminated`."""
    import signal
    import sys

    from hpoc.submit.job import StudyJob, StudyJobError

    (tmp_path / "sinfo").write_text('#!/bin/bash\necho "$*" >>"$0.args"\nprintf "node2 Not responding\\nnode2 x\\n"\n')
    (tmp_path / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-2]")
    fake = tmp_path / "python"  # the driver
    fake.write_text("#!/bin/bash\ntrap 'exit 143' TERM\nwhile :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCONT)
    job = StudyJob(str(tmp_path / "plan.json"), grace_s=30)
    try:
        job._note_sigterm()
        os.kill(os.getpid(), signal.SIGTERM)
        assert not (tmp_path / "sinfo.args").exists()  # not asked in the handler: KillWait runs
        with pytest.raises(StudyJobError) as failed:
            job._run_driver(0, {}, local=False, head=subprocess.Popen(["true"]), head_log=tmp_path / "ray-node1.log")
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGCONT, before[1])
    assert "-n node[1-2] " in (tmp_path / "sinfo.args").read_text()
    assert capsys.readouterr().err == (
        "hpoc: terminated (SIGTERM): stopping the study\nhpoc: SLURM lost node2 of this job (down: Not responding) "
        "and ends the job: a requeued job, or the same plan submitted again, resumes the study\n")
    # the job's last word (what `hpoc status` shows) names it too, not scancel
    assert str(failed.value).startswith("SLURM lost node2 (down: Not responding) and ended the job; the study "
                                        "stopped: a requeued job, or the same plan submitted again, resumes the study")
    assert StudyJob("p")._after_loss() == "resume is off in the study, so it is not requeued"
    # a node that answers again already: sinfo names none, the job's reason still says it
    from hpoc.submit.job import _lost_nodes

    (tmp_path / "sinfo").write_text("#!/bin/bash\n")
    (tmp_path / "scontrol").write_text('#!/bin/bash\necho "JobId=9 JobState=COMPLETING Reason=NodeDown Dep=x"\n')
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    assert _lost_nodes() == [("a node", "NodeDown; its ray-<node>.log says which")]


def test_the_sigterm_that_follows_a_walltime_requeue_is_not_reported_as_a_cancellation(tmp_path, capsys, monkeypatch):
    """After USR2 the job stops the study and submitit requeues it; SLURM's SIGTERM to the
    requeued job then printed "hpoc: terminated (SIGTERM): stopping the study" under
    "requeueing the job", as if someone had cancelled it."""
    import signal

    from hpoc.submit.job import StudyJob

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCONT)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "76")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    job = StudyJob(str(tmp_path / "plan.json"), grace_s=30)
    try:
        job._note_sigterm()
        assert job.checkpoint(0) is not None  # requeued
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGCONT, before[1])
    out = capsys.readouterr()
    # in the job script's words (tests/test_slurm_signals.py): the two kinds of job read alike
    assert "hpoc: requeueing job 76_1 to resume the study" in out.out and "terminated" not in out.err, out


@pytest.mark.parametrize("driver, requeued", [("exit 75", True), ("exit 0", False), ("exit 1", False),
                                              ("exit 76", False), ("exit 140", False), ("kill -KILL $$", True),
                                              ("kill -USR2 $$", False)])
def test_the_walltime_requeues_only_a_study_the_driver_left_resumable(tmp_path, capsys, driver, requeued):
    """As job.sbatch: a study that finished (0) or failed (1: every trial errored, or it
    stopped itself) as the walltime came was requeued, and the requeued job found it done.
    A driver a signal killed as it stopped (the OOM killer, a crash) was not requeued,
    though its study is resumable: Tune's last saved state, or the shard from the start.
    One USR2 killed before its handler (Python's start) was requeued, where job.sbatch,
    seeing 140, did not: a run the walltime cuts short as it starts would repeat."""
    from hpoc.submit.job import StudyJob

    job = StudyJob(str(tmp_path / "plan.json"), grace_s=30)
    job._driver = subprocess.Popen(["sh", "-c", driver])
    job._driver.wait()
    assert (job.checkpoint(0) is not None) == requeued
    out = capsys.readouterr().out
    assert ("requeueing job" in out) == requeued, out
    assert ("not requeued" in out) == (driver in ("exit 1", "exit 140", "kill -USR2 $$")), out
    assert ("the study finished as the time limit came; the job ends" in out) == (driver == "exit 0"), out


def test_a_too_long_hpoc_tmp_fails_the_job_before_any_ray_starts(tmp_path, monkeypatch):
    """job.sbatch refuses it at once; the submitit job went on until the Ray head's own
    check of its socket paths failed on the node."""
    from types import SimpleNamespace

    import hpoc.submit.job as job_mod
    from hpoc.runtime import cluster
    from hpoc.plan import dumps
    from hpoc.submit.job import StudyJob, StudyJobError

    def bring_up(*args, **kwargs):
        raise AssertionError("Ray was brought up")

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0})))
    long = tmp_path / ("x" * 60)  # tmp_path itself is long already
    long.mkdir()
    monkeypatch.setenv("HPOC_TMP", str(long))
    monkeypatch.setenv("SLURM_JOB_ID", "1234567")
    monkeypatch.setattr(cluster, "init", bring_up)
    monkeypatch.setattr(job_mod, "_start_node", bring_up)
    env = SimpleNamespace(global_rank=0, job_id="1234567", num_nodes=2,
                          paths=SimpleNamespace(folder=str(tmp_path / "logs")))
    job = StudyJob(str(tmp_path / "plan.json"))
    for task in (lambda: job._head(0, env), lambda: job._worker(env)):
        with pytest.raises(StudyJobError, match=rf"HPOC_TMP={long} is too long: .* choose a "
                                                r"node-local directory of at most \d+ bytes"):
            task()
    assert not (tmp_path / "logs").exists()


def test_the_submitit_job_asks_before_ray_and_claims_the_shard(tmp_path, monkeypatch):
    """As job.sbatch: a shard that another run holds gets no cluster, and the job's claim
    on its shard does not outlive a bring-up that failed."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from hpoc.plan import dumps
    from hpoc.runtime import cluster, runlock
    from hpoc.submit.job import StudyJob, StudyJobError

    exp = tmp_path / "results" / "t"
    seen = []

    def bring_up(job_dir):
        seen.append(json.loads((exp / runlock.LOCK).read_text()))
        raise StudyJobError("no Ray today")

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0},
                                                   storage={"path": str(tmp_path / "results"), "name": "t"})))
    monkeypatch.delenv("HPOC_TMP", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "501")
    monkeypatch.setattr(cluster, "init", bring_up)
    env = SimpleNamespace(global_rank=0, job_id="501", num_nodes=2,
                          paths=SimpleNamespace(folder=str(tmp_path / "logs")))
    job = StudyJob(str(tmp_path / "plan.json"))
    with pytest.raises(StudyJobError, match="no Ray today"):
        job._head(0, env)
    assert seen[0]["claim"] is True and seen[0]["pid"] == os.getpid() and seen[0]["slurm_job"] == "501"
    assert not (tmp_path / "results").exists()  # claim dropped, with the directories it made
    monkeypatch.setenv("HPOC_BRINGUP_TIMEOUT", "5m")  # fails before the bring-up's cleanup
    with pytest.raises(StudyJobError, match="HPOC_BRINGUP_TIMEOUT='5m' is not a number of seconds"):
        job._head(0, env)
    assert not (exp / runlock.LOCK).exists()  # no claim left for the shard's next job
    monkeypatch.delenv("HPOC_BRINGUP_TIMEOUT")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setenv("SLURM_JOB_ID", "500")
        runlock.claim(exp, 0, other.pid, print)  # another job of the shard got there first
        monkeypatch.setenv("SLURM_JOB_ID", "501")
        with pytest.raises(StudyJobError, match=r"in use by another run \(a SLURM job starting its Ray "
                                                r"cluster\) \(pid \d+ on .*, SLURM job 500"):
            job._head(0, env)
        assert len(seen) == 1  # no bring-up
        assert (tmp_path / "logs" / ".hpoc-rdv.0" / "done").exists()  # the workers stop waiting
    finally:
        other.kill()
        other.wait()


def test_every_squeue_call_asks_for_this_users_jobs_only(monkeypatch, tmp_path):
    """A site's whole queue (tens of thousands of jobs) answers in seconds and loads the
    controller; hpoc only ever looks for its own jobs: by uid, as `$USER` may name someone
    else (`sudo -E`, a container's environment)."""
    from submit_support import fake_squeue

    from hpoc.commands.status import slurm_states
    from hpoc.submit import active_jobs
    from hpoc.submit.queue import readers

    bin_dir = tmp_path / "bin"
    fake_squeue(monkeypatch, bin_dir, [])
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "someone-else")
    readers(tmp_path)
    slurm_states(["12"])
    active_jobs({"study": "s", "storage": {"path": str(tmp_path), "name": "s"}})
    asked = (bin_dir / "asked").read_text().splitlines()
    assert len(asked) >= 3
    assert all(f"-u {os.getuid()} " in line for line in asked), asked


def test_a_job_sbatch_job_of_the_same_study_holds_a_submission_back(tmp_path, monkeypatch):
    """`sbatch build/job.sbatch`, then `hpoc submit study.hpo` (its own build/<study>): the
    second job was sent, and stopped on the node against the first one's run lock. squeue
    has no hpoc comment for job.sbatch's jobs; they are known by the plan beside the script."""
    import hpoc.submit as submit_mod
    from hpoc.plan import load

    spec = write_study(tmp_path / "s", "twice")
    other = submit_mod.load_target(spec, tmp_path / "sbatched")  # what `hpoc compile -o` wrote
    other.write()
    found = submit_mod.load_target(spec, tmp_path / "build")
    plan = load(other.plan_path)
    script = other.plan_path.parent / "job.sbatch"
    fake_squeue(monkeypatch, tmp_path / "bin", [f"77|PENDING|0:00||JobHeldUser|N/A|{script}"])
    sub = submit_mod.prepare(plan, str(found.plan_path), "slurm")
    with pytest.raises(SubmitError, match=r"already has job\(s\) 77 .*queued or running"):
        submit_mod.send(plan, sub, build=found)
    assert not found.plan_path.exists()  # nothing written, nothing sent


def test_a_failed_fresh_submission_puts_the_previous_run_back(tmp_path, monkeypatch, capsys):
    """`hpoc submit --fresh` moved the old run aside, then sbatch refused (a wrong partition):
    no new run, and the old one was gone from where `hpoc results` looks."""
    import hpoc.submit as submit_mod
    from hpoc.plan import load
    from hpoc.runtime import marker
    from hpoc.runtime.shards import study_root

    spec = write_study(tmp_path / "s", "again")
    found = submit_mod.load_target(spec, tmp_path / "build")
    found.write()
    plan = load(found.plan_path)
    root = study_root(plan)
    marker.write(root, marker.fingerprint(plan, plan["content_hash"]), 0)
    kept = sorted(p.name for p in root.iterdir())

    def refuse(sub):
        raise RuntimeError("sbatch: error: invalid partition specified: gpu")

    monkeypatch.setattr(submit_mod, "make_executor", refuse)
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    sub = submit_mod.prepare(plan, found.plan_path, "slurm")
    with pytest.raises(RuntimeError, match="invalid partition"):
        submit_mod.send(plan, sub, fresh=True, build=found)
    assert sorted(p.name for p in root.iterdir()) == kept
    assert not list(root.parent.glob(f"{root.name}.prev-*"))
    assert "moved the previous run back" in capsys.readouterr().out


def test_a_failing_setup_line_stops_the_submitit_job_and_is_named(tmp_path):
    """submitit's batch script has no `set -e`: a `module load` that failed went unnoticed,
    and the job ran on with the wrong environment (the system Python, without Ray)."""
    from hpoc.submit.params import setup_lines

    p = plan(slurm={"setup": ["echo first", "if false; then :; fi", "hpoc_no_such_module load X", "echo never"],
                    "container": None})
    script = tmp_path / "job.sh"
    script.write_text("\n".join(["#!/bin/bash", *setup_lines(p), "echo srun"]) + "\n")
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 127 and run.stdout == "first\n", run.stderr
    assert "hpoc: slurm.setup failed (exit 127) at: hpoc_no_such_module load X\n" in run.stderr
    p["slurm"]["setup"] = ["echo first"]  # and once it is done, the script runs as submitit's does
    script.write_text("\n".join(["#!/bin/bash", *setup_lines(p), "false", "echo srun"]) + "\n")
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == "first\nsrun\n" and "hpoc:" not in run.stderr


@pytest.mark.parametrize("var", ["HPOC_TMP", "TMPDIR"])
def test_the_submitit_job_binds_its_job_directorys_base_into_the_container(var, tmp_path):
    """As job.sbatch: the job directory (token, Ray's sockets) lies under HPOC_TMP, or the
    job's own TMPDIR; unbound, the container saw no such directory and the job failed (or,
    for TMPDIR, went to another base than job.sbatch's)."""
    from hpoc.submit.params import setup_lines

    p = plan(slurm={"container": {"image": "/i.sif", "runtime": "apptainer"}})
    sub = describe(p, "/b/plan.json", "slurm")
    base = tmp_path / "local" / "77"
    base.mkdir(parents=True)
    (tmp_path / "apptainer").write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    (tmp_path / "apptainer").chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text("\n".join(["#!/bin/bash", *setup_lines(p), f"{sub.python} -c pass"]) + "\n")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SLURM_JOB_ID": "77", var: str(base)}
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env=env)
    args = run.stdout.splitlines()
    assert run.returncode == 0 and args[args.index(str(base)) - 1] == "--bind", (args, run.stderr)
    assert args[-3:] == ["python3", "-c", "pass"]
    env.pop(var)  # /tmp: apptainer binds it itself
    args = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env=env).stdout
    assert str(base) not in args and "/tmp\n" not in args
    if var == "TMPDIR":  # a TMPDIR that does not name the job is not the job directory's base
        env["TMPDIR"] = str(tmp_path)
        args = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env=env).stdout
        assert f"{tmp_path}\n" not in args
    else:  # apptainer would read the comma as a separator: said, before any srun
        env["HPOC_TMP"] = "/scratch/a,b"
        run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env=env)
        assert run.returncode == 2 and not run.stdout
        assert "hpoc: HPOC_TMP=/scratch/a,b cannot be bound into the container" in run.stderr


@pytest.mark.parametrize("env", [
    {}, {"TMPDIR": "job77"}, {"TMPDIR": "job77/"}, {"TMPDIR": "mine"}, {"TMPDIR": "job770"},
    {"TMPDIR": "a70_3", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"},
    {"HPOC_TMP": "mine", "TMPDIR": "job77"}, {"TMPDIR": "readonly77"}, {"TMPDIR": "x" * 40 + "77"},
    {"HPOC_TMP": "mine//"}, {"HPOC_TMP": "/tmp/"}, {"TMPDIR": "./job77"},
])
def test_the_container_sees_whichever_base_the_submitit_job_picks(env, monkeypatch):
    """The bind is decided in bash, before the container's Python picks the job directory's
    base (hpoc.runtime.node.job_dir_base): whatever base that picks, the container sees it."""
    from hpoc.runtime.node import job_dir_base
    from hpoc.submit.params import setup_lines

    root = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))  # short: room for Ray's sockets
    try:
        for name in ("job77", "mine", "job770", "a70_3", "readonly77", "x" * 40 + "77"):
            (root / name).mkdir()
        (root / "readonly77").chmod(0o500)
        monkeypatch.chdir(root)  # a relative TMPDIR: the working directory's (each node's own)
        env = {key: f"{root}/{value}" if key in ("TMPDIR", "HPOC_TMP") and value[0] not in "/." else value
               for key, value in env.items()}
        env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "77", **env}
        p = plan(slurm={"container": {"image": "/i.sif", "runtime": "apptainer"}},
                 source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(root)})
        lines = [*setup_lines(p), 'printf "%s\\n" "${hpoc_tmp_bind[@]}"']
        run = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=30, env=env)
        bound = run.stdout.splitlines()[1::2]
        base = job_dir_base(env, "hpoc-77")
        assert run.returncode == 0 and (base == "/tmp" or base in bound), (base, bound, run.stderr)
        # apptainer binds /tmp itself, and a relative source is no node-local directory
        assert all(path.startswith("/") and path.rstrip("/") != "/tmp" for path in bound), bound
    finally:
        (root / "readonly77").chmod(0o700)
        shutil.rmtree(root, ignore_errors=True)


def test_a_relative_hpoc_tmp_is_refused_before_the_container_starts(tmp_path, monkeypatch):
    """Each node would read it from its own working directory: refused in the job script's
    words, before apptainer is asked to bind a relative path."""
    from hpoc.submit.params import setup_lines

    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    p = plan(slurm={"container": {"image": "/i.sif", "runtime": "apptainer"}},
             source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)})
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "77", "HPOC_TMP": "mine"}
    run = subprocess.run(["bash", "-c", "\n".join([*setup_lines(p), "echo bound ${hpoc_tmp_bind[@]}"])],
                         capture_output=True, text=True, timeout=30, env=env)
    assert run.returncode == 2 and "bound" not in run.stdout
    assert "hpoc: HPOC_TMP=mine must be an absolute path" in run.stderr, run.stderr


def submit_refused(spec: Path, said: str, tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """`hpoc submit --cluster slurm` of `spec` where sbatch refuses the job saying `said`:
    (exit code, stderr)."""
    from submitit.core.utils import FailedJobError

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    class Refusing:
        def submit(self, *args):
            raise FailedJobError(said)

    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Refusing())
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    code = main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")])
    return code, capsys.readouterr().err


def test_sbatch_refusing_the_job_is_a_user_error_not_an_internal_one(tmp_path, monkeypatch, capsys):
    """cpus_per_node above what the partition's nodes have: `hpoc submit` printed sbatch's
    words, then "hpoc: internal error: FailedJobError ... this is a bug in hpoc"."""
    said = ("sbatch: error: CPU count per node can not be satisfied\n"
            "sbatch: error: Batch job submission failed: Requested node configuration is not available")
    code, err = submit_refused(write_study(tmp_path / "s", "big"), said, tmp_path, monkeypatch, capsys)
    assert code == 2 and "internal error" not in err, err
    assert ("hpoc: error: sbatch refused the job, nothing was submitted: CPU count per node can not be "
            "satisfied; Batch job submission failed: "
            "Requested node configuration is not available\n  help: check `slurm.cpus_per_node = 1`, "
            "`slurm.nodes = 1`, `slurm.mem = 1G` in study.hpo with what the site offers (`sinfo") in err


def test_every_reason_sbatch_gives_for_a_refusal_is_said(tmp_path, monkeypatch, capsys):
    """sbatch names a bad partition and then the submission that failed: `hpoc submit` said the
    last line only, which names no setting. Its warnings are no reason."""
    said = ("sbatch: warning: can't honor --ntasks-per-node set to 1\n"
            "sbatch: error: invalid partition specified: gpu-a\n"
            "sbatch: error: Batch job submission failed: Invalid account or account/partition "
            "combination specified")
    code, err = submit_refused(write_study(tmp_path / "s", "two"), said, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert ("hpoc: error: sbatch refused the job, nothing was submitted: invalid partition specified: "
            "gpu-a; Batch job submission failed: Invalid account or account/partition combination "
            "specified\n  help: ") in err, err
    assert "honor" not in err.split("hpoc: error:")[1]


def test_an_sbatch_refusal_is_said_once_not_also_in_sbatch_s_raw_lines(tmp_path, monkeypatch, capsys):
    """submitit prints sbatch's stderr before raising: the user read `sbatch: error: invalid
    partition specified: gpu` and the next line twice, then hpoc's line with the fix."""
    import sys

    from submitit.core.utils import FailedJobError

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    said = ("sbatch: error: invalid partition specified: gpu\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified")

    class Refusing:
        def submit(self, *args):
            print("a line of submitit's own", file=sys.stderr)  # not sbatch's refusal: kept
            print(said, file=sys.stderr)  # as submitit's CommandFunction does
            raise FailedJobError(said)

    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Refusing())
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    code = main(["submit", str(write_study(tmp_path / "s", "part")), "--cluster", "slurm",
                 "-o", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2 and "sbatch: error" not in err, err
    assert "a line of submitit's own\n" in err
    assert err.count("invalid partition specified: gpu") == 1, err


def test_the_reasons_of_an_sbatch_refusal():
    from hpoc.compiler.refusal import reasons

    assert reasons("sbatch: error: CPU count per node can not be satisfied\n"
                   "sbatch: error: Batch job submission failed: Requested node configuration is not available\n") == [
        "CPU count per node can not be satisfied",
        "Batch job submission failed: Requested node configuration is not available"]
    assert reasons("sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.") == [
        "--mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive."]
    # warnings are not why; words without sbatch's prefix are kept, once each
    assert reasons("sbatch: warning: x\nsomething odd\nsomething odd\n") == ["something odd"]
    assert reasons("sbatch: warning: only a warning\n") == ["only a warning"]
    assert reasons("  \n") == []


@pytest.mark.parametrize("partition", ['"debug"', None])
def test_a_refusal_of_what_an_sbatch_variable_asks_names_the_variable(partition, tmp_path, monkeypatch, capsys):
    """SBATCH_PARTITION=nope in the shell: sbatch asks for `nope`, refuses it, and the help
    named the spec's `slurm.partition = "debug"` (or, with none, the whole block)."""
    spec = write_study(tmp_path / "s", "envy")
    if partition:
        spec.write_text(spec.read_text().replace("  mem           = 1G", f"  mem           = 1G\n  partition = {partition}"))
    monkeypatch.setenv("SBATCH_PARTITION", "nope")
    code, err = submit_refused(spec, "sbatch: error: invalid partition specified: nope\n"
                                     "sbatch: error: Batch job submission failed: Invalid partition name specified",
                               tmp_path, monkeypatch, capsys)
    assert code == 2
    help_line = err.split("  help: ")[1]
    over = ' (sbatch reads it over `slurm.partition = "debug"` in study.hpo)' if partition else ""
    assert help_line.startswith(f"check `SBATCH_PARTITION=nope` in this shell{over} with what the site "
                                "offers (`sinfo"), help_line


def test_a_lost_worker_is_said_once_in_task_0s_log_and_the_study_goes_on(tmp_path, monkeypatch, capsys):
    """As job.sbatch: a worker node's Ray gone (its raylet killed) was said only in that
    task's own log, which nobody reads; task 0's log, the job's, said nothing."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from hpoc.plan import dumps
    from hpoc.submit import job as job_mod
    from hpoc.submit.job import StudyJob

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0},
                                                   storage={"path": str(tmp_path / "results"), "name": "t"})))
    monkeypatch.delenv("HPOC_TMP", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "503")
    monkeypatch.setenv("SLURMD_NODENAME", "node2")
    logs = tmp_path / "logs"
    rdv = logs / ".hpoc-rdv.0"
    rdv.mkdir(parents=True)
    (rdv / "head.json").write_text('{"address": "127.0.0.1:1", "node": "node1"}')
    (rdv / "token").write_text("t")
    monkeypatch.setattr(job_mod, "_start_node", lambda *a, **kw: subprocess.Popen(["true"]))  # dies at once
    env = SimpleNamespace(global_rank=1, job_id="503", num_nodes=2, paths=SimpleNamespace(folder=str(logs)))
    job = StudyJob(str(tmp_path / "plan.json"))
    job._worker(env)
    assert (rdv / "lost-node2").exists()

    fake = tmp_path / "python"  # a driver that runs on for a while
    fake.write_text("#!/bin/bash\nsleep 1.5\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    capsys.readouterr()
    head = subprocess.Popen(["sleep", "30"])
    try:
        assert job._run_driver(0, {}, local=False, head=head, head_log=logs / "ray-node1.log", rdv=rdv)["exit_code"] == 0
    finally:
        head.kill()
    assert capsys.readouterr().err.count(
        f"hpoc: warning: the Ray worker on node2 stopped (see {logs}/ray-node2.log); the study goes on with the "
        "nodes left: its trials that ran there are retried from their last checkpoint, as failure.max_retries "
        "allows\n") == 1


def test_a_worker_whose_ray_died_keeps_the_job_directory_until_the_job_ends(tmp_path, monkeypatch):
    """On one host (the local cluster) the job directory is the head's too: removed at once,
    it took the head's Ray session with it, and the job failed where job.sbatch went on."""
    import subprocess
    import tempfile
    import threading
    import time
    from types import SimpleNamespace

    from hpoc.plan import dumps
    from hpoc.runtime import node as node_mod
    from hpoc.submit import job as job_mod
    from hpoc.submit.job import StudyJob

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0})))
    base = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    try:
        monkeypatch.setenv("HPOC_TMP", str(base))
        monkeypatch.setenv("SLURM_JOB_ID", "504")
        monkeypatch.setenv("SLURMD_NODENAME", "node2")
        job_dir = base / "hpoc-504"
        (job_dir / "n0").mkdir(parents=True)  # the head's, on the same host
        rdv = tmp_path / "logs" / ".hpoc-rdv.0"
        rdv.mkdir(parents=True)
        (rdv / "head.json").write_text('{"address": "127.0.0.1:1", "node": "node1"}')
        (rdv / "token").write_text("t")
        monkeypatch.setattr(job_mod, "_start_node", lambda *a, **kw: subprocess.Popen(["true"]))
        monkeypatch.setattr(node_mod, "answers", lambda address, timeout: True)  # the head runs on
        env = SimpleNamespace(global_rank=1, job_id="504", num_nodes=2,
                              paths=SimpleNamespace(folder=str(tmp_path / "logs")))
        worker = threading.Thread(target=StudyJob(str(tmp_path / "plan.json"))._worker, args=(env,))
        worker.start()
        time.sleep(2.5)
        assert worker.is_alive() and (job_dir / "n0").is_dir() and (rdv / "lost-node2").exists()
        (rdv / "done").touch()  # task 0 ended
        worker.join(timeout=10)
        assert not worker.is_alive() and not job_dir.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_workers_see_a_failed_bring_up_on_task_0_at_once(tmp_path, monkeypatch, capsys):
    """Task 0 removed its 'done' signal right after writing it, so the other tasks (which
    poll for it) missed it and waited out HPOC_BRINGUP_TIMEOUT for a head that never came."""
    import threading
    import time
    from types import SimpleNamespace

    from hpoc.plan import dumps
    from hpoc.runtime import cluster
    from hpoc.submit.job import StudyJob, StudyJobError

    def bring_up(job_dir):
        time.sleep(1)  # the worker task waits meanwhile
        raise StudyJobError("no Ray today")

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0},
                                                   storage={"path": str(tmp_path / "results"), "name": "t"})))
    monkeypatch.delenv("HPOC_TMP", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "502")
    monkeypatch.setenv("HPOC_BRINGUP_TIMEOUT", "30")
    monkeypatch.setattr(cluster, "init", bring_up)
    logs = tmp_path / "logs"

    def env(rank):
        return SimpleNamespace(global_rank=rank, job_id="502", num_nodes=2, paths=SimpleNamespace(folder=str(logs)))

    job = StudyJob(str(tmp_path / "plan.json"))
    ended = []
    worker = threading.Thread(target=lambda: (job._worker(env(1)), ended.append(time.monotonic())))
    capsys.readouterr()
    worker.start()
    with pytest.raises(StudyJobError, match="no Ray today"):
        job._head(0, env(0))
    failed = time.monotonic()
    worker.join(timeout=35)
    assert ended and ended[0] - failed < 5, "the worker task waited for the bring-up timeout"
    assert "task 0 ended without a Ray head for this job; worker on " in capsys.readouterr().out
    rdv = logs / ".hpoc-rdv.0"
    assert (rdv / "done").exists() and sorted(p.name for p in rdv.iterdir()) == ["done"]  # no token left


@pytest.mark.parametrize("driver_rc, requeued", [(75, True), (76, False)])
def test_the_submitit_job_requeues_after_usr2_unless_the_study_made_no_progress(tmp_path, driver_rc, requeued):
    """The driver exits 76 after the third walltime stop in a row with no epoch reported
    (runtime/walltime.py): requeueing again would only repeat it."""
    import sys

    import submitit

    from hpoc.submit.job import StudyJob

    job = StudyJob(str(tmp_path / "plan.json"), grace_s=30)
    job._driver = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGUSR2, lambda *a: sys.exit({driver_rc}))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert job._driver.stdout.readline() == "ready\n"
        again = job.checkpoint(0)
    finally:
        job._driver.kill()
    assert job._driver.wait() == driver_rc
    assert isinstance(again, submitit.helpers.DelayedSubmission) == requeued


def test_the_commands_a_submission_prints_paste_into_a_shell_with_a_space_in_the_path(tmp_path):
    """`progress: hpoc status /p/my study/build/s` pasted as two arguments."""
    from types import SimpleNamespace

    from hpoc.commands.submit import describe_jobs
    from hpoc.runtime.before import _spec

    build = tmp_path / "my study" / "build"
    sub = SimpleNamespace(cluster="slurm", folder=f"{build}/logs/%j", shards=[0], plan_path=f"{build}/plan.json")
    text = describe_jobs({"study": {"name": "s"}}, sub, [SimpleNamespace(job_id="12")])
    assert text.splitlines()[-1] == f"  progress: hpoc status '{build}'"
    assert _spec({"source": {"workdir": str(tmp_path / "my study"), "file": "study.hpo"}}) == \
        f"'{tmp_path}/my study/study.hpo'"


def test_a_submitted_array_of_hundreds_of_shards_is_a_few_lines(tmp_path):
    """`hpoc submit` of a 200-task array printed a line per shard."""
    from types import SimpleNamespace

    from hpoc.commands.submit import describe_jobs

    build = tmp_path / "build"
    sub = SimpleNamespace(cluster="slurm", folder=f"{build}/logs/%j", shards=list(range(200)),
                          plan_path=f"{build}/plan.json")
    text = describe_jobs({"study": {"name": "s"}}, sub, [SimpleNamespace(job_id=f"9_{k}") for k in range(200)])
    lines = text.splitlines()
    assert lines[0] == "submitted study `s` (slurm): 200 job(s) for 200 shard(s)"
    assert lines[20] == f"  shard 19: job 9_19  logs {build}/logs/9_19/"
    assert lines[21] == f"  … 180 more: shards 20-199, jobs 9_20 to 9_199 (`hpoc status {build} --all` lists them)"
    assert len(lines) == 24


def test_a_failed_shard_ends_its_log_with_hpocs_line_not_a_traceback(tmp_path):
    """submitit raised the job's StudyJobError again after its own log line, so the log
    ended with a Python traceback below the driver's explanation, for a study that failed."""
    import submitit

    from hpoc.commands.joblogs import why
    from hpoc.commands.submit import outcome
    from hpoc.submit.job import StudyJob

    executor = submitit.LocalExecutor(folder=tmp_path / "logs")
    job = executor.submit(StudyJob(str(tmp_path / "missing" / "plan.json"), "local"), 0)
    job.wait()
    err = Path(job.paths.stderr).read_text()
    assert "Traceback" not in err and "triggered an exception" not in err, err
    assert err.rstrip().endswith("hpoc: error: shard 0 failed (study driver exit status 2); see this job's log")
    assert why(str(job.paths.stderr)).startswith("hpoc: error: shard 0 failed")
    assert "StudyJobError: shard 0 failed" in str(job.exception())  # the job still fails
    assert outcome(job)[0] is False
    assert outcome(job)[1].startswith("shard 0 failed (study driver exit status 2)")  # `hpoc submit --wait`


def test_submitting_to_slurm_without_sbatch_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """A login shell without the site's SLURM module: `--cluster slurm` ended in "internal
    error: RuntimeError: Could not detect "srun" … this is a bug in hpoc"."""
    from hpoc.cli import main

    spec = write_study(tmp_path / "s", "nosbatch")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    code = main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err, err
    assert err.startswith("hpoc: error: `sbatch` is not on PATH here, so nothing can be submitted to SLURM\n"), err
    assert f"`hpoc run {shlex.quote(str(spec))} --local`" in err, err  # what runs it here
    assert not (tmp_path / "build" / "jobs.json").exists()


def test_a_slurm_study_sent_to_this_machine_for_want_of_sbatch_says_so(tmp_path, monkeypatch, capsys):
    """Without `--cluster`, no sbatch means this machine: a study written for 4 nodes ran on
    the login node without a word of why."""
    from hpoc.cli import main

    spec = write_study(tmp_path / "s", "nosbatch")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert main(["submit", str(spec), "--dry-run", "-o", str(tmp_path / "build")]) == 0
    out, err = capsys.readouterr()
    assert "cluster:    local" in out
    assert "hpoc: note: no `sbatch` on PATH: the study runs on this machine (--cluster local)" in err, err
    # what to do instead: not "submit" again here, where it can only run locally
    assert "submit where" not in err and f"`hpoc run {shlex.quote(str(spec))} --local`" in err, err
    assert "login node" in err, err
    assert main(["submit", str(spec), "--dry-run", "--cluster", "local", "-o", str(tmp_path / "build")]) == 0
    assert "no `sbatch`" not in capsys.readouterr().err  # asked for: nothing to explain


def test_a_job_slurm_took_but_will_never_start_is_said_at_submission(tmp_path, monkeypatch, capsys):
    """A `time` above the partition's limit: where the site does not enforce partition limits
    at submission (EnforcePartLimits=NO, SLURM's default) sbatch takes the job and it pends
    forever; `hpoc submit` said "submitted" and only `hpoc status` told why nothing ran."""
    import types

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    spec = write_study(tmp_path / "s", "toolong")
    fake_squeue(monkeypatch, tmp_path / "bin", ["91|PENDING|0:00||PartitionTimeLimit|N/A|/elsewhere/job.sbatch"])

    class Taking:
        def submit(self, *args):
            return types.SimpleNamespace(job_id="91")

    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Taking())
    assert main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")]) == 0
    out, err = capsys.readouterr()
    assert "shard 0: job 91" in out
    assert ("hpoc: warning: job 91 will not start as asked (PartitionTimeLimit: a longer time limit than "
            "the partition allows): `scancel 91`, change `time` in the spec's `slurm` block, compile and "
            "submit again\n") in err, err


def test_a_time_above_the_partitions_limit_is_said_at_submission_before_squeue_has_the_reason(
        tmp_path, monkeypatch, capsys):
    """Right after sbatch the job's pending reason may still be `PartitionConfig` (the local
    cluster's, for a second or two): the partition's own limit says it at once."""
    import types

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    spec = write_study(tmp_path / "s", "toolong", time_limit="00:30:00")
    spec.write_text(spec.read_text().replace("  mem           = 1G", '  mem           = 1G\n  partition = "short"'))
    fake_squeue(monkeypatch, tmp_path / "bin", ["92|PENDING|0:00||PartitionConfig|N/A|/elsewhere/job.sbatch"])
    (tmp_path / "bin" / "sinfo").write_text("#!/bin/sh\nprintf 'debug*|infinite|3|1-infinite\\n"
                                            "short|10:00|3|1-infinite\\n'\n")
    (tmp_path / "bin" / "sinfo").chmod(0o755)

    class Taking:
        def submit(self, *args):
            return types.SimpleNamespace(job_id="92")

    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Taking())
    assert main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")]) == 0
    err = capsys.readouterr().err
    assert ("hpoc: warning: job 92 will not start: `slurm.time = 00:30:00` is above the time limit of "
            "partition `short` (10:00), and this site queues such jobs for ever (PartitionTimeLimit): "
            "`scancel 92`, lower `time` to 10:00 or less in study.hpo, compile and submit again\n") in err, err


def test_a_head_that_did_not_come_up_is_said_once_with_hpocs_prefix(tmp_path, monkeypatch):
    """`slurm.interface = "ib0"` where the nodes have none: the job's last line read
    "hpoc: error: hpoc: the Ray head step exited before it answered: …"."""
    from types import SimpleNamespace

    import hpoc.submit.job as job_mod
    from hpoc.plan import dumps
    from hpoc.runtime import cluster
    from hpoc.submit.job import StudyJob, StudyJobError

    def gone(*args, **kwargs):
        raise SystemExit("hpoc: the Ray head step exited before it answered: no ib0; its log: x.log")

    (tmp_path / "plan.json").write_text(dumps(plan(slurm={"gpus_per_node": 0},
                                                   storage={"path": str(tmp_path / "results"), "name": "t"})))
    monkeypatch.delenv("HPOC_TMP", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "503")
    monkeypatch.setattr(job_mod, "_start_node", lambda *a, **k: SimpleNamespace(pid=None, poll=lambda: 1))
    monkeypatch.setattr(cluster, "wait_head", gone)
    env = SimpleNamespace(global_rank=0, job_id="503", num_nodes=1, paths=SimpleNamespace(folder=str(tmp_path / "l")))
    with pytest.raises(StudyJobError) as got:
        StudyJob(str(tmp_path / "plan.json"))._head(0, env)
    assert str(got.value) == "the Ray head step exited before it answered: no ib0; its log: x.log"


def test_a_job_that_never_ran_says_why_at_the_end_of_a_wait(tmp_path):
    """The nodes' python3 without submitit (no `slurm.python`, nothing activated): `hpoc submit
    --wait` said "ended without a result (killed?)", where `hpoc status` quoted the reason."""
    from types import SimpleNamespace

    from hpoc.commands.submit import outcome

    out, err = tmp_path / "1_0_log.out", tmp_path / "1_0_log.err"
    out.write_text("")
    err.write_text("/usr/bin/python3: Error while finding module specification for 'submitit.core._submit' "
                   "(ModuleNotFoundError: No module named 'submitit')\nsrun: error: node3: task 0: Exited with "
                   "exit code 1\n")
    paths = SimpleNamespace(result_pickle=tmp_path / "1_0_result.pkl", stdout=out, stderr=err)
    job = SimpleNamespace(task=lambda k: SimpleNamespace(paths=paths))
    ok, said = outcome(job)
    assert not ok and said == (
        "ended without a result: /usr/bin/python3: Error while finding module specification for "
        "'submitit.core._submit' (ModuleNotFoundError: No module named 'submitit'); the python on the nodes "
        "lacks it: set `slurm.python` to the python of the environment hpoc is installed in, or activate "
        f"that environment in `slurm.setup` (log: {err})")
    err.write_text("")  # nothing said: killed, as before
    assert outcome(job) == (False, f"ended without a result (killed?); log: {out}")


@pytest.mark.parametrize("said", [
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
    "sbatch: error: ClusterName needs to be specified\nsbatch: fatal: Unable to process configuration file"])
def test_sbatch_that_cannot_reach_slurm_is_not_called_a_refusal_of_the_spec(tmp_path, monkeypatch, capsys, said):
    """A controller down, or a SLURM_CONF of another cluster: "sbatch refused the job … help:
    compare the spec's `slurm` block (partition, account, …)" sent the user to a spec that was fine."""
    from submitit.core.utils import FailedJobError

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    class Unreachable:
        def submit(self, *args):
            raise FailedJobError(said)

    spec = write_study(tmp_path / "s", "down")
    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Unreachable())
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    code = main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")])
    err = capsys.readouterr().err
    last = said.splitlines()[-1].removeprefix("sbatch: error: ").removeprefix("sbatch: fatal: ")
    assert code == 2 and "`slurm` block" not in err, err
    assert (f"hpoc: error: sbatch could not ask SLURM, nothing was submitted: {last}\n  help: submit from the "
            "cluster's login node, where `sinfo` answers, or try again when the SLURM controller is back") in err


def test_sbatch_that_timed_out_does_not_say_nothing_was_submitted(tmp_path, monkeypatch, capsys):
    """A slow controller: sbatch's "Socket timed out on send/recv operation" may come after
    SLURM took the job, yet hpoc said "nothing was submitted", inviting a second one."""
    from submitit.core.utils import FailedJobError

    import hpoc.submit as submit_mod
    from hpoc.cli import main

    class Slow:
        def submit(self, *args):
            raise FailedJobError("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation")

    spec = write_study(tmp_path / "s", "slow")
    monkeypatch.setattr(submit_mod, "make_executor", lambda sub: Slow())
    monkeypatch.setattr(submit_mod, "active_jobs", lambda plan: [])
    build = tmp_path / "build"
    code = main(["submit", str(spec), "--cluster", "slurm", "-o", str(build)])
    err = capsys.readouterr().err
    assert code == 2 and "nothing was submitted" not in err, err
    assert ("hpoc: error: sbatch got no answer from SLURM in time (Batch job submission failed: Socket timed out "
            "on send/recv operation): the job may have been submitted all the same\n"
            f"  help: `hpoc status {build}` (or `squeue --me`) shows whether it was, before you submit again") in err


def test_sbatch_variables_of_the_shell_that_override_the_spec_are_named(tmp_path, monkeypatch, capsys):
    """sbatch reads SBATCH_ACCOUNT, SBATCH_PARTITION, SBATCH_TIMELIMIT... over the job script's
    #SBATCH lines (JUWELS's `jutil env activate` exports SBATCH_ACCOUNT): the job ran under
    another account or time than the spec said, without a word."""
    import types

    import hpoc.submit as submit_mod
    from hpoc.cli import main
    from hpoc.site.sbatch_env import overrides

    slurm = plan(slurm={"account": "proj-a", "partition": "booster", "time": "02:00:00", "time_s": 7200,
                        "mem": "64G"}, resume={"enabled": True, "grace_s": 120})
    env = {"SBATCH_ACCOUNT": "proj-b", "SBATCH_PARTITION": "booster", "SBATCH_TIMELIMIT": "120",
           "SBATCH_QOS": "devel", "SBATCH_SIGNAL": "USR1@60", "SBATCH_MEM_PER_NODE": "64g"}
    assert overrides(slurm, env) == [
        '`slurm.account = "proj-a"` is overridden by SBATCH_ACCOUNT=proj-b in this shell',
        "resume's walltime signal (USR2 120 s before the time limit) is overridden by SBATCH_SIGNAL=USR1@60 "
        "in this shell"]
    # the same values, or settings the spec leaves to the site (SBATCH_QOS here): nothing to say
    assert overrides(plan(slurm={"account": "proj-b"}), {"SBATCH_ACCOUNT": "proj-b", "SBATCH_QOS": "x"}) == []
    assert overrides(plan(slurm={"mem": "64G"}), {"SBATCH_MEM_PER_NODE": "65536"}) == []  # megabytes, as SLURM reads it
    # the unit with a B, in either case, as sbatch reads it: the same 64 GiB (was "overridden")
    assert overrides(plan(slurm={"mem": "64G"}), {"SBATCH_MEM_PER_NODE": "64GB"}) == []
    assert overrides(plan(slurm={"mem": "1M"}), {"SBATCH_MEM_PER_NODE": "1k"}) == []  # K rounded up to MiB
    assert overrides(plan(slurm={"time": "00:10:00", "time_s": 600}), {"SBATCH_TIMELIMIT": "30"}) == [
        "`slurm.time = 00:10:00` is overridden by SBATCH_TIMELIMIT=30 in this shell"]

    spec = write_study(tmp_path / "s", "envy")
    spec.write_text(spec.read_text().replace("  mem           = 1G", '  mem           = 1G\n  account = "proj-a"'))
    fake_squeue(monkeypatch, tmp_path / "bin", [])
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj-b")
    monkeypatch.setattr(submit_mod, "make_executor",
                        lambda sub: types.SimpleNamespace(submit=lambda *a: types.SimpleNamespace(job_id="93")))
    assert main(["submit", str(spec), "--cluster", "slurm", "-o", str(tmp_path / "build")]) == 0
    err = capsys.readouterr().err
    assert ('hpoc: warning: `slurm.account = "proj-a"` is overridden by SBATCH_ACCOUNT=proj-b in this shell: '
            "sbatch reads its SBATCH_* variables over the job script's #SBATCH lines; `unset SBATCH_ACCOUNT` "
            "and submit again, or write the same in the spec\n") in err, err


def test_submitting_over_another_studys_build_says_so_as_compile_does(tmp_path, monkeypatch, capsys):
    """`hpoc submit -o DIR` replaced another study's build without a word, where `hpoc
    compile -o DIR` says so."""
    import hpoc.submit
    from hpoc.cli import main

    build = tmp_path / "build"
    assert main(["compile", str(write_study(tmp_path / "a", "first")), "-o", str(build)]) == 0
    spec = write_study(tmp_path / "b", "second")
    capsys.readouterr()
    assert main(["submit", str(spec), "--dry-run", "--cluster", "local", "-o", str(build)]) == 0
    err = capsys.readouterr().err
    assert f"hpoc: note: {build} holds the build of study `first`; submitting would replace it by that of `second`" \
        in err, err
    assert json.loads((build / "plan.json").read_text())["study"]["name"] == "first"  # a dry run writes nothing

    def written(plan, sub, *, build=None, **kw):
        build.write()
        return []

    monkeypatch.setattr(hpoc.submit, "send", written)
    assert main(["submit", str(spec), "--cluster", "local", "-o", str(build)]) == 0
    assert f"hpoc: note: {build} held the build of study `first`, now replaced by that of `second`" \
        in capsys.readouterr().err
    assert main(["submit", str(spec), "--cluster", "local", "-o", str(build)]) == 0
    assert "build of study" not in capsys.readouterr().err  # its own build: nothing to say


@pytest.mark.parametrize("grace_s, said", [(30, "1"), (None, None)])
def test_the_driver_knows_whether_its_job_requeues_at_the_walltime(tmp_path, monkeypatch, grace_s, said):
    """Requeued at the walltime, the driver still told the log to run the plan again."""
    import hpoc.submit.job as job_mod
    from hpoc.plan import WALLTIME_REQUEUE
    from hpoc.submit.job import StudyJob

    seen, real = {}, subprocess.Popen

    def popen(cmd, env):
        seen.update(env)
        return real(["true"])

    monkeypatch.setattr(job_mod.subprocess, "Popen", popen)
    monkeypatch.delenv(WALLTIME_REQUEUE, raising=False)
    StudyJob(str(tmp_path / "plan.json"), cluster="local", grace_s=grace_s)(0)
    assert seen.get(WALLTIME_REQUEUE) == said


def test_a_study_that_finished_as_the_walltime_came_ends_its_job_as_a_success(tmp_path, monkeypatch):
    """submitit fails a job whose checkpoint declines the requeue ("Job not requeued because:
    checkpoint function returned None"): a study whose driver finished (0) as USR2 came
    ended as a failed job, in submitit's result and in sacct. Run through submitit's own
    signal handler, with a driver that finishes when asked to stop."""
    import signal
    import sys
    from types import SimpleNamespace

    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission, JobPaths

    from hpoc.submit.job import StudyJob

    finishing = ("import os, signal, sys, time\n"
                 "signal.signal(signal.SIGUSR2, lambda *a: sys.exit(0))\n"
                 "os.kill(os.getppid(), signal.SIGUSR2)\n"  # SLURM's USR2 to the job
                 "time.sleep(60)\n")
    monkeypatch.setattr(StudyJob, "_driver_cmd", lambda self, shard, local: [sys.executable, "-c", finishing])
    job = StudyJob(str(tmp_path / "plan.json"), "local", grace_s=30)
    delayed = DelayedSubmission(job, 0)
    delayed.set_timeout(10, 3)
    requeued: list[int] = []
    env = SimpleNamespace(global_rank=0, _requeue=requeued.append)
    before = signal.signal(signal.SIGUSR2, SignalHandler(env, JobPaths(tmp_path), delayed).checkpoint_and_try_requeue)
    try:
        result = delayed.result()  # what submitit's job process runs, and pickles as its result
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert result["exit_code"] == 0 and not requeued


def test_the_shards_a_resubmission_skips_are_named_as_ranges():
    """Resubmitting a 200-task array of which 150 tasks had finished listed 150 numbers."""
    from types import SimpleNamespace

    from hpoc.submit import skip_finished

    sub = SimpleNamespace(shards=list(range(200)))
    said = skip_finished(sub, set(range(150)) | {160})
    assert said == "shard(s) 0-149, 160 ran to the end: not submitted again"
    assert sub.shards == [k for k in range(150, 200) if k != 160]


def test_array_tasks_that_will_not_start_are_one_warning_with_their_ids_as_ranges(monkeypatch, capsys):
    """A 200-task array asking for too long a time: `scancel 9_0 9_1 … 9_199` to paste, or
    a warning per task when squeue gave the reason."""
    from types import SimpleNamespace

    import hpoc.site.partition as partition
    from hpoc.commands import status
    from hpoc.commands.submit import warn_never_starts

    jobs = [SimpleNamespace(job_id=f"9_{k}") for k in range(200)]
    monkeypatch.setattr(partition, "never_fits", lambda plan: [("`slurm.time` is too long", "lower `time`")])
    warn_never_starts({}, jobs)
    assert capsys.readouterr().err == ("hpoc: warning: jobs 9_[0-199] will not start: `slurm.time` is too long: "
                                       "`scancel 9_[0-199]`, lower `time`, compile and submit again\n")
    monkeypatch.setattr(partition, "never_fits", lambda plan: [])
    monkeypatch.setattr(status, "slurm_states", lambda ids: {
        i: {"state": "PENDING", "reason": "QOSMaxWallDurationPerJobLimit"} for i in ids})
    warn_never_starts({}, jobs)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "200 jobs (9_[0-199]) will not start as asked" in err, err


def test_waiting_for_an_array_says_its_finished_shards_once(monkeypatch, capsys):
    """`hpoc submit --wait` of a 200-task array ended with a `finished` line per shard."""
    from types import SimpleNamespace

    import hpoc.commands.submit as submit_cmd

    jobs = [SimpleNamespace(job_id=f"9_{k}", state="COMPLETED" if k != 7 else "FAILED") for k in range(200)]
    monkeypatch.setattr(submit_cmd, "outcome", lambda job: (
        (False, "shard 7 failed (study driver exit status 1)") if job.job_id == "9_7" else (True, "finished")))
    code = submit_cmd.wait_for(jobs, SimpleNamespace(cluster="local", shards=list(range(200))))
    assert code == 1
    said = capsys.readouterr().err.splitlines()[1:]  # after "waiting for the job(s) to end"
    assert said == ["shard 7: job 9_7: shard 7 failed (study driver exit status 1)",
                    "shards 0-6, 8-199: jobs 9_[0-6,8-199]: finished"]


def test_a_finished_study_whose_spec_raises_num_samples_is_submitted_again(tmp_path):
    import hpoc.submit as submit_mod
    from hpoc.plan import load
    from hpoc.runtime import marker
    from hpoc.runtime.shards import study_root

    spec = write_study(tmp_path / "s", "grow", shards=2, parallel=2, search="random", num_samples=4)
    found = submit_mod.load_target(spec, tmp_path / "build")
    found.write()
    plan = load(found.plan_path)
    for k in range(2):
        marker.write(study_root(plan) / f"shard-{k}", marker.fingerprint(plan, plan["content_hash"]), k)
        (study_root(plan) / f"shard-{k}" / "summary.json").write_text(json.dumps(
            {"study": "grow", "plan_hash": plan["content_hash"], "interrupted": False}))
    assert submit_mod.previous_run(plan) == ("done", {0, 1})
    spec.write_text(spec.read_text().replace("num_samples    = 4", "num_samples    = 6"))
    grown = submit_mod.load_target(spec, tmp_path / "build2")
    grown.write()
    assert submit_mod.previous_run(load(grown.plan_path)) == ("resume", set())


def test_an_out_path_naming_a_file_is_refused(tmp_path):
    from hpoc.submit import load_target

    spec = tmp_path / "study.hpo"
    spec.write_text('study "x"\npipeline { trainer = t:T }\n')
    with pytest.raises(SubmitError, match="-o names the build directory"):
        load_target(spec, tmp_path / "build" / "job.sbatch")


def test_the_submitit_job_stops_within_the_sites_killwait(tmp_path, monkeypatch):
    """The job gave the driver 3 s once the head was gone and each Ray node 60 s, whatever
    SLURM's KillWait: under 5 s its SIGKILL came first and the job directory stayed. A
    share of it now (node_stop.stop_waits), as job.sbatch's teardown."""
    import subprocess
    import sys
    import time

    from hpoc.runtime.node_stop import stop_waits
    from hpoc.submit import job as J

    monkeypatch.setenv("HPOC_KILL_WAIT", "1")
    assert stop_waits("1") == (1, 1, 2)
    fake = tmp_path / "python"  # a driver whose graceful stop hangs without the head's GCS
    fake.write_text(f"#!/bin/bash\ntrap '' TERM\ntouch {tmp_path}/ready\nwhile :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    head = subprocess.Popen(["bash", "-c", f"until [ -e {tmp_path}/ready ]; do sleep 0.05; done"])
    t0 = time.monotonic()
    with pytest.raises(J.StudyJobError, match="the Ray head stopped"):
        J.StudyJob(str(tmp_path / "plan.json"))._run_driver(0, {}, local=False, head=head,
                                                             head_log=tmp_path / "ray-node1.log")
    assert time.monotonic() - t0 < 2.8  # 1 s, not 3, after the head ended
    node = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60"])  # a Ray node that hangs
    time.sleep(0.2)
    t0 = time.monotonic()
    J._stop_node(node)
    assert node.returncode == -9 and time.monotonic() - t0 < 4  # 2 s, not 60


def test_the_submitit_jobs_waits_after_sigterm_fit_what_is_left_of_killwait(tmp_path, monkeypatch):
    """Each wait was a share of KillWait, but one after the other they were more: at
    KillWait = 5 the driver's 3 s and the head node's 10 s came long after SLURM's SIGKILL,
    and the job directory stayed. Once SIGTERM has come each is cut to what is left."""
    import subprocess
    import sys
    import time

    from hpoc.submit import job as J

    monkeypatch.setenv("HPOC_KILL_WAIT", "30")  # the driver: 3 s once the head is gone
    fake = tmp_path / "python"  # a driver whose graceful stop hangs without the head's GCS
    fake.write_text(f"#!/bin/bash\ntrap '' TERM\ntouch {tmp_path}/ready\nwhile :; do sleep 0.1; done\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    head = subprocess.Popen(["bash", "-c", f"until [ -e {tmp_path}/ready ]; do sleep 0.05; done"])
    job = J.StudyJob(str(tmp_path / "plan.json"))
    # SIGTERM 28 s ago: 2 s left, one for the head's stop and one for the rm, none for the driver
    job._terminated, job._term_at = True, time.monotonic() - 28
    t0 = time.monotonic()
    with pytest.raises(J.StudyJobError, match="terminated"):
        job._run_driver(0, {}, local=False, head=head, head_log=tmp_path / "ray-node1.log")
    assert time.monotonic() - t0 < 2.5  # 0 s, not 3, after the head ended
    monkeypatch.setenv("HPOC_KILL_WAIT", "5")
    node = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60"])  # a Ray node that hangs
    time.sleep(0.2)
    t0 = time.monotonic()
    J._stop_node(node, term_at=t0 - 4)  # SIGTERM 4 s ago: a second left, for the rm
    assert node.returncode == -9 and time.monotonic() - t0 < 1  # 0 s, not 10


@pytest.mark.parametrize("grace_s, then", [
    (30, "submitting the same plan again resumes it"),
    (None, "resume is off in the study, so it cannot go on: submitting it again with --fresh starts it over")])
def test_a_stopped_shard_is_said_to_resume_only_where_resume_is_on(tmp_path, monkeypatch, grace_s, then):
    """`resume { enabled = false }` (no grace_s): submitting again refuses the unfinished
    run, and the job's last word (what `hpoc status` shows) said it resumes it."""
    import sys

    from hpoc.runtime.exits import EXIT_INTERRUPTED
    from hpoc.submit.job import StudyJob, StudyJobError

    monkeypatch.setattr(StudyJob, "_driver_cmd",
                        lambda self, shard, local: [sys.executable, "-c", f"raise SystemExit({EXIT_INTERRUPTED})"])
    job = StudyJob(str(tmp_path / "plan.json"), cluster="local", grace_s=grace_s)
    with pytest.raises(StudyJobError) as stopped:
        job._run_driver(0, {}, local=True)
    assert str(stopped.value) == f"shard 0 was stopped by a signal before it finished; {then}"


def test_an_hpoc_submit_job_says_where_the_trials_progress_goes(tmp_path):
    """Its .out said "running shard 0: CMD": the trials' progress is in the task's .err
    (submitit's `<id>_0_log.err`), and nothing said so, nor how to follow the study."""
    build = tmp_path / "my build"
    err = tmp_path / "logs" / "7_0_log.err"
    err.parent.mkdir()
    code = ("import sys; from hpoc.submit.job import progress_line; "
            f"print(progress_line(1, {str(build / 'plan.json')!r}))")
    with open(err, "w") as fh:
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=fh, text=True,
                             check=True).stdout
    assert out == (f"hpoc: shard 1: the trials' progress goes to {err}; "
                   f"follow the study with: hpoc status '{build}'\n")


def test_a_controller_that_does_not_answer_is_asked_once_before_a_submission(tmp_path, monkeypatch):
    """squeue hanging (a busy controller): `hpoc submit` waited out its 30 s timeout twice,
    once for hpoc's own jobs and again for job.sbatch's, before it submitted anyway."""
    import hpoc.submit as submit_mod
    from hpoc.plan import load

    spec = write_study(tmp_path / "s", "slow")
    target = submit_mod.load_target(spec, tmp_path / "build")
    target.write()
    fake_squeue(monkeypatch, tmp_path / "bin", [], fails="squeue: error: slurm_load_jobs: Socket timed out")
    assert submit_mod.active_jobs(load(target.plan_path)) == []
    assert len((tmp_path / "bin" / "asked").read_text().splitlines()) == 1


def test_a_sbatched_array_is_named_once_when_it_holds_a_submission_back(tmp_path, monkeypatch):
    """`sbatch job.sbatch` of a study of 64 shards: squeue lists each task, and the refusal
    named every one ("job(s) 77_0, 77_1, ... 77_63"); `scancel 77` stops them all."""
    import hpoc.submit as submit_mod
    from hpoc.plan import load

    spec = write_study(tmp_path / "s", "wide", shards=3, parallel=3)
    other = submit_mod.load_target(spec, tmp_path / "sbatched")
    other.write()
    found = submit_mod.load_target(spec, tmp_path / "build")
    plan = load(other.plan_path)
    script = other.plan_path.parent / "job.sbatch"
    fake_squeue(monkeypatch, tmp_path / "bin", [f"77_{k}|PENDING|0:00||None|{k}|{script}" for k in range(3)]
                + [f"80_1|RUNNING|0:10|n1|None|1|{script}"])
    sub = submit_mod.prepare(plan, str(found.plan_path), "slurm")
    with pytest.raises(SubmitError, match=r"already has job\(s\) 77, 80 queued or running"):
        submit_mod.send(plan, sub, build=found)


def test_a_sbatched_array_is_read_once_however_many_shards_the_study_has(tmp_path, monkeypatch):
    """Each shard looked at every queued job again, reading its build's plan.json anew:
    256 shards against a sbatch'd array of 256 tasks took 2.7 s on a local disk before
    `hpoc submit` went on (quadratic; a shared filesystem's metadata is slower still)."""
    import hpoc.submit as submit_mod
    import hpoc.submit.queue as queue
    from hpoc.plan import load

    spec = write_study(tmp_path / "s", "wide", shards=8, parallel=8, num_samples=8)
    other = submit_mod.load_target(spec, tmp_path / "sbatched")
    other.write()
    script = other.plan_path.parent / "job.sbatch"
    fake_squeue(monkeypatch, tmp_path / "bin", [f"77_{k}|PENDING|0:00||None|{k}|{script}" for k in range(8)])
    reads = []
    plan_of = queue._plan_of
    monkeypatch.setattr(queue, "_plan_of", lambda build: reads.append(build) or plan_of(build))
    assert submit_mod.active_jobs(load(other.plan_path)) == ["77"]
    assert reads == [other.plan_path.parent]
