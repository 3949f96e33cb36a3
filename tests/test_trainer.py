"""The Trainer API without Ray: default loop, metrics, checkpoints, resume, itwinai style."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import hpoc
from hpoc.runtime import pipeline
from hpoc.runtime.report import LocalReporter
from hpoc.runtime.strategy import STATE_FILE, Strategy
from hpoc.runtime.trainer import TrainerError, TrialInfo
from runtime_plans import make_plan, write_toy

torch.set_num_threads(1)
CONFIG = {"lr": 0.02, "hidden": 16, "batch_size": 32, "epochs": 4}


@pytest.fixture
def toy(tmp_path):
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results")
    data = pipeline.load_data(plan)
    return workdir, plan, data


def trainer(workdir, name="ToyTrainer", **args):
    return pipeline.import_target(f"toy:{name}", str(workdir))(**args)


def test_default_loop_reports_metrics_that_match_a_manual_evaluation(toy, tmp_path):
    workdir, plan, (train, val, _) = toy
    history = trainer(workdir).run_local(CONFIG, (train, val), directory=tmp_path / "run", plan=plan)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all({"train_loss", "val_loss", "val_accuracy"} <= set(r) for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Evaluate the final checkpoint by hand: the same numbers, by the plain definitions.
    last = sorted((tmp_path / "run").glob("checkpoint_*"))[-1]
    state = torch.load(last / STATE_FILE, weights_only=False)
    assert state["epoch"] == 4
    model = trainer(workdir).create_model(CONFIG)
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        logits = model(val[0])
        loss = nn.functional.cross_entropy(logits, val[1]).item()
        accuracy = int((logits.argmax(1) == val[1]).sum()) / len(val[1])
    assert history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert history[-1]["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_a_train_epoch_of_its_own_that_stops_part_way_leaves_no_window_open(toy, tmp_path):
    """Its open window went on into the next epoch, which then stepped after 3 batches."""
    workdir, plan, (train, val, _) = toy

    class FiveBatches(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def train_epoch(self, epoch):
            for i, batch in enumerate(self.train_dataloader):
                with self.strategy.micro_batch():
                    self.strategy.backward(self.train_step(batch))
                self.stepped.append(self.strategy.step())
                if i == 4:
                    break
            return {"train_loss": 0.0}

    partial = FiveBatches(grad_accumulation_steps=4)
    partial.stepped = []
    partial.run_local({**CONFIG, "batch_size": 8, "epochs": 2}, (train, val), directory=tmp_path / "run", plan=plan)
    assert partial.stepped == [False, False, False, True, False] * 2


def learned(history):
    """Reports without their `perf` group (wall-clock timings differ from run to run)."""
    return [{k: v for k, v in r.items() if k != "perf"} for r in history]


def test_same_seed_same_run_other_seed_other_run(toy, tmp_path):
    workdir, plan, data = toy
    runs = [trainer(workdir).run_local(CONFIG, data, directory=tmp_path / f"r{i}", plan=plan, seed=s)
            for i, s in enumerate((5, 5, 6))]
    runs = [learned(r) for r in runs]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


KILLED_RUN = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from hpoc.runtime import pipeline
    from runtime_plans import make_plan
    workdir, directory = sys.argv[1], sys.argv[2]
    plan = make_plan(__import__("pathlib").Path(workdir), __import__("pathlib").Path(directory))
    data = pipeline.load_data(plan)
    trainer = pipeline.import_target("toy:KillAfterTrainer", workdir)(kill_after=3)
    trainer.run_local({config}, data, directory=directory, plan=plan, seed=1)
""")


