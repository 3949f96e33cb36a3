"""What a trial process does before and around the trainer (hpoc/runtime/trial.py,
pool_worker.py), tested without starting Ray."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hpoc.runtime import pipeline, report, trial
from hpoc.runtime.trainer import Trainer, TrialInfo
from runtime_plans import make_plan, write_toy


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The process starts in another directory (as Ray's workers do); torch's thread count
    and the report mode are put back afterwards."""
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    threads = torch.get_num_threads()
    yield here
    torch.set_num_threads(threads)
    report.set_mode("local")


def _fake_tune(monkeypatch, trial_fs_path):
    import ray.tune

    def storage():
        if trial_fs_path is None:
            raise RuntimeError("no storage context")
        return SimpleNamespace(trial_fs_path=trial_fs_path)

    ctx = SimpleNamespace(get_trial_id=lambda: "ab12", get_trial_name=lambda: "t00003_ab12",
                          get_storage=storage)
    monkeypatch.setattr(ray.tune, "get_context", lambda: ctx)
    return ctx


def test_every_trial_runs_in_the_study_directory_and_knows_its_own_directory(tmp_path, elsewhere,
                                                                            monkeypatch):
    from hpoc.runtime.pool_worker import TrialScope

    workdir = write_toy(tmp_path / "study")
    (workdir / "widths.json").write_text("[8]")
    (workdir / "reader.py").write_text(  # reads a relative file when imported
        "import json\nfrom toy import ToyTrainer\nWIDTHS = json.load(open('widths.json'))\n"
        "class ReadingTrainer(ToyTrainer):\n    pass\n")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": "reader:ReadingTrainer", "args": {}}})
    exp = tmp_path / "results" / "toy"
    seen = []
    monkeypatch.setattr(trial, "run_trainer", lambda plan, cfg, data, reporter, info, **kw:
                        seen.append((os.getcwd(), info)))

    pipeline.check_imports(plan)  # the driver imports the trainer's module there too
    assert os.getcwd() == str(elsewhere)

    # a one-worker trial (in Tune's trial process)
    _fake_tune(monkeypatch, str(exp / "trial_00003_ab12"))
    trial.tune_trial({"lr": 0.01, "hidden": 8}, plan, [None], str(exp), 0)
    cwd, info = seen[-1]
    assert cwd == str(workdir)
    assert info.dir == str(exp / "trial_00003_ab12") and Path(info.dir).is_dir()
    # the same directory when Ray gives no storage context
    assert trial.trial_storage_dir(_fake_tune(monkeypatch, None), str(exp)) == info.dir

    # a Ray Train worker of a multi-worker trial
    os.chdir(elsewhere)
    trial.train_worker({"plan": plan, "config": {}, "data_ref": [None], "trial": dict(info.__dict__)})
    assert seen[-1] == (str(workdir), info)

    # a warm pool worker
    os.chdir(elsewhere)
    with TrialScope(str(workdir)):
        assert os.getcwd() == str(workdir)
    assert os.getcwd() == str(elsewhere)

    # and the trainer sees its own directory
    trainer = Trainer()
    trainer.bind(config={}, strategy=None, reporter=None, trial=info)
    assert trainer.trial_dir == Path(info.dir)
    trainer.bind(config={}, strategy=None, reporter=None, trial=TrialInfo())
    assert trainer.trial_dir is None


def test_a_deterministic_error_is_recorded_and_its_retry_fails_at_once(tmp_path, elsewhere,
                                                                       monkeypatch):
    from hpoc.runtime import retry
    from hpoc.runtime.trainer import TrainerError

    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    exp = tmp_path / "results" / "toy"
    _fake_tune(monkeypatch, str(exp / "trial_00003_ab12"))
    calls = []

    def failing(error):
        def run(*args, **kw):
            calls.append(error)
            raise error
        return run

    def attempt(run):
        trial.tune_trial({"lr": 0.01, "hidden": 8}, plan, [None], str(exp), 0, run=run)

    # an ordinary error leaves no record: Tune retries it as configured
    monkeypatch.setattr(trial, "run_trainer", failing(KeyError("hidden")))
    with pytest.raises(KeyError):
        attempt("run1")
    assert not (exp / "trial_00003_ab12" / retry.MARKER).exists()

    # a TrainerError is recorded; this run's retry fails at once with the same message
    monkeypatch.setattr(trial, "run_trainer", failing(TrainerError("create_model() returned a list")))
    monkeypatch.setattr(pipeline, "fetch", lambda ref: calls.append("fetch"))
    calls.clear()
    with pytest.raises(TrainerError):
        attempt("run1")
    assert len(calls) == 2 and calls[0] == "fetch"
    calls.clear()
    with pytest.raises(TrainerError, match=r"^create_model\(\) returned a list$"):
        attempt("run1")
    assert calls == []  # no data fetched, no trainer built
    # another run (resumed after the code was fixed) tries it again
    monkeypatch.setattr(trial, "run_trainer", lambda *a, **kw: calls.append("trained"))
    attempt("run2")
    assert calls == ["fetch", "trained"]


