"""Resuming a study: ASHA's rungs and the concurrency cap across a restore, and a study on
the local SLURM cluster that survives a walltime signal and a hard kill."""

from __future__ import annotations

import errno
import io
import json
import pickle
import subprocess
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime_plans import make_plan, write_toy
from submit_support import (hpoc, log_tail, reports, scontrol, summary, wait_done,
                            wait_for, write_study)


# ---------------------------------------------------------------- fakes of Tune's objects


class FakeTrial:
    def __init__(self, trial_id: str, path: Path | None = None, last: dict | None = None,
                 status: str = "PENDING") -> None:
        self.trial_id, self.path, self.status = trial_id, str(path) if path else None, status
        self.run_metadata = SimpleNamespace(last_result=last or {})

    def set_status(self, status: str) -> None:
        self.status = status


class FakeController:
    def __init__(self) -> None:
        self.trials: list[FakeTrial] = []
        self.saves: list[bool] = []

    def checkpoint(self, force: bool = False) -> None:
        self.saves.append(force)

    def get_trials(self):
        return self.trials

    def add(self, scheduler, trial: FakeTrial) -> None:  # what TuneController.add_trial does
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)


def asha(plan=None):
    from ray.tune.schedulers import ASHAScheduler

    from hpoc.runtime.resume import prepare_scheduler

    s = ASHAScheduler(metric="acc", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    return prepare_scheduler(s, plan or {"trials": {"max_concurrent": None}}) if plan is not False else s


def test_restored_asha_rebuilds_its_rungs_from_the_trials_results(tmp_path):
    from ray.tune.schedulers import TrialScheduler

    live, ctl = asha(False), FakeController()
    curves = {"a": [0.5, 0.6, 0.7, 0.8], "b": [0.4, 0.45, 0.5, 0.55], "c": [0.2, 0.3, 0.31, 0.32],
              "d": [0.6, 0.7, 0.75, 0.9], "e": [0.1, 0.2, 0.25, 0.3]}
    history = {}
    for name, accs in curves.items():  # the original run, trial after trial
        trial = FakeTrial(name, tmp_path / name)
        ctl.add(live, trial)
        rows = []
        for epoch, acc in enumerate(accs, 1):
            rows.append({"training_iteration": epoch, "acc": acc})
            if live.on_trial_result(ctl, trial, rows[-1]) == TrialScheduler.STOP:
                break
        live.on_trial_complete(ctl, trial, rows[-1])
        history[name] = rows
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert any(len(r) < 4 for r in history.values())  # ASHA did stop some

    restored, plain, ctl2, ctl3 = asha(), asha(False), FakeController(), FakeController()
    for name, rows in history.items():
        ctl2.add(restored, FakeTrial(name, tmp_path / name, last=rows[-1]))
        ctl3.add(plain, FakeTrial(name, tmp_path / name, last=rows[-1]))
    assert restored.rungs() == [[(m, dict(r)) for m, r in b._rungs] for b in live._brackets]
    assert all(not r for _, r in plain._brackets[0]._rungs)  # Ray's own: history lost

    # A newcomer as bad as `e` is stopped at the first rung by the rebuilt rungs only.
    late = {"training_iteration": 1, "acc": 0.05}
    new1, new2 = FakeTrial("f"), FakeTrial("f")
    ctl2.add(restored, new1)
    ctl3.add(plain, new2)
    assert restored.on_trial_result(ctl2, new1, late) == TrialScheduler.STOP
    assert plain.on_trial_result(ctl3, new2, late) == TrialScheduler.CONTINUE


def test_restored_trials_wait_their_turn_under_max_concurrent():
    from ray.tune.schedulers import FIFOScheduler

    from hpoc.runtime.resume import prepare_scheduler

    sched, ctl = prepare_scheduler(FIFOScheduler(), {"trials": {"max_concurrent": 2}}), FakeController()
    trials = [FakeTrial(f"t{i}", last={"training_iteration": 1}) for i in range(4)]
    for t in trials:  # Tune requeues all restored trials as PENDING at once
        ctl.add(sched, t)
    assert [t.status for t in trials] == ["PENDING", "PENDING", "PAUSED", "PAUSED"]
    assert sched.choose_trial_to_run(ctl) is trials[0]
    trials[0].status = trials[1].status = "RUNNING"
    assert sched.choose_trial_to_run(ctl) is None
    trials[0].status = "TERMINATED"
    assert sched.choose_trial_to_run(ctl) is trials[2]
    # without a cap nothing changes
    free, ctl2 = prepare_scheduler(FIFOScheduler(), {"trials": {"max_concurrent": None}}), FakeController()
    for i in range(3):
        ctl2.add(free, FakeTrial(f"u{i}"))
    assert all(t.status == "PENDING" for t in ctl2.trials)


@pytest.mark.parametrize("name", ["pbt", "pb2"])
def test_restored_population_trials_wait_their_turn_under_max_concurrent(name):
    """A resumed PBT study (errored trials retried) ran all four restored trials at once
    under `max_concurrent = 1`: their generator caps only the trials it makes."""
    from hpoc.runtime.resume import prepare_scheduler
    from hpoc.runtime.search import make_scheduler

    plan = make_plan(Path("/tmp"), Path("/tmp/res"), trials={"num_samples": 4, "max_concurrent": 1},
                     scheduler={"name": name, "time_attr": "training_iteration",
                                "options": {"perturbation_interval": 2}})
    sched, ctl = prepare_scheduler(make_scheduler(plan), plan), FakeController()
    ctl.search_alg = None
    trials = [FakeTrial(f"t{i}", last={"training_iteration": 1}) for i in range(3)]
    for t in trials:  # Tune requeues all restored trials as PENDING at once
        t.config, t.evaluated_params, t.experiment_tag = {"lr": 0.01, "hidden": 8, "__hpoc_trial": 0}, {}, t.trial_id
        t.run_metadata.checkpoint_manager = SimpleNamespace(checkpoint_config=SimpleNamespace(num_to_keep=4))
        ctl.add(sched, t)
    assert [t.status for t in trials] == ["PENDING", "PAUSED", "PAUSED"]
    assert sched.choose_trial_to_run(ctl) is trials[0]
    trials[0].status = "RUNNING"
    assert sched.choose_trial_to_run(ctl) is None
    trials[0].status = "PAUSED"  # PBT pauses it at a perturbation: the others take turns
    assert sched.choose_trial_to_run(ctl) in trials
    assert type(pickle.loads(pickle.dumps(sched)))._hpoc_cap is None  # the cap is the instance's
    assert pickle.loads(pickle.dumps(sched))._hpoc_cap == 1  # Tuner.restore unpickles it


def test_the_experiment_state_is_saved_as_soon_as_a_trial_ends():
    from ray.tune.schedulers import FIFOScheduler

    from hpoc.runtime.resume import prepare_scheduler

    sched, ctl = prepare_scheduler(FIFOScheduler(), {"trials": {"max_concurrent": None}}), FakeController()
    trial = FakeTrial("t")
    ctl.add(sched, trial)
    sched.choose_trial_to_run(ctl)
    assert ctl.saves == []
    trial.status = "TERMINATED"  # Tune marks it, then steps again
    sched.on_trial_complete(ctl, trial, {"training_iteration": 2})
    sched.choose_trial_to_run(ctl)
    sched.choose_trial_to_run(ctl)
    assert ctl.saves == [True]  # once, forced, on the step after the trial ended


def test_median_stopping_goes_on_after_a_trial_stopped_before_its_first_report():
    """A trial stopped at `trials.time_limit` before it reported completes with an empty
    result; Ray's median rule kept it and failed the study at the next result (KeyError)."""
    from ray.tune.schedulers import MedianStoppingRule

    from hpoc.runtime.resume import prepare_scheduler

    rule = MedianStoppingRule(metric="acc", mode="max", time_attr="training_iteration", grace_period=1,
                              min_samples_required=1)
    sched, ctl = prepare_scheduler(rule, {"trials": {"max_concurrent": None}}), FakeController()
    ctl.get_live_trials = ctl.get_trials
    hung, other = FakeTrial("hung", status="RUNNING"), FakeTrial("other", status="RUNNING")
    ctl.add(sched, hung)
    ctl.add(sched, other)
    sched.on_trial_complete(ctl, hung, {})
    assert sched.on_trial_result(ctl, other, {"training_iteration": 2, "acc": 0.5}) == "CONTINUE"


FLAKY = textwrap.dedent('''
    import os, time
    from toy import ToyTrainer


    class FlakySlow(ToyTrainer):
        """Fails once per trial after epoch 1 (a marker remembers); logs when it trains."""

        def train_epoch(self, epoch):
            log = os.path.join(self.args["marker_dir"], "spans.log")
            with open(log, "a") as f:
                f.write(f"{self.trial.id} {os.getpid()} begin {time.time()}\\n")
            time.sleep(0.6)
            out = super().train_epoch(epoch)
            with open(log, "a") as f:
                f.write(f"{self.trial.id} {os.getpid()} end {time.time()}\\n")
            return out

        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            marker = os.path.join(self.args["marker_dir"], self.trial.id)
            if epoch == 0 and not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected failure after epoch 1")
''')


def test_an_exploiting_pbt_trial_restores_from_its_own_copy_of_the_donors_checkpoint(tmp_path, monkeypatch):
    """Seen on SLURM after a walltime resume: the exploiting trial restored from the donor's
    checkpoint after the donor's `checkpoint.keep` had deleted it, and errored ("Could not
    recover from checkpoint as it does not exist on storage anymore") or started over."""
    from ray.train import Checkpoint
    from ray.tune import schedulers as S

    from hpoc.runtime.population import PBT
    from hpoc.runtime.resume import prepare_scheduler

    pbt = prepare_scheduler(PBT(metric="acc", mode="max", perturbation_interval=2,
                                hyperparam_mutations={"lr": [0.1, 0.2]}),
                            {"trials": {"max_concurrent": None}})
    cloned = []
    monkeypatch.setattr(S.PopulationBasedTraining, "_exploit",
                        lambda self, ctl, trial, donor: cloned.append(self._trial_state[donor].last_checkpoint.path))
    donor_dir, own = tmp_path / "trial_3", tmp_path / "trial_1"
    for n in (37, 45):
        (donor_dir / f"checkpoint_{n:06d}").mkdir(parents=True)
        (donor_dir / f"checkpoint_{n:06d}" / "state.pt").write_text(str(n))
    donor, trial = FakeTrial("3", donor_dir), FakeTrial("1", own)
    trial.config = {"lr": 0.2}
    donor.checkpoint = Checkpoint(str(donor_dir / "checkpoint_000045"))
    noted = Checkpoint(str(donor_dir / "checkpoint_000037"))
    pbt._trial_state[donor] = SimpleNamespace(last_checkpoint=noted)

    pbt._exploit(FakeController(), trial, donor)
    copy = own / "exploited-trial_3-checkpoint_000037"
    assert cloned == [str(copy)] and (copy / "state.pt").read_text() == "37"
    assert pbt._trial_state[donor].last_checkpoint is noted  # the donor's own stays noted
    assert trial._hpoc_config == {"lr": 0.2}  # recorded for a resumed run (population.py)
    # hard links, not a copy the Tune driver waits for (the donor's file, not a new one)
    assert (copy / "state.pt").samefile(donor_dir / "checkpoint_000037" / "state.pt")
    (donor_dir / "checkpoint_000037" / "state.pt").unlink()
    (donor_dir / "checkpoint_000037").rmdir()  # the donor's keep deletes it: the copy remains
    assert (copy / "state.pt").read_text() == "37"

    pbt._exploit(FakeController(), trial, donor)  # the noted one is gone: the donor's latest
    newer = own / "exploited-trial_3-checkpoint_000045"
    assert cloned[-1] == str(newer) and (newer / "state.pt").read_text() == "45"
    assert not copy.exists()  # one copy per trial

    def no_links(src, dst):  # a storage without hard links, or another file system
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("os.link", no_links)
    pbt._trial_state[donor].last_checkpoint = Checkpoint(str(donor_dir / "checkpoint_000045"))
    pbt._exploit(FakeController(), trial, donor)  # copied instead
    assert (newer / "state.pt").read_text() == "45"
    assert not (newer / "state.pt").samefile(donor_dir / "checkpoint_000045" / "state.pt")

    donor.checkpoint = None
    pbt._trial_state[donor].last_checkpoint = Checkpoint(str(tmp_path / "gone"))
    pbt._exploit(FakeController(), trial, donor)  # nothing to clone: no exploit, no error
    assert len(cloned) == 3

    assert type(pickle.loads(pickle.dumps(pbt))) is PBT  # Tuner.restore unpickles it


def _spans(log: Path) -> list[tuple[float, float]]:
    """(start, end) of each trial process's training, from the trainer's own log."""
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], float] = {}
    for line in log.read_text().splitlines():
        trial, pid, what, t = line.split()
        key = (trial, pid)
        first.setdefault(key, float(t))
        last[key] = float(t)
    return [(first[k], last[k]) for k in first]