def test_a_killed_run_resumes_at_the_right_epoch_and_ends_as_if_never_killed(toy, tmp_path):
    workdir, plan, data = toy
    config = dict(CONFIG, epochs=6)
    run_dir = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(config=repr(config)))
    env = {"PYTHONPATH": str(Path(__file__).parent), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(script), str(workdir), str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr  # SIGKILL, mid-study
    first = [json.loads(line)["epoch"] for line in (run_dir / "result.jsonl").read_text().splitlines()]
    assert first == [1, 2, 3]

    resumed = trainer(workdir).run_local(config, data, directory=run_dir, plan=plan, seed=1)
    assert [r["epoch"] for r in resumed] == [4, 5, 6]

    straight = trainer(workdir).run_local(config, data, directory=tmp_path / "straight", plan=plan, seed=1)
    # model, optimizer, RNG (dropout) and data order all came back: identical numbers
    assert learned(resumed) == learned(straight[3:])
    a = torch.load(sorted(run_dir.glob("checkpoint_*"))[-1] / STATE_FILE, weights_only=False)
    b = torch.load(sorted((tmp_path / "straight").glob("checkpoint_*"))[-1] / STATE_FILE,
                   weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_checkpoint_every_n_epochs_and_always_the_last(toy, tmp_path):
    workdir, plan, data = toy
    plan = dict(plan, checkpoint={"every": 2, "keep": None, "score_attribute": None, "score_order": None})
    trainer(workdir).run_local(dict(CONFIG, epochs=5), data, directory=tmp_path / "run", plan=plan, keep=None)
    epochs = [torch.load(p / STATE_FILE, weights_only=False)["epoch"]
              for p in sorted((tmp_path / "run").glob("checkpoint_*"))]
    assert epochs == [2, 4, 5]
    plan["checkpoint"]["every"] = 0
    trainer(workdir).run_local(dict(CONFIG, epochs=2), data, directory=tmp_path / "none", plan=plan)
    assert not list((tmp_path / "none").glob("checkpoint_*"))


class ItwinaiStyle(hpoc.Trainer):
    """Written like the itwinai tutorial's RayTorchTrainer (minus the device moves)."""

    def __init__(self, config=None, strategy="ddp", name=None, logger=None):
        super().__init__()
        self.logged = []

    def create_model_loss_optimizer(self):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        optimizer = torch.optim.Adam(model.parameters(), lr=self.training_config["learning_rate"])
        self.model, self.optimizer, _ = self.strategy.distributed(model, optimizer)
        self.loss = nn.CrossEntropyLoss()

    def log(self, value, name, kind="metric", step=None, **kw):
        self.logged.append((name, step))
        super().log(value, name, kind=kind, step=step)

    def train(self, config, data):
        self.training_config = config
        self.strategy.init()
        self.initialize_logger(hyperparams=self.training_config, rank=self.strategy.global_rank())
        self.create_model_loss_optimizer()
        self.create_dataloaders(train_dataset=data[0], validation_dataset=data[1], test_dataset=data[2])
        for epoch in range(self.training_config["epochs"]):
            if self.strategy.global_world_size() > 1:
                self.set_epoch(epoch)
            train_losses, val_losses = [], []
            for images, labels in self.train_dataloader:
                train_loss = self.loss(self.model(images), labels)
                self.optimizer.zero_grad()
                train_loss.backward()
                self.optimizer.step()
                train_losses.append(train_loss.detach().cpu().numpy())
            for images, labels in self.validation_dataloader:
                with torch.no_grad():
                    val_loss = self.loss(self.model(images), labels)
                val_losses.append(val_loss.detach().cpu().numpy())
            self.log(sum(train_losses) / len(train_losses), "train_loss", kind="metric", step=epoch)
            self.checkpoint_and_report(epoch, tuning_metrics={"loss": float(val_loss)},
                                       checkpointing_data={"epoch": epoch, "val_loss": float(val_loss)})


def test_an_itwinai_style_trainer_runs_unchanged(toy, tmp_path):
    _, plan, data = toy
    plan = dict(plan, objective={"metrics": [{"name": "loss", "mode": "min"}]})  # what it reports
    t = ItwinaiStyle(config={}, strategy="ddp")
    history = t.run_local({"learning_rate": 1e-2, "batch_size": 32, "epochs": 3}, data,
                          directory=tmp_path / "run", plan=plan)
    assert [(r["epoch"], "loss" in r) for r in history] == [(1, True), (2, True), (3, True)]
    assert t.logged[:3] == [("train_loss", 0), ("train_loss", 1), ("train_loss", 2)]
    state = torch.load(sorted((tmp_path / "run").glob("checkpoint_*"))[-1] / STATE_FILE, weights_only=False)
    assert state["data"] == {"epoch": 2, "val_loss": pytest.approx(history[-1]["loss"])}


class ListDataset(torch.utils.data.Dataset):
    """A map-style dataset that is not tensors: goes through the DataLoader path."""

    def __init__(self, x, y):
        self.items = list(zip(x, y))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_dataloader_path_and_tensor_path_agree(toy, tmp_path):
    workdir, plan, (train, val, _) = toy
    results = {}
    for kind, wrap in {"tensors": lambda d: d, "tensordataset": lambda d: torch.utils.data.TensorDataset(*d),
                       "dataset": lambda d: ListDataset(*d)}.items():
        t = trainer(workdir)
        t.bind(config=dict(CONFIG, epochs=1), strategy=Strategy(), reporter=LocalReporter(tmp_path / kind),
               plan=plan, trial=TrialInfo(seed=3), data=(wrap(train), wrap(val), None))
        torch.manual_seed(0)
        t.setup()
        results[kind] = (type(t.train_dataloader).__name__, t.validation_epoch(0))
        t.train_epoch(0)  # and training runs through either path
    assert results["tensors"][0] == results["tensordataset"][0] == "TensorBatches"
    assert results["dataset"][0] == "DeviceLoader"
    assert results["tensors"][1] == results["tensordataset"][1]
    assert results["dataset"][1]["val_accuracy"] == results["tensors"][1]["val_accuracy"]
    assert results["dataset"][1]["val_loss"] == pytest.approx(results["tensors"][1]["val_loss"], rel=1e-6)


def test_a_dataset_shuffles_under_the_largest_seed_the_spec_takes(toy, tmp_path):
    # `training.seed` up to 2**63 - 1 (a date-time such as 20261130060000 too): the loader's
    # per-epoch seed overflowed torch's 64 bits and failed every trial at its first epoch.
    workdir, plan, (train, val, _) = toy
    t = trainer(workdir)
    t.bind(config=dict(CONFIG, epochs=1), strategy=Strategy(), reporter=LocalReporter(tmp_path),
           plan=plan, trial=TrialInfo(seed=2**63 - 1), data=(ListDataset(*train), ListDataset(*val), None))
    t.setup()
    t.set_epoch(0)
    t.train_epoch(0)


def test_uint8_inputs_are_scaled_and_normalised_as_batches_are_made(tmp_path):
    class Images(hpoc.Trainer):
        normalize = (0.5, 0.25)

        def create_model(self, config):
            return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

    x = torch.arange(8 * 4, dtype=torch.uint8).reshape(8, 1, 2, 2) * 7
    y = torch.zeros(8, dtype=torch.long)
    t = Images()
    t.bind(config={"batch_size": 8, "epochs": 1}, strategy=Strategy(), reporter=LocalReporter(tmp_path),
           plan=None, trial=TrialInfo(), data=((x, y), None, None))
    t.setup()
    (batch_x, batch_y), = list(t.train_dataloader)
    order = t.train_dataloader.indices()
    assert torch.allclose(batch_x, (x[order].float() / 255 - 0.5) / 0.25)
    assert batch_x.dtype == torch.float32 and torch.equal(batch_y, y[order])


def test_settings_that_are_missing_or_wrong_say_what_to_do(toy, tmp_path):
    workdir, plan, data = toy
    no_epochs = dict(CONFIG)
    del no_epochs["epochs"]
    with pytest.raises(TrainerError, match="add `epochs` to the study's constants"):
        trainer(workdir).run_local(no_epochs, data, directory=tmp_path / "a")
    with pytest.raises(TrainerError, match="unknown optimizer `rmsprop`"):
        trainer(workdir).run_local(dict(CONFIG, optimizer="rmsprop"), data, directory=tmp_path / "b")
    # 2.5 epochs trained 2 without a word; a batch size of 0 failed deep in the batching;
    # 0 epochs reported nothing, which the check refuses in the spec too
    for key, value in [("epochs", 2.5), ("batch_size", 0), ("batch_size", -4), ("epochs", "two"),
                       ("epochs", 0), ("epochs", float("inf"))]:
        with pytest.raises(TrainerError, match=rf"^`{key}` is .*: it must be a whole number of at least"):
            trainer(workdir).run_local(dict(CONFIG, **{key: value}), data, directory=tmp_path / "d")

    class NoModel(hpoc.Trainer):
        pass

    with pytest.raises(TrainerError, match=r"implement `create_model\(self, config\)`"):
        NoModel().run_local(CONFIG, data, directory=tmp_path / "c")


def test_a_model_that_is_not_a_module_or_a_sys_exit_is_a_located_trainer_error(toy, tmp_path):
    """Not an AttributeError deep in hpoc, nor a dead Ray worker: the user's file and line."""
    _, _, data = toy

    class NotAModule(hpoc.Trainer):
        def create_model(self, config):
            return lambda x: x

    with pytest.raises(TrainerError, match=r"^create_model\(\) \(.*test_trainer\.py:\d+\) returned "
                                           r"function, not a torch\.nn\.Module$"):
        NotAModule().run_local(CONFIG, data, directory=tmp_path / "a")

    class AllAtOnce(hpoc.Trainer):
        def create_model_loss_optimizer(self, config):
            return "model", nn.MSELoss(), None

    with pytest.raises(TrainerError, match=r"^create_model_loss_optimizer\(\) \(.*\) returned str"):
        AllAtOnce().run_local(CONFIG, data, directory=tmp_path / "b")

    # sys.exit(0) too: Tune took it for its own stop and failed the trial with "Should not
    # have reached here. The TuneController should not have scheduled another `train`..."
    for code, shown in [(3, "sys.exit(3)"), (None, "sys.exit()"), ("bad width", "sys.exit('bad width')"),
                        (0, "sys.exit(0)")]:
        class Exits(hpoc.Trainer):
            def create_model(self, config):
                sys.exit(code)

        with pytest.raises(TrainerError, match=rf"the trainer called {re.escape(shown)} at "
                                               r".*test_trainer\.py:\d+: raise an exception"):
            Exits().run_local(CONFIG, data, directory=tmp_path / "c")


def test_class_labels_the_loss_cannot_take_are_said_in_the_datas_terms(toy, tmp_path):
    """torch said "expected target dtype to be Long or Byte, but got Float", "0D or 1D target
    tensor expected, multi-target not supported" or "Target 3 is out of bounds" (on a GPU a
    device-side assert), naming neither the data nor the fix."""
    workdir, plan, (train, val, _) = toy
    (x, y), (vx, vy) = train, val
    cases = [((x, y.float()), (vx, vy), r"^the targets are float32: CrossEntropyLoss takes class labels as "
              r"int64; return them so from the getter or splitter \(`y.astype\(np.int64\)`"),
             ((x, y.int()), (vx, vy), r"^the targets are int32: "),
             ((x, y.reshape(-1, 1)), (vx, vy), r"^the targets are shaped \(32, 1\): CrossEntropyLoss takes "
              r"class labels as a 1-D tensor; .*`y.reshape\(-1\)`"),
             ((x, y + 1), (vx, vy + 1), r"^class labels from 1 to 3, but the model has 3 outputs \(classes 0 "
              r"to 2\): number the classes from 0 \(`y - 1`\), or give the model one output per class$"),
             ((x, y), (vx, vy + 1), r"^class labels from 1 to 3, but the model has 3 outputs")]
    for i, (tr, va, message) in enumerate(cases):
        with pytest.raises(TrainerError, match=message):
            trainer(workdir).run_local(CONFIG, (tr, va), directory=tmp_path / str(i), plan=plan)
    ignored = y.clone()
    ignored[:5] = -100  # CrossEntropyLoss's ignore_index: not a class
    history = trainer(workdir).run_local(dict(CONFIG, epochs=1), ((x, ignored), (vx, vy)),
                                         directory=tmp_path / "ignored", plan=plan)
    assert len(history) == 1


def test_a_stop_asked_for_in_report_ends_the_trial_quietly(toy, tmp_path):
    """Tune (or a warm group) ends a trial by a SystemExit(0) from inside report(): that
    one is let through, where the trainer's own sys.exit(0) is a TrainerError."""
    from hpoc.runtime.pool_worker import TrialStopped

    workdir, plan, data = toy

    class StopsAtTheSecond(LocalReporter):
        def report(self, metrics, checkpoint_dir=None):
            super().report(metrics, checkpoint_dir)
            if len(self.history) == 2:
                raise TrialStopped()

    tuned = trainer(workdir)
    tuned.bind(config=CONFIG, strategy=Strategy(), reporter=StopsAtTheSecond(tmp_path / "a"), plan=plan,
               trial=TrialInfo(seed=0, deterministic=True, dir=str(tmp_path / "a")), data=data)
    with pytest.raises(TrialStopped):
        tuned.execute()
    assert [r["epoch"] for r in tuned.reporter.history] == [1, 2]


def test_an_optimizer_or_scheduler_hpoc_cannot_step_is_a_located_trainer_error(toy, tmp_path):
    """`return None` from create_optimizer, or a scheduler's name, failed every trial with
    "'NoneType' object has no attribute 'step'" from inside hpoc's loop."""
    workdir, _, data = toy
    base = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class NoOptimizer(base):
        def create_optimizer(self, model, config):
            torch.optim.Adam(model.parameters())

    with pytest.raises(TrainerError, match=r"^create_optimizer\(\) \(.*test_trainer\.py:\d+\) returned "
                                           r"None \(is its `return` missing\?\) as the optimizer, not a torch optimizer"):
        NoOptimizer().run_local(CONFIG, data, directory=tmp_path / "a")

    named = {"create_lr_scheduler": ("cosine", "the lr scheduler: return a torch LR scheduler"),
             "create_loss": ("cross_entropy", "the loss: return a callable")}
    for hook, (name, says) in named.items():  # a name where the object belongs
        def returns(self, *args, name=name):
            return name

        returns.__name__ = hook
        trainer = type("Named", (base,), {hook: returns})()
        with pytest.raises(TrainerError, match=rf"^{hook}\(\) \(.*\) returned str as {says}"):
            trainer.run_local(CONFIG, data, directory=tmp_path / hook)

    class AllAtOnce(base):
        def create_model_loss_optimizer(self, config):
            return self.create_model(config), nn.CrossEntropyLoss(), "adam"

    with pytest.raises(TrainerError, match=r"^create_model_loss_optimizer\(\) \(.*\) returned str as the "
                                           r"optimizer"):
        AllAtOnce().run_local(CONFIG, data, directory=tmp_path / "c")


def test_epochs_fall_back_to_the_plans_stop_criterion(toy, tmp_path):
    workdir, plan, data = toy
    plan = dict(plan, trials=dict(plan["trials"], stop={"training_iteration": 2}))
    no_epochs = {k: v for k, v in CONFIG.items() if k != "epochs"}
    history = trainer(workdir).run_local(no_epochs, data, directory=tmp_path / "a", plan=plan)
    assert [r["epoch"] for r in history] == [1, 2]


def test_default_optimizer_reads_nested_or_flat_settings(toy):
    workdir, _, _ = toy
    t = trainer(workdir)
    t.strategy = Strategy()
    model = nn.Linear(2, 2)
    sgd = t.create_optimizer(model, {"optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.7}})
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["lr"] == 0.3 and sgd.param_groups[0]["momentum"] == 0.7
    adam = t.create_optimizer(model, {"learning_rate": 0.01})
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 0.01


def test_trial_seeds_follow_the_plan_seed_and_trial_index():
    assert TrialInfo.for_trial("ab12cd34", "t00003_ab12cd34", 10).seed == 13
    assert TrialInfo.for_trial("ab12cd34", "t00003_ab12cd34", 10, shard=1).seed == 13 + 100_003
    assert TrialInfo.for_trial("46ff3_00002", "x", 0).index == 2
    # random/grid: trial 3 of shard 1 of 2 is trial 7 of the study, seeded as in one shard
    assert TrialInfo.for_trial("ab12cd34", "t00003_ab12cd34", 10, shard=1, shards=2).seed == 17
    assert TrialInfo.for_trial("ab12cd34", "t00007_ab12cd34", 10, shards=1).seed == 17
    free = TrialInfo.for_trial("ab12cd34", "t00003_ab12cd34", None)
    assert free.seed == TrialInfo.for_trial("ab12cd34", "t00003_ab12cd34", None).seed
    assert not free.deterministic


@pytest.mark.parametrize("raised, expected", [(None, "FINISHED"), ("stop", "FINISHED"),
                                              (RuntimeError("boom"), "FAILED")])
def test_tracking_run_status_follows_how_the_trial_ended(tmp_path, raised, expected):
    # Tune ends a trial it stops (scheduler, stop criterion) with SystemExit(0) inside report()
    # (a warm group with its subclass, TrialStopped): the trial's tracking run must say
    # FINISHED, not FAILED. The trainer's own sys.exit(0) is a TrainerError (above).
    from hpoc.runtime.pool_worker import TrialStopped

    raised = TrialStopped() if raised == "stop" else raised
    closed = []

    class Ends(hpoc.Trainer):
        def create_model(self, config):
            return nn.Linear(1, 1)

        def train(self):
            if raised is not None:
                raise raised

        def close(self, status="FINISHED"):
            closed.append(status)

    t = Ends()
    t.bind(config={"epochs": 1}, strategy=Strategy(), reporter=LocalReporter(tmp_path))
    if raised is None:
        t.execute()
    else:
        with pytest.raises(type(raised)):
            t.execute()
    assert closed == [expected]


def test_a_report_without_the_objective_names_what_was_reported(toy, tmp_path):
    """Ray would stop the whole study with a traceback; the trial says what is wrong."""
    workdir, plan, data = toy
    plan = dict(plan, objective={"metrics": [{"name": "accuracy", "mode": "max"}]})
    with pytest.raises(TrainerError) as info:
        trainer(workdir).run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    message = str(info.value)
    # which of the two names to change, and where: "did you mean" alone left it to guess
    assert ("but not `accuracy`, the objective's metric; did you mean `val_accuracy`? name it in the "
            "spec's `objective`, or report it as `accuracy`") in message
    assert "`train_loss`" in message and "`val_loss`" in message
    assert not list((tmp_path / "run").glob("checkpoint_*"))  # it stops before saving anything


def test_a_study_module_named_like_a_standard_module_does_not_replace_it(tmp_path, monkeypatch):
    """The runtime forgets a same-named module loaded from elsewhere, but never Python's own:
    torch and Ray would get the study's `random.py` for the rest of the process."""
    import random

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "random", random)
    (tmp_path / "random.py").write_text("class Getter:\n    pass\n")
    with pytest.raises(pipeline.PipelineError, match="has no `Getter`"):
        pipeline.import_target("random:Getter", str(tmp_path), "getter")
    assert sys.modules["random"] is random


def test_a_getter_returning_inputs_and_targets_without_a_splitter_is_refused():
    """Without a splitter the getter's pair is (train, validation): an (x, y) pair would train
    on the images and "validate" on the labels, failing every trial in a shape error."""
    import numpy as np

    x, y = np.zeros((10, 4)), np.zeros(10)
    with pytest.raises(pipeline.PipelineError, match=r"10 rows, shaped \(10, 4\) and \(10,\): that is \(inputs"):
        pipeline.as_splits((x, y), "getter `data:Get`")
    # a regression target kept as a column has the inputs' rank: still (inputs, targets)
    with pytest.raises(pipeline.PipelineError, match=r"shaped \(10, 4\) and \(10, 1\): that is"):
        pipeline.as_splits((x, y.reshape(-1, 1)), "getter `data:Get`")
    # One feature and a regression target, both (N, 1): read as two splits, the trials
    # trained on the inputs alone and "validated" on the targets
    with pytest.raises(pipeline.PipelineError, match=r"shaped \(10, 1\) and \(10, 1\): hpoc cannot "
                                                     r"tell \(inputs, targets\) from \(train, validation\)"):
        pipeline.as_splits((x[:, :1], y.reshape(-1, 1)), "getter `data:Get`")
    # a dict says they are splits
    assert pipeline.as_splits({"train": x[:, :1], "validation": x[:, 1:2]})[1].shape == (10, 1)
    # Two splits (same rank), splits as (x, y) pairs, and three arrays stay what they were.
    assert pipeline.as_splits((x, x[:3]))[1].shape == (3, 4)
    assert pipeline.as_splits(((x, y), (x, y)))[0][1] is y
    assert pipeline.as_splits((x, x, x))[2] is x
    # a dict key hpoc does not read was a missing validation split, and every trial then
    # failed for want of val_loss
    with pytest.raises(pipeline.PipelineError, match=r"returned a dict with the key 'valid', which hpoc "
                                                     r"does not read .*; did you mean `validation`\?"):
        pipeline.as_splits({"train": (x, y), "valid": (x, y)}, "getter `data:Get`")


@pytest.mark.parametrize("proportion, split", [(1.0, "validation"), (0.0, "train")])
def test_an_empty_split_is_refused_when_the_data_loads(tmp_path, proportion, split):
    """An empty validation split made every trial report val_loss = 0 and val_accuracy = 0
    (so a minimised val_loss ranked any trial best); an empty training split trained nothing."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", pipeline={
        "splitter": {"target": "toy:ToySplitter", "args": {"train_proportion": proportion}}})
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    assert f"splitter `toy:ToySplitter` returned an empty {split} split (0 samples)" in str(info.value)
    assert "help:" in str(info.value)
    # No validation at all (None) stays allowed: a trainer of its own may not validate.
    assert pipeline.as_splits(((torch.zeros(4, 2), torch.zeros(4)), None))[1] is None
    with pytest.raises(pipeline.PipelineError, match="empty validation split"):
        pipeline.as_splits({"train": (torch.zeros(4, 2), torch.zeros(4)), "validation": []})


def test_arrays_hpoc_cannot_batch_are_refused_when_the_data_loads(toy):
    """Class names as labels (a CSV's), or inputs and targets of different lengths, went to a
    DataLoader as a dataset of two samples: every trial failed in "default_collate: batch must
    contain tensors, numpy arrays, ...; found <class 'pandas.Series'>" or "could not determine
    the shape of object type 'DataFrame'"."""
    import numpy as np
    import pandas as pd

    workdir, plan, (train, val, _) = toy
    x, y = train
    names = pd.Series(np.array(["cat", "dog", "owl"])[y.numpy()])
    cls = trainer(workdir).__class__
    with pytest.raises(pipeline.PipelineError, match=r"^splitter `toy:ToySplitter` returned a train split hpoc "
                       r"cannot batch: its targets are object \(strings or mixed columns\): give numbers"):
        pipeline.require_datasets(cls, ((pd.DataFrame(x.numpy()), names), val, None), plan)
    with pytest.raises(pipeline.PipelineError, match=r"returned a validation split hpoc cannot batch: its inputs "
                       r"have 96 rows and targets have 95 rows: one row per sample in each$"):
        pipeline.require_datasets(cls, (train, (val[0], val[1][:-1].numpy()), None), plan)
    pipeline.require_datasets(cls, (train, val, None), plan)
    # a loop of the trainer's own may read them as it likes
    own = type("Own", (hpoc.Trainer,), {"train": lambda self: None})
    pipeline.require_datasets(own, ((x.numpy(), names), val, None), plan)


def test_a_dataloader_as_a_split_is_refused_when_the_data_loads(toy, tmp_path):
    """A splitter that returned DataLoaders (as torch tutorials build them) failed every
    trial, and its retry, in "TypeError: 'DataLoader' object is not subscriptable" from
    inside torch, naming no line of the study's code."""
    from torch.utils.data import DataLoader, TensorDataset

    workdir, plan, (train, val, _) = toy
    (workdir / "loaders.py").write_text(textwrap.dedent("""
        from torch.utils.data import DataLoader, TensorDataset
        from toy import ToySplitter

        class LoaderSplitter(ToySplitter):
            def execute(self, data):
                (xt, yt), (xv, yv), *_ = super().execute(data)
                return DataLoader(TensorDataset(xt, yt), batch_size=8, num_workers=2), (xv, yv)
    """))
    loaders = make_plan(workdir, tmp_path / "results",
                        pipeline={"splitter": {"target": "loaders:LoaderSplitter", "args": {}}})
    data = pipeline.load_data(loaders)
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.require_datasets(trainer(workdir).__class__, data, loaders)
    said = str(info.value)
    assert said.startswith("splitter `loaders:LoaderSplitter` returned a DataLoader as its train split")
    assert "help: return its dataset (`loader.dataset`)" in said
    # A loop of the trainer's own may iterate its DataLoader itself.
    own = type("Own", (hpoc.Trainer,), {"train": lambda self: None})
    pipeline.require_datasets(own, data, loaders)
    # A trainer run without the driver (run_local) says it too, and is not retried.
    with pytest.raises(TrainerError, match="the train split is a DataLoader"):
        trainer(workdir).run_local(CONFIG, (DataLoader(TensorDataset(*train)), val),
                                   directory=tmp_path / "run", plan=plan)


@pytest.mark.parametrize("value", ["0.93", None, [0.9, 0.1]])
def test_an_objective_that_is_not_a_number_names_the_value(toy, tmp_path, value):
    """A string or None objective was taken, then ended the study as "NaN or inf (training
    diverged?)" and `hpoc results` said the objective was never reported."""
    workdir, plan, data = toy
    plan = dict(plan, objective={"metrics": [{"name": "val_accuracy", "mode": "max"}]})

    class Stringly(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def report(self, metrics, **kwargs):
            super().report(dict(metrics, val_accuracy=value), **kwargs)

    with pytest.raises(TrainerError) as info:
        Stringly().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    assert f"the objective's metric `val_accuracy` must be a number; the trainer reported {value!r} " \
           f"({type(value).__name__})" in str(info.value)


def test_a_val_accuracy_the_loop_could_not_compute_says_why(toy, tmp_path):
    """A validation_step that returned the loss alone left `val_accuracy` out, and the
    error said only that the trainer did not report it: "report it every epoch"."""
    workdir, plan, data = toy

    class LossOnly(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def validation_step(self, batch):
            return self.loss(self.model(batch[0]), batch[1])

    with pytest.raises(TrainerError) as info:
        LossOnly().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    said = str(info.value)
    assert said.startswith("`val_accuracy`, the objective's metric, is missing: validation_step() (")
    assert f"({__file__}:" in said and said.endswith("returned no outputs to score: return `(loss, outputs)`")


@pytest.mark.parametrize("hook", ["create_model", "create_loss", "create_optimizer", "train_step"])
def test_a_hook_that_returns_none_asks_for_its_return(toy, tmp_path, hook):
    """"returned NoneType, not a torch.nn.Module" named the type of nothing: a `return` left
    out (a branch that falls through, a model built and not returned) is what it means."""
    workdir, plan, data = toy
    Toy = pipeline.import_target("toy:ToyTrainer", str(workdir))
    def forgot(self, *args):
        self.built = nn.Linear(2, 2)  # and no `return`

    forgot.__name__ = hook
    Forgot = type("Forgot", (Toy,), {hook: forgot})
    with pytest.raises(TrainerError, match=rf"{hook}\(\) \(.*\) returned None \(is its `return` missing\?\)"):
        Forgot().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)


def test_a_loop_of_its_own_that_skips_setup_is_told_to_call_it(toy, tmp_path):
    """"AttributeError: 'T' object has no attribute 'train_dataloader'", retried in every
    trial: the docs' loop begins with `self.setup()`, which makes the batches."""
    workdir, plan, data = toy

    class NoSetup(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def train(self):
            for batch in self.train_dataloader:
                pass

    with pytest.raises(TrainerError, match=r"`self.train_dataloader` is made by `self.setup\(\)`: call it "
                                           r"at the start of `NoSetup.train\(\)`"):
        NoSetup().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    assert not hasattr(NoSetup(), "validation_dataloader")  # still an AttributeError to getattr
    with pytest.raises(AttributeError, match="has no attribute 'trian_data'"):
        NoSetup().trian_data


@pytest.mark.parametrize("step", ["report", "restore", "train_step"])
def test_a_loop_of_its_own_that_skips_setup_is_told_so_by_what_needs_the_model(toy, tmp_path, step):
    """`self.report` checkpointed a model never built: "'NoneType' object has no attribute
    'state_dict'"; `self.restore` skipped every checkpoint as unreadable and started over."""
    workdir, plan, data = toy
    Toy = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class NoSetup(Toy):
        def train(self):
            if step == "restore":
                self.restore()
            elif step == "train_step":
                self.train_step((torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)))
            self.report({"val_accuracy": 0.5}, epoch=0)

    if step == "restore":  # a checkpoint to resume from
        Toy().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    with pytest.raises(TrainerError, match=rf"`self.{step}\(\)` needs the model `self.setup\(\)` builds: "
                                           r"call it at the start of `NoSetup.train\(\)`"):
        NoSetup().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)


def test_a_loop_of_its_own_that_steps_an_optimizer_the_strategy_never_got_is_told_so(toy, tmp_path):
    """A model and optimizer built in train() itself, then `self.strategy.step()`:
    "'NoneType' object has no attribute 'step'", retried in every trial."""
    workdir, plan, data = toy

    class OwnModel(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def train(self):
            model = nn.Linear(2, 2)
            torch.optim.SGD(model.parameters(), lr=0.1)
            self.strategy.backward(model(torch.zeros(1, 2)).sum())
            self.strategy.step()

    with pytest.raises(TrainerError, match=r"`self.strategy.step\(\)` has no optimizer to step: build the "
                                           r"model with `self.setup\(\)`, or hand yours to "
                                           r"`self.strategy.distributed\(model, optimizer\)`"):
        OwnModel().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)


def test_a_loop_of_its_own_that_never_reports_fails_its_trial_saying_so(toy, tmp_path):
    """A train() that forgot `self.report` ended every trial with no result, and Ray's
    metric check then stopped the whole study, printed as "a bug in hpoc"."""
    workdir, plan, data = toy

    class Silent(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def train(self):
            self.setup()
            for epoch in range(self.restore(), self.epochs):
                for batch in self.train_dataloader:
                    self.strategy.backward(self.train_step(batch))
                    self.strategy.step()

    with pytest.raises(TrainerError, match=r"^Silent.train\(\) \(.*test_trainer.py:\d+\) ended without "
                                           r"reporting anything: call `self.report"):
        Silent().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    # A trial resumed after its last epoch has nothing left to report: not an error.
    trainer(workdir).run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "done", plan=plan)
    assert Silent().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "done", plan=plan) == []


def test_a_loop_that_returns_its_metrics_is_told_to_report_them(toy, tmp_path):
    """`return {"val_mse": ...}` from train() (as a Ray function trainable might) was told
    only that it "ended without reporting anything": the dict it returned went unmentioned."""
    workdir, plan, data = toy

    class Returns(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def train(self):
            self.setup()
            return {"val_accuracy": 0.5}

    with pytest.raises(TrainerError) as info:
        Returns().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)
    message = str(info.value)
    assert "returned {'val_accuracy': 0.5} instead of reporting it" in message
    assert "hpoc does not read what train() returns" in message
    assert "self.report({...}, epoch=epoch)" in message


def test_a_model_that_returns_a_tuple_is_named_by_the_default_steps(toy, tmp_path):
    """`forward` returning `(logits, features)` failed inside torch's loss ("argument 'input'
    must be Tensor, not tuple") with no line of the study's code; under a loss of the
    trainer's own that unpacks it, validation crashed in hpoc on `outputs.dim()`."""
    workdir, plan, data = toy
    Toy = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(8, 3)

        def forward(self, x):
            return self.net(x), x

    class Tupled(Toy):
        def create_model(self, config):
            return Pair()

    with pytest.raises(TrainerError, match=r"^the model's forward\(\) \(.*test_trainer.py:\d+\) returned "
                                           r"a tuple, and the loss \(CrossEntropyLoss\) takes a tensor"):
        Tupled().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "a", plan=plan)

    class Unpacks(Tupled):
        def create_loss(self, config):
            ce = nn.CrossEntropyLoss()
            return lambda out, y: ce(out[0], y)

    with pytest.raises(TrainerError, match=r"`val_accuracy`, the objective's metric, is missing: the "
                                           r"validation outputs are a tuple, not a tensor"):
        Unpacks().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "b", plan=plan)


def test_a_checkpoint_state_that_cannot_be_saved_names_the_hook(toy, tmp_path):
    """A lambda in `checkpoint_state()` failed the first checkpoint, and every retry, in
    "Can't pickle local object" from inside torch.save, after a whole epoch."""
    workdir, plan, data = toy

    class Closure(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def checkpoint_state(self):
            return {"schedule": lambda epoch: 0.1 ** epoch}

    with pytest.raises(TrainerError, match=r"^checkpoint_state\(\) \(.*test_trainer.py:\d+\) returned what "
                                           r"a checkpoint cannot hold: .*Can't pickle local object"):
        Closure().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)


def test_a_metric_reported_as_a_tensor_of_several_values_is_refused(toy, tmp_path):
    """`self.report({"val_accuracy": per_class})` was reported as the mean of the classes'
    accuracies, without a word, and the search ranked trials by it."""
    workdir, plan, data = toy

    class PerClass(pipeline.import_target("toy:ToyTrainer", str(workdir))):
        def report(self, metrics, **kwargs):
            super().report(dict(metrics, val_accuracy=torch.tensor([0.9, 0.5, 0.1])), **kwargs)

    with pytest.raises(TrainerError, match=r"^the trainer reported `val_accuracy` as a tensor of shape "
                                           r"\(3,\): report one number per metric"):
        PerClass().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "run", plan=plan)

    class OneValue(PerClass):  # a one-element tensor is a number
        def report(self, metrics, **kwargs):
            hpoc.Trainer.report(self, dict(metrics, val_accuracy=torch.tensor([[0.75]])), **kwargs)

    history = OneValue().run_local(dict(CONFIG, epochs=1), data[:2], directory=tmp_path / "one", plan=plan)
    assert history[-1]["val_accuracy"] == 0.75


