"""The itwinai compatibility layer: the tutorial's `MyRayTorchTrainer` (examples/itwinai,
imports changed only) trains, checkpoints and resumes under hpoc, with DDP and DeepSpeed.

The data is generated FashionMNIST-format IDX files (tests/itwinai_data.py), read by the
example's torchvision getter; few images, since ResNet18 on a CPU is slow.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hpoc.compat.itwinai import EngineOptimizer, RayDeepSpeedStrategy, RayTorchTrainer
from hpoc.runtime.strategy import Strategy
from itwinai_data import write_fashion_mnist
from yaml_configs import EXAMPLE, config, seed, trainer_args

# ------------------------------------------------------------------------ the base class


def test_a_trainer_requiring_config_is_built_without_it() -> None:
    class Seedlike(RayTorchTrainer):
        def __init__(self, config: dict, strategy: str = "ddp", name: str | None = None, logger: Any = None):
            super().__init__(config=config, strategy=strategy, name=name, logger=logger)

    assert Seedlike().itwinai_config == {}  # what the runtime does: no arguments
    assert Seedlike({"a": 1}).itwinai_config == {"a": 1}
    assert Seedlike(config={"b": 2}, name="n").name == "n"
    assert Seedlike.__init__.__name__ == "__init__" and "config" in Seedlike.__init__.__wrapped__.__code__.co_varnames


def test_strategies_built_by_the_runtime_carry_itwinais_names() -> None:
    ds = Strategy.create("deepspeed", deepspeed={"zero_stage": 2, "precision": None, "config_file": None})
    assert isinstance(ds, RayDeepSpeedStrategy)
    assert not isinstance(Strategy.create("ddp"), RayDeepSpeedStrategy)
    assert not isinstance(Strategy.create("single"), RayDeepSpeedStrategy)


def test_engine_optimizer_steps_through_the_engine() -> None:
    calls = []

    class Strategy:
        _micro = 0

        def step(self):
            calls.append("strategy.step")

    class Opt:
        param_groups = [{"lr": 0.1}]

        def zero_grad(self, set_to_none=True):
            calls.append(f"zero_grad({set_to_none})")

    strategy = Strategy()
    opt = EngineOptimizer(strategy, Opt())
    opt.zero_grad()
    opt.step()
    strategy._micro = 1  # inside a window: its gradients stay
    opt.zero_grad()
    assert calls == ["zero_grad(True)", "strategy.step"]
    assert opt.param_groups == [{"lr": 0.1}]
    with pytest.raises(TypeError):
        opt.step(lambda: 0.0)


def test_training_batches_without_a_length_still_mark_their_micro_batches() -> None:
    """An iterable dataset's loader has no len(): no batch is known to be the epoch's last,
    and the windows keep their length (a TypeError stopped the loop before its first batch)."""
    from hpoc.compat.itwinai import _EpochWindows

    class Marks:
        def __init__(self):
            self.lasts = []

        @contextlib.contextmanager
        def micro_batch(self, last=False):
            self.lasts.append(last)
            yield

        def close_window(self):
            pass

    strategy = Marks()
    assert list(_EpochWindows([1, 2, 3], strategy)) == [1, 2, 3] and strategy.lasts == [False, False, True]
    strategy.lasts.clear()
    assert list(_EpochWindows(iter([1, 2]), strategy)) == [1, 2] and strategy.lasts == [False, False]


class _LinearLoop(RayTorchTrainer):
    """An itwinai loop's start: a linear model and plain SGD (lr 0.1) the strategy
    distributes, and the training batches of `data`."""

    def start(self, data):
        self.strategy.init()
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        self.model, self.optimizer, _ = self.strategy.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
        self.create_dataloaders(train_dataset=data[0])


class _AccumulatingLoop(_LinearLoop):
    """itwinai's loop shape: forward, `zero_grad()`, `loss.backward()`, `step()` per batch."""

    def train(self, config, data):
        self.training_config = config
        self.start(data)
        engine, self.stepped, self.bias, self.weight = self.strategy.engine, [], [], []
        for _ in range(config["epochs"]):
            for i, (x, y) in enumerate(self.train_dataloader):
                before = engine.global_steps
                loss = torch.nn.functional.mse_loss(self.model(x), y) * 0.01  # under DeepSpeed's clipping
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.stepped.append(engine.global_steps > before)
                with deepspeed_gathered(self.strategy):
                    self.bias.append(self.strategy.unwrap().bias.detach().clone())
                    self.weight.append(self.strategy.unwrap().weight.detach().clone())
                if i + 1 == config.get("stop_after"):
                    break


