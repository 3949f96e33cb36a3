"""hpoc.runtime.tracking: what trials log to MLflow and TensorBoard, read back from disk."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpoc.runtime import tracking
from hpoc.runtime.tracking import end_study_tracking, open_loggers, start_study_tracking

from results_fixtures import REPO, make_plan

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(autouse=True)
def fresh_warnings():
    tracking._warned.clear()
    tracking._gone.clear()
    yield
    tracking._warned.clear()
    tracking._gone.clear()
    tracking._open_sinks.clear()  # a test's tracker left open is not sent to at pytest's exit


def plan_with(tmp_path: Path, *loggers: dict, name: str = "demo") -> dict:
    return make_plan(tmp_path / "storage", name, loggers=list(loggers), workdir=tmp_path)


def mlflow_logger(**kw) -> dict:
    return {"kind": "mlflow", "experiment_name": "Demo HPO", "log_freq": "epoch",
            "tracking_uri": None, **kw}


def tb_logger(**kw) -> dict:
    return {"kind": "tensorboard", "experiment_name": None, "log_freq": "epoch",
            "tracking_uri": None, **kw}


def client_for(plan: dict):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.mlflow_uri(plan, plan["loggers"][0]))


def runs(plan: dict, experiment: str = "Demo HPO") -> list:
    client = client_for(plan)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def train(tracker, epochs: int = 3, batches: int = 4) -> None:
    for epoch in range(epochs):
        for b in range(batches):
            tracker.log_batch_metric("train_loss_batch", 1.0 / (b + 1), epoch * batches + b)
        tracker.log_metrics({"train_loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1),
                             "note": "not a number"}, step=epoch)


# ------------------------------------------------------------------ MLflow

def test_mlflow_parent_and_nested_trial_runs(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger(log_freq="batch"))
    parent = start_study_tracking(plan)
    assert parent
    assert (tmp_path / "storage" / "demo" / "mlruns").is_dir()  # default: under the storage
    for i, lr in enumerate((0.1, 0.01)):
        with open_loggers(plan, f"trial_{i}", {"optimizer": {"lr": lr, "name": "adam"},
                                               "batch_size": 32}, rank=0, trial_index=i,
                          parent_run_id=parent) as tracker:
            assert tracker.kinds == ["mlflow"]
            train(tracker)
    end_study_tracking(plan, parent)

    client = client_for(plan)
    found = {r.info.run_name: r for r in runs(plan)}
    assert set(found) == {"demo", "trial_0", "trial_1"}
    study = found["demo"]
    assert study.info.run_id == parent and study.info.status == "FINISHED"
    assert study.data.tags["hpoc.study_key"] == tracking.study_key(plan)
    for i, lr in enumerate((0.1, 0.01)):
        run = found[f"trial_{i}"]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["hpoc.trial_index"] == str(i)
        assert run.info.status == "FINISHED"
        assert run.data.params == {"optimizer.lr": str(lr), "optimizer.name": "adam",
                                   "batch_size": "32"}
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0), (2, 2.0 / 3)]
        batch = client.get_metric_history(run.info.run_id, "train_loss_batch")
        assert sorted(m.step for m in batch) == list(range(12))
        assert "note" not in run.data.metrics


def test_epoch_loggers_ignore_batch_metrics(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger(log_freq="epoch"))
    with open_loggers(plan, "t0", {"lr": 0.1}, rank=0) as tracker:
        train(tracker)
    (run,) = [r for r in runs(plan) if r.info.run_name == "t0"]
    assert set(run.data.metrics) == {"train_loss", "val_loss"}


def test_trials_without_a_parent_id_share_one_parent(tmp_path):
    """Trials started in separate processes at the same moment (shards, or a driver that did
    not create the parent) find or create one parent run, not one each."""
    plan = plan_with(tmp_path, mlflow_logger())
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    go = time.time() + 6  # every process imports mlflow first, then starts together
    script = (
        "import json, sys, time\n"
        "from hpoc.runtime.tracking import open_loggers\n"
        "import mlflow\n"
        f"plan = json.load(open({str(plan_file)!r}))\n"
        f"time.sleep(max(0, {go} - time.time()))\n"
        "t = open_loggers(plan, 'trial_' + sys.argv[1], {'i': int(sys.argv[1])}, rank=0)\n"
        "assert t.kinds == ['mlflow'], t.kinds\n"
        "t.log_metric('val_loss', 1.0, 0)\n"
        "t.close()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_ALLOW_FILE_STORE="true")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    client = client_for(plan)
    experiments = [e for e in client.search_experiments() if e.name == "Demo HPO"]
    assert len(experiments) == 1
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_parent_race_with_a_wide_window(tmp_path, monkeypatch):
    """Four trials look for the parent run at once and each waits before creating one: they
    must still end up under a single parent."""
    import threading

    plan = plan_with(tmp_path, mlflow_logger())
    assert start_study_tracking(dict(plan, loggers=[])) is None  # no MLflow logger
    real_find = tracking._find_parent
    barrier = threading.Barrier(4, timeout=30)
    first_call = threading.local()

    def slow_find(*args):
        found = real_find(*args)
        if not getattr(first_call, "done", False):
            first_call.done = True
            try:
                barrier.wait(timeout=2)  # everyone has looked (unless a lock serialises them)
            except threading.BrokenBarrierError:
                pass
        return found

    monkeypatch.setattr(tracking, "_find_parent", slow_find)
    trackers = [None] * 4

    def trial(i):
        trackers[i] = open_loggers(plan, f"trial_{i}", {"i": i}, rank=0)

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(t is not None and t.kinds == ["mlflow"] for t in trackers)
    for t in trackers:
        t.close()
    experiments = [e for e in client_for(plan).search_experiments() if e.name == "Demo HPO"]
    assert len(experiments) == 1  # the file store would happily make two of the same name
    found = runs(plan)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_duplicate_parents_resolve_to_the_oldest(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger())
    first = start_study_tracking(plan)
    client = client_for(plan)
    exp = client.get_experiment_by_name("Demo HPO").experiment_id
    time.sleep(0.01)
    client.create_run(exp, tags={"hpoc.study_key": tracking.study_key(plan)}, run_name="dup")
    assert start_study_tracking(plan) == first
    with open_loggers(plan, "t", {}, rank=0) as tracker:
        tracker.log_metric("val_loss", 0.5, 0)
    (child,) = [r for r in runs(plan) if r.info.run_name == "t"]
    assert child.data.tags["mlflow.parentRunId"] == first


def test_a_resumed_study_with_more_than_50_trial_runs_finds_its_parent(tmp_path):
    """The parent was looked for among the 50 newest runs with the study's tag, which its
    trials' runs carry too: a study resumed after 50 trials (or attempts) made a second
    parent, and its trials were split between the two."""
    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    client = client_for(plan)
    exp = client.get_experiment_by_name("Demo HPO").experiment_id
    for i in range(51):
        client.create_run(exp, tags={"mlflow.parentRunId": parent, "hpoc.trial": f"t{i}",
                                     "hpoc.study_key": tracking.study_key(plan)})
    assert start_study_tracking(plan) == parent
    with open_loggers(plan, "t", {}, rank=0) as tracker:  # a trial not given the parent's id
        tracker.log_metric("val_loss", 0.5, 0)
    assert [r for r in runs(plan) if r.info.run_name == "t"][0].data.tags["mlflow.parentRunId"] == parent

def test_restarted_trial_continues_its_run(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    for step in (0, 1):  # the same trial, started twice (preempted, then resumed)
        tracker = open_loggers(plan, "trial_7", {"lr": 0.1}, rank=0, parent_run_id=parent)
        tracker.log_metric("val_loss", 1.0 - step / 2, step)
        tracker.close()
    trial_runs = [r for r in runs(plan) if r.info.run_name == "trial_7"]
    assert len(trial_runs) == 1
    history = client_for(plan).get_metric_history(trial_runs[0].info.run_id, "val_loss")
    assert [m.step for m in history] == [0, 1]



@pytest.mark.parametrize("name", ["Bob's trial", 'the "best" one', "it's \"both\"", "ends in \\"])
def test_a_trial_whose_name_has_quotes_continues_its_run(tmp_path, name):
    """The trial's name went into an MLflow filter between single quotes: a name with an
    apostrophe skipped the search and each attempt made a run of its own (a name with a
    double quote and one, an MLflow error that switched the logger off)."""
    plan = plan_with(tmp_path, mlflow_logger(experiment_name="Bob's study"))
    parent = start_study_tracking(plan)
    client = client_for(plan)
    exp = client.get_run(parent).info.experiment_id
    client.create_run(exp, tags={"mlflow.parentRunId": parent, "hpoc.trial": name + "x"})  # a near name
    for steps in (range(2), range(1, 4)):  # preempted after step 1, resumed at step 1
        with open_loggers(plan, name, {"lr": 0.1}, rank=0, parent_run_id=parent) as tracker:
            for step in steps:
                tracker.log_metric("val_loss", 1.0 + step, step)
    assert tracker.kinds == [] and not tracking._warned  # closed, never switched off
    assert client.get_experiment(exp).name == "Bob\u2019s study"  # MLflow's file store: not with '
    (run,) = [r for r in runs(plan, "Bob\u2019s study") if r.data.tags.get("hpoc.trial") == name]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss")) == [0, 1, 2, 3]


def test_a_resumed_study_runs_its_parent_run_again(tmp_path):
    """The parent run of a study resumed after a stop (walltime, Ctrl-C) stayed KILLED in
    MLflow's UI while its trials ran again."""
    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    end_study_tracking(plan, parent, "KILLED")
    assert start_study_tracking(plan) == parent
    assert client_for(plan).get_run(parent).info.status == "RUNNING"
    end_study_tracking(plan, parent)
    assert client_for(plan).get_run(parent).info.status == "FINISHED"