def test_hooks_that_hpoc_cannot_call_are_named_before_any_trial():
    """`def create_model(self):` failed every trial, and each retry, in a TypeError."""
    from hpoc.runtime.hooks import hook_problems

    class Wrong(hpoc.Trainer):
        def create_model(self):
            pass

        def train_step(self, x, y):
            pass

        def validation_step(self, batch, extra=0, *more, flag=True):  # callable as hpoc calls it
            pass

        @staticmethod
        def create_loss(config):
            pass

    problems = hook_problems(Wrong)
    assert [p.split(" (")[0] for p in problems] == ["`create_model(self)`", "`train_step(self, x, y)`"]
    assert f"({__file__}:" in problems[0] and problems[0].endswith("must be `create_model(self, config)`")
    with pytest.raises(pipeline.PipelineError, match=r"must be `train_step\(self, batch\)`: hpoc calls these hooks so"):
        pipeline.require_trainer_class(Wrong, "t:Wrong")

    # A hook that only the trainer's own code calls may take anything.
    class OwnLoop(Wrong):
        def train(self):
            pass

    class OwnModels(hpoc.Trainer):
        def create_model_loss_optimizer(self):
            return self.create_model()

        def create_model(self):
            pass

    class OwnBatches(hpoc.Trainer):  # its own batches() never calls prepare_inputs
        def batches(self, data, *, train, batch_size=None):
            return data

        def prepare_inputs(self, x, scale):
            pass

    assert hook_problems(OwnLoop) == [] and hook_problems(OwnModels) == [] and hook_problems(OwnBatches) == []