def deepspeed_gathered(strategy):
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(strategy.unwrap().parameters()))


def _itwinai_loops_accumulating(_rank, port, out):
    """The loop over two epochs, whole and with a `break` after 5 of each epoch's 6 batches:
    one process for both (DeepSpeed's import and start are most of the time)."""
    import os

    import torch.distributed as dist

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    config = Path(out) / "ds.json"
    config.write_text(json.dumps({"train_batch_size": 16}))  # 4 micro-batches of 4 per step
    for stop_after in (None, 5):
        strategy = Strategy.create("deepspeed", deepspeed={"zero_stage": 3, "precision": None,
                                                           "config_file": str(config)})
        strategy.batch_size = 4
        x = torch.ones(24, 4)  # 6 batches of 4 an epoch, all alike: every micro-batch has one gradient
        trainer = _AccumulatingLoop()
        trainer.run_local({"batch_size": 4, "epochs": 2, "stop_after": stop_after},
                          (torch.utils.data.TensorDataset(x, torch.zeros(24, 1)), None, None),
                          directory=Path(out) / f"run-{stop_after}", strategy=strategy)
        torch.save({"stepped": trainer.stepped, "bias": trainer.bias, "weight": trainer.weight},
                   Path(out) / f"loop-{stop_after}.pt")


@pytest.fixture(scope="module")
def deepspeed_loops(tmp_path_factory) -> dict:
    """What the DeepSpeed loops did, by `stop_after`; the tests below only read it."""
    pytest.importorskip("deepspeed")
    import torch.multiprocessing as mp

    from hpoc.runtime.report import free_port

    out = tmp_path_factory.mktemp("deepspeed-loops")
    mp.spawn(_itwinai_loops_accumulating, args=(free_port(), str(out)), nprocs=1, join=True)
    return {stop: torch.load(out / f"loop-{stop}.pt") for stop in (None, 5)}


class _MicroBatchLoop(RayTorchTrainer):
    """Where an itwinai loop sets its loader's batch: before the engine (`first`), after it,
    or not at all (the trial's `batch_size`). Records the engine's micro-batch and accumulation."""

    def train(self, config, data):
        self.strategy.init()
        model = torch.nn.Linear(4, 1)
        if config["loader"] == "first":
            self.create_dataloaders(train_dataset=data[0], batch_size=8)
        self.model, self.optimizer, _ = self.strategy.distributed(model, torch.optim.SGD(model.parameters(), lr=0.1))
        self.engine = (self.model.train_micro_batch_size_per_gpu(), self.model.gradient_accumulation_steps())
        if config["loader"] == "after":
            self.create_dataloaders(train_dataset=data[0], batch_size=8)
        elif config["loader"] is None:
            self.create_dataloaders(train_dataset=data[0])


def _itwinai_micro_batches(_rank, port, out):
    import os

    import torch.distributed as dist

    from hpoc.runtime.returns import TrainerError

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    config = Path(out) / "ds.json"
    config.write_text(json.dumps({"train_batch_size": 16}))
    got = {}
    for loader in ("first", None, "after"):
        strategy = Strategy.create("deepspeed", deepspeed={"zero_stage": 1, "precision": None,
                                                           "config_file": str(config)})
        trainer = _MicroBatchLoop()
        try:
            trainer.run_local({"batch_size": 4, "loader": loader},
                              (torch.utils.data.TensorDataset(torch.ones(16, 4), torch.zeros(16, 1)), None, None),
                              directory=Path(out) / f"run-{loader}", strategy=strategy)
            got[loader] = trainer.engine
        except TrainerError as exc:
            got[loader] = str(exc)
    torch.save(got, Path(out) / "micro.pt")