def test_a_sharded_studys_parent_run_ends_with_its_last_shard(tmp_path):
    """The shards of a job array end at different times: the first to end marked the parent
    run FINISHED while the others still ran. It ends with the last, FAILED if one failed;
    a shard requeued after a stop runs it again."""
    plan = make_plan(tmp_path / "storage", "demo", shards=3, loggers=[mlflow_logger()], workdir=tmp_path)
    parents = {start_study_tracking(plan, shard) for shard in range(3)}
    (parent,) = parents
    status = lambda: client_for(plan).get_run(parent).info.status  # noqa: E731
    end_study_tracking(plan, parent, "FINISHED", 0)
    assert status() == "RUNNING"
    end_study_tracking(plan, parent, "KILLED", 2)   # walltime: requeued
    assert status() == "RUNNING"
    end_study_tracking(plan, parent, "FINISHED", 1)
    assert status() == "KILLED"
    start_study_tracking(plan, 2)
    assert status() == "RUNNING"
    end_study_tracking(plan, parent, "FAILED", 2)
    assert status() == "FAILED"


def test_an_exploited_trial_with_a_new_config_keeps_logging_to_its_run(tmp_path, caplog):
    """PBT restarts an exploiting trial from the donor's checkpoint with mutated values: MLflow
    refuses a param's new value, and the refusal switched the trial's logger off, so the rest
    of its epochs were never logged. The run keeps the first values as params and the
    current ones as `hpoc.param.<key>` tags; a new key is a param."""
    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    configs = [{"lr": 0.1, "batch_size": 32}, {"lr": 0.2, "batch_size": 32, "extra": 1}]
    for epochs, config in zip(((0, 1), (2, 3)), configs):
        tracker = open_loggers(plan, "t00001_abc", config, rank=0, trial_index=1, parent_run_id=parent)
        assert tracker.kinds == ["mlflow"]
        for epoch in epochs:
            tracker.log_metrics({"val_loss": 1.0 / (epoch + 1)}, step=epoch)
        tracker.close()
    (run,) = [r for r in runs(plan) if r.info.run_name == "t00001_abc"]
    history = client_for(plan).get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
    assert run.data.params == {"lr": "0.1", "batch_size": "32", "extra": "1"}
    assert run.data.tags["hpoc.param.lr"] == "0.2" and "hpoc.param.batch_size" not in run.data.tags
    assert "tracking disabled" not in caplog.text


def test_failed_trial_marks_its_run_failed(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger())
    with pytest.raises(RuntimeError):
        with open_loggers(plan, "boom", {}, rank=0) as tracker:
            tracker.log_metric("val_loss", 1.0, 0)
            raise RuntimeError("diverged")
    (run,) = [r for r in runs(plan) if r.info.run_name == "boom"]
    assert run.info.status == "FAILED"


def test_tracking_uri_is_relative_to_the_spec(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri="tracking/mlruns"))
    with open_loggers(plan, "t", {"a": 1}, rank=0) as tracker:
        tracker.log_metric("val_loss", 1.0, 0)
    assert (tmp_path / "tracking" / "mlruns").is_dir()
    assert not (tmp_path / "storage" / "demo" / "mlruns").exists()
    assert [r.info.run_name for r in runs(plan)].count("t") == 1


def test_a_file_uri_names_the_folder_it_says(tmp_path):
    """`file://localhost/p` and `file:///p/my%20runs` (as `storage.path` takes them) named a
    folder `localhost/p` beside the spec and one called `my%20runs`."""
    plan = plan_with(tmp_path, mlflow_logger())
    where = {"file://localhost" + str(tmp_path / "a"): tmp_path / "a",
             (tmp_path / "my runs").as_uri(): tmp_path / "my runs",
             "file:./b": tmp_path / "b", "file:c": tmp_path / "c", str(tmp_path / "d"): tmp_path / "d"}
    for uri, folder in where.items():
        assert tracking.mlflow_uri(plan, mlflow_logger(tracking_uri=uri)) == folder.as_uri(), uri
        assert tracking.tensorboard_dir(plan, tb_logger(tracking_uri=uri), "t1") == folder / "t1", uri
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri=(tmp_path / "my runs").as_uri()))
    with open_loggers(plan, "t", {"a": 1}, rank=0) as tracker:
        tracker.log_metric("val_loss", 1.0, 0)
    assert [r.info.run_name for r in runs(plan)] == ["t", "demo"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hpoc-locks", "my runs"]


def test_itwinais_other_log_kinds_reach_mlflow(tmp_path, caplog):
    """`self.log(path, name, kind="artifact")` (the itwinai tutorial logs its checkpoints so),
    `torch`, `dict` and `text` were dropped without a word."""
    plan = plan_with(tmp_path, mlflow_logger())
    checkpoint = tmp_path / "ckpt_0.pt"
    checkpoint.write_bytes(b"weights")
    with caplog.at_level(logging.WARNING, logger="hpoc.tracking"):
        with open_loggers(plan, "t", {}, rank=0) as tracker:
            tracker.log_item("artifact", str(checkpoint), "checkpoints")
            tracker.log_item("torch", {"epoch": 1}, "state.pt")
            tracker.log_item("dict", {"a": 1}, "info.json")
            tracker.log_item("text", "hello", "notes.txt")
            tracker.log_item("artifact", str(tmp_path / "missing.pt"), "checkpoints")  # said, logger kept
            tracker.log_item("watch", object(), "model")
            tracker.log_metric("val_loss", 1.0, 0)
    (run,) = [r for r in runs(plan) if r.info.run_name == "t"]
    client = client_for(plan)
    assert sorted(f.path for f in client.list_artifacts(run.info.run_id)) == [
        "checkpoints", "info.json", "notes.txt", "state.pt"]
    assert [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/ckpt_0.pt"]
    assert run.data.metrics == {"val_loss": 1.0}
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("mlflow could not log artifact 'checkpoints'") for m in said)
    assert any(m.startswith("self.log(..., kind='watch') is not logged: mlflow take(s) metrics and params") for m in said)


# ------------------------------------------------------------------ TensorBoard

def events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_event_files_per_trial(tmp_path):
    plan = plan_with(tmp_path, tb_logger(), mlflow_logger(log_freq="batch"))
    for i in range(2):
        with open_loggers(plan, f"trial_{i}", {"optimizer": {"lr": 0.1 / (i + 1)}}, rank=0,
                          trial_index=i) as tracker:
            assert tracker.kinds == ["tensorboard", "mlflow"]
            train(tracker)
    for i in range(2):
        logdir = tmp_path / "storage" / "demo" / "tensorboard" / f"trial_{i}"
        acc = events(logdir)
        scalars = acc.Tags()["scalars"]
        # log_freq "epoch" for TensorBoard: no per-batch series even though MLflow has one.
        assert "train_loss" in scalars and "val_loss" in scalars
        assert "train_loss_batch" not in scalars
        series = acc.Scalars("val_loss")
        assert [e.step for e in series] == [0, 1, 2]
        assert [e.value for e in series] == pytest.approx([2.0, 1.0, 2.0 / 3])
        assert acc.PluginTagToContent("hparams"), "no HParams summary written"
        text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert "optimizer.lr" in text


def test_tensorboard_batch_freq_and_custom_dir(tmp_path):
    plan = plan_with(tmp_path, tb_logger(log_freq="batch", tracking_uri="tb",
                                         experiment_name="My Runs"))
    with open_loggers(plan, "trial_0", {"lr": 0.1}, rank=0) as tracker:
        train(tracker, epochs=2, batches=3)
    acc = events(tmp_path / "tb" / "My_Runs" / "trial_0")
    assert [e.step for e in acc.Scalars("train_loss_batch")] == list(range(6))


# ------------------------------------------------------------------ never in the way

def test_other_ranks_log_nothing(tmp_path):
    plan = plan_with(tmp_path, mlflow_logger(), tb_logger())
    tracker = open_loggers(plan, "t", {"a": 1}, rank=1)
    assert tracker.kinds == []
    train(tracker)
    tracker.close()
    assert not (tmp_path / "storage").exists()


def test_no_loggers_imports_nothing(tmp_path):
    plan = plan_with(tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    code = (
        "import json, sys\n"
        "from hpoc.runtime.tracking import open_loggers\n"
        f"t = open_loggers(json.load(open({str(plan_file)!r})), 't', {{'a': 1}}, rank=0)\n"
        "t.log_metric('x', 1.0, 0); t.close()\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'torch', 'tensorboard', 'tensorboardX', 'ray')]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_broken_backend_warns_once_and_training_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the tracking store should be")
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri=str(blocker / "mlruns")), tb_logger())
    caplog.set_level(logging.WARNING, logger="hpoc.tracking")
    for i in range(3):
        tracker = open_loggers(plan, f"trial_{i}", {"lr": 0.1}, rank=0)
        assert tracker.kinds == ["tensorboard"]  # MLflow failed, TensorBoard still logs
        train(tracker)
        tracker.close()
    warnings = [r for r in caplog.records if r.name == "hpoc.tracking"]
    assert len(warnings) == 1
    assert "mlflow tracking disabled" in warnings[0].getMessage()
    assert events(tmp_path / "storage" / "demo" / "tensorboard" / "trial_2").Scalars("val_loss")
    assert start_study_tracking(plan) is None


def test_backend_failing_mid_trial_is_dropped(tmp_path, caplog):
    plan = plan_with(tmp_path, tb_logger())
    caplog.set_level(logging.WARNING, logger="hpoc.tracking")
    tracker = open_loggers(plan, "t", {"lr": 0.1}, rank=0)
    (sink,) = tracker._sinks

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    sink.writer.add_scalar = full_disk
    tracker.log_metric("val_loss", 1.0, 0)  # must not raise
    tracker.log_metric("val_loss", 0.5, 1)
    assert tracker.kinds == []
    tracker.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "hpoc.tracking"]
    assert len(messages) == 1 and "No space left on device" in messages[0]


def test_metrics_without_a_step_count_up(tmp_path):
    plan = plan_with(tmp_path, tb_logger(log_freq="batch"))
    with open_loggers(plan, "t", {}, rank=0) as tracker:
        for value in (3.0, 2.0, 1.0):
            tracker.log_metric("val_loss", value)  # itwinai-style calls may omit the step
            tracker.log_batch_metric("loss_batch", value)
        tracker.log_metric("val_loss", 0.5, step=10)
    acc = events(tmp_path / "storage" / "demo" / "tensorboard" / "t")
    assert [(e.step, e.value) for e in acc.Scalars("val_loss")] == \
        [(0, 3.0), (1, 2.0), (2, 1.0), (10, 0.5)]
    assert [e.step for e in acc.Scalars("loss_batch")] == [0, 1, 2]