def _flaky_plan(tmp_path: Path, monkeypatch, **settings) -> tuple[dict, Path]:
    """A toy study of FlakySlow trials, resumable with errored trials retried, and the
    folder its trainer logs to."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workdir = write_toy(tmp_path / "w")
    (workdir / "flaky.py").write_text(FLAKY)
    markers = tmp_path / "markers"
    markers.mkdir()
    plan = make_plan(workdir, tmp_path / "res",
                     pipeline={"trainer": {"target": "flaky:FlakySlow", "args": {"marker_dir": str(markers)}}},
                     resume={"enabled": True, "retry_errored": True, "grace_s": 60}, **settings)
    return plan, markers


@pytest.mark.ray
@pytest.mark.slow
def test_errored_trials_retried_on_resume_keep_max_concurrent_and_their_epochs(tmp_path, monkeypatch):
    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study

    plan, markers = _flaky_plan(tmp_path, monkeypatch, trials={"num_samples": 2, "max_concurrent": 1},
                                space={"constants": {"epochs": 2, "batch_size": 32}})
    opts = dict(local=True, num_cpus=2, progress=io.StringIO(), out=io.StringIO())
    run_study(plan, RunOptions(**opts))
    exp = tmp_path / "res" / "toy"
    assert summary(exp)["status_counts"] == {"ERROR": 2}
    (exp / "summary.json").unlink()  # as if the driver had been killed: the next run resumes
    for result in exp.glob("*/result.json"):  # ... in the middle of writing a report
        with open(result, "ab") as f:
            f.write(b'{"epoch": 2, "val_acc')
    log = markers / "spans.log"
    first_run = len(_spans(log))
    assert run_study(plan, RunOptions(**opts)) == EXIT_OK
    final = summary(exp)
    assert final["status_counts"] == {"TERMINATED": 2}
    # the retried trials ran one at a time (Tune alone runs both at once: 2 CPUs)
    spans = sorted(_spans(log)[first_run:])
    assert len(spans) == 2
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    # each continued after its checkpoint of epoch 1
    for rows in reports(exp).values():
        assert [r["epoch"] for r in rows] == [1, 2]
    # their old error is kept aside: it made `hpoc results` show them with it, retried or not
    from hpoc.results import load

    assert all(t.error is None and t.status == "TERMINATED" for t in load(exp).trials)
    assert len(list(exp.glob("*/before-retry-1/error.txt"))) == 2


def _peak_epochs(log: Path) -> int:
    """The most epochs trained at the same moment, from the trainer's begin/end lines."""
    events = sorted((float(t), 1 if what == "begin" else -1)
                    for _, _, what, t in (line.split() for line in log.read_text().splitlines()))
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.ray
@pytest.mark.slow
def test_a_resumed_pbt_study_keeps_max_concurrent(tmp_path, monkeypatch):
    """All errored trials of a PBT study (four, when it was seen) ran again at once under
    `max_concurrent = 1` (the generator that caps PBT's trials does not see restored ones)."""
    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study

    plan, markers = _flaky_plan(tmp_path, monkeypatch, trials={"num_samples": 2, "max_concurrent": 1},
                                space={"constants": {"epochs": 3, "batch_size": 32}},
                                resources={"cpus_per_worker": 0.5},  # room for both at once
                                scheduler={"name": "pbt", "time_attr": "training_iteration",
                                           "options": {"perturbation_interval": 2}},
                                checkpoint={"every": 1, "keep": 4})
    opts = dict(local=True, num_cpus=2, progress=io.StringIO(), out=io.StringIO())
    run_study(plan, RunOptions(**opts))
    exp = tmp_path / "res" / "toy"
    assert summary(exp)["status_counts"] == {"ERROR": 2}
    (exp / "summary.json").unlink()  # as if the driver had been killed: the next run resumes
    (markers / "spans.log").rename(markers / "first.log")
    assert run_study(plan, RunOptions(**opts)) == EXIT_OK
    assert summary(exp)["status_counts"] == {"TERMINATED": 2}
    assert _peak_epochs(markers / "spans.log") == 1