def test_deterministic_errors_are_found_behind_ray_wrappers():
    from hpoc.runtime.retry import deterministic
    from hpoc.runtime.trainer import TrainerError

    error = TrainerError("sys.exit(1)")
    task_error = RuntimeError("RayTaskError(TrainerError): ...")
    task_error.cause = error  # a pooled worker's failure, through ray.get
    group_error = RuntimeError("Training failed")
    group_error.worker_failures = {0: task_error, 1: RuntimeError("gloo timeout")}  # Ray Train V2
    assert deterministic(error) is error
    assert deterministic(task_error) is error and deterministic(group_error) is error
    assert deterministic(KeyError("x")) is None
    group_error.worker_failures = {1: RuntimeError("gloo timeout")}
    assert deterministic(group_error) is None


def test_the_retry_line_names_the_error_it_retries_after(tmp_path, monkeypatch):
    """'failed; retrying' alone sent the user to error.txt to learn why; the docs promise
    each retry line names the error."""
    import io

    from hpoc.runtime import watch

    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=[], run="run1",
                                                      experiment=tmp_path))
    trial_dir = tmp_path / "trial_00000_ab12"
    trial_dir.mkdir()
    (trial_dir / "error.txt").write_text(
        "Failure # 1 (occurred at 2026-11-29_07-38-29)\nTraceback (most recent call last):\n"
        f'  File "{tmp_path}/trainer.py", line 8, in create_model\n'
        "KeyError: 'model'\n")
    trial = SimpleNamespace(trial_id="ab12", status="PENDING", config={}, path=str(trial_dir),
                            local_path=None, checkpoint=None, max_failures=2,
                            error_file=str(trial_dir / "error.txt"))
    watch._make_events().on_trial_recover(0, [], trial)
    assert out.getvalue().strip() == (
        f"[hpoc] trial ab12 failed; retrying from the start (retry 1): KeyError: 'model' at "
        f"{tmp_path}/trainer.py:8 (details: {trial_dir}/error.txt)")


def test_the_retry_line_says_where_the_trial_restarts(tmp_path, monkeypatch):
    import io

    from hpoc.runtime import retry, watch

    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=[], run="run1",
                                                      experiment=tmp_path))
    events = watch._make_events()

    def trial_(checkpoint=None, path=None):
        return SimpleNamespace(trial_id="ab12", status="PENDING", config={}, path=path,
                               local_path=None, checkpoint=checkpoint, max_failures=2)

    events.on_trial_recover(0, [], trial_())
    events.on_trial_recover(0, [], trial_(checkpoint=object()))
    (tmp_path / "train" / "cd34" / "checkpoint_2024").mkdir(parents=True)  # a Ray Train run's
    events.on_trial_recover(0, [], SimpleNamespace(**{**vars(trial_()), "trial_id": "cd34"}))
    assert out.getvalue().splitlines() == [
        "[hpoc] trial ab12 failed; retrying from the start (retry 1)",
        "[hpoc] trial ab12 failed; retrying from its last checkpoint (retry 2)",
        "[hpoc] trial cd34 failed; retrying from its last checkpoint (retry 1)"]

    # a deterministic error: no retry line, and none after the retry Tune queued
    (tmp_path / "t").mkdir()
    retry.record(str(tmp_path / "t"), "run1", ValueError("the same every time"))
    deterministic = trial_(path=str(tmp_path / "t"))
    events.on_trial_recover(0, [], deterministic)
    assert deterministic.max_failures == 0 and len(out.getvalue().splitlines()) == 3
    events.on_trial_start(0, [], deterministic)  # the queued retry starts: still none after it
    assert deterministic.max_failures == 0

    # A later run (new token, code fixed): the trial Tune restored with 0 gets the plan's retries.
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=[], run="run2", max_retries=2))
    watch._make_events().on_trial_start(0, [], deterministic)
    assert deterministic.max_failures == 2