def test_a_misspelt_hook_is_named_before_any_trial():
    """`create_lr_schedular` was never called: the study trained without a scheduler and
    nothing said so."""
    from hpoc.runtime.hooks import near_misses

    class Typos(hpoc.Trainer):
        def create_model(self, config):
            pass

        def create_lr_schedular(self, optimizer, config):
            pass

        def validaton_step(self, batch):
            pass

        def build_layers(self):  # a helper of the user's own: not a hook's name
            pass

    said = near_misses(Typos)
    assert [m.split(" (")[0] for m in said] == ["`create_lr_schedular`", "`validaton_step`"]
    assert f"({__file__}:" in said[0] and said[0].endswith(
        "is not a hook hpoc calls (did you mean `create_lr_scheduler`?): the default "
        "`create_lr_scheduler` runs instead")


def test_a_trainer_without_a_model_is_refused_before_any_trial():
    """A trainer with no `create_model` (misspelt, or forgotten) failed every trial with
    "defines no model", each after Ray and a worker came up."""

    class Typo(hpoc.Trainer):
        def create_modle(self, config):
            pass

    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.require_trainer_class(Typo, "t:Typo")
    said = str(info.value)
    assert said.startswith("trainer `t:Typo` defines no model: implement `create_model(self, config)`")
    assert "`create_modle`" in said and f"({__file__}:" in said  # the near miss, where it is

    class Nothing(hpoc.Trainer):
        pass

    with pytest.raises(pipeline.PipelineError, match="defines no model"):
        pipeline.require_trainer_class(Nothing, "t:Nothing")

    # Any method that makes the model itself will do, and so does a parent's create_model.
    class OwnModels(hpoc.Trainer):
        def create_model_loss_optimizer(self, config):
            pass

    class OwnLoop(hpoc.Trainer):
        def train(self):
            pass

    class Child(OwnModels):
        pass

    for ok in (OwnModels, OwnLoop, Child):
        pipeline.require_trainer_class(ok, "t:Ok")