def test_an_epochs_perf_group_reaches_the_loggers(tmp_path):
    """hpoc's loop reports `perf` (seconds, images/s) as a group: Tune's own TensorBoard files
    had `perf/images_per_s`, hpoc's loggers nothing, as the group is not a number."""
    plan = plan_with(tmp_path, mlflow_logger(), tb_logger())
    with open_loggers(plan, "t", {}, rank=0) as tracker:
        tracker.log_metrics({"val_loss": 0.5, "perf": {"train_s": 2.0, "images_per_s": 640.0}}, step=0)
    (run,) = [r for r in runs(plan) if r.info.run_name == "t"]
    assert run.data.metrics == {"val_loss": 0.5, "perf/train_s": 2.0, "perf/images_per_s": 640.0}
    acc = events(tmp_path / "storage" / "demo" / "tensorboard" / "t")
    assert [e.value for e in acc.Scalars("perf/images_per_s")] == [640.0]  # a "perf" section


def test_ray_stopping_a_trial_is_not_a_failure(tmp_path):
    """Ray ends a stopped trial (stop criterion, early stop) with SystemExit(0) in report()."""
    plan = plan_with(tmp_path, mlflow_logger())
    with pytest.raises(SystemExit):
        with open_loggers(plan, "stopped", {}, rank=0) as tracker:
            tracker.log_metric("val_loss", 1.0, 0)
            raise SystemExit(0)
    with pytest.raises(KeyboardInterrupt):
        with open_loggers(plan, "cancelled", {}, rank=0):
            raise KeyboardInterrupt
    status = {r.info.run_name: r.info.status for r in runs(plan)}
    assert status["stopped"] == "FINISHED" and status["cancelled"] == "KILLED"
    assert tracking.run_status(SystemExit(3)) == "FAILED"


def test_a_logger_without_its_library_is_an_error_before_ray(tmp_path, monkeypatch, capsys):
    """At run time a logger that fails only warns; a missing library meant a study that ran
    for hours without the tracking it asked for. `hpoc check --preflight` and the driver
    (before Ray starts) say so."""
    import importlib.util

    from hpoc.runtime.login_preflight import run_checks
    from hpoc.runtime.study import EXIT_SPEC, RunOptions, run_study
    from runtime_plans import make_plan as runtime_plan, write_toy

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "mlflow" else real(name, *a))
    workdir = write_toy(tmp_path / "study")
    plan = runtime_plan(workdir, tmp_path / "results", loggers=[mlflow_logger(), tb_logger()])
    problem = tracking.missing_libraries(plan)
    assert "`logger mlflow`" in problem and "pip install mlflow-skinny" in problem
    assert "tensorboard" not in problem.split("help:")[0]
    [found] = [f for f in run_checks(plan) if f.what == "loggers"]
    assert not found.ok and "pip install mlflow-skinny" in found.message
    assert run_study(plan, RunOptions(local=True, num_cpus=1)) == EXIT_SPEC
    assert "pip install mlflow-skinny" in capsys.readouterr().err
    assert not (tmp_path / "results" / "toy").exists()  # stopped before anything ran


def test_a_nan_metric_is_no_riddle_on_the_terminal(monkeypatch, caplog):
    """Tune's TensorBoard logger printed "NaN or Inf found in input tensor." for a trial that
    reported NaN, naming no trial nor metric (`-v` keeps it)."""
    import logging

    import numpy as np
    from tensorboardX import x2num

    from hpoc.runtime import study

    for name in ("RAY_AIR_NEW_OUTPUT", "RAY_USAGE_STATS_ENABLED", "TUNE_DISABLE_SIGINT_HANDLER",
                 "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    for name in ("ray.tune", "ray.train", "ray.air", "tensorboardX.x2num"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    study._quiet_ray(verbose=False)
    x2num.check_nan(np.array([np.nan]))
    assert "NaN or Inf" not in caplog.text


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_an_error_before_ray(tmp_path, capsys):
    """MLflow's client retried a server that did not answer for about 4 minutes, in the
    driver and then in every trial (far longer on a node that drops the packets), before
    the logger gave up with a warning. The driver now asks once, before Ray starts."""
    from hpoc.runtime.login_preflight import run_checks
    from hpoc.runtime.study import EXIT_SPEC, RunOptions, run_study
    from runtime_plans import make_plan as runtime_plan, write_toy

    uri = f"http://user:secret@127.0.0.1:{_closed_port()}"
    workdir = write_toy(tmp_path / "study")
    plan = runtime_plan(workdir, tmp_path / "results", loggers=[mlflow_logger(tracking_uri=uri)])
    # the login node's preflight warns: the compute nodes may be on another network
    [said] = [f for f in run_checks(plan) if f.what == "loggers" and f.warning]
    assert said.ok and "does not answer" in said.message and "secret" not in said.message
    started = time.monotonic()
    assert run_study(plan, RunOptions(local=True, num_cpus=1)) == EXIT_SPEC
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "tracking server http://127.0.0.1:" in err and "does not answer" in err
    assert "secret" not in err and "Traceback" not in err
    assert not (tmp_path / "results" / "toy").exists()  # stopped before anything ran


def test_a_server_that_answers_is_reachable_and_a_silent_one_is_not(tmp_path):
    """MLflow's API under the URI's path is asked: a server that wants credentials (401)
    answers; a 404 there is no MLflow server (the study ran without tracking); a port that
    takes the connection and never answers is said within the timeout."""
    import http.server
    import socket
    import threading

    asked = []

    def server_answering(code: int) -> http.server.HTTPServer:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked.append(self.path)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    for code, wrong in ((200, None), (401, None), (404, "answers 404 to MLflow's API")):
        server = server_answering(code)
        try:
            plan = plan_with(tmp_path, mlflow_logger(
                tracking_uri=f"http://127.0.0.1:{server.server_address[1]}/prefix/"))
            said = tracking.unreachable_server(plan, timeout_s=5)
            if wrong is None:
                assert said is None, said
            else:
                assert wrong in said and "check the host, port and path" in said
        finally:
            server.shutdown()
            server.server_close()
    assert asked[0] == "/prefix/api/2.0/mlflow/experiments/search?max_results=1"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        plan = plan_with(tmp_path, mlflow_logger(
            tracking_uri=f"http://127.0.0.1:{silent.getsockname()[1]}"))
        started = time.monotonic()
        assert "does not answer in 0.5 s" in tracking.unreachable_server(plan, timeout_s=0.5)
        assert time.monotonic() - started < 5
    for local in (None, "file:./mlruns", "sqlite:///mlflow.db"):
        assert tracking.unreachable_server(plan_with(tmp_path, mlflow_logger(tracking_uri=local))) is None


def test_an_https_server_whose_certificate_this_python_does_not_trust_answers(tmp_path):
    """A site's MLflow server with its own CA (REQUESTS_CA_BUNDLE, MLFLOW_TRACKING_SERVER_CERT_PATH,
    MLFLOW_TRACKING_INSECURE_TLS: MLflow's client trusts it) answers the probe's TLS handshake:
    the probe, which knows none of those, said it "does not answer" and stopped the study."""
    import http.server
    import shutil
    import ssl
    import threading

    if not shutil.which("openssl"):
        pytest.skip("openssl makes the test's certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"https://127.0.0.1:{server.server_address[1]}"))
        assert tracking.unreachable_server(plan, timeout_s=5) is None
    finally:
        server.shutdown()
        server.server_close()


def test_an_itwinai_loops_per_batch_items_follow_log_freq(tmp_path):
    """itwinai's loggers drop what a loop logs with `batch_idx=` unless `log_freq` is `batch`;
    hpoc sent each to MLflow under `log_freq = epoch`, one store write per batch."""
    import torch

    from hpoc.compat.itwinai import RayTorchTrainer

    class Loop(RayTorchTrainer):
        def train(self, config, data):
            self.strategy.init()
            self.initialize_logger(hyperparams=config)
            for epoch in range(2):
                for i in range(3):
                    self.log(0.5, "train_loss", kind="metric", step=epoch * 3 + i, batch_idx=i)
                self.log(0.4, "train_loss_epoch", kind="metric", step=epoch)
                self.report({"val_loss": 0.3}, epoch=epoch, checkpoint=False)

    for freq in ("epoch", "batch"):
        plan = plan_with(tmp_path / freq, mlflow_logger(log_freq=freq))
        plan["objective"] = {"metrics": []}
        Loop().run_local({"epochs": 2}, directory=tmp_path / freq / "trial", plan=plan)
        (run,) = [r for r in runs(plan) if "mlflow.parentRunId" in r.data.tags]
        history = {name: sorted(m.step for m in client_for(plan).get_metric_history(run.info.run_id, name))
                   for name in run.data.metrics}
        batches = {"train_loss": list(range(6))} if freq == "batch" else {}
        assert history == {"train_loss_epoch": [0, 1], "val_loss": [0, 1], **batches}, freq


@pytest.mark.parametrize("silent", ["refused", "never answers"])
def test_a_trial_gives_up_on_a_server_gone_silent_at_once(tmp_path, monkeypatch, caplog, silent):
    """A server that went away after the driver asked: each trial's MLflow client retried it
    for about 4 minutes (MLflow's 7 retries, 120 s each where packets are dropped) before its
    logger gave up. The trial's first request is waited for 10 s at most (1 here), and the
    trial trains on without the logger."""
    import socket

    import mlflow.tracking  # noqa: F401 — its import (seconds, once per process) is not the wait

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 1.0, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)  # takes the connection, never answers
        port = listening.getsockname()[1] if silent == "never answers" else _closed_port()
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{port}"))
        started = time.monotonic()
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        assert tracker.kinds == [] and time.monotonic() - started < 5
    said = "does not answer (" if silent == "refused" else "does not answer in 1 s"
    assert said in caplog.text and "training continues" in caplog.text, caplog.text



def _asking_threads() -> int:
    import threading

    return sum(t.name == "hpoc-mlflow-first-request" for t in threading.enumerate())


def test_a_server_gone_costs_one_wait_per_process_not_one_per_trial(tmp_path, monkeypatch, caplog):
    """Each trial started in a reused process (Ray reuses a one-worker trial's) waited
    FIRST_ANSWER_S for a server gone since the driver asked, and left a thread (and its
    socket) in MLflow's retries: 500 trials, 500 threads. The first trial finds it gone;
    the later ones start without MLflow at once, and nothing more is said. The driver's
    closing of the study run is waited for as long, not for MLflow's minutes of retries."""
    import mlflow.tracking  # noqa: F401 — its import (seconds, once per process) is not the wait

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 1.0, raising=False)
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{_closed_port()}"))
    before = _asking_threads()
    started = time.monotonic()
    for trial in range(5):
        tracker = open_loggers(plan, f"t{trial:05d}_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        assert tracker.kinds == []
        tracker.close()
    assert time.monotonic() - started < 4  # one wait (1 s and a 1 s probe), not five
    assert _asking_threads() - before <= 1
    end_study_tracking(plan, "0123", "FINISHED")
    assert time.monotonic() - started < 6
    assert len([r for r in caplog.records if "tracking disabled" in r.getMessage()]) == 1, caplog.text


def test_a_server_that_stops_mid_trial_is_not_asked_by_the_next_trials(tmp_path, monkeypatch, caplog):
    """A server that stops while a trial logs: that trial's logger is switched off (MLflow's
    client gave up), and the later trials of the process waited FIRST_ANSWER_S each."""
    import mlflow.tracking  # noqa: F401

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 2.0, raising=False)
    server = _rest_server([])
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
    tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
    assert tracker.kinds == ["mlflow"]
    server.shutdown()
    server.server_close()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # not MLflow's minutes of retries
    deadline = time.monotonic() + 10  # sent off the trial's thread: the failure is seen at a later call
    for step in range(1000):
        tracker.log_metrics({"val_loss": 0.5}, step=step)
        if not tracker.kinds or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert tracker.kinds == []
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")  # a later trial's client retries again
    before, started = _asking_threads(), time.monotonic()
    assert open_loggers(plan, "t00001_abc", {"lr": 0.1}, rank=0, parent_run_id="0123").kinds == []
    assert time.monotonic() - started < 1 and _asking_threads() == before
    assert len([r for r in caplog.records if "tracking disabled" in r.getMessage()]) == 1, caplog.text