def test_a_trainer_that_calls_os_exit_fails_the_same_way_twice_not_as_a_lost_worker(tmp_path):
    """os._exit(0) in the loop: Ray's "The actor died unexpectedly" made it the cluster's
    fault, so the trial was retried to its last retry, each one training to the same call."""
    from hpoc.runtime.crash import exit_header
    from hpoc.runtime.retry import Repeats, infrastructure

    died = ("The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
            "The actor is dead because its worker process has died.\n")
    own = died + exit_header(0) + f'\n  File "{tmp_path}/trainer.py", line 39 in train\n'
    assert infrastructure(died) and not infrastructure(own)
    r = Repeats()
    assert r.same_again("t1", own, 0, None) is None
    assert r.same_again("t1", own, 0, None) is not None
    assert r.same_again("t2", died, 0, None) is None and r.same_again("t2", died, 0, None) is None  # a lost worker


def test_a_trial_that_ended_leaves_no_empty_rank_crash_file(tmp_path, monkeypatch):
    """Ray ends a warm group's ranks with their trial's process (a trial Tune stopped, the
    experiment's end); a rank busy in C code that holds the GIL then dies before it can
    remove its empty rank-<k>.crash (rank_term.py), and the trial's folder showed "crash"
    files of a trial that did not crash. The driver removes them a while after the trial
    ended, and at the run's end; a crash's record stays, as does a running trial's file."""
    from hpoc.runtime import watch

    monkeypatch.setattr(watch, "STATE", watch._State(stream=None, params=[], run="run1",
                                                      experiment=tmp_path, sweep_at=0.0))
    monkeypatch.setattr(watch, "_sweep_orphans", lambda: None)
    events = watch._make_events()
    trials = {}
    for tid in ("done", "failed", "running", "stopped"):
        (tmp_path / tid).mkdir()
        for k in (0, 1):
            (tmp_path / tid / f"rank-{k}.crash").write_text("")
        trials[tid] = SimpleNamespace(trial_id=tid, status="RUNNING", config={}, path=str(tmp_path / tid),
                                      local_path=None, checkpoint=None, max_failures=0, error_file=None)
    (tmp_path / "failed" / "rank-1.crash").write_text("Fatal Python error: Segmentation fault\n")
    trials["done"].status = trials["stopped"].status = "TERMINATED"
    trials["failed"].status = "ERROR"
    events.on_trial_complete(0, list(trials.values()), trials["done"])
    events.on_trial_error(0, list(trials.values()), trials["failed"])
    left = lambda tid: sorted(p.name for p in (tmp_path / tid).glob("rank-*.crash"))  # noqa: E731
    events.on_step_end(0, list(trials.values()))
    assert left("done") == ["rank-0.crash", "rank-1.crash"]  # not yet: its ranks may still run
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + watch.RANK_CRASH_SWEEP_S + 1)
    events.on_step_end(0, list(trials.values()))
    assert left("done") == [] and left("failed") == ["rank-1.crash"]
    assert left("running") == ["rank-0.crash", "rank-1.crash"] == left("stopped")
    watch.sweep_rank_crashes()  # the run's end (its Ray gone): every trial's
    assert left("running") == [] == left("stopped") and left("failed") == ["rank-1.crash"]