def test_an_itwinai_loops_loader_batch_is_deepspeeds_micro_batch(tmp_path) -> None:
    """DeepSpeed's micro-batch was not the loader's: without a config file 1, with one whose
    `train_batch_size` is 16 it derived micro-batches of 16 and no accumulation while the
    loader drew 8 (a step trained on 8 samples, not 16). A loader made after the engine
    with another batch is said, not trained."""
    pytest.importorskip("deepspeed")
    import torch.multiprocessing as mp

    from hpoc.runtime.report import free_port

    mp.spawn(_itwinai_micro_batches, args=(free_port(), str(tmp_path)), nprocs=1, join=True)
    got = torch.load(tmp_path / "micro.pt")
    assert got["first"] == (8, 2)  # the loader's 8 × 2 steps is the file's 16
    assert got[None] == (4, 4)  # the trial's batch_size, which the loader draws
    assert got["after"].startswith("create_dataloaders(batch_size=8) after the DeepSpeed engine was made for "
                                   "micro-batches of 4")


def test_an_itwinai_loop_under_deepspeed_accumulates_in_windows_that_end_with_the_epoch(deepspeed_loops) -> None:
    """The loop steps the engine itself, which counted its own windows: the 2 micro-batches
    left at an epoch's end did not step and went into the next epoch's first window (as the
    native loop does, the epoch's last batch steps). Its per-batch `zero_grad()` under ZeRO-3
    threw away the window's earlier gradients: a step moved by one micro-batch's share."""
    run = deepspeed_loops[None]
    assert run["stepped"] == [False, False, False, True, False, True] * 2
    assert torch.allclose(run["bias"][3], _after_first_window())


def _after_first_window() -> torch.Tensor:
    """The loops' bias after their first window: 4 micro-batches of loss 0.01·out² at the
    start's weights (lr 0.1), each scaled by 1/4."""
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 1)
    out = start(torch.ones(1, 4)).detach()[0]
    return start.bias.detach() - 0.1 * 0.02 * out


class _PlainAccumulatingLoop(_LinearLoop):
    """The same loop shape under DDP: a torch optimizer, `loss.backward()`, `step()` per batch."""

    def train(self, config, data):
        self.start(data)
        self.stepped = []
        for _ in range(config["epochs"]):
            for i, (x, y) in enumerate(self.train_dataloader):
                before = self.model.bias.detach().clone()
                self.optimizer.zero_grad()
                (torch.nn.functional.mse_loss(self.model(x), y) * 0.01).backward()
                self.optimizer.step()
                self.stepped.append(not torch.equal(before, self.model.bias.detach()))
                self.bias.append(self.model.bias.detach().clone())
                with torch.no_grad():
                    self.outs.append(self.model(torch.ones(1, 4))[0])
                if i + 1 == self.stop_after:
                    break

    bias: list = []
    outs: list = []
    stop_after: int | None = None


def test_an_itwinai_loop_under_ddp_accumulates_as_under_deepspeed(tmp_path) -> None:
    """The trainer's `grad_accumulation_steps` went unused under DDP: the loop's optimizer
    stepped every batch, on that batch's gradients alone."""
    trainer = _PlainAccumulatingLoop()
    trainer.bias = []
    x = torch.ones(24, 4)  # 6 batches of 4 an epoch, all alike
    trainer.run_local({"batch_size": 4, "epochs": 2}, (torch.utils.data.TensorDataset(x, torch.zeros(24, 1)), None, None),
                      directory=tmp_path, strategy=Strategy.create("ddp", grad_accumulation_steps=4))
    assert trainer.stepped == [False, False, False, True, False, True] * 2
    assert torch.allclose(trainer.bias[3], _after_first_window())  # as under DeepSpeed


