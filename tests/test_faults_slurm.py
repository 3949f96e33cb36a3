"""Faults during real studies on the local SLURM cluster (real sbatch, real Ray).

* A worker node's Ray (its raylet) is SIGKILLed while a trial runs there: Tune retries the
  trial (failure.max_retries) from its last checkpoint on the node that is left, the study
  completes, every trial is in summary.json as TERMINATED, nothing of the job stays behind.
* The study driver is SIGKILLed mid-study (no chance to save anything): the job fails, the
  same job.sbatch submitted again resumes the experiment from its storage; finished trials
  are not run again, interrupted ones go on from a checkpoint, all trials end TERMINATED.
* A trainer that fails to import on the compute node: the job log has one clear error, the
  job exits non-zero, no Ray process of the job is left.
* The same job.sbatch submitted twice, both jobs starting at once: only one brings Ray up,
  the other exits 2 before Ray, naming the first; no claim on the shard is left behind.

Figures (printed, see docs/reliability.md): trials retried, seconds from the kill to the
retry, seconds from resubmission to the resumed run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from slurm_plans import job_env, logs, output_of, ray_processes, sbatch, wait_jobs
from study_jobs import (_cmdline, _ppid, epochs_of, experiment, job_processes, raylet_of, reports, study_job,
                        summary, wait_for)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
JOB_TIMEOUT = 600
RETRY = "failed; retrying from its last checkpoint"


def err_text(folder: Path) -> str:
    return "\n".join(output_of(folder / "build", ".err").values())


def node_rank_of(pid: int, job: str) -> int | None:
    """Which Ray node of the job (n<rank>) a trial process runs on: its raylet ancestor."""
    seen = 0
    while pid and pid > 1 and seen < 20:
        cmd = _cmdline(pid)
        marker = f"/tmp/hpoc-{job}/n"
        if "raylet" in cmd.split(" ", 1)[0] and marker in cmd:
            return int(cmd.split(marker, 1)[1].split("/", 1)[0])
        pid, seen = _ppid(pid) or 0, seen + 1
    return None


def test_a_lost_worker_node_costs_a_retry_not_a_trial(tmp_path: Path, cancel_afterwards: list[str]) -> None:
    folder = tmp_path / "s"
    script = study_job(folder, name="lostnode", nodes=2, num_samples=3, max_concurrent=2, epochs=4, sleep=1.5,
                       max_retries=2)
    job = sbatch(script)
    cancel_afterwards.append(job)
    exp = experiment(folder, "lostnode")

    def trial_on_worker_node():
        for name, rows in reports(exp).items():
            if rows and rows[-1]["epoch"] < 3 and node_rank_of(int(rows[-1]["pid"]), job) == 1:
                return name, rows[-1]["epoch"]
        return None

    victim, epoch_at_kill = wait_for(trial_on_worker_node, JOB_TIMEOUT, "a trial reporting on the worker node",
                                     lambda: logs(folder / "build"))
    raylet = raylet_of(job, 1)
    assert raylet is not None
    os.kill(raylet, signal.SIGKILL)  # the worker node's Ray, as a crashed node
    t_kill = time.monotonic()
    wait_for(lambda: RETRY in err_text(folder), JOB_TIMEOUT, "the lost trial to be retried",
             lambda: logs(folder / "build"))
    t_retry = time.monotonic()
    (record,) = wait_jobs([job], JOB_TIMEOUT, folder / "build")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", logs(folder / "build")

    result = summary(exp)
    assert result is not None and result["num_trials"] == 3
    assert result["status_counts"] == {"TERMINATED": 3}, result["status_counts"]
    assert all(t["epochs"] == 4 for t in result["trials"])
    retried = err_text(folder).count(RETRY)
    assert retried >= 1
    rows = reports(exp)[victim]
    epochs = epochs_of(rows)
    trial_id = victim.split("_", 2)[2]
    assert any(RETRY in ln and trial_id in ln for ln in err_text(folder).splitlines()), err_text(folder)
    assert sorted(set(epochs)) == [1, 2, 3, 4] and epochs[-1] == 4, epochs
    # Tune restarted it (its iteration count since restore starts again) from a checkpoint:
    restored = [r["epoch"] for r in rows if r.get("iterations_since_restore") == 1 and r["epoch"] > 1]
    assert restored, rows
    assert ray_processes(job) == [] and not Path(f"/tmp/hpoc-{job}").exists()
    print(f"fault figures: worker node killed after epoch {epoch_at_kill} of trial {victim}; "
          f"trials retried: {retried}; kill -> retry: {t_retry - t_kill:.1f} s; resumed at epoch {restored[0]}; "
          f"epochs of the victim: {epochs}")


@pytest.mark.parametrize("victim", ["driver", "head"])
def test_a_killed_driver_or_head_resumes_on_resubmission(victim: str, tmp_path: Path,
                                                          cancel_afterwards: list[str]) -> None:
    """`driver`: SIGKILL the study driver. `head`: SIGKILL the head node's Ray
    (GCS and raylet); the driver loses its cluster and the job ends."""
    folder = tmp_path / "s"
    script = study_job(folder, name="killed", nodes=1, num_samples=2, max_concurrent=1, epochs=5, sleep=1.2,
                       max_retries=1)
    plan_path = folder / "build" / "plan.json"
    first = sbatch(script)
    cancel_afterwards.append(first)
    exp = experiment(folder, "killed")

    def progress() -> bool:  # one trial finished, the next one half way
        runs = reports(exp)
        done = [n for n, rows in runs.items() if epochs_of(rows)[-1:] == [5]]
        busy = [n for n, rows in runs.items() if epochs_of(rows)[-1:] in ([2], [3])]
        return bool(done and busy)

    wait_for(progress, JOB_TIMEOUT, "a finished trial and a running one", lambda: logs(folder / "build"))
    drivers = [pid for pid, cmd in job_processes(first, plan_path).items()
               if "-m hpoc.runtime " in cmd and "hpoc.runtime.node" not in cmd]
    assert len(drivers) == 1, drivers
    before = {n: epochs_of(rows) for n, rows in reports(exp).items()}
    if victim == "driver":
        os.kill(drivers[0], signal.SIGKILL)
    else:
        head = [pid for pid, cmd in job_processes(first, plan_path).items()
                if cmd.split(" ", 1)[0].endswith(("/gcs_server", "/raylet")) and f"/tmp/hpoc-{first}/n0/" in cmd]
        assert len(head) == 2, head
        for pid in head:
            os.kill(pid, signal.SIGKILL)
    t_kill = time.monotonic()
    (record,) = wait_jobs([first], JOB_TIMEOUT, folder / "build")
    t_ended = time.monotonic()
    assert record["JobState"] == "FAILED", record  # the job says the study did not finish
    assert ray_processes(first) == [] and not Path(f"/tmp/hpoc-{first}").exists()
    assert summary(exp) is None or summary(exp)["interrupted"]
    if victim == "head":  # the job watches its head: no waiting out Ray's 60 s GCS timeout,
        # nor 20 s for a driver whose graceful stop hangs without the GCS (about 4 s here)
        assert "the Ray head on " in err_text(folder) and t_ended - t_kill < 12, t_ended - t_kill

    t_submit = time.monotonic()
    second = sbatch(script)
    cancel_afterwards.append(second)
    out = folder / "build"
    wait_for(lambda: "resuming the interrupted run" in err_text(folder), JOB_TIMEOUT, "the second job to resume",
             lambda: logs(out))
    t_resumed = time.monotonic()
    (record,) = wait_jobs([second], JOB_TIMEOUT, out)
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", logs(out)

    result = summary(exp)
    assert result["num_trials"] == 2 and result["status_counts"] == {"TERMINATED": 2}, result["status_counts"]
    after = {n: epochs_of(rows) for n, rows in reports(exp).items()}
    assert len(after) == 2  # no trial lost, none added
    assert any(0 < len(old) and old[-1] < 5 for old in before.values()), before  # one was cut off
    for name, epochs in after.items():
        assert epochs[-1] == 5 and epochs.count(5) == 1, (name, epochs)
        old = before.get(name, [])
        if old and old[-1] == 5:
            assert epochs == old, (name, old, epochs)  # finished before the kill: not run again
        elif len(old) >= 2:
            later = epochs[len(old):]
            assert later and later[0] > 1, (name, old, epochs)  # resumed from a checkpoint
    print(f"fault figures: {victim} killed with trials at epochs {before}; kill -> job ended: "
          f"{t_ended - t_kill:.1f} s; resubmit -> resumed run: {t_resumed - t_submit:.1f} s; "
          f"resubmit -> done: {time.monotonic() - t_submit:.1f} s; epochs after: {after}")


def test_a_trainer_that_fails_to_import_on_the_node_fails_the_job_cleanly(tmp_path: Path,
                                                                           cancel_afterwards: list[str]) -> None:
    folder = tmp_path / "s"
    script = study_job(folder, name="noimport", nodes=2, num_samples=2, trainer="gpu_trainer:Trainer")
    (folder / "code" / "gpu_trainer.py").write_text(
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    job = sbatch(script)
    cancel_afterwards.append(job)
    (record,) = wait_jobs([job], JOB_TIMEOUT, folder / "build")
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", record
    err = err_text(folder)
    assert "error: trainer `gpu_trainer:Trainer`: importing `gpu_trainer` failed: ImportError: libcudart.so.12" \
        in err, err
    assert "Traceback" not in err
    out = "\n".join(output_of(folder / "build").values())
    assert "hpoc: study driver exited with status 2" in out
    assert ray_processes(job) == [] and not Path(f"/tmp/hpoc-{job}").exists()
    json.loads((folder / "build" / "plan.json").read_text())  # untouched


def test_two_jobs_of_one_shard_started_at_once_bring_ray_up_once(tmp_path: Path,
                                                                 cancel_afterwards: list[str]) -> None:
    """Both used to start a Ray cluster: the check before Ray only read the run lock, which
    the driver took after bring-up. The winner's trainer fails to import, so that it ends
    soon after its Ray came up (and its claim must still go)."""
    folder = tmp_path / "s"
    script = study_job(folder, name="twice", nodes=1, num_samples=1, trainer="broken:Trainer")
    (folder / "code" / "broken.py").write_text("raise ImportError('not this time')\n")
    jobs = []
    for _ in range(2):  # held, then released together: one scheduling pass starts both
        out = subprocess.run(["sbatch", "--hold", "--parsable", str(script)], cwd=script.parent,
                             env=job_env(), capture_output=True, text=True, check=True, timeout=60)
        jobs.append(out.stdout.strip().split(";")[0])
        cancel_afterwards.append(jobs[-1])
    subprocess.run(["scontrol", "release", ",".join(jobs)], check=True, timeout=60)
    records = wait_jobs(jobs, 120, folder / "build")
    assert {r["ExitCode"] for r in records} == {"2:0"}, records
    outs = output_of(folder / "build")
    up = [j for j in jobs if "starting Ray on" in outs[f"twice-{j}.out"]]
    assert len(up) == 1, outs
    (other,) = set(jobs) - set(up)
    err = (folder / "build" / f"twice-{other}.err").read_text()
    assert f"is in use by another run (a SLURM job starting its Ray cluster) (pid " in err, err
    assert f"SLURM job {up[0]}, since" in err, err
    assert not (folder / "results").exists()  # the winner's teardown dropped its claim