def test_the_run_end_sweep_does_not_list_again_the_folders_swept_after_their_trial(tmp_path, monkeypatch):
    """The run's end listed every trial's folder again, those swept 10 s after their trial
    ended too: thousands of trials on a shared file system, within the driver's graceful stop."""
    from hpoc.runtime import output, watch

    monkeypatch.setattr(watch, "STATE", watch._State(stream=None, params=[], run="run1",
                                                      experiment=tmp_path, sweep_at=0.0))
    monkeypatch.setattr(watch, "_sweep_orphans", lambda: None)
    listed: list[str] = []
    monkeypatch.setattr(output, "drop_empty_crashes_in", lambda path: listed.append(Path(path).name))
    events = watch._make_events()
    trials = [SimpleNamespace(trial_id=tid, status="TERMINATED" if tid == "done" else "RUNNING", config={},
                              path=str(tmp_path / tid), local_path=None, checkpoint=None, max_failures=0,
                              error_file=None) for tid in ("done", "running")]
    events.on_trial_complete(0, trials, trials[0])
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + watch.RANK_CRASH_SWEEP_S + 1)
    events.on_step_end(0, trials)
    assert listed == ["done"]
    watch.sweep_rank_crashes()  # the run's end: the trials not swept yet only
    assert listed == ["done", "running"]


def test_only_groups_whose_creator_actor_died_are_orphans():
    """Ray frees a group when its creator actor *and* job are gone: the study's job lives on."""
    from ray.core.generated import gcs_pb2

    from hpoc.runtime.orphans import orphaned

    State = gcs_pb2.PlacementGroupTableData.PlacementGroupState

    def pg(n, actor=b"\x01" * 16, dead=True, state=State.CREATED, detached=False, job=b"\x02\x00\x00\x00"):
        return gcs_pb2.PlacementGroupTableData(placement_group_id=bytes([n]) * 18, creator_actor_id=actor,
                                               creator_actor_dead=dead, state=state, is_detached=detached,
                                               creator_job_id=job)

    table = [pg(1),                                  # a Train run's: its controller was killed
             pg(2, dead=False),                      # a live run's
             pg(3, actor=b"\xff" * 16),              # the driver's own (Tune's trial groups)
             pg(4, actor=b""),
             pg(5, state=State.REMOVED),
             pg(6, detached=True),
             pg(7, state=State.PENDING),             # still waiting for resources: never will
             pg(8, job=b"\x03\x00\x00\x00")]          # another job's, on a shared cluster
    assert orphaned(table, b"\x02\x00\x00\x00") == [bytes([1]) * 18, bytes([7]) * 18]


def test_train_runs_start_without_trains_placement_group_cleaner():
    from ray.train import ScalingConfig
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from hpoc.runtime.trial import train_run_class

    run = train_run_class()(lambda config: None, scaling_config=ScalingConfig(num_workers=2))
    kinds = [type(c) for c in run._create_default_callbacks()]
    assert kinds and PlacementGroupCleanerCallback not in kinds


def test_a_failure_is_the_same_again_only_with_the_same_error_at_the_same_point(tmp_path):
    """Two attempts of a trial: same exception type and message (its object addresses
    aside), failed after the same report. Anything else is retried as before."""
    from hpoc.runtime.retry import Repeats, last_failure

    error = tmp_path / "error.txt"
    error.write_text("Failure # 1 (occurred at 2026-01-01_00-00-00)\nTraceback ...\n"
                     "TypeError: bad <object at 0x7f00aa>\n"
                     "Failure # 2 (occurred at 2026-01-01_00-01-00)\nTraceback ...\n"
                     "TypeError: bad <object at 0x7f00bb>\n")
    assert last_failure(str(error)) == "Traceback ...\nTypeError: bad <object at 0x7f00bb>"
    assert last_failure(str(tmp_path / "none.txt")) is None

    r = Repeats()
    assert r.same_again("t1", "TypeError: bad <object at 0x7f00aa>", 2, None) is None  # the first
    assert r.same_again("t1", "TypeError: bad <object at 0x7f00bb>", 2, None) == "TypeError: bad <object at 0x7f00bb>"
    assert r.same_again("t2", "RuntimeError: rank 0 lost", 0, None) is None
    assert r.same_again("t2", "RuntimeError: rank 1 lost", 0, None) is None          # differs
    assert r.same_again("t3", "ValueError: nan loss", 1, None) is None
    assert r.same_again("t3", "ValueError: nan loss", 3, None) is None               # later point
    assert r.same_again("t4", "OSError: stale file handle", 1, None) is None
    assert r.same_again("t4", "RuntimeError: NCCL timeout", 1, None) is None         # another error
    assert r.same_again("t4", "RuntimeError: NCCL timeout", 1, None) is not None     # then the same twice
    # the line names the user's frame: the retry that ends the trial raises from hpoc's code
    user = f'Traceback (most recent call last):\n  File "{tmp_path}/trainer.py", line 9, in create_model\nKeyError: \'depth\''
    r.same_again("t5", user, 0, None)
    assert r.same_again("t5", user, 0, None) == f"KeyError: 'depth' at {tmp_path}/trainer.py:9"
    # one that names its own place already says it once, as its "errored" line does
    named = user.replace("KeyError: 'depth'", f"ValueError: bad shape at {tmp_path}/trainer.py:9")
    r.same_again("t6", named, 0, None)
    assert r.same_again("t6", named, 0, None) == f"ValueError: bad shape at {tmp_path}/trainer.py:9"