def test_a_trainer_its_step_arguments_cannot_build_is_refused_before_any_trial(tmp_path):
    """`def __init__(self, config)` failed every trial building it ("missing 1 required
    positional argument"), each retried once, after Ray and a worker came up."""
    from hpoc.compat.itwinai import RayTorchTrainer

    class NeedsConfig(hpoc.Trainer):
        def __init__(self, config):
            super().__init__()

        def create_model(self, config):
            return nn.Linear(1, 1)

    plan = make_plan(tmp_path, tmp_path / "results")
    plan["pipeline"]["trainer"] = {"target": "t:NeedsConfig", "args": {}}
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.require_trainer_class(NeedsConfig, "t:NeedsConfig", plan)
    said = str(info.value)
    assert said.startswith(f"trainer `t:NeedsConfig` ({__file__}:")
    assert "cannot be built with the step's arguments (none): missing a required argument: 'config'" in said
    assert "`self.config`" in said
    plan["pipeline"]["trainer"]["args"] = {"config": {}, "depth": 3}
    with pytest.raises(pipeline.PipelineError, match=r"arguments \(config, depth\): .*unexpected keyword "
                                                     r"argument 'depth'$"):
        pipeline.require_trainer_class(NeedsConfig, "t:NeedsConfig", plan)

    class Compat(RayTorchTrainer):  # itwinai's trainers take the config, which hpoc gives them
        def __init__(self, config, epochs=1):
            super().__init__(config)

        def create_model(self, config):
            return nn.Linear(1, 1)

    plan["pipeline"]["trainer"]["args"] = {"epochs": 2}
    pipeline.require_trainer_class(Compat, "t:Compat", plan)