def _sending_threads() -> list:
    import threading

    from hpoc.runtime.tracking_send import THREAD_NAME

    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _gate() -> dict:
    import threading

    return {"batch_s": 0.0, "stalled": threading.Event(), "release": threading.Event()}


@contextlib.contextmanager
def _hanging_server(tmp_path: Path, monkeypatch, timeout_s: str) -> Iterator[tuple[dict, dict]]:
    """(plan, gate) of a study logging to `_rest_server`, which hangs once gate["stalled"] is
    set: MLflow's client waits `timeout_s` a try and retries once (not its minutes), a send
    in flight 1 s has the server probed. The server is released and shut down after."""
    import mlflow.tracking  # noqa: F401

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 1.0, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout_s)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    gate = _gate()
    server = _rest_server([], gate=gate)
    try:
        yield plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}")), gate
    finally:
        gate["release"].set()
        server.shutdown()
        server.server_close()


def test_a_slow_server_does_not_hold_training_and_gets_every_metric(tmp_path):
    """Each metric was sent on the training thread: a server taking 0.25 s per write held the
    trial (and its GPU) 0.25 s an epoch. Logging returns at once; closing sends the rest, and
    the sending thread ends with the trial (a reused process runs many)."""
    import mlflow.tracking  # noqa: F401

    gate, asked = _gate(), []
    gate["batch_s"] = 0.25
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        before = len(_sending_threads())
        for trial in range(2):
            tracker = open_loggers(plan, f"t{trial:05d}_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
            started = time.monotonic()
            for epoch in range(4):
                tracker.log_metrics({"val_loss": 1.0 / (epoch + 1)}, step=epoch)
            assert time.monotonic() - started < 0.4
            tracker.close()
            assert tracker.kinds == [] and not tracking._warned
            assert len(_sending_threads()) == before  # ended with its trial
        assert [(m["key"], m["step"]) for m in gate["metrics"]] == 2 * [("val_loss", e) for e in range(4)]
        assert sum("log-batch" in p for p in asked) <= 2 * (4 + 1)  # what waits goes in one send
        assert sum("runs/update" in p for p in asked) >= 2  # each run ended
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_slower_than_the_trial_logs_gets_its_metrics_in_few_sends(tmp_path):
    """A trial that logs each step (itwinai's `self.log(loss, ...)` per batch) to a server
    slower than a step (a remote one, 20 ms a request): each log was a request of its own,
    queued; after 1000 the trial waited for each, as if logged on its own thread, and its end
    for all of them. What waits is sent at once: every metric, in order, in few requests."""
    import mlflow.tracking  # noqa: F401

    gate, asked = _gate(), []
    gate["batch_s"] = 0.02
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        started = time.monotonic()
        for step in range(400):
            tracker.log_metrics({"loss": float(step)}, step=step)
        tracker.close()
        took = time.monotonic() - started
        assert tracker.kinds == [] and not tracking._warned
        assert [(m["key"], m["step"], m["value"]) for m in gate["metrics"]] == \
            [("loss", step, float(step)) for step in range(400)]
        assert sum("log-batch" in p for p in asked) <= 20, sum("log-batch" in p for p in asked)
        assert took < 2.0, took  # was 400 requests of 20 ms
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_sent_off_the_training_thread_keep_its_active_model(tmp_path):
    """MLflow 3 links each metric to the active model (`mlflow.set_active_model`) of the
    thread that logs it, a thread's own: sent from hpoc's thread, a trainer's active model
    no longer had the trial's metrics."""
    import mlflow.tracking.fluent as fluent

    gate, asked = _gate(), []
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}",
                                                 log_freq="batch"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        fluent._set_active_model_id("m-0123", set_by_user=True)  # as set_active_model does
        tracker.log_metrics({"val_loss": 0.5}, step=0)
        tracker.log_batch_metric("train_loss_batch", 0.4, step=0)
        tracker.close()
        assert [(m["key"], m.get("model_id")) for m in gate["metrics"]] == \
            [("val_loss", "m-0123"), ("train_loss_batch", "m-0123")]
    finally:
        fluent.clear_active_model()
        server.shutdown()
        server.server_close()


def test_metrics_a_server_has_not_taken_yet_are_bounded(tmp_path, monkeypatch):
    """A server that takes a batch slower than the trial logs, for long: what waits for it
    is bounded (OUTBOX_MAX metrics); beyond, logging waits for the server's answer, and no
    metric is dropped."""
    import threading

    import mlflow.tracking  # noqa: F401

    monkeypatch.setattr(tracking._MlflowSink, "OUTBOX_MAX", 10)
    gate, asked = _gate(), []
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        time.sleep(0.2)  # its params sent
        gate["stalled"].set()
        threading.Timer(1.0, gate["release"].set).start()
        started = time.monotonic()
        for step in range(50):
            tracker.log_metrics({"loss": float(step)}, step=step)
        assert time.monotonic() - started > 0.8  # waited for the server
        tracker.close()
        assert tracker.kinds == [] and not tracking._warned
        assert [m["step"] for m in gate["metrics"]] == list(range(50))
    finally:
        gate["release"].set()
        server.shutdown()
        server.server_close()


def test_a_server_that_hangs_mid_trial_does_not_hold_training(tmp_path, monkeypatch, caplog):
    """A server that stopped answering after the trial's run was made (its host hung, a
    stopped process that still takes connections): the next log waited for MLflow's client,
    120 s a try and 7 retries with backoff (20 minutes; shortened here to 3 s and one
    retry), with the GPU idle. Logging returns at once; the server is probed once a send has
    waited FIRST_ANSWER_S, and one that does not answer switches the logger off with one
    line saying where the trial's metrics are. Later logs cost nothing, and the thread left
    in MLflow's retry ends once the server answers it."""
    with _hanging_server(tmp_path, monkeypatch, "3") as (plan, gate):
        before = len(_sending_threads())
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        tracker.log_metrics({"val_loss": 1.0}, step=0)
        gate["stalled"].set()
        took = []
        for epoch in range(1, 5):
            started = time.monotonic()
            tracker.log_metrics({"val_loss": 1.0 / (epoch + 1)}, step=epoch)
            took.append(time.monotonic() - started)
            time.sleep(0.6)
        assert max(took) < 2.5, took  # the probe's second at most, once (on a loaded machine)
        assert sorted(took)[-2] < 0.2, took
        assert tracker.kinds == []
        started = time.monotonic()
        tracker.close()
        assert time.monotonic() - started < 0.2
        said = [r.getMessage() for r in caplog.records if "tracking disabled" in r.getMessage()]
        assert len(said) == 1 and "does not answer in 1 s" in said[0] and "result.json" in said[0], said
        assert open_loggers(plan, "t00001_abc", {"lr": 0.1}, rank=0, parent_run_id="0123").kinds == []
    deadline = time.monotonic() + 10
    while len(_sending_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sending_threads()) == before


def _stop_rank(monkeypatch) -> tuple[float, list]:
    """A warm group's rank stopped by SIGTERM (rank_term's watch, without a raylet: a
    `kill`'s): the seconds its stop took, and the exit codes it ended with."""
    import signal

    from hpoc.runtime import output, rank_term

    exits: list = []
    monkeypatch.setattr(output, "_real_exit", exits.append)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, bytes([signal.SIGTERM]))
    started = time.monotonic()
    rank_term._watch(read_fd, None)
    os.close(read_fd)
    os.close(write_fd)
    return time.monotonic() - started, exits