class _LoaderSettingsLoop(RayTorchTrainer):
    """itwinai's `create_dataloaders` takes the loaders' settings too (a TypeError failed
    every trial): `batch_size`, shuffling, `collate_fn`, DataLoader workers and pinning."""

    settings: dict = {}

    def train(self, config, data):
        self.strategy.init()
        self.create_dataloaders(train_dataset=data[0], validation_dataset=data[1], **self.settings)
        self.seen = {"train": [x[:, 0].tolist() for x, _ in self.train_dataloader],
                     "validation": [len(x) for x, _ in self.validation_dataloader]}


def _loader_settings(tmp_path, **settings) -> dict:
    trainer = _LoaderSettingsLoop()
    trainer.settings = settings
    x = torch.arange(12.0).unsqueeze(1)
    data = torch.utils.data.TensorDataset(x, torch.zeros(12))
    trainer.run_local({"batch_size": 8, "epochs": 1}, (data, data, None), directory=tmp_path)
    return trainer.seen


def test_itwinais_create_dataloaders_settings_apply(tmp_path) -> None:
    seen = _loader_settings(tmp_path / "a", batch_size=5, shuffle_train=False, num_workers_dataloader=0,
                            pin_memory=False)
    assert seen["train"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]  # in order, 5 at a time
    assert seen["validation"] == [12]  # 5 × validation_batch_factor, as without `batch_size`
    stacked = []

    def collate(samples):
        stacked.append(len(samples))
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    seen = _loader_settings(tmp_path / "b", batch_size=4, collate_fn=collate, shuffle_validation=True)
    assert sorted(sum(seen["train"], [])) == list(range(12)) and seen["train"] != [list(range(i, i + 4)) for i in (0, 4, 8)]
    assert stacked[:3] == [4, 4, 4]  # the loader's own collate_fn made the batches


def test_itwinais_create_dataloaders_refuses_a_sampler_of_its_own(tmp_path) -> None:
    from hpoc.runtime.returns import TrainerError

    with pytest.raises(TrainerError, match="sampler"):
        _loader_settings(tmp_path, sampler=torch.utils.data.SequentialSampler(range(12)))


class _ClosingLoop(_LinearLoop):
    """Newer itwinai loops use `self.device` and end with `self.close_logger()`: an
    AttributeError failed every trial, the last one after all its training."""

    def train(self, config, data):
        self.start(data)
        self.initialize_logger(hyperparams=config, rank=self.strategy.global_rank())
        self.where = self.device
        self.checkpoint_and_report(0, tuning_metrics={"loss": 1.0})
        self.close_logger()


def test_itwinais_device_and_close_logger(tmp_path) -> None:
    trainer = _ClosingLoop()
    data = torch.utils.data.TensorDataset(torch.ones(4, 4), torch.zeros(4, 1))
    history = trainer.run_local({"epochs": 1}, (data, None, None), directory=tmp_path)
    assert trainer.where == trainer.strategy.device() and history[-1]["loss"] == 1.0
    trainer.device = "cpu"  # a trainer's own choice stays its own
    assert trainer.device == "cpu"


def test_an_itwinai_loop_that_never_reports_is_told_of_checkpoint_and_report(tmp_path) -> None:
    """It was told to call hpoc's `self.report(...)`, which its loop does not use."""
    from hpoc.runtime.returns import TrainerError

    class Silent(_LinearLoop):
        def train(self, config, data):
            self.start(data)

    data = torch.utils.data.TensorDataset(torch.ones(4, 4), torch.zeros(4, 1))
    with pytest.raises(TrainerError, match=r"ended without reporting anything: call "
                                           r"`self\.checkpoint_and_report\(epoch, tuning_metrics="):
        Silent().run_local({"epochs": 1}, (data, None, None), directory=tmp_path,
                           plan={"objective": {"metrics": ["loss"]}})