@pytest.mark.parametrize("example", ["digits", "fashion_mnist", "itwinai"])
def test_the_examples_trainers_pass_the_hook_check(example, monkeypatch):
    from hpoc.runtime.hooks import hook_problems

    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / example))
    for name in ("trainer", "data"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # (conftest drops what it imports)
    module = importlib.import_module("trainer")
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, hpoc.Trainer)]
    assert classes and all(hook_problems(c) == [] for c in classes)


def test_a_getter_failing_inside_a_library_names_the_studys_line_too(tmp_path):
    """torchvision's reader of a corrupt IDX file fails in an assert of its own: its file
    and line alone did not say which line of the study's code read what."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "reader.py").write_text("import json\n\nclass Getter:\n    def execute(self):\n"
                                       "        return json.loads('{truncated')\n")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"getter": {"target": "reader:Getter", "args": {}}, "splitter": None})
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    message = str(info.value)
    assert message.startswith("getter `reader:Getter` failed: JSONDecodeError: ")
    assert "json/decoder.py:" in message and f", called from {workdir / 'reader.py'}:5)" in message


def test_a_relative_path_a_getter_cannot_open_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """Run from another directory, `np.load("data/x.npy")` said only "No such file": not
    that it resolves in the spec's directory, nor which line opened it. A getter's own
    FileNotFoundError (how to fetch the data) is shown as it is."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "reader.py").write_text(
        "class Getter:\n    def execute(self):\n        return open('data/x.npy').read()\n\n"
        "class Told:\n    def execute(self):\n        raise FileNotFoundError('run fetch.py first')\n\n"
        "class Table:\n    def execute(self):\n        import numpy\n        return numpy.loadtxt('data/x.csv')\n")
    monkeypatch.chdir(tmp_path)
    for getter, expected in [
            ("reader:Getter", f"getter `reader:Getter` failed: [Errno 2] No such file or directory: "
                              f"'data/x.npy' (relative to {workdir}, the spec's directory) at "
                              f"{workdir / 'reader.py'}:3"),
            ("reader:Told", "getter `reader:Told` failed: run fetch.py first"),
            # NumPy raises its own FileNotFoundError, without the OS's errno and file name
            ("reader:Table", f"getter `reader:Table` failed: data/x.csv not found. (a relative path is "
                             f"looked for in {workdir}, the spec's directory) at {workdir / 'reader.py'}:12")]:
        plan = make_plan(workdir, tmp_path / "results",
                         pipeline={"getter": {"target": getter, "args": {}}, "splitter": None})
        with pytest.raises(pipeline.PipelineError) as info:
            pipeline.load_data(plan)
        assert str(info.value) == expected


class _Linear(hpoc.Trainer):
    def create_model(self, config):
        return nn.Linear(3, 1)


def test_task_regression_from_the_spec_trains_with_mse_and_a_one_output_classifier_fails(tmp_path):
    """`trainer = trainer:T(task = "regression")` is how a spec says it; left out, a one-output
    model under CrossEntropyLoss reported val_loss = 0 every epoch and ranked best."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    data = ((x[:48], y[:48]), (x[48:], y[48:]))
    config = {"lr": 0.05, "batch_size": 16, "epochs": 2}
    history = _Linear(task="regression").run_local(config, data, directory=tmp_path / "a")
    assert history[-1]["val_loss"] > 0 and "val_accuracy" not in history[-1]
    with pytest.raises(TrainerError, match=r'one output .* always 0: .*task = "regression"'):
        _Linear().run_local(config, data, directory=tmp_path / "b")
    with pytest.raises(ValueError, match="task = 'regresion': it must be one of"):
        _Linear(task="regresion")

    class Misspelt(_Linear):  # the class attribute trained with MSELoss and no accuracy, silently
        task = "clasification"

    with pytest.raises(ValueError, match="task = 'clasification': it must be one of"):
        Misspelt()


def test_regression_targets_that_broadcast_against_the_outputs_fail_the_trial_saying_so(tmp_path):
    """scikit-learn's targets are 1-D: MSELoss broadcast (16, 1) outputs against (16,) targets
    to a (16, 16) loss, torch only warned in the trial's stderr, and every trial trained
    towards the mean, ranked by a val_loss that looked like any other."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5]))  # (64,)
    config = {"lr": 0.05, "batch_size": 16, "epochs": 1}
    with pytest.raises(TrainerError, match=r"outputs shaped \(16, 1\), targets \(16,\): MSELoss would "
                                           r"broadcast them to \(16, 16\);.*reshape\(-1, 1\).*forward\(\)$"):
        _Linear(task="regression").run_local(config, ((x[:48], y[:48]), (x[48:], y[48:])),
                                             directory=tmp_path / "a")
    # a model that squeezes its one output to (16,) against column targets: the same loss
    class Squeezed(_Linear):
        def create_model(self, config):
            return nn.Sequential(nn.Linear(3, 1), nn.Flatten(0))

    column = y.reshape(-1, 1)
    with pytest.raises(TrainerError, match=r"outputs shaped \(16,\), targets \(16, 1\): MSELoss would "
                                           r"broadcast them to \(16, 16\); return outputs shaped as the targets"):
        Squeezed(task="regression").run_local(config, ((x[:48], column[:48]), (x[48:], column[48:])),
                                              directory=tmp_path / "c")
    # the targets as a column are what the model outputs: it trains
    history = _Linear(task="regression").run_local(config, ((x[:48], column[:48]), (x[48:], column[48:])),
                                                   directory=tmp_path / "b")
    assert history[-1]["val_loss"] > 0