def test_metrics_waiting_for_the_server_are_sent_when_a_rank_is_stopped(tmp_path, monkeypatch):
    """A node stopped at the time limit (SLURM's SIGTERM) ended the trial's process without
    closing its logger: the metrics still waiting for the server, the last epoch's, were
    lost. The stop sends them first (at_stop), within its 2 s."""
    import mlflow.tracking  # noqa: F401

    gate, asked = _gate(), []
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        gate["next_batch_s"] = 0.5  # the first epoch's send is slow: the next ones wait
        for epoch in range(3):
            tracker.log_metrics({"val_loss": 1.0 / (epoch + 1)}, step=epoch)
        assert [m["step"] for m in gate.get("metrics", [])] != [0, 1, 2]  # still waiting
        took, exits = _stop_rank(monkeypatch)
        assert exits and exits[0] == 143 and took < 2.0, (took, exits)
        assert [m["step"] for m in gate["metrics"]] == [0, 1, 2]
    finally:
        server.shutdown()
        server.server_close()


def test_a_rank_stopped_while_its_server_hangs_still_ends_in_time(tmp_path, monkeypatch):
    """The stop's sends wait 2 s at most: a hung server does not hold the process's end
    (MLflow's client would wait 120 s a try), nor does a second stop path wait again."""
    from hpoc.runtime import at_stop

    with _hanging_server(tmp_path, monkeypatch, "30") as (plan, gate):
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        time.sleep(0.2)  # its params sent
        gate["stalled"].set()
        tracker.log_metrics({"val_loss": 1.0}, step=0)
        took, exits = _stop_rank(monkeypatch)
        assert exits == [143] and 1.5 < took < 3.0, (took, exits)
        started = time.monotonic()
        at_stop.run()  # atexit's, after the rank's own
        assert time.monotonic() - started < 0.1


def test_metrics_waiting_for_the_server_are_sent_when_ray_stops_a_trial(tmp_path):
    """Ray's own SIGTERM handler in a trial's worker raises SystemExit, and the process
    ends with its atexit handlers: the metrics still waiting for the server were lost."""
    import mlflow.tracking  # noqa: F401

    gate, asked = _gate(), []
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        script = (
            "import json, os, signal, sys, time\n"
            "from hpoc.runtime.tracking import open_loggers\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))  # as Ray's worker does\n"
            "tracker = open_loggers(json.loads(sys.argv[1]), 't00000_abc', {'lr': 0.1}, rank=0,\n"
            "                       parent_run_id='0123')\n"
            "time.sleep(0.2)\n"
            "for epoch in range(3):\n"
            "    tracker.log_metrics({'val_loss': 1.0 / (epoch + 1)}, step=epoch)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(30)\n")
        gate["batch_s"] = 0.3  # each send slow: the later epochs wait
        env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        done = subprocess.run([sys.executable, "-c", script, json.dumps(plan)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert [m["step"] for m in gate["metrics"]] == [0, 1, 2], done.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_a_send_that_ends_while_the_server_is_probed_does_not_mark_it_gone(tmp_path, monkeypatch, caplog):
    """A send slow enough to have the server probed, answered while the probe waits: the
    trial kept its logger, but the server was marked gone for the process, and its next
    trials (a reused process) started without MLflow for 10 minutes."""
    import mlflow.tracking  # noqa: F401

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 1.0, raising=False)
    gate, asked = _gate(), []
    server = _rest_server(asked, gate=gate)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        time.sleep(0.2)  # its params sent
        gate["next_batch_s"], gate["search_s"] = 1.5, 1.5  # a probe is not answered in its 1 s
        started = time.monotonic()
        for step in range(30):
            tracker.log_metrics({"loss": float(step)}, step=step)
            time.sleep(0.1)
        assert time.monotonic() - started > 2.0  # probed (1 s); the send ended while it waited
        assert any("experiments/search" in p for p in asked[2:])
        tracker.close()
        assert [m["step"] for m in gate["metrics"]] == list(range(30))
        assert open_loggers(plan, "t00001_abc", {"lr": 0.1}, rank=0, parent_run_id="0123").kinds == ["mlflow"]
        assert not [r for r in caplog.records if r.name == "hpoc.tracking"]
    finally:
        server.shutdown()
        server.server_close()


def test_closing_a_trial_whose_server_hung_is_bounded(tmp_path, monkeypatch, caplog):
    """The trial's end sent its last metrics and ended its run on the server: a server hung
    since waited for MLflow's client as long (shortened here as above) before the trial
    could end and free its GPU."""
    with _hanging_server(tmp_path, monkeypatch, "5") as (plan, gate):
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        tracker.log_metrics({"val_loss": 1.0}, step=0)
        time.sleep(0.2)  # sent
        gate["stalled"].set()
        started = time.monotonic()
        tracker.close()
        assert time.monotonic() - started < 4  # FIRST_ANSWER_S and a 1 s probe
        assert len([r for r in caplog.records if "tracking disabled" in r.getMessage()]) == 1


def test_an_item_logged_to_a_server_that_hung_switches_the_logger_off(tmp_path, monkeypatch, caplog):
    """`self.log(item, kind="text")` to a server gone mid-trial failed as "one bad item" (after
    MLflow's minutes of retries) and kept the logger: each later log waited as long again.
    It is waited for FIRST_ANSWER_S and a probe, then the logger is off, said once."""
    with _hanging_server(tmp_path, monkeypatch, "5") as (plan, gate):
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        time.sleep(0.2)  # its params sent
        gate["stalled"].set()
        started = time.monotonic()
        tracker.log_item("text", "notes", "notes.txt")
        assert time.monotonic() - started < 4 and tracker.kinds == []  # FIRST_ANSWER_S and a probe
        started = time.monotonic()
        tracker.log_metrics({"val_loss": 1.0}, step=0)
        tracker.close()
        assert time.monotonic() - started < 0.2
        said = [r.getMessage() for r in caplog.records if r.name == "hpoc.tracking"]
        assert len(said) == 1 and "tracking disabled" in said[0] and "result.json" in said[0], said


def test_a_server_found_gone_is_asked_again_a_while_later(tmp_path, monkeypatch):
    """A server found gone was asked no more by the process for the rest of the study: Ray
    reuses a one-worker trial's process, and after a server's restart of a few minutes every
    later trial of a days-long study ran without MLflow. It is asked again GONE_S later."""
    import mlflow.tracking  # noqa: F401

    server = _rest_server([])
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    plan = plan_with(tmp_path, mlflow_logger(tracking_uri=uri))
    tracking._found_gone(uri, "does not answer in 10 s")  # a trial of this process found it so
    assert open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123").kinds == []
    monkeypatch.setattr(tracking, "GONE_S", 0.2, raising=False)
    tracking._found_gone(uri, "does not answer in 10 s")
    time.sleep(0.3)
    try:
        assert open_loggers(plan, "t00001_abc", {"lr": 0.1}, rank=0, parent_run_id="0123").kinds == ["mlflow"]
    finally:
        server.shutdown()
        server.server_close()


def _rest_server(asked: list, slow_s: float = 0.0, gate: dict | None = None) -> "http.server.HTTPServer":
    """A stand-in for an MLflow server: what a trial's tracker asks as it starts, answered
    (the study's experiment after `slow_s`; each request in a thread of its own). `gate`:
    {"batch_s": each log-batch's delay ("next_batch_s": the next one's), "search_s": each
    experiments/search's (a probe's), "stalled": an Event set while every request is held
    until "release" is set (a hung server: it takes connections and never answers)}; the
    metrics its log-batch requests carried are put in gate["metrics"], in order."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if gate and gate["stalled"].is_set():
                gate["release"].wait()
            asked.append(self.path)
            if gate and "log-batch" in self.path:
                gate.setdefault("metrics", []).extend(json.loads(sent).get("metrics") or [])
            if "experiments/get-by-name" in self.path:
                time.sleep(slow_s)
            if gate and "log-batch" in self.path:
                time.sleep(gate.pop("next_batch_s", gate.get("batch_s", 0.0)))
            if gate and "experiments/search" in self.path:
                time.sleep(gate.get("search_s", 0.0))
            body = ({"experiment": {"experiment_id": "1", "name": "demo", "lifecycle_stage": "active"}}
                    if "experiments/get-by-name" in self.path else
                    {"run": {"info": {"run_id": "r1", "experiment_id": "1", "status": "RUNNING",
                                      "lifecycle_stage": "active"}, "data": {}}}
                    if "runs/create" in self.path else {})
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.handle_error = lambda *a: None  # a held answer to a client that gave up on it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _trial_start_against(tmp_path: Path, asked: list, slow_s: float = 0.0) -> list:
    """A trial's tracker opened and closed against `_rest_server`: the kinds it kept."""
    server = _rest_server(asked, slow_s=slow_s)
    try:
        plan = plan_with(tmp_path, mlflow_logger(tracking_uri=f"http://127.0.0.1:{server.server_address[1]}"))
        tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0, parent_run_id="0123")
        kinds = tracker.kinds
        tracker.close()
        return kinds
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_answers_but_is_slow_to_give_the_experiment_keeps_the_logger(tmp_path, monkeypatch):
    """A busy server (many trials starting at once, a locked SQLite store) that answers but
    takes longer than FIRST_ANSWER_S for the study's experiment: the trial's logger was
    switched off as if the server were gone, and the trial logged nothing."""
    import mlflow.tracking  # noqa: F401 — its import (seconds, once per process) is not the wait

    monkeypatch.setattr(tracking, "FIRST_ANSWER_S", 0.5, raising=False)
    asked: list = []
    assert _trial_start_against(tmp_path, asked, slow_s=2.0) == ["mlflow"]


def test_a_trial_does_not_probe_the_server_the_driver_asked_before_it(tmp_path):
    """Every trial start asked the server's experiments (a request of its own, on a
    connection of its own) before its client asked the same server for the study's
    experiment: the driver had already asked once before Ray started."""
    asked: list = []
    assert _trial_start_against(tmp_path, asked) == ["mlflow"]
    assert asked and not [p for p in asked if "experiments/search" in p], asked
    assert "get-by-name" in asked[0], asked  # the client's own first request


# ------------------------------------------------------------------ per-batch values