class _TwoRankLoop(_LinearLoop):
    """Each rank's every micro-batch has input rank + 1: the loss `mean(model(x))` gives the
    weight a gradient of rank + 1 on each rank, 1.5 once all-reduced."""

    def train(self, config, data):
        self.start(data)
        for _ in self.train_dataloader:
            self.optimizer.zero_grad()
            self.model(torch.full((2, 4), float(self.strategy.rank + 1))).mean().backward()
            self.optimizer.step()


def _two_rank_loop(rank, port, out):
    import os

    import torch.distributed as dist

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    trainer = _TwoRankLoop()
    data = torch.utils.data.TensorDataset(torch.zeros(16, 4))  # 4 batches of 2 on each rank
    trainer.run_local({"batch_size": 2, "epochs": 1}, (data, None, None), directory=Path(out) / f"run{rank}",
                      strategy=Strategy.create("ddp", grad_accumulation_steps=2, device="cpu"))
    model = trainer.strategy.unwrap()
    torch.save({"weight": model.weight.detach(), "bias": model.bias.detach()}, Path(out) / f"rank{rank}.pt")
    dist.barrier()  # neither rank leaves the group while the other still talks to it (gloo aborts)
    dist.destroy_process_group()


def test_two_ddp_ranks_accumulate_locally_and_step_alike(tmp_path) -> None:
    """The window's micro-batches skip DDP's all-reduce (the batch handed out holds `no_sync`
    while the loop trains on it); the window's last one all-reduces what they accumulated."""
    import torch.multiprocessing as mp

    from hpoc.runtime.report import free_port

    mp.spawn(_two_rank_loop, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 1)
    for got in ranks:  # 2 windows of 2 micro-batches, each counting 1/2
        assert torch.allclose(got["weight"], start.weight.detach() - 2 * 0.1 * 1.5)
        assert torch.allclose(got["bias"], start.bias.detach() - 2 * 0.1)


def test_a_loop_that_breaks_part_way_starts_the_next_epoch_with_a_full_window(tmp_path) -> None:
    """A `break` after 5 of an epoch's 6 batches left its open window (1 micro-batch) to the
    next epoch, which stepped after 3 batches, on 4 micro-batches' gradients and then 5."""
    trainer = _PlainAccumulatingLoop()
    trainer.bias, trainer.outs, trainer.stop_after = [], [], 5
    x = torch.ones(24, 4)
    trainer.run_local({"batch_size": 4, "epochs": 2}, (torch.utils.data.TensorDataset(x, torch.zeros(24, 1)), None, None),
                      directory=tmp_path, strategy=Strategy.create("ddp", grad_accumulation_steps=4))
    assert trainer.stepped == [False, False, False, True, False] * 2
    # the dropped micro-batch adds nothing: 4 micro-batches at the weights of the first step
    assert torch.allclose(trainer.bias[8] - trainer.bias[3], -0.1 * 0.02 * trainer.outs[3])


def test_an_itwinai_loop_under_deepspeed_that_breaks_part_way_starts_the_next_epoch_with_a_full_window(
        deepspeed_loops) -> None:
    """As under DDP: the micro-batch left open by the `break` is dropped, not added to the next
    epoch's first window (ZeRO-3 keeps a window's gradients in its own partitions)."""
    run = deepspeed_loops[5]
    assert run["stepped"] == [False, False, False, True, False] * 2
    out = run["weight"][3].sum() + run["bias"][3]  # the output at the first step's weights
    assert torch.allclose(run["bias"][8] - run["bias"][3], -0.1 * 0.02 * out)