def test_an_error_line_of_hpocs_own_trainer_error_is_its_sentence():
    from hpoc.runtime.summary import error_line

    assert error_line("Traceback ...\nhpoc.runtime.trainer.TrainerError: failed the same way twice: KeyError: "
                      "'depth'; not retried again") == "failed the same way twice: KeyError: 'depth'; not retried again"
    assert error_line("Traceback ...\nValueError: bad") == "ValueError: bad"  # others keep their class
    # a trainer that cannot be built in the trial: hpoc's sentence, not its class's module path
    assert error_line("Traceback ...\nhpoc.runtime.pipeline.PipelineError: trainer `t:T`: constructing it "
                      "failed: RuntimeError: no licence (t.py:5)") == \
        "trainer `t:T`: constructing it failed: RuntimeError: no licence (t.py:5)"




def test_a_trial_that_failed_twice_and_one_that_failed_once_the_same_way_are_one_error():
    """Two trials whose trainer's __init__ raised: the first was retried and ended "failed the
    same way twice: X; not retried again", the second (fail-fast) with X. The study's last line
    said "X ... (and 1 other error(s))", an error that was not there."""
    from hpoc.runtime.summary import errors_said

    x = "trainer `t:T`: constructing it failed: RuntimeError: boom (/s/t.py:12)"
    summary = {"trials": [
        {"status": "ERROR", "error": "Traceback ...\nhpoc.runtime.returns.TrainerError: failed the same way "
                                     f"twice: {x}; not retried again"},
        {"status": "ERROR", "error": f"Traceback ...\nhpoc.runtime.pipeline.PipelineError: {x}"}]}
    assert errors_said(summary) == x
    # a different error is still counted
    summary["trials"].append({"status": "ERROR", "error": "Traceback ...\nValueError: bad"})
    assert errors_said(summary) == x + " (and 1 other error(s))"


def test_an_experiment_directory_deleted_during_the_run_is_said_so():
    """Deleting the results mid-run failed every trial with Ray's "Unable to set up cluster
    storage with the following settings:", whose line ends where its meaning starts."""
    from hpoc.runtime.summary import error_line

    text = ("Traceback ...\nRuntimeError: Unable to set up cluster storage with the following settings:\n"
            "StorageContext<\n  storage_filesystem='local',\n>\nCheck that all nodes in the cluster ...")
    assert error_line(text) == (
        "the study's experiment directory is gone or cannot be written (Ray's "
        "`.validate_storage_marker` in it is missing): was it deleted or moved during the run?")


@pytest.mark.parametrize("text", [
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ImplicitFunc\nThe actor is dead because its node has died. Node Id: <id>",
    "ray.train.WorkerGroupError: Worker group failed\nray.exceptions.ActorDiedError: The actor died "
    "unexpectedly before finishing this task.",
    "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.",
    "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited",
    # error.txt of a one-worker trial whose process died: Ray's message without its class
    "The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n\tpid: 20111\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR"])
def test_a_lost_node_or_worker_is_retried_however_often_it_happens_at_the_same_point(text):
    """Two node losses before the same report look alike, ids aside; the next attempt may
    run on another node."""
    from hpoc.runtime.retry import Repeats

    r = Repeats()
    assert [r.same_again("t", text, 2, None) for _ in range(3)] == [None, None, None]