def test_validation_step_may_return_a_dict_with_metrics_of_its_own(toy, tmp_path):
    """Its own metric, averaged over the validation samples, is reported (and can be the
    objective); a return value hpoc cannot read names the hook and what to return."""
    workdir, _, (train, val, _) = toy
    base = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class OwnMetric(base):
        def validation_step(self, batch):
            x, y = batch
            out = self.model(x)
            return {"loss": self.loss(out, y), "outputs": out,
                    "val_err": (out.argmax(1) != y).float().mean()}

    history = OwnMetric().run_local(CONFIG, (train, val), directory=tmp_path / "a")
    assert all(r["val_err"] == pytest.approx(1 - r["val_accuracy"], abs=1e-6) for r in history)

    class NoLoss(base):
        def validation_step(self, batch):
            return {"f1": 0.5}

    with pytest.raises(TrainerError, match=r"^validation_step\(\) \(.*test_trainer\.py:\d+\) "
                                           r"returned a dict without `loss` \(keys: f1\)"):
        NoLoss().run_local(CONFIG, (train, val), directory=tmp_path / "b")

    class Clash(base):  # would have replaced hpoc's val_loss (or Tune's epoch, done, ...)
        def validation_step(self, batch):
            return {"loss": self.loss(self.model(batch[0]), batch[1]), "val_loss": 0.0}

    with pytest.raises(TrainerError, match=r"returned `val_loss`, a name hpoc or Ray Tune reports itself"):
        Clash().run_local(CONFIG, (train, val), directory=tmp_path / "d")

    class Nothing(base):
        def validation_step(self, batch):
            self.loss(self.model(batch[0]), batch[1])

    with pytest.raises(TrainerError, match=r"^validation_step\(\) \(.*\) returned None \(is its `return` missing\?\): return "):
        Nothing().run_local(CONFIG, (train, val), directory=tmp_path / "c")


def test_val_accuracy_is_left_out_when_no_batch_gave_outputs_to_judge(toy, tmp_path):
    """A validation_step that returns only its loss reported val_accuracy = 0: a model that
    is never right, to whoever reads the table or ranks by it."""
    workdir, _, (train, val, _) = toy
    base = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class LossOnly(base):
        def validation_step(self, batch):
            return self.loss(self.model(batch[0]), batch[1])

    history = LossOnly().run_local(CONFIG, (train, val), directory=tmp_path / "a")
    assert "val_loss" in history[-1] and "val_accuracy" not in history[-1]


def test_numpy_float64_arrays_train_as_float32(tmp_path):
    """NumPy's default dtype met a float32 model in "mat1 and mat2 must have the same
    dtype" on the first batch of every trial."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    assert x.dtype == y.dtype == np.float64
    data = ((x[:48], y[:48]), (x[48:], y[48:]))
    history = _Linear(task="regression").run_local({"lr": 0.05, "batch_size": 16, "epochs": 2}, data,
                                                   directory=tmp_path / "a")
    assert history[-1]["val_loss"] > 0

    class Rows(torch.utils.data.Dataset):  # not arrays: batched by a DataLoader
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    history = _Linear(task="regression").run_local({"lr": 0.05, "batch_size": 16, "epochs": 2},
                                                   (Rows(x[:48], y[:48]), Rows(x[48:], y[48:])),
                                                   directory=tmp_path / "b")
    assert history[-1]["val_loss"] > 0


def test_epochs_or_batch_size_inside_a_group_is_said_before_any_trial(tmp_path):
    """`data { batch_size = choice(16, 32) }`: the default loop reads `batch_size` at the
    config's top level, so every trial trained with 64 and the search searched nothing."""
    from hpoc.runtime.hooks import trainer_warnings as warnings

    workdir = write_toy(tmp_path / "study")
    trainer = pipeline.import_target("toy:ToyTrainer", str(workdir))
    space = {"constants": {"epochs": 2}, "params": [
        {"name": "data.batch_size", "domain": "choice", "args": {"categories": [16, 32]}, "condition": None}]}
    plan = make_plan(workdir, tmp_path / "results", space=dict(space, _replace=True))
    (said,) = warnings(trainer, plan)
    assert said == ("`data.batch_size` is inside a group, and hpoc's default loop reads `batch_size` "
                    "at the top of the config only: it never sees it (write `batch_size = ...` "
                    "outside the group)")
    # also at the top level, or a trainer that reads its settings itself: nothing to say
    both = dict(space, constants={"epochs": 2, "batch_size": 8}, _replace=True)
    assert warnings(trainer, make_plan(workdir, tmp_path / "results", space=both)) == []
    (workdir / "own.py").write_text("import hpoc\n\nclass T(hpoc.Trainer):\n    @property\n"
                                    "    def batch_size(self):\n        return self.config['data']['batch_size']\n")
    assert warnings(pipeline.import_target("own:T", str(workdir)), plan) == []
    # epochs only in a group: no number of epochs at all, and the error says where it went
    grouped = make_plan(workdir, tmp_path / "results", space={"constants": {"train.epochs": 3}, "params": [],
                                                              "_replace": True})
    with pytest.raises(pipeline.PipelineError, match=r"the number of epochs is not set: .*\(`train.epochs` "
                                                     r"is inside a group: the loop reads `epochs` at the top"):
        pipeline.check_imports(grouped)


def test_a_plan_without_epochs_for_the_default_loop_stops_before_any_trial(tmp_path):
    """Every trial failed with "the number of epochs is not set" once Ray was up; the
    driver (and `hpoc check --preflight`) has the trainer class and the plan at hand."""
    workdir = write_toy(tmp_path / "study")
    plan = make_plan(workdir, tmp_path / "results", space={"constants": {"batch_size": 32}})
    with pytest.raises(pipeline.PipelineError, match=r"^trainer `toy:ToyTrainer` runs hpoc's default "
                                                     r"loop, and the number of epochs is not set: add `epochs`"):
        pipeline.check_imports(plan)
    # given another way (stop criterion, a trainer argument), or a loop of the trainer's own
    for sections in ({"trials": {"stop": {"training_iteration": 2}}},
                     {"pipeline": {"trainer": {"target": "toy:ToyTrainer", "args": {"epochs": 2}}}}):
        pipeline.check_imports(make_plan(workdir, tmp_path / "results",
                                         space={"constants": {"batch_size": 32}}, **sections))
    (workdir / "own.py").write_text("import hpoc\n\nclass T(hpoc.Trainer):\n    def train(self):\n"
                                    "        self.report({'val_accuracy': 1.0})\n")
    pipeline.check_imports(make_plan(workdir, tmp_path / "results", space={"constants": {}},
                                     pipeline={"trainer": {"target": "own:T", "args": {}}}))
    # no getter nor splitter: the default loop has no data (said from every trial, after Ray)
    no_data = {"pipeline": {"getter": None, "splitter": None, "_replace": True,
                            "trainer": {"target": "toy:ToyTrainer", "args": {}}}}
    with pytest.raises(pipeline.PipelineError, match=r"^trainer `toy:ToyTrainer` runs hpoc's default "
                                                     r"loop, which has no training data: the plan needs"):
        pipeline.check_imports(make_plan(workdir, tmp_path / "results", **no_data))
    no_data["pipeline"]["trainer"]["target"] = "own:T"
    pipeline.check_imports(make_plan(workdir, tmp_path / "results", **no_data))


def test_a_train_step_that_returns_no_tensor_names_the_hook(toy, tmp_path):
    """`return loss.item()` (or no return) failed in hpoc's loop with "'float' object has no
    attribute 'backward'", without the user's line."""
    workdir, _, data = toy
    base = pipeline.import_target("toy:ToyTrainer", str(workdir))

    class Item(base):
        def train_step(self, batch):
            return self.loss(self.model(batch[0]), batch[1]).item()

    with pytest.raises(TrainerError, match=r"^train_step\(\) \(.*test_trainer\.py:\d+\) returned float: "
                                           r"return the batch's loss as a tensor"):
        Item().run_local(CONFIG, data, directory=tmp_path / "a")