# ------------------------------------------------- the tutorial trainer, in this process


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(root, n_train=8, n_test=2)
    from hpoc.runtime.pipeline import import_target  # as the runtime imports them

    FashionMNISTGetter = import_target("data:FashionMNISTGetter", str(EXAMPLE))
    FashionMNISTSplitter = import_target("data:FashionMNISTSplitter", str(EXAMPLE))
    MyRayTorchTrainer = import_target("trainer:MyRayTorchTrainer", str(EXAMPLE))
    dataset = FashionMNISTGetter(str(root)).execute()
    assert len(dataset) == 8 and dataset[0][0].shape == (1, 28, 28)
    return MyRayTorchTrainer, FashionMNISTSplitter(0.75, 0.25).execute(dataset)


class _Tracker:
    def __init__(self, params: dict) -> None:
        self.params: list[dict] = [dict(params)]
        self.metrics: list[tuple[str, Any, Any]] = []

    def log_params(self, params):
        self.params.append(dict(params))

    def log_metric(self, name, value, step=None):
        self.metrics.append((name, value, step))

    def log_metrics(self, metrics, step=None):
        pass

    def log_batch_metric(self, name, value, step):
        pass

    def close(self, status="FINISHED"):
        pass


def _first_weight(trainer) -> torch.Tensor:
    return next(trainer.strategy.unwrap().parameters()).detach().clone()


def _run(cls, splits, directory: Path, epochs: int, monkeypatch, strategy=None):
    trackers: list[_Tracker] = []

    def open_loggers(plan, trial_name, params, *args, **kwargs):
        trackers.append(_Tracker(params))
        return trackers[-1]

    monkeypatch.setattr("hpoc.runtime.tracking.open_loggers", open_loggers)
    plan = {"loggers": [{"kind": "mlflow", "experiment_name": "x", "log_freq": "epoch", "tracking_uri": None}],
            "training": {"precision": "auto", "data_on_device": "auto"}, "checkpoint": {"every": 1}}
    trainer = cls()
    seen: dict[str, torch.Tensor] = {}
    restore = trainer._restore_now

    def spy():
        restore()
        seen.setdefault("restored", _first_weight(trainer))
        seen["calls"] = seen.get("calls", 0) + 1

    trainer._restore_now = spy
    history = trainer.run_local({"batch_size": 8, "learning_rate": 1e-3, "epochs": epochs}, splits,
                                directory=directory, strategy=strategy, plan=plan)
    return trainer, history, trackers[0], seen


def test_seed_trainer_checkpoints_and_resumes(splits, tmp_path: Path, monkeypatch) -> None:
    cls, data = splits
    first, history, tracker, seen = _run(cls, data, tmp_path, 1, monkeypatch)
    assert [(h["epoch"], h["training_iteration"]) for h in history] == [(1, 1)]
    assert isinstance(history[0]["loss"], float)
    assert not seen  # nothing to restore on a fresh start
    ckpt = tmp_path / "checkpoint_000000"
    assert json.loads((ckpt / "itwinai.json").read_text()) == {"epoch": 1}
    state = torch.load(ckpt / "state.pt", weights_only=False)
    assert state["epoch"] == 1
    assert state["model"]["conv1.weight"].shape == (64, 1, 7, 7)  # the tutorial's ResNet18
    assert state["optimizer"]["state"]  # Adam moments: resume continues the same optimizer
    assert state["data"]["epoch"] == 0 and not state["data"]["loss"].requires_grad
    assert first.strategy_name == "ddp" and first.itwinai_config == {}
    assert torch.equal(state["model"]["conv1.weight"], first.strategy.unwrap().conv1.weight.detach())
    assert [(n, s) for n, _, s in tracker.metrics] == [("train_loss", 0), ("val_loss", 0)]
    final = _first_weight(first)

    second, history, tracker, seen = _run(cls, data, tmp_path, 3, monkeypatch)
    assert second._epoch_offset == 1
    assert [(h["epoch"], h["training_iteration"]) for h in history] == [(2, 2), (3, 3)]
    assert torch.equal(seen["restored"], final)  # trained on from the checkpoint's weights
    assert seen["calls"] == 1
    assert [(n, s) for n, _, s in tracker.metrics] == [("train_loss", 1), ("val_loss", 1),
                                                        ("train_loss", 2), ("val_loss", 2)]
    assert tracker.params[0]["epochs"] == 3  # the trial's own config is logged, not the rest
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*")) == ["checkpoint_000001", "checkpoint_000002"]