# ---------------------------------------------------------------- on the local SLURM cluster


def _runs(rows: list[dict]) -> list[list[int]]:
    """Epochs reported per process, in order: one list per run of the trial."""
    out: list[list[int]] = []
    pid = None
    for row in rows:
        if row["pid"] != pid:
            out.append([])
            pid = row["pid"]
        out[-1].append(row["epoch"])
    return out


def _trial_running_after(exp: Path, since: float) -> float | None:
    """When a trial was first training again after `since`: the first report written since,
    less the time that epoch took (reports carry whole seconds)."""
    starts = [r["timestamp"] - r.get("time_this_iter_s", 0.0) for rows in reports(exp).values()
              for r in rows if r["timestamp"] >= since]
    return max(min(starts), since) if starts else None


@pytest.mark.slurm
@pytest.mark.slow
def test_a_study_survives_a_walltime_signal_and_a_hard_kill(tmp_path, cancel_afterwards):
    spec = write_study(tmp_path / "s", "survive", num_samples=3, max_concurrent=2, cpus=2, epochs=4,
                       sleep=1.2, grace="30s")
    import hpoc as hpoc_api

    (job,) = hpoc_api.submit(spec, out=tmp_path / "build")
    job_id = str(job.job_id)
    cancel_afterwards.append(job_id)
    build, exp = tmp_path / "build", tmp_path / "s" / "results" / "survive"
    figures = {}

    def epochs_done() -> int:
        return sum(len(rows) for rows in reports(exp).values())

    wait_for(lambda: epochs_done() >= 3, 300, "trials reporting epochs", build)
    # status of a running study
    status = json.loads(hpoc("status", str(build), "--json", cwd=tmp_path).stdout)
    assert status["state"] == "running" and status["shards"][0]["job"]["state"] == "RUNNING"
    assert status["totals"]["running"] >= 1 and status["totals"]["done"] < 3

    # 1. The walltime warning: USR2 to the job's tasks (what SLURM sends at --signal time).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    t_signal = time.time()
    requeued = wait_for(lambda: (r := scontrol(job_id)).get("Restarts") == "1"
                        and r.get("JobState") == "PENDING" and r, 120, "the job to requeue itself", build)
    t_requeued = time.time()
    assert summary(exp)["interrupted"] is True
    before = {name: _runs(rows) for name, rows in reports(exp).items()}
    # SLURM holds a requeued job until its EligibleTime (two minutes on this cluster); the
    # test releases it at once and records how long SLURM would have held it.
    eligible = time.mktime(time.strptime(requeued["EligibleTime"], "%Y-%m-%dT%H:%M:%S"))
    figures["signal_to_requeued_s"] = round(t_requeued - t_signal, 1)
    figures["slurm_requeue_hold_s"] = round(eligible - t_requeued, 1)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    t_release = time.time()
    t_back = wait_for(lambda: _trial_running_after(exp, t_release), 300, "a trial running after the requeue",
                      build)
    figures["release_to_trial_running_s"] = round(t_back - t_release, 1)

    # 2. A hard kill of everything (as a node failure would), shortly after a trial finished
    # (Tune's periodic save would not have recorded that yet), then a resubmission.
    wait_for(lambda: any(r["epoch"] == 4 and r["timestamp"] >= t_release
                         for rows in reports(exp).values() for r in rows), 300,
             "a trial finishing after the requeue", build)
    time.sleep(3)
    subprocess.run(["scancel", "--full", "--signal=KILL", job_id], check=True)
    wait_done([job_id], 120, build)
    killed = {name: _runs(rows) for name, rows in reports(exp).items()}
    t_resubmit = time.time()
    (job2,) = hpoc_api.submit(spec, out=tmp_path / "build")
    cancel_afterwards.append(str(job2.job_id))
    t_back = wait_for(lambda: _trial_running_after(exp, t_resubmit), 300, "a trial running after resubmitting",
                      build)
    figures["resubmit_to_trial_running_s"] = round(t_back - t_resubmit, 1)
    (record,) = wait_done([str(job2.job_id)], 400, build)
    assert record["JobState"] == "COMPLETED", log_tail(build)

    final = summary(exp)
    assert final["status_counts"] == {"TERMINATED": 3} and final["interrupted"] is False
    after = {name: _runs(rows) for name, rows in reports(exp).items()}
    assert len(after) == 3  # the budget: no trial added by the restarts
    for name, runs in after.items():
        epochs = [e for run in runs for e in run]
        assert epochs.count(4) == 1, (name, runs)  # finished once
        assert sorted(set(epochs)) == [1, 2, 3, 4], (name, runs)
        for prev, nxt in zip(runs, runs[1:]):
            assert 1 < nxt[0] <= prev[-1] + 1, (name, runs)  # from a checkpoint, not from scratch
    # After the graceful stop every interrupted trial went on exactly where it stopped.
    for name, runs in before.items():
        if runs and runs[-1][-1] < 4:
            later = after[name][len(runs)]
            assert later[0] == runs[-1][-1] + 1, (name, runs, after[name])
    print("resume figures:", json.dumps(figures))