def test_the_point_of_a_failure_is_the_last_report_of_that_attempt_or_its_checkpoints(monkeypatch):
    """A retry from scratch that fails before its first report failed at 0, whatever the
    attempt before it reported (Tune keeps that last result); one from a checkpoint, at
    the checkpoint's report (Tune restores last_result from it)."""
    from types import SimpleNamespace

    from hpoc.runtime import clock, watch

    monkeypatch.setattr(clock, "TIMES", clock.TrialTimes())
    trial = SimpleNamespace(trial_id="t", checkpoint=None, last_result={"training_iteration": 3})
    clock.TIMES.started(trial)
    assert watch._failed_after(trial) == 0
    trial.checkpoint = object()
    assert watch._failed_after(trial) == 3
    trial.checkpoint = None
    clock.TIMES.reported("t", {"training_iteration": 1})
    assert watch._failed_after(trial) == 3


def test_a_trial_scope_undoes_what_a_trial_changed_in_torch_and_warnings(tmp_path):
    """Global module hooks, anomaly detection, the default device and warning filters that a
    trial left behind ran on in every later trial of a warm worker."""
    import warnings

    from torch import nn

    from hpoc.runtime.pool_worker import TrialScope

    workdir = write_toy(tmp_path / "study")
    calls = []
    filters = list(warnings.filters)
    with TrialScope(str(workdir)):
        nn.modules.module.register_module_forward_hook(lambda m, i, o: calls.append(m))
        nn.modules.module.register_module_forward_pre_hook(lambda m, i: calls.append(m))
        torch.autograd.set_detect_anomaly(True)
        torch.set_default_device("meta")
        torch.set_default_dtype(torch.float64)
        warnings.simplefilter("ignore")
    nn.Linear(2, 2)(torch.ones(1, 2))
    assert calls == []
    assert not torch.is_anomaly_enabled()
    assert torch.ones(1).device.type == "cpu" and torch.ones(1).dtype == torch.float32
    assert warnings.filters == filters


def test_one_worker_trials_in_a_reused_process_start_clean(tmp_path, elsewhere, monkeypatch):
    """Tune reuses a one-worker trial's process: the second trial saw the first one's
    module-level state, default dtype, global module hooks and environment, so its numbers
    depended on which trial ran before it."""
    from torch import nn

    workdir = write_toy(tmp_path / "study")
    (workdir / "counter.py").write_text("STARTS = [0]\n")
    plan = make_plan(workdir, tmp_path / "results")
    exp = tmp_path / "results" / "toy"
    _fake_tune(monkeypatch, str(exp / "trial_00003_ab12"))
    seen = []

    def leaky_trial(plan, cfg, data, reporter, info, **kw):
        import counter

        counter.STARTS[0] += 1
        seen.append((counter.STARTS[0], torch.get_default_dtype(), len(nn.modules.module._global_forward_hooks),
                     os.environ.get("HPOC_LEAK_PROBE")))
        torch.set_default_dtype(torch.float64)
        nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
        os.environ["HPOC_LEAK_PROBE"] = "leaked"

    monkeypatch.setattr(trial, "run_trainer", leaky_trial)
    for _ in range(2):
        trial.tune_trial({"lr": 0.01, "hidden": 8}, plan, [None], str(exp), 0)
    assert seen == [(1, torch.float32, 0, None)] * 2
    assert torch.get_default_dtype() == torch.float32 and "HPOC_LEAK_PROBE" not in os.environ


def test_a_trainers_own_keyboard_interrupt_is_its_error_not_a_cancelled_task():
    """A trainer re-raising KeyboardInterrupt from its Ctrl-C handler showed as Ray's
    "TaskCancelledError: Task: TaskID(…) was cancelled.": nothing had cancelled it (Ray's
    processes block SIGINT, and Ray does not interrupt an actor's running task)."""
    from hpoc.runtime.summary import error_help

    class Stops:
        def execute(self) -> None:
            raise KeyboardInterrupt

    with pytest.raises(RuntimeError) as exc:
        trial.execute(Stops())
    message = str(exc.value)
    assert message.startswith(f"the trainer raised KeyboardInterrupt itself at {__file__}:"), message
    assert "nothing stopped the trial" in message
    assert "another exception" in error_help(f"RuntimeError: {message}")