@pytest.mark.slow
def test_seed_trainer_resumes_under_deepspeed(splits, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("deepspeed")
    monkeypatch.setenv("LOCAL_RANK", "0")  # one process without a launcher
    cls, data = splits

    def strategy():
        return Strategy.create("deepspeed", deepspeed={"zero_stage": 2, "precision": None, "config_file": None})

    first, history, _, _ = _run(cls, data, tmp_path, 1, monkeypatch, strategy())
    assert isinstance(first.optimizer, EngineOptimizer) and first.strategy_name == "deepspeed"
    assert first.strategy.engine.global_steps == 1  # 6 images in one batch: steps count
    assert (tmp_path / "checkpoint_000000" / "hpoc" / "mp_rank_00_model_states.pt").is_file()
    final = _first_weight(first)
    second, history, _, seen = _run(cls, data, tmp_path, 2, monkeypatch, strategy())
    assert [h["training_iteration"] for h in history] == [2]
    assert torch.equal(seen["restored"], final)


@pytest.mark.slow
def test_seed_trainer_under_deepspeed_takes_its_own_lr_from_another_trials_checkpoint(
        splits, tmp_path: Path, monkeypatch) -> None:
    """PBT's exploit under DeepSpeed (ZeRO-2): the engine loads the other trial's optimizer
    state, lr included; the trial must train on with its own lr (the engine's optimizer
    forwards `param_groups` to the torch optimizer that steps)."""
    pytest.importorskip("deepspeed")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr("hpoc.runtime.tracking.open_loggers", lambda *a, **k: _Tracker({}))
    cls, data = splits
    plan = {"training": {"precision": "auto", "data_on_device": "auto"}, "checkpoint": {"every": 1}}

    def run(lr: float, epochs: int):
        trainer = cls()
        strategy = Strategy.create("deepspeed", deepspeed={"zero_stage": 2, "precision": None, "config_file": None})
        trainer.run_local({"batch_size": 8, "learning_rate": lr, "epochs": epochs}, data,
                          directory=tmp_path, strategy=strategy, plan=plan)
        return trainer

    run(1e-3, 1)  # the donor's checkpoint, lr 1e-3 in its optimizer state
    exploiting = run(2.5e-4, 2)
    assert exploiting._restored_epochs == 1
    engine_optimizer = exploiting.strategy.optimizer
    assert [g["lr"] for g in engine_optimizer.param_groups] == [2.5e-4]
    assert [g["lr"] for g in engine_optimizer.optimizer.param_groups] == [2.5e-4]  # the one that steps


# ------------------------------------------------------------- studies under Ray


def _study(tmp_path: Path, strategy: str, trials: int, epochs: int, stop: dict | None) -> Path:
    for f in ("trainer.py", "data.py"):
        shutil.copy(EXAMPLE / f, tmp_path / f)
    write_fashion_mnist(tmp_path / "data", n_train=8, n_test=2)
    doc = seed()
    steps = doc["ray_training_pipeline"]["init_args"]["steps"]
    steps[1]["init_args"] = {"train_proportion": 0.75, "validation_proportion": 0.25}
    trainer_args(doc)["strategy"] = strategy
    del trainer_args(doc)["logger"]
    cfg = config(doc)
    cfg["scaling_config"] = {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 0.5}}
    cfg["train_loop_config"] = {"batch_size": {"type": "choice", "options": [2, 4]},
                                "learning_rate": {"type": "uniform", "min": 1e-4, "max": 1e-3}, "epochs": epochs}
    cfg["tune_config"] = {"num_samples": trials, "max_concurrent_trials": 1,
                          "search_alg": {"name": "optuna", "metric": "loss", "mode": "min", "seed": 0}}
    cfg["run_config"] = {"storage_path": "results", "name": f"seed-{strategy}"}
    if stop:
        cfg["run_config"]["stop"] = stop
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _run_study(tmp_path: Path, strategy: str, capsys, trials: int, epochs: int = 1,
               stop: dict | None = None) -> tuple[dict, list[Path]]:
    from hpoc.cli import main

    path = _study(tmp_path, strategy, trials, epochs, stop)
    # Two CPUs: a trial's 2 workers take one, so a second trial needs what the first reserved.
    assert main(["run", str(path), "--local", "--cpus", "2"]) == 0, capsys.readouterr().err[-3000:]
    exp = tmp_path / "results" / f"seed-{strategy}"
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": trials}
    done = [t["epochs"] for t in summary["trials"]]
    assert all(isinstance(t["metrics"]["loss"], float) for t in summary["trials"])
    # `stop` ends a trial after its first report; the Train run has gone on meanwhile
    assert done == [1] * trials if not stop else all(1 <= n < epochs for n in done), done
    # Each trial's first checkpoint, written by checkpoint_and_report with its first report
    # (a later one may be cut off half-written where `stop` killed the run).
    runs = sorted(p for p in exp.glob("train/*") if p.is_dir())
    checkpoints = [min(run.glob("checkpoint_*")) for run in runs]
    assert len(checkpoints) == trials, runs
    for ckpt in checkpoints:
        assert json.loads((ckpt / "itwinai.json").read_text()) == {"epoch": 1}
    return summary, checkpoints