class _Linear:
    """A default-loop trainer on 40 samples, batch 4: 10 steps an epoch; keeps its losses."""

    @staticmethod
    def make(steps: list):
        import torch

        import hpoc

        class Linear(hpoc.Trainer):
            def create_model(self, config):
                torch.manual_seed(0)
                return torch.nn.Linear(3, 2)

            def train_step(self, batch):
                loss = super().train_step(batch)
                steps.append(float(loss.detach()))  # the test's own read, after the step's
                return loss

        return Linear()

    @staticmethod
    def data():
        import torch

        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g)
        return (x, y), (x[:8], y[:8])


def test_batch_losses_reach_the_logger_without_a_host_read_per_step(tmp_path, monkeypatch):
    """`log_freq = batch` read each step's loss on the host (`loss.item()`: a device sync per
    step on a GPU). The losses are held on the device and read together, at the epoch's end
    here: same values, same steps."""
    losses: list = []
    arrivals: list = []  # how many steps had run when each value reached the logger
    real = tracking._MlflowSink.log_batch_metric
    monkeypatch.setattr(tracking._MlflowSink, "log_batch_metric",
                        lambda self, *a: (arrivals.append(len(losses)), real(self, *a)))
    plan = plan_with(tmp_path, mlflow_logger(log_freq="batch"))
    plan["objective"] = {"metrics": []}
    _Linear.make(losses).run_local({"epochs": 2, "batch_size": 4}, _Linear.data(),
                                   directory=tmp_path / "trial", plan=plan)
    (run,) = [r for r in runs(plan) if "mlflow.parentRunId" in r.data.tags]
    history = client_for(plan).get_metric_history(run.info.run_id, "train_loss_batch")
    assert sorted((m.step, m.value) for m in history) == list(enumerate(losses))
    assert len(losses) == 20 and sorted(set(arrivals)) == [10, 20]  # two reads, not 20


def test_held_batch_values_are_read_in_chunks_in_order(tmp_path):
    import torch

    plan = plan_with(tmp_path, tb_logger(log_freq="batch"))
    tracker = open_loggers(plan, "t", {}, rank=0)
    (sink,) = tracker._sinks
    got: list = []
    sink.log_batch_metric = lambda name, value, step: got.append((name, step, value))
    n = tracking.Tracker.BATCH_READ
    x = torch.ones((), dtype=torch.bfloat16)
    for i in range(n - 1):
        tracker.log_batch_metric("loss", x * i if i % 2 else torch.tensor([i / 3]), i)
    tracker.log_batch_metric("other", 0.25)  # a number waits its turn behind the held tensors
    assert got == []
    tracker.log_batch_metric("loss", torch.tensor(7.5), n - 1)
    assert got[n - 1:] == [("other", 0, 0.25), ("loss", n - 1, 7.5)]
    assert [v for _, _, v in got[:n - 1]] == [(x * i).item() if i % 2 else torch.tensor([i / 3]).item()
                                              for i in range(n - 1)]
    tracker.log_batch_metric("loss", torch.tensor(1.0), n)
    tracker.log_metrics({"val_loss": 0.5}, step=0)  # the epoch's end reads what is held
    assert got[-1] == ("loss", n, 1.0)
    tracker.close()


# ------------------------------------------------------------------ a resumed trial