def test_numeric_pandas_frames_are_data_as_arrays_are(tmp_path):
    """A getter reading a CSV returns DataFrames and Series: every trial failed in the
    DataLoader's collate ("found <class 'pandas.DataFrame'>")."""
    pd = pytest.importorskip("pandas")
    import numpy as np

    from hpoc.runtime.batches import as_tensors

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(64, 3)), columns=["a", "b", "c"])
    df["y"] = df.a - 2 * df.b + 0.5 * df.c
    x, y = as_tensors((df[["a", "b", "c"]], df["y"]))
    assert x.shape == (64, 3) and x.dtype == torch.float32 and torch.allclose(y.double(), torch.tensor(df["y"].to_numpy()))
    assert as_tensors((df.assign(name="x"), df["y"])) is None  # a string column: not tensors
    data = ((df[["a", "b", "c"]][:48], df[["y"]][:48]), (df[["a", "b", "c"]][48:], df[["y"]][48:]))
    history = _Linear(task="regression").run_local({"lr": 0.05, "batch_size": 16, "epochs": 2}, data,
                                                   directory=tmp_path / "a")
    assert history[-1]["val_loss"] > 0


class _Diverges(hpoc.Trainer):
    def create_model(self, config):
        return nn.Linear(4, 2)

    steps = 0

    def train_step(self, batch):
        self.steps += 1
        loss = super().train_step(batch)
        return loss * float("nan") if self.steps > 1 else loss  # NaN weights after step 2


def test_a_diverged_model_reports_a_nan_accuracy_not_the_share_of_class_0(tmp_path):
    """NaN outputs made argmax pick class 0 for every sample: a diverged trial reported the
    share of class 0 as its val_accuracy (0.55 here, 0.9 on imbalanced data) and ranked
    with it as a completed trial."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 4, generator=g)
    y = (torch.arange(80) % 4 == 0).long()  # three quarters are class 0
    data = ((x[:60], y[:60]), (x[60:], y[60:]))
    history = _Diverges().run_local({"lr": 0.01, "batch_size": 20, "epochs": 2}, data,
                                    directory=tmp_path / "run")
    assert history[-1]["train_loss"] != history[-1]["train_loss"]  # NaN: it diverged
    assert history[-1]["val_accuracy"] != history[-1]["val_accuracy"], history[-1]


def _splitter_failure(tmp_path: Path, getter_body: str) -> str:
    """What load_data says when a getter returning `getter_body`'s value meets a splitter
    that unpacks it as `x, y`."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "reader.py").write_text(
        f"class Getter:\n    def execute(self):\n        {getter_body}\n\n"
        "class Splitter:\n    def execute(self, data):\n        x, y = data\n        return x, y, None\n")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"getter": {"target": "reader:Getter", "args": {}},
                               "splitter": {"target": "reader:Splitter", "args": {}}})
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    return str(info.value)


def test_a_getter_that_returns_nothing_is_named_when_the_splitter_fails_on_it(tmp_path):
    """A getter without its `return`: the splitter failed with "cannot unpack non-iterable
    NoneType object", blaming the splitter for the getter's mistake."""
    message = _splitter_failure(tmp_path, "data = [1, 2, 3]")
    assert message.startswith("splitter `reader:Splitter` failed: TypeError: cannot unpack non-iterable NoneType")
    assert message.endswith("\n  note: the getter `reader:Getter` returned None: does its execute() end with a "
                            "`return`?"), message


def test_a_getter_whose_output_the_splitter_cannot_unpack_is_named_with_what_it_returned(tmp_path):
    """A getter that returns a file's path, not its data: the splitter failed with "too many
    values to unpack (expected 2)", saying nothing of what it was given."""
    message = _splitter_failure(tmp_path, "return 'data.csv'")
    assert message.startswith("splitter `reader:Splitter` failed: ValueError: too many values to unpack")
    assert message.endswith("\n  note: the getter `reader:Getter` returned a str ('data.csv'), which the "
                            "splitter could not unpack"), message


def test_a_getter_written_as_a_function_that_returns_the_data_is_told_what_a_step_is(tmp_path):
    """`def get(): return train, val` named as the getter said "has neither `execute()` nor
    `__call__`" of a getter that, as written, has `__call__`: hpoc had called it to build
    the step and was looking at the data it returned."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "fn.py").write_text("import torch\n\ndef get():\n"
                                   "    d = torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.zeros(4))\n"
                                   "    return d, d\n")
    plan = make_plan(workdir, tmp_path / "results", pipeline={"getter": {"target": "fn:get", "args": {}},
                                                              "splitter": None})
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.load_data(plan)
    message = str(info.value)
    assert message.startswith("getter `fn:get`: calling it built a tuple, which has no `execute()`"), message
    assert "help: a step is a class whose `execute(self)` returns the data" in message


def test_a_train_that_calls_restore_is_known_through_its_base_class():
    """A `train()` that wraps hpoc's loop (`super().train()`, `Base.train(self)`) calls its
    `restore()`: a metric logged before it waited for none, and PBT's exploit found then was
    taken for a resume. A loop of its own that only sets its model to training does not."""
    from hpoc.runtime.trainer import _calls_restore

    class Wrapped(hpoc.Trainer):
        def train(self):
            super().train()

    class Named(hpoc.Trainer):
        def train(self):
            hpoc.Trainer.train(self)

    class Own(hpoc.Trainer):
        def train(self):
            self.model.train()

    class Calls(Own):
        def train(self):
            for _ in range(self.restore(), 2):
                super().train()

    assert _calls_restore(object.__new__(Wrapped)) and _calls_restore(object.__new__(Named))
    assert _calls_restore(object.__new__(Calls)) and _calls_restore(object.__new__(hpoc.Trainer))
    assert not _calls_restore(object.__new__(Own))


def test_a_trials_end_waits_for_its_last_checkpoints_sync_and_fails_on_its_error(toy, tmp_path, monkeypatch):
    """Ray's copy of a checkpoint is synced in a thread (report.py): a trial whose train()
    returned waits for the last one, and a failed write-back (EIO) fails it there, not
    after Ray took the trial for finished."""
    from hpoc.runtime import trainer as trainer_mod

    workdir, plan, (train, val, _) = toy
    flushed = []

    class Failing(LocalReporter):
        def flush(self):
            flushed.append(len(self.history))
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(trainer_mod, "LocalReporter", Failing)
    with pytest.raises(OSError, match="Input/output error"):
        trainer(workdir).run_local({**CONFIG, "epochs": 2}, (train, val), directory=tmp_path / "run", plan=plan)
    assert flushed == [2]  # after the last epoch's report


def test_a_path_with_an_unexpanded_variable_says_that_nothing_expanded_it(tmp_path, monkeypatch):
    """`path: $DATA/x.npy` in the config reaches the getter as written (as jsonargparse hands it
    on in itwinai): "No such file '$DATA/x.npy'" did not say why the set variable did not count."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "reader.py").write_text(
        "class Getter:\n    def __init__(self, path):\n        self.path = path\n\n"
        "    def execute(self):\n        return open(self.path).read()\n")
    monkeypatch.setenv("DATA", str(tmp_path))
    for path, told in [("$DATA/x.npy", "\n  help: `$DATA` in the path is not expanded: a step gets its "
                                       "arguments as written; expand them there (`os.path.expandvars`)"),
                       ("~/x.npy", "\n  help: `~` in the path is not expanded: a step gets its arguments as "
                                   "written; expand them there (`os.path.expanduser`)")]:
        plan = make_plan(workdir, tmp_path / "results",
                         pipeline={"getter": {"target": "reader:Getter", "args": {"path": path}}, "splitter": None})
        with pytest.raises(pipeline.PipelineError) as info:
            pipeline.load_data(plan)
        assert told in str(info.value), str(info.value)


def test_a_trainer_that_sets_up_torch_distributed_again_is_told_it_is_set_up(toy, tmp_path):
    """A DDP script's own `dist.init_process_group("gloo")` failed each multi-worker trial,
    retried, with torch's "trying to initialize the default process group twice!", which
    says neither who set it up first nor what to change."""
    import torch.distributed as dist

    _, _, data = toy

    class OwnInit(hpoc.Trainer):
        def train(self):
            dist.init_process_group("gloo")

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(TrainerError, match=r"^the trainer called torch\.distributed\.init_process_group"
                                               r"\(\) at .*test_trainer\.py:\d+, but hpoc has set up "
                                               r".*is_initialized\(\)"):
            OwnInit().run_local(CONFIG, data, directory=tmp_path / "a")
    finally:
        dist.destroy_process_group()