def test_a_cut_last_line_is_dropped_before_a_resume_appends(tmp_path):
    from hpoc.runtime.resume import mend_cut_logs

    whole, cut = tmp_path / "a" / "result.json", tmp_path / "b" / "progress.csv"
    for path in (whole, cut):
        path.parent.mkdir()
    whole.write_text('{"epoch": 1}\n')
    cut.write_bytes(b"epoch,loss\n1,0.5\n2,0.\xc3")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "result.json").write_bytes(b'{"epo')  # nothing whole at all
    assert sorted(mend_cut_logs(tmp_path)) == [cut, tmp_path / "c" / "result.json"]
    assert whole.read_text() == '{"epoch": 1}\n'
    assert cut.read_bytes() == b"epoch,loss\n1,0.5\n"
    assert (tmp_path / "c" / "result.json").read_bytes() == b""


def test_a_resumed_run_says_what_it_takes_over(tmp_path):
    """A requeued or resubmitted job said "resuming the interrupted run in DIR" and nothing
    of the finished trials it keeps or the unfinished ones it continues."""
    from hpoc.runtime.tuner import taken_over
    from runtime_plans import saved_state

    exp = saved_state(tmp_path / "exp", ["TERMINATED", "TERMINATED", "PAUSED", "RUNNING", "PENDING", "ERROR"])
    assert taken_over(exp) == ("2 finished trial(s) kept; 3 unfinished resume(s) from the last checkpoint, "
                               "if any; 1 errored")
    assert taken_over(saved_state(tmp_path / "done", ["TERMINATED"])) == "1 finished trial(s) kept"