def _stopping(losses: list, stop_at: list):
    """`_Linear` that logs a step-less metric each epoch and, while `stop_at` holds a global
    step, fails there (a node lost part way through an epoch)."""
    base = type(_Linear.make(losses))

    class Stopping(base):
        def train_epoch(self, epoch):
            self.log(10.0 + epoch, "lr")  # no step=: counts up
            return super().train_epoch(epoch)

        def train_step(self, batch):
            if stop_at and len(losses) == stop_at[0]:
                stop_at.pop()
                raise RuntimeError("node lost")
            return super().train_step(batch)

    return Stopping()


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_resumed_trial_logs_each_step_once_and_goes_on_where_its_checkpoint_was(tmp_path, kind):
    """A trial checkpointed every 2 epochs, lost in its 4th: the resume redid epochs 2-3 and
    logged their epochs and batches up to the loss a second time (MLflow drew two points a step), and
    `self.log` without step= started again at 0. Each step is logged once, and step-less
    metrics go on from the checkpoint's count: as the run that was never interrupted."""
    logger = (mlflow_logger if kind == "mlflow" else tb_logger)(log_freq="batch")
    plan = plan_with(tmp_path, logger)
    plan["objective"] = {"metrics": []}
    plan["checkpoint"]["every"] = 2
    plan["training"]["seed"] = 0
    losses: list = []
    stop_at = [35]  # epoch 3, batch 5
    config = {"epochs": 6, "batch_size": 4}
    with pytest.raises(RuntimeError, match="node lost"):
        _stopping(losses, stop_at).run_local(config, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    _stopping(losses, stop_at).run_local(config, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    assert len(losses) == 35 + 40  # the resume redid epochs 2 and 3
    if kind == "mlflow":
        (run,) = [r for r in runs(plan) if "mlflow.parentRunId" in r.data.tags]

        def series(name):
            return [(m.step, m.value) for m in client_for(plan).get_metric_history(run.info.run_id, name)]
    else:
        acc = events(tmp_path / "storage" / "demo" / "tensorboard" / "local")

        def series(name):
            return [(e.step, e.value) for e in acc.Scalars(name)]
    batches = sorted(series("train_loss_batch"))
    assert [step for step, _ in batches] == list(range(60))
    assert [v for _, v in batches] == pytest.approx(losses[:35] + losses[-25:])
    assert sorted(step for step, _ in series("train_loss")) == list(range(6))
    assert sorted(series("lr")) == [(e, 10.0 + e) for e in range(6)]


def test_a_resumed_trial_finds_its_last_steps_through_mlflows_public_api(tmp_path, monkeypatch):
    """The last step per metric came from `Run.data._metric_objs`, private to MLflow: a client
    without it (or one that fills it otherwise) made a resumed trial log its steps twice."""
    from mlflow.entities import RunData

    real = RunData.__init__

    def without_private(self, *a, **kw):
        real(self, *a, **kw)
        self._metric_objs = []

    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    with open_loggers(plan, "t", {}, rank=0, parent_run_id=parent) as tracker:
        for step in range(3):
            tracker.log_metric("val_loss", 1.0 + step, step)
    monkeypatch.setattr(RunData, "__init__", without_private)
    with open_loggers(plan, "t", {}, rank=0, parent_run_id=parent) as tracker:
        for step in range(1, 5):  # resumed after step 0's checkpoint: redoes 1 and 2
            tracker.log_metric("val_loss", 1.0 + step, step)
    monkeypatch.setattr(RunData, "__init__", real)
    (run,) = [r for r in runs(plan) if r.info.run_name == "t"]
    history = client_for(plan).get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ a trial that starts over

def _series(plan: dict, kind: str, trial: str, name: str) -> list:
    if kind == "mlflow":
        (run,) = [r for r in runs(plan) if r.info.run_name == trial]
        return sorted((m.step, m.value) for m in client_for(plan).get_metric_history(run.info.run_id, name))
    acc = events(tmp_dir(plan) / "tensorboard" / trial)
    return sorted((e.step, e.value) for e in acc.Scalars(name))


def tmp_dir(plan: dict) -> Path:
    return tracking.study_dir(plan)


def _attempt(plan, parent, keep, steps, value, fail=False):
    """One attempt of trial `t`: told where it starts (`keep`, None: its own checkpoint), then
    `steps` logged at `value + step`."""
    try:
        with open_loggers(plan, "t", {"lr": value}, rank=0, trial_index=3, parent_run_id=parent) as tracker:
            tracker.begin(keep)
            for step in steps:
                tracker.log_metric("val_loss", value + step, step)
            if fail:
                raise RuntimeError("node lost")
    except RuntimeError:
        pass


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_trial_restarted_from_scratch_shows_the_attempt_that_counts(tmp_path, kind):
    """A trial lost before its first checkpoint (or retried with --retry-errored) starts over
    in its old run or folder: "first write wins" dropped the new attempt's points up to the
    old one's last step, and the curves showed the failed attempt. The restarted attempt's
    points replace them (MLflow: a new run, the old one kept and tagged superseded); a later
    resume from a checkpoint still logs each step once."""
    plan = plan_with(tmp_path, (mlflow_logger if kind == "mlflow" else tb_logger)())
    parent = start_study_tracking(plan)
    _attempt(plan, parent, None, range(4), 10.0, fail=True)
    _attempt(plan, parent, {}, range(2), 20.0, fail=True)  # from scratch
    assert _series(plan, kind, "t", "val_loss") == [(0, 20.0), (1, 21.0)]
    _attempt(plan, parent, None, range(1, 3), 30.0)  # resumed at step 1: redoes it
    assert _series(plan, kind, "t", "val_loss") == [(0, 20.0), (1, 21.0), (2, 32.0)]
    if kind == "mlflow":
        by_name = {r.info.run_name: r for r in runs(plan)}
        current, old = by_name["t"], by_name["t (attempt 1, superseded)"]
        assert old.data.tags["hpoc.superseded_by"] == current.info.run_id
        assert old.info.status == "FAILED" and current.info.status == "FINISHED"
        assert current.data.tags["hpoc.attempt"] == "2" and current.data.tags["mlflow.parentRunId"] == parent
        assert current.data.tags["hpoc.trial_index"] == "3" and current.data.params == {"lr": "20.0"}
        assert len(by_name) == 3  # the parent, the two attempts



def test_a_trial_with_runs_of_its_own_beside_its_current_one_keeps_one_current(tmp_path):
    """Two runs of a trial not marked superseded (an older hpoc made a run per attempt of a
    trial named with an apostrophe; an attempt lost between making its new run and marking
    the old one): the trial went on in the newest, and the older stayed a current-looking
    run of the same trial, counted as one by whoever counts runs without the tag."""
    plan = plan_with(tmp_path, mlflow_logger())
    parent = start_study_tracking(plan)
    client = client_for(plan)
    exp = client.get_run(parent).info.experiment_id
    tags = {"mlflow.parentRunId": parent, "hpoc.trial": "t"}
    older = client.create_run(exp, tags=tags, run_name="t").info.run_id
    client.set_terminated(older, "FAILED")
    time.sleep(0.01)  # MLflow orders by start time, in ms
    newer = client.create_run(exp, tags=tags, run_name="t").info.run_id
    _attempt(plan, parent, None, range(2), 10.0)
    trial_runs = {r.info.run_id: r for r in runs(plan) if r.data.tags.get("hpoc.trial") == "t"}
    assert [k for k, r in trial_runs.items() if "hpoc.superseded_by" not in r.data.tags] == [newer]
    assert trial_runs[older].data.tags["hpoc.superseded_by"] == newer
    assert trial_runs[older].info.run_name == "t (superseded)" and trial_runs[older].info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(newer, "val_loss")] == [0, 1]


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_an_exploit_of_an_older_checkpoint_replaces_the_steps_after_it(tmp_path, kind):
    """Asynchronous PBT restarts a trial from another's checkpoint older than its own last
    step: its points before that checkpoint stay, those after are the new attempt's."""
    plan = plan_with(tmp_path, (mlflow_logger if kind == "mlflow" else tb_logger)())
    parent = start_study_tracking(plan)
    _attempt(plan, parent, None, range(5), 10.0)
    _attempt(plan, parent, {"val_loss": 1}, range(2, 4), 20.0)
    assert _series(plan, kind, "t", "val_loss") == [(0, 10.0), (1, 11.0), (2, 22.0), (3, 23.0)]


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_first_attempt_and_an_exploit_with_nothing_to_replace_keep_their_run(tmp_path, kind):
    plan = plan_with(tmp_path, (mlflow_logger if kind == "mlflow" else tb_logger)())
    parent = start_study_tracking(plan)
    _attempt(plan, parent, {}, range(2), 10.0)
    _attempt(plan, parent, {"val_loss": 1}, range(2, 4), 20.0)
    assert _series(plan, kind, "t", "val_loss") == [(0, 10.0), (1, 11.0), (2, 22.0), (3, 23.0)]
    if kind == "mlflow":
        assert len(runs(plan)) == 2
    else:
        assert len(list((tmp_dir(plan) / "tensorboard" / "t").glob("events.*"))) == 2


def _scoring(attempt: int, fail_in: int | None = None):
    """`_Linear` that logs `score` = attempt * 100 + epoch at each epoch's start and, in epoch
    `fail_in`, fails after it (a node lost part way through an epoch)."""
    base = type(_Linear.make([]))

    class Scoring(base):
        def train_epoch(self, epoch):
            self.log(attempt * 100.0 + epoch, "score", step=epoch)
            if epoch == fail_in:
                raise RuntimeError("node lost")
            return super().train_epoch(epoch)

    return Scoring()


def _score_plan(tmp_path: Path, kind: str) -> dict:
    plan = plan_with(tmp_path, (mlflow_logger if kind == "mlflow" else tb_logger)())
    plan["objective"] = {"metrics": []}
    plan["checkpoint"]["every"] = 2
    return plan


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_trainer_lost_before_its_first_checkpoint_logs_its_new_attempt(tmp_path, kind):
    """Lost in its 2nd epoch, before the checkpoint of epochs 0-1: the retry trains from
    scratch, and its epochs 0-1 are the ones the curves show."""
    plan, config = _score_plan(tmp_path, kind), {"epochs": 4, "batch_size": 4}
    with pytest.raises(RuntimeError, match="node lost"):
        _scoring(1, fail_in=1).run_local(config, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    _scoring(2).run_local(config, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(e, 200.0 + e) for e in range(4)]


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_trainer_exploiting_an_older_checkpoint_logs_from_there(tmp_path, kind):
    """PBT's exploit (a checkpoint whose config is not the trial's) of a checkpoint older than
    the trial's last step: the trial's own points up to that checkpoint stay, the new
    attempt's follow."""
    plan = _score_plan(tmp_path, kind)
    config = {"epochs": 4, "batch_size": 4}
    with pytest.raises(RuntimeError, match="node lost"):  # checkpoint after epoch 1, lost in 3
        _scoring(1, fail_in=3).run_local(config, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    _scoring(2).run_local({**config, "lr": 0.5}, _Linear.data(), directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(0, 100.0), (1, 101.0), (2, 202.0), (3, 203.0)]



def _logging_before_restore(attempt: int, loop: str, fail_in: int | None = None):
    """`_scoring` that logs `setup` before its `restore()`: from its model hook (which hpoc's
    loop calls in `setup()`), or in a `train()` of its own."""
    base = type(_scoring(attempt, fail_in))

    class SetupLogs(base):
        def create_model(self, config):
            self.log(attempt * 10.0, "setup", step=0)
            return super().create_model(config)

    class OwnLoop(base):
        def train(self):
            self.setup()
            self.log(attempt * 10.0, "setup", step=0)
            for epoch in range(self.restore(), self.epochs):
                self.report(self.train_epoch(epoch), epoch=epoch)

    class Wrapped(base):  # hpoc's loop, through super(): its restore() comes
        def train(self):
            self.log(attempt * 10.0, "setup", step=0)
            super().train()

    return {"hook": SetupLogs, "own": OwnLoop, "super": Wrapped}[loop]()


@pytest.mark.parametrize("loop", ["hook", "own", "super"])
@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_trainer_that_logs_before_its_restore_replays_an_exploit(tmp_path, kind, loop):
    """A default-loop trainer that logs before `restore()` (a model hook, a loop of its own)
    while a checkpoint is given: that metric took the attempt for a resume before the
    restore found another trial's checkpoint (PBT's exploit), and the curves kept the
    trial's own points after it (first write wins) for the new attempt's."""
    plan = _score_plan(tmp_path, kind)
    config = {"epochs": 4, "batch_size": 4}
    with pytest.raises(RuntimeError, match="node lost"):  # checkpoint after epoch 1, lost in 3
        _logging_before_restore(1, loop, fail_in=3).run_local(config, _Linear.data(),
                                                              directory=tmp_path / "trial", plan=plan)
    _logging_before_restore(2, loop).run_local({**config, "lr": 0.5}, _Linear.data(),
                                               directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(0, 100.0), (1, 101.0), (2, 202.0), (3, 203.0)]
    assert _series(plan, kind, "local", "setup") == [(0, 10.0)]  # kept: the donor's checkpoint has it


def _loaded_by_hand(trainer) -> int:
    """A loop's own resume, without `self.restore()`: the checkpoint given loaded by the
    strategy, 2 epochs done (the first run's), else 0."""
    with trainer.reporter.latest_checkpoint() as directory:
        if directory is None:
            return 0
        trainer.strategy.load_checkpoint(directory)
        return 2


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_loop_that_loads_its_checkpoint_itself_resumes_its_run(tmp_path, kind):
    """A loop of its own that loads its checkpoint with `self.strategy.load_checkpoint`
    (docs/trainer.md) never calls `self.restore()`: its resume read as an attempt from
    scratch, and the epochs before the checkpoint vanished (a new MLflow run without them,
    TensorBoard purged from step 0)."""
    base = type(_Linear.make([]))

    class OwnRestore(base):
        def train(self):
            self.setup()
            for epoch in range(_loaded_by_hand(self), self.config["epochs"]):
                self.train_epoch(epoch)
                self.report({"score": 100.0 + epoch}, epoch=epoch)

    plan = _score_plan(tmp_path, kind)
    plan["checkpoint"]["every"] = 1
    for epochs in (2, 4):
        OwnRestore().run_local({"epochs": epochs, "batch_size": 4}, _Linear.data(),
                               directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(e, 100.0 + e) for e in range(4)]


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_a_loop_naming_another_restore_logs_each_epoch_as_it_reports(tmp_path, kind):
    """A loop of its own that loads its checkpoint itself and names `restore` for something
    else (an EMA's `ema.restore()` after validating with its weights) was taken for one
    whose `self.restore()` was to come: each resumed epoch's metrics waited for it, shown
    only when the trial closed (256 values at most), and lost with a killed trial."""
    base = type(_Linear.make([]))
    seen = []

    class Ema:
        def restore(self):
            pass

    class OwnRestore(base):
        def train(self):
            self.setup()
            ema = Ema()
            for epoch in range(_loaded_by_hand(self), self.config["epochs"]):
                self.train_epoch(epoch)
                ema.restore()
                self.report({"score": 100.0 + epoch}, epoch=epoch)
                seen.append(_series(plan, kind, "local", "score")[-1])

    plan = _score_plan(tmp_path, kind)
    plan["checkpoint"]["every"] = 1
    for epochs in (2, 4):
        OwnRestore().run_local({"epochs": epochs, "batch_size": 4}, _Linear.data(),
                               directory=tmp_path / "trial", plan=plan)
    assert seen == [(e, 100.0 + e) for e in range(4)]  # each epoch's, as it was reported
    assert _series(plan, kind, "local", "score") == [(e, 100.0 + e) for e in range(4)]


def _itwinai_start(trainer, config, data) -> None:
    """An itwinai loop's usual start: a linear model with SGD (`lr`, 0.1 by default), the
    training loader and the logger."""
    import torch

    trainer.strategy.init()
    model = torch.nn.Linear(4, 1)
    trainer.model, trainer.optimizer, _ = trainer.strategy.distributed(
        model, torch.optim.SGD(model.parameters(), lr=config.get("lr", 0.1)))
    trainer.create_dataloaders(train_dataset=data[0])
    trainer.initialize_logger(hyperparams=config, rank=trainer.strategy.global_rank())


def _itwinai_epoch(trainer):
    """One epoch over the loader; its last batch's loss."""
    import torch

    for x, y in trainer.train_dataloader:
        loss = torch.nn.functional.mse_loss(trainer.model(x), y)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    return loss


def _run_itwinai_twice(tmp_path, loop_cls):
    """`loop_cls` run for 2 epochs, then resumed to 4 (a checkpoint each epoch, MLflow);
    the plan."""
    import torch

    plan = plan_with(tmp_path, mlflow_logger())
    plan["objective"] = {"metrics": []}
    plan["checkpoint"]["every"] = 1
    data = (torch.utils.data.TensorDataset(torch.ones(8, 4), torch.zeros(8, 1)), None, None)
    for epochs in (2, 4):
        loop_cls().run_local({"batch_size": 4, "epochs": epochs}, data, directory=tmp_path / "trial", plan=plan)
    return plan



def test_an_itwinai_loop_that_logs_before_its_first_batch_resumes_its_run(tmp_path):
    """An itwinai loop's trainer restores its checkpoint at the first batch: a metric logged
    before it (an epoch's lr) must not read as an attempt from scratch."""
    import torch

    from hpoc.compat.itwinai import RayTorchTrainer

    class LrLoop(RayTorchTrainer):
        def train(self, config, data):
            torch.manual_seed(0)
            _itwinai_start(self, config, data)
            for epoch in range(config["epochs"]):
                self.log(0.1, "lr", step=epoch)  # before the first batch, where the restore is
                loss = _itwinai_epoch(self)
                self.log(1.0, "done")  # no step=: counts on from the checkpoint's
                self.checkpoint_and_report(epoch, tuning_metrics={"loss": loss.item()})

    plan = _run_itwinai_twice(tmp_path, LrLoop)
    assert [r.info.run_name for r in runs(plan) if "mlflow.parentRunId" in r.data.tags] == ["local"]
    assert _series(plan, "mlflow", "local", "done") == [(e, 1.0) for e in range(4)]


def test_an_itwinai_loop_resumed_keeps_a_stepless_metric_logged_before_its_first_batch(tmp_path):
    """A metric logged without a step before the first batch (where an itwinai loop's
    checkpoint is restored) goes on at the checkpoint's count on a resume: before, its first
    point took step 0 again, was dropped as a duplicate and the series ended one short."""
    from hpoc.compat.itwinai import RayTorchTrainer

    class LrLoop(RayTorchTrainer):
        def train(self, config, data):
            _itwinai_start(self, config, data)
            for epoch in range(config["epochs"]):
                self.log(0.1 * (epoch + self._epoch_offset), "lr")  # no step=, before the restore
                loss = _itwinai_epoch(self)
                self.checkpoint_and_report(epoch, tuning_metrics={"loss": loss.item()})

    plan = _run_itwinai_twice(tmp_path, LrLoop)
    assert _series(plan, "mlflow", "local", "lr") == [(e, pytest.approx(0.1 * e)) for e in range(4)]


def test_a_restart_shows_after_an_attempt_whose_file_names_a_later_second(tmp_path):
    """TensorBoard reads a folder's event files in name order: the second each was made,
    then the host. A restart within a second of the lost attempt (or on a node whose clock
    is behind the lost one's) wrote a purge that was read before the points it replaces."""
    plan = plan_with(tmp_path, tb_logger())
    _attempt(plan, None, None, range(4), 10.0, fail=True)
    (old,) = (tmp_dir(plan) / "tensorboard" / "t").glob("events.*")
    parts = old.name.split(".")
    parts[3:5] = [str(int(time.time()) + 1), "zz-node"]  # a second ahead, a host that sorts last
    old.rename(old.with_name(".".join(parts)))
    _attempt(plan, None, {}, range(2), 20.0)
    assert _series(plan, "tensorboard", "t", "val_loss") == [(0, 20.0), (1, 21.0)]


def _itwinai_scoring(attempt: int, fail_in: int | None = None):
    """An itwinai loop that logs `score` = attempt * 100 + epoch before each epoch's first
    batch (where its checkpoint is restored) and, in epoch `fail_in`, fails right after."""
    from hpoc.compat.itwinai import RayTorchTrainer

    class ScoreLoop(RayTorchTrainer):
        def train(self, config, data):
            _itwinai_start(self, config, data)
            for epoch in range(config["epochs"]):
                self.log(attempt * 100.0 + epoch + self._epoch_offset, "score", step=epoch)
                if epoch + self._epoch_offset == fail_in:
                    raise RuntimeError("node lost")
                loss = _itwinai_epoch(self)
                self.checkpoint_and_report(epoch, tuning_metrics={"loss": loss.item()})

    return ScoreLoop()


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_an_itwinai_loop_exploiting_an_older_checkpoint_logs_from_there(tmp_path, kind):
    """PBT's exploit in an itwinai loop that logs before its first batch: that metric took
    the attempt for a resume before the restore found another trial's checkpoint, and the
    curves kept the trial's own points after it (first write wins) for the new attempt's."""
    import torch

    plan = _score_plan(tmp_path, kind)
    data = (torch.utils.data.TensorDataset(torch.ones(8, 4), torch.zeros(8, 1)), None, None)
    with pytest.raises(RuntimeError, match="node lost"):  # checkpoint after epoch 1, lost in 3
        _itwinai_scoring(1, fail_in=3).run_local({"batch_size": 4, "epochs": 4}, data,
                                                 directory=tmp_path / "trial", plan=plan)
    _itwinai_scoring(2).run_local({"batch_size": 4, "epochs": 4, "lr": 0.5}, data,
                                  directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(0, 100.0), (1, 101.0), (2, 202.0), (3, 203.0)]


def test_values_waiting_for_a_restore_that_never_comes_are_logged_not_piled_up(tmp_path):
    """Metrics logged while an itwinai loop's restore is to come wait for it; a loop that
    never iterates the loader that restores must not hold them (device tensors) forever."""
    import torch

    plan = plan_with(tmp_path, mlflow_logger(log_freq="batch"))
    tracker = open_loggers(plan, "t", {}, rank=0, fresh_unless_told=lambda: tracking.LATER)
    for step in range(tracker.WAIT_MAX + tracker.BATCH_READ):
        tracker.log_batch_metric("loss", torch.tensor(1.0), step)
    assert len(tracker._held) < tracker.WAIT_MAX
    tracker.close()
    (run,) = [r for r in runs(plan) if r.info.run_name == "t"]
    assert len(client_for(plan).get_metric_history(run.info.run_id, "loss")) == tracker.WAIT_MAX + tracker.BATCH_READ


@pytest.mark.parametrize("kind", ["mlflow", "tensorboard"])
def test_an_itwinai_loop_whose_checkpoint_is_unreadable_keeps_the_points_before_it(tmp_path, kind):
    """An itwinai loop counts its epochs on from its checkpoint's marker even when the
    checkpoint itself cannot be read: the attempt was taken as one from scratch and its
    restart dropped every point before the marker's epoch, which no attempt logs again."""
    import torch

    plan = _score_plan(tmp_path, kind)
    data = (torch.utils.data.TensorDataset(torch.ones(8, 4), torch.zeros(8, 1)), None, None)
    with pytest.raises(RuntimeError, match="node lost"):  # checkpoint after epoch 1, lost in 3
        _itwinai_scoring(1, fail_in=3).run_local({"batch_size": 4, "epochs": 4}, data,
                                                 directory=tmp_path / "trial", plan=plan)
    (state,) = (tmp_path / "trial").glob("checkpoint_*/state.pt")
    state.write_bytes(b"cut")
    _itwinai_scoring(2).run_local({"batch_size": 4, "epochs": 4}, data, directory=tmp_path / "trial", plan=plan)
    assert _series(plan, kind, "local", "score") == [(0, 100.0), (1, 101.0), (2, 202.0), (3, 203.0)]


def test_a_copied_or_moved_studys_mlflow_artifacts_go_where_it_is_now(tmp_path):
    """MLflow's file store records artifact folders as absolute paths: a study copied (`cp -r`)
    or moved with its project, then resumed or extended, logged its artifacts into the
    original's store (or the old place). The driver repoints them where the store is now."""
    import shutil

    from mlflow.tracking import MlflowClient

    from hpoc.plan import plan_hash
    from hpoc.runtime import marker, mlflow_moved

    a, b = tmp_path / "a", tmp_path / "b"
    plan_a = plan_with(a, mlflow_logger())
    parent = start_study_tracking(plan_a)
    exp_a = a / "storage" / "demo"
    marker.write(exp_a, marker.fingerprint(plan_a, plan_hash(plan_a)), 0)
    shutil.copytree(a, b)
    plan_b = plan_with(b, mlflow_logger())
    exp_b = b / "storage" / "demo"
    fp = marker.fingerprint(plan_b, plan_hash(plan_b))
    mlflow_moved.repoint_seen(plan_b, marker.Seen(marker.here(marker.read(exp_b), fp, exp_b), fp), exp_b)

    art = tmp_path / "note.txt"
    art.write_text("x")
    client = MlflowClient(tracking_uri=tracking.mlflow_uri(plan_b, mlflow_logger()))
    added = client.create_run(client.get_run(parent).info.experiment_id).info.run_id
    for run in (parent, added):  # a resumed trial's run, an added trial's
        client.log_artifact(run, str(art))
    assert not list(a.rglob("note.txt"))
    assert {p.parent.parent.name for p in b.rglob("note.txt")} == {parent, added}


def test_a_stop_sending_while_an_epoch_is_logged_sends_each_point_once(tmp_path, monkeypatch):
    """The stop's send (at_stop: atexit, or rank_term's watch) runs on another thread than
    the training's: taken while `log_metrics` built the epoch's points, the waiting batch
    points were sent by the stop and then again with the epoch's (each step twice in MLflow)."""
    plan = plan_with(tmp_path, mlflow_logger(log_freq="batch"))
    tracker = open_loggers(plan, "t00000_abc", {"lr": 0.1}, rank=0)
    (sink,) = [s for s in tracker._sinks if isinstance(s, tracking._MlflowSink)]
    for step in range(3):
        sink.log_batch_metric("train_loss_batch", 1.0 / (step + 1), step)
    assert len(sink.pending) == 3  # under BATCH_FLUSH: waiting
    real, stopped = tracking._logged_before, []

    def stop_meanwhile(*args):  # the other thread's stop, while the epoch's points are made
        if not stopped:
            stopped.append(sink.send_waiting(1.0))
        return real(*args)

    monkeypatch.setattr(tracking, "_logged_before", stop_meanwhile)
    sink.log_metrics({"val_loss": 0.5}, step=0)
    tracker.close()
    assert stopped == [True]
    (run,) = [r for r in runs(plan) if "mlflow.parentRunId" in r.data.tags or r.data.tags.get("hpoc.trial")]
    steps = sorted(m.step for m in client_for(plan).get_metric_history(run.info.run_id, "train_loss_batch"))
    assert steps == [0, 1, 2]