@pytest.mark.ray
@pytest.mark.slow
def test_seed_study_with_ddp(tmp_path: Path, capsys) -> None:
    # Tune ends each trial (`stop`) while its Train run is still going: the second trial needs
    # the workers the first one reserved (their placement group outlived it, and the study hung).
    _, checkpoints = _run_study(tmp_path, "ddp", capsys, trials=2, epochs=20, stop={"training_iteration": 1})
    for ckpt in checkpoints:
        state = torch.load(ckpt / "state.pt", weights_only=False)
        assert state["model"]["conv1.weight"].shape == (64, 1, 7, 7)  # unwrapped from DDP
        assert state["data"]["epoch"] == 0 and "optimizer" in state


@pytest.mark.ray
@pytest.mark.slow
def test_seed_study_with_deepspeed(tmp_path: Path, capsys) -> None:
    pytest.importorskip("deepspeed")
    _, checkpoints = _run_study(tmp_path, "deepspeed", capsys, trials=1)
    for ckpt in checkpoints:
        files = sorted(p.name for p in (ckpt / "hpoc").iterdir())
        # ZeRO-2: the model once, the optimizer state partitioned over both workers
        assert files == ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                         "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


def test_the_compilers_list_of_compat_names_is_the_modules():
    """`hpoc check` names what to import from hpoc.compat.itwinai without importing it."""
    import hpoc.compat.itwinai as compat
    from hpoc.compiler.targets import ITWINAI_COMPAT

    assert sorted(ITWINAI_COMPAT) == sorted(compat.__all__)


def test_a_trainer_importing_itwinai_is_told_to_change_the_import_not_to_install_it(tmp_path):
    from hpoc.runtime.pipeline import PipelineError, import_target

    (tmp_path / "old_trainer.py").write_text("from itwinai.torch.trainer import RayTorchTrainer\n")
    with pytest.raises(PipelineError) as info:
        import_target("old_trainer:MyTrainer", str(tmp_path), "trainer")
    assert "help: import it from `hpoc.compat.itwinai` (docs/migrating-from-itwinai.md)" in str(info.value)
    assert "install" not in str(info.value)


def test_the_compilers_itwinai_only_strategy_methods_are_not_hpocs() -> None:
    from hpoc.compiler.trainer_hooks import ITWINAI_ONLY

    assert [name for name in ITWINAI_ONLY if hasattr(Strategy, name) or hasattr(RayDeepSpeedStrategy, name)] == []
