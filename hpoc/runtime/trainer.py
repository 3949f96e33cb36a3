"""`Trainer`: subclass it and write only the machine-learning code.

    class DigitsTrainer(hpoc.Trainer):
        def create_model(self, config):
            return SmallCNN(hidden=config["hidden"])

The runtime builds one trainer per trial process with the plan's trainer arguments, then
sets `self.config` (the trial's hyperparameters and constants, nested by dotted name),
`self.strategy` (see strategy.py), the data splits and the trial, and calls `train()`.

Hooks, all optional except a model:
- `create_model(config)`, `create_loss(config)`, `create_optimizer(model, config)`,
  `create_lr_scheduler(optimizer, config)` - or all at once in
  `create_model_loss_optimizer(config)` returning `(model, loss, optimizer[, scheduler])`;
- `train_step(batch) -> loss` and `validation_step(batch) -> (loss, outputs)` (or a dict
  with `loss`, maybe `outputs`, and metrics of yours, averaged over the samples);
- `prepare_inputs(x)`: on-device preprocessing of an input batch (default: uint8 -> [0, 1]
  floats, then `normalize = (mean, std)` if the class sets it);
- `train()` itself, for a loop of your own (`train(self, config, data)` as in itwinai works).

The default `train()` runs epochs of training and validation, reports `train_loss`,
`val_loss` and (for classification) `val_accuracy` each epoch, checkpoints by the plan's
policy and resumes from the trial's latest checkpoint - model, optimizer, lr scheduler,
epoch and RNG state - so a retried or requeued trial continues where it stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import pickle
import random
import reprlib
import shutil
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpoc.runtime.batches import (LOADER_HELP, SPLITS, TensorBatches, as_tensors, default_prepare,
                                  loader_split, num_samples)
from hpoc.runtime.loaders import samples, watched
from hpoc.runtime.report import LocalReporter, Reporter, scratch_dir
from hpoc.runtime.returns import (TrainerError, metric_tensor, reported, require_class_labels,
                                  require_loss, require_module, require_objective, require_optimizer,
                                  require_same_shape, require_scheduler, returned, scalar, source_line,
                                  validation_parts, whole_count)
from hpoc.runtime.splitcheck import layout_hint, unbatchable
from hpoc.runtime.strategy import ModelMismatch, Strategy
from hpoc.runtime.summary import raised_at


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - any failure means torch.save fails on it too
        return False
    return True


class NotSetUp(TrainerError, AttributeError):
    """Batches read before `setup()` made them: a TrainerError (retrying cannot help), and
    an AttributeError to `hasattr` and `getattr(..., default)`."""


@dataclass(frozen=True)
class TrialInfo:
    """The trial a trainer runs for: Ray's id and name, its index in the study and its seed."""

    id: str = "local"
    name: str = "local"
    index: int = 0
    seed: int = 0
    deterministic: bool = False
    parent_run_id: str | None = None  # the study's MLflow run, when tracking is on
    dir: str | None = None  # the trial's own directory in the experiment directory

    @staticmethod
    def for_trial(trial_id: str, name: str | None, plan_seed: int | None, shard: int = 0,
                  parent_run_id: str | None = None, directory: str | None = None,
                  shards: int | None = None) -> "TrialInfo":
        """`shards`: given for random/grid search, whose trial `index` of shard k is trial
        `k + shards * index` of the study (space.SpaceSamplerCore): seeded by that number,
        a config trains the same however many shards run the study."""
        # The runtime names trials `t<index>_<id>` (tuner.trial_name).
        head = (name or "").split("_", 1)[0]
        tail = trial_id.rsplit("_", 1)[-1]
        index = int(head[1:]) if head[:1] == "t" and head[1:].isdigit() else (
            int(tail) if tail.isdigit() else 0)
        if plan_seed is None:
            seed = zlib.crc32(trial_id.encode())  # stable across retries of this trial
        elif shards is not None:
            seed = int(plan_seed) + shard + shards * index
        else:
            seed = int(plan_seed) + index + 100_003 * shard
        return TrialInfo(trial_id, name or trial_id, index, seed, plan_seed is not None,
                         parent_run_id, directory)


class _NullTracker:
    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metric(self, name: str, value: Any, step: int | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def log_batch_metric(self, name: str, value: Any, step: int) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass


def _calls_restore(trainer: Any) -> bool:
    """Whether the `train` of `trainer`'s class (or a function in it) names `restore`; one
    that calls a base class's (`super().train()`, `Base.train(self)`) is read on into it."""
    mro = type(trainer).__mro__
    for at, cls in enumerate(mro):
        train = cls.__dict__.get("train")
        if train is None:
            continue
        names = _names(getattr(inspect.unwrap(getattr(train, "__func__", train)), "__code__", None))
        if "restore" in names:
            return True
        bases = {"super", *(base.__name__ for base in mro[at + 1:])}
        if "train" not in names or not names & bases:  # no base class's loop called
            return False
    return False


def _names(code: Any) -> set[str]:
    """The names the code object `code` and the functions in it use."""
    names: set[str] = set()
    todo = [code]
    while todo:
        code = todo.pop()
        if code is not None:
            names.update(code.co_names)
            todo += [c for c in code.co_consts if hasattr(c, "co_names")]
    return names


def seed_everything(seed: int, deterministic: bool = False) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, keys.tolist(), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    import numpy as np

    if not state:
        return
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and \
            len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _takes_args(method: Any) -> int:
    """Number of positional parameters a bound method accepts (besides self)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _first_loss(out: Any) -> Any:
    if isinstance(out, dict):
        return out["loss"]
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


TASKS = ("classification", "regression")
NO_DATA = ("no training data: the plan needs a getter/splitter, or override `train()` to load "
           "data yourself")
NO_EPOCHS = ("the number of epochs is not set: add `epochs` to the study's constants (or search "
             "it as a parameter)")


def plan_epochs(plan: dict[str, Any]) -> Any:
    """The epochs of a trial whose config and trainer arguments give none: the plan's
    `stop.training_iteration`, else its scheduler's `max_t` counted in epochs; or None."""
    stop = (plan["trials"].get("stop") or {}).get("training_iteration")
    sched = plan.get("scheduler") or {}
    max_t = (sched.get("options") or {}).get("max_t")
    return stop if stop is not None else (
        max_t if sched.get("time_attr", "training_iteration") == "training_iteration" else None)


class Trainer:
    """Base class of user trainers (see the module docstring)."""

    #: `(mean, std)` applied to inputs on the device (numbers or per-channel sequences).
    normalize: tuple[Any, Any] | None = None
    #: "classification" adds `val_accuracy` (argmax of outputs vs integer targets);
    #: "regression" trains with MSELoss. Also a trainer argument: `MyTrainer(task = "regression")`.
    task: str = "classification"
    #: channels-last memory format on GPU for conv nets ("auto"), or True/False.
    channels_last: bool | str = "auto"
    #: validation batches are this many times the training batch size (no gradients kept).
    validation_batch_factor: int = 4
    #: how a loop of its own reports, said to one that did not
    REPORT_HINT = "call `self.report({...}, epoch=epoch)` each epoch (docs/trainer.md, A loop of your own)"
    grad_accumulation_steps: int = 1
    #: under DDP, for a model with parameters its loss does not use (DDP refuses its second
    #: step otherwise: "Expected to have finished reduction in the prior iteration").
    find_unused_parameters: bool = False

    def __init__(self, grad_accumulation_steps: int = 1, **args: Any) -> None:
        self.args = dict(args)
        self.grad_accumulation_steps = int(grad_accumulation_steps)
        task = args.get("task", self.task)  # the spec's argument, else the class's own
        if task not in TASKS:
            raise ValueError(f"task = {task!r}: it must be one of {', '.join(map(repr, TASKS))}")
        if "task" in args:
            self.task = task

    # ------------------------------------------------------------ set by the runtime

    config: dict[str, Any]
    strategy: Strategy
    plan: dict[str, Any] | None
    trial: TrialInfo
    model: Any = None
    loss: Any = None
    optimizer: Any = None
    lr_scheduler: Any = None
    train_data: Any = None
    validation_data: Any = None
    test_data: Any = None
    trial_dir: Path | None = None

    def bind(self, *, config: dict[str, Any], strategy: Strategy, reporter: Reporter,
             plan: dict[str, Any] | None = None, trial: TrialInfo | None = None,
             data: tuple[Any, Any, Any] | None = None) -> None:
        """Attach what the runtime knows about this trial (called before `train()`)."""
        if not hasattr(self, "args"):  # a subclass __init__ that skipped super().__init__()
            self.args = {}
        self.config = config
        self.strategy = strategy
        self.reporter = reporter
        self.plan = plan
        self.trial = trial or TrialInfo()
        # The trial's own output directory, kept with its results (the working directory,
        # the spec's, is shared by every trial); None when the runtime gave none.
        self.trial_dir = Path(self.trial.dir) if self.trial.dir else None
        self.tracker: Any = None
        self._batch_logging = False
        self._batches: dict[str, Any] = {}
        if data is not None:
            self.train_data, self.validation_data, self.test_data = data

    def __getattr__(self, name: str) -> Any:
        """Only for a name not set: the batches, which a loop of the trainer's own reads
        before `self.setup()` made them."""
        if name in ("train_dataloader", "validation_dataloader", "test_dataloader"):
            raise NotSetUp(f"`self.{name}` is made by `self.setup()`: call it at the start of "
                           f"`{type(self).__name__}.train()` (docs/trainer.md, A loop of your own)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)

    def _require_model(self, call: str, model: Any) -> None:
        """A loop of the trainer's own that skipped `self.setup()` failed deep in torch
        ("'NoneType' object has no attribute 'state_dict'"), or resumed from nothing."""
        if model is None:
            raise TrainerError(f"`self.{call}()` needs the model `self.setup()` builds: call it at the start "
                               f"of `{type(self).__name__}.train()` (docs/trainer.md, A loop of your own)")

    # itwinai trainers read their hyperparameters from `training_config`
    @property
    def training_config(self) -> dict[str, Any]:
        return self.config

    @training_config.setter
    def training_config(self, value: dict[str, Any]) -> None:
        self.config = value

    # ------------------------------------------------------------ settings

    def setting(self, name: str, default: Any = None) -> Any:
        """`name` from the trial config, else the trainer's plan arguments, else `default`."""
        if name in self.config:
            return self.config[name]
        return self.args.get(name, default)

    @property
    def epochs(self) -> int:
        value = self.setting("epochs")
        if value is None and self.plan is not None:
            value = plan_epochs(self.plan)
        if value is None:
            raise TrainerError(NO_EPOCHS)
        return whole_count("epochs", value, 1)

    @property
    def batch_size(self) -> int:
        return whole_count("batch_size", self.setting("batch_size", 64), 1)

    @property
    def seed(self) -> int:
        return self.trial.seed

    # ------------------------------------------------------------ hooks

    def create_model(self, config: dict[str, Any]) -> torch.nn.Module:
        raise TrainerError(f"{type(self).__name__} defines no model: implement "
                           "`create_model(self, config)` (or `create_model_loss_optimizer`)")

    def create_loss(self, config: dict[str, Any]) -> Any:
        return torch.nn.CrossEntropyLoss() if self.task == "classification" else torch.nn.MSELoss()

    def create_optimizer(self, model: torch.nn.Module, config: dict[str, Any]) -> Any:
        """Adam by default; `optimizer` (or `optimizer.name`) = adam | adamw | sgd picks one,
        `lr`/`learning_rate`, `momentum` and `weight_decay` are read from the config."""
        opt = config.get("optimizer")
        group = opt if isinstance(opt, dict) else {}
        name = str(group.get("name") or (opt if isinstance(opt, str) else "adam")).lower()

        def get(key: str, default: Any) -> Any:
            for k in ([key] if key != "lr" else ["lr", "learning_rate"]):
                if k in group:
                    return group[k]
                if k in config:
                    return config[k]
            return default

        lr = float(get("lr", 1e-3))
        wd = float(get("weight_decay", 0.0))
        kwargs: dict[str, Any] = {}
        # Fused kernels: one launch per step instead of one per parameter (GPU only;
        # DeepSpeed partitions the optimizer state itself).
        if self.strategy.device().type == "cuda" and self.strategy.name != "deepspeed":
            kwargs["fused"] = True
        params = model.parameters()
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd, **kwargs)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kwargs)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=float(get("momentum", 0.0)),
                                   weight_decay=wd, **kwargs)
        raise TrainerError(f"unknown optimizer `{name}` (adam, adamw or sgd; or override "
                           "`create_optimizer`)")

    def create_lr_scheduler(self, optimizer: Any, config: dict[str, Any]) -> Any:
        return None

    def create_model_loss_optimizer(self, config: dict[str, Any]) -> Any:
        model = require_module(self.create_model(config), self.create_model)
        model = model.to(self.strategy.device())
        optimizer = require_optimizer(self.create_optimizer(model, config), self.create_optimizer,
                                       self.strategy)
        scheduler = require_scheduler(self.create_lr_scheduler(optimizer, config),
                                       self.create_lr_scheduler)
        return model, require_loss(self.create_loss(config), self.create_loss), optimizer, scheduler

    def prepare_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return self._prepare(x)

    def train_step(self, batch: Any) -> torch.Tensor:
        self._require_model("train_step", self.model)
        x, y = _inputs_targets(batch, "train_step")
        return self.loss(self._outputs(self._forward(x), y), y)

    def validation_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self._require_model("validation_step", self.model)
        x, y = _inputs_targets(batch, "validation_step")
        out = self._outputs(self._forward(x), y)
        return self.loss(out, y), out

    def _forward(self, x: Any) -> Any:
        """The model's outputs; images laid out otherwise than its convolutions take them
        fail the trial saying how to lay them out (not retried: every retry would too)."""
        try:
            return self.model(x)
        except RuntimeError as exc:
            hint = layout_hint(exc, x)
            if hint is None:
                raise
            raise TrainerError(hint) from exc

    def _outputs(self, out: Any, targets: Any) -> Any:
        """The model's outputs for torch's losses, which take one tensor: `(logits, features)`
        failed inside torch, naming no line of the study's code. A loss of the trainer's own
        may take anything."""
        if isinstance(out, torch.Tensor):
            seen = self.__dict__.setdefault("_labels_seen", set())  # the steps checked: train, validation
            first = self.model.training not in seen
            if first:  # each step's first batch only: the range check waits for the device
                seen.add(self.model.training)
            require_class_labels(out, targets, self.loss, check_range=first)
            return require_same_shape(out, targets, self.loss, self.model)
        if not isinstance(self.loss, torch.nn.modules.loss._Loss):
            return out
        model = getattr(self.model, "module", self.model)  # DDP's wrapped model
        raise TrainerError(f"the model's forward(){source_line(type(model).forward)} returned "
                           f"{returned(out) if out is None else 'a ' + type(out).__name__}, and the loss "
                           f"({type(self.loss).__name__}) takes a tensor: "
                           "return the outputs alone, or override `train_step` and `validation_step`")

    def checkpoint_state(self) -> dict[str, Any]:
        """Extra state of your own to save in each checkpoint."""
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        """Model, loss, optimizer (wrapped by the strategy) and batches; idempotent."""
        if self.tracker is None:
            self.initialize_logger()
        if self.model is None or self.strategy.model is None:
            self._create_model()
        if not self._batches:
            self.create_dataloaders(self.train_data, self.validation_data, self.test_data)

    def _workers_watched(self) -> Any:
        """While the trial trains: loader workers beyond its CPUs, and a shuffled loader that
        every rank reads whole, said once in its log (rank 0's), whoever made the DataLoader
        (hpoc, or the trainer's own code: loaders.py)."""
        cpus = ((self.plan or {}).get("resources") or {}).get("cpus_per_worker")
        world = getattr(self.strategy, "world_size", 1)
        if getattr(self.strategy, "rank", 0) != 0:
            cpus, world = None, 1

        def name(loader: Any) -> str | None:
            for split in SPLITS:
                made = self.__dict__.get(f"{split}_dataloader")  # not __getattr__'s NotSetUp
                if made is not None and (made is loader or getattr(made, "loader", None) is loader):
                    return f"the {split} DataLoader"
            return None

        world = world if isinstance(world, int) else 1
        log = self.trial_dir / "stderr" if self.trial_dir and world > 1 else None

        def say(why: str) -> None:
            line = f"[hpoc] warning: {why}"
            print(line, file=sys.stderr, flush=True)
            if log is not None:  # a rank's own output reaches Ray's logs only, not the trial's
                with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")

        return watched(cpus, name, say, world, whole=lambda: samples(self.train_data))

    def _create_model(self) -> None:
        # what the loop draws (a `create_dataloaders(batch_size=...)` before this): DeepSpeed counts with it
        self.strategy.batch_size = self.__dict__.get("_loader_batch") or self.batch_size
        hook = self.create_model_loss_optimizer
        made = hook(self.config) if _takes_args(hook) else hook()
        if made is None:  # itwinai style: the hook set the attributes (maybe distributed)
            model, optimizer, scheduler = self.model, self.optimizer, self.lr_scheduler
        else:
            model, self.loss, optimizer, *rest = made
            scheduler = rest[0] if rest else None
        if model is None:
            raise TrainerError("create_model_loss_optimizer() returned no model")
        require_module(model, hook)
        if made is not None:
            require_optimizer(optimizer, hook, self.strategy)
            require_scheduler(scheduler, hook)
        if self.strategy.model is not model:
            model, optimizer, scheduler = self.strategy.distributed(model, optimizer, scheduler)
        self.model, self.optimizer, self.lr_scheduler = model, optimizer, scheduler
        if self.loss is None:
            self.loss = require_loss(self.create_loss(self.config), self.create_loss)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "_prepare_fn"):
            self._prepare_fn = default_prepare(self.normalize)
        return self._prepare_fn(x)

    def batches(self, data: Any, *, train: bool, batch_size: int | None = None,
                shuffle: bool | None = None, loader_args: dict[str, Any] | None = None) -> Any:
        """Device batches of this rank's part of `data` (see batches.py); training batches
        are shuffled unless `shuffle` says otherwise. `loader_args` go to the DataLoader
        (a `collate_fn` among them makes one for in-memory tensors too)."""
        if data is None:
            return None
        size = batch_size or (self.batch_size if train else self.batch_size * self.validation_batch_factor)
        shuffle = train if shuffle is None else bool(shuffle)
        loader_args = loader_args or {}
        tensors = None if loader_args.get("collate_fn") else as_tensors(data)
        setting = (self.plan or {}).get("training", {}).get("data_on_device", "auto")
        if tensors is None and setting is True and not loader_args.get("collate_fn"):
            tensors = _materialise(data)
        if tensors is not None:
            return TensorBatches(tensors, self.strategy, size, shuffle=shuffle, pad=train,
                                 seed=self.seed, prepare=self.prepare_inputs,
                                 on_device=setting if setting in (True, False) else "auto")
        return self.strategy.dataloader(data, size, shuffle=shuffle, seed=self.seed,
                                        prepare=self.prepare_inputs, pad=train, **loader_args)

    # itwinai names
    def create_dataloaders(self, train_dataset: Any = None, validation_dataset: Any = None,
                           test_dataset: Any = None, *, batch_size: int | None = None,
                           shuffle_train: bool | None = None, shuffle_validation: bool | None = None,
                           shuffle_test: bool | None = None, collate_fn: Any = None,
                           num_workers_dataloader: int | None = None, pin_memory: bool | None = None,
                           sampler: Any = None) -> None:
        """itwinai's loader settings apply as given: `batch_size` (validation and test
        batches `validation_batch_factor` times larger, as without it), the shuffling, a
        `collate_fn`, and the DataLoader's workers and pinning (unused by in-memory tensors)."""
        loader = loader_split((train_dataset, validation_dataset, test_dataset))
        if loader:
            raise TrainerError(f"the {loader} split is a DataLoader\n  help: {LOADER_HELP}")
        for name, split in zip(SPLITS, (train_dataset, validation_dataset, test_dataset)):
            why = unbatchable(split) if split is not None else None
            if why:  # said by the driver as the data loads; here for run_local
                raise TrainerError(f"the {name} split cannot be batched: {why}")
        if sampler is not None:
            raise TrainerError("create_dataloaders(sampler=...) is not supported: each worker "
                               "draws its own part of the data with hpoc's sampler\n  help: leave "
                               "`sampler` out; `shuffle_train` says whether training data is shuffled")
        args = {k: v for k, v in (("collate_fn", collate_fn), ("num_workers", num_workers_dataloader),
                                  ("pin_memory", pin_memory)) if v is not None}
        size = None if batch_size is None else whole_count("batch_size", batch_size, 1)
        if size is not None:
            self._micro_batch_agrees(size)

        def batches(data: Any, train: bool, shuffle: bool | None) -> Any:
            given: dict[str, Any] = {"loader_args": args} if args else {}  # a `batches` override may not take them
            if size is not None:
                given["batch_size"] = size if train else size * self.validation_batch_factor
            if shuffle is not None:
                given["shuffle"] = shuffle
            return self.batches(data, train=train, **given)

        self._batches = {"train": batches(train_dataset, True, shuffle_train),
                         "validation": batches(validation_dataset, False, shuffle_validation),
                         "test": batches(test_dataset, False, shuffle_test)}
        self.train_dataloader = self._batches["train"]
        self.validation_dataloader = self._batches["validation"]
        self.test_dataloader = self._batches["test"]

    def _micro_batch_agrees(self, size: int) -> None:
        """DeepSpeed's micro-batch is the training loader's: made before the engine, the engine
        gets it; after, one that differs would be counted (and a config file's
        `train_batch_size` split) with the engine's, not the batches trained on."""
        self._loader_batch = size
        engine = getattr(self.strategy, "engine", None)
        if engine is None:
            self.strategy.batch_size = size
            return
        micro = engine.train_micro_batch_size_per_gpu()
        if micro != size:
            raise TrainerError(f"create_dataloaders(batch_size={size}) after the DeepSpeed engine was made for "
                               f"micro-batches of {micro}: DeepSpeed would count, and split a config file's "
                               f"`train_batch_size`, with {micro} while the loader draws {size}\n"
                               "  help: call `create_dataloaders` before `self.strategy.distributed(...)`, or pass "
                               f"`config_params={{\"train_micro_batch_size_per_gpu\": {size}}}` to it")

    def set_epoch(self, epoch: int) -> None:
        for batches in self._batches.values():
            if batches is not None and hasattr(batches, "set_epoch"):
                batches.set_epoch(epoch)

    # ------------------------------------------------------------ the default loop

    def train(self) -> None:
        _reset_peak_memory(self.strategy.device())
        self.setup()
        if self.train_dataloader is None:
            raise TrainerError(NO_DATA)
        for epoch in range(self.restore(), self.epochs):
            self.set_epoch(epoch)
            started = time.time()
            metrics = self.train_epoch(epoch)
            self.strategy.close_window()  # a `train_epoch` of one's own may stop part way
            metrics["perf"] = self.perf(started, time.time())
            if self.validation_dataloader is not None:
                metrics.update(self.validation_epoch(epoch))
            if self.lr_scheduler is not None:
                _step_lr_scheduler(self.lr_scheduler, metrics)
            self.report(metrics, epoch=epoch)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        dev = self.strategy.device()
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        count = 0
        batches = self.train_dataloader
        last = len(batches) - 1
        for i, batch in enumerate(batches):
            with self.strategy.micro_batch(last=i == last):
                with self.strategy.autocast():
                    loss = _first_loss(self.train_step(batch))
                if not isinstance(loss, torch.Tensor):
                    raise TrainerError(f"train_step(){source_line(self.train_step)} returned "
                                       f"{returned(loss)}: return the batch's loss as a tensor "
                                       "(not `loss.item()`), to train on")
                self.strategy.backward(loss)
            self.strategy.step()
            n = _batch_len(batch)
            loss_sum += loss.detach().double() * n  # stays on the device: no sync per step
            count += n
            if self._batch_logging:
                # the tensor: the tracker reads it with others, not with a sync per step
                self.tracker.log_batch_metric("train_loss_batch", loss, epoch * (last + 1) + i)
        totals = self.strategy.all_reduce(torch.stack([loss_sum, torch.tensor(float(count), device=dev, dtype=torch.float64)]))
        loss_total, n_total = totals.tolist()
        self.epoch_images = int(n_total)
        return {"train_loss": loss_total / max(n_total, 1)}

    def perf(self, started: float, ended: float) -> dict[str, float]:
        """The `perf` group of an epoch's report: training seconds (wall, this rank), images
        trained by all ranks, their rate, start/end as Unix times (to add up trials that
        share a GPU) and, on CUDA, this process's peak allocated memory in the trial."""
        seconds = max(ended - started, 1e-9)
        images = getattr(self, "epoch_images", None)
        out = {"train_s": round(seconds, 4), "train_start": started, "train_end": ended}
        if images is not None:
            out["train_images"] = images
            out["images_per_s"] = round(images / seconds, 2)
        dev = self.strategy.device()
        if dev.type == "cuda":
            out["max_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        return out

    @torch.no_grad()
    def validation_epoch(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        dev = self.strategy.device()
        sums = torch.zeros(4, device=dev, dtype=torch.float64)  # loss*n, correct, n, n judged
        mine: dict[str, torch.Tensor] = {}  # the metrics of a validation_step's dict, times n
        classify = self.task == "classification"
        one_logit_is_zero = isinstance(self.loss, torch.nn.CrossEntropyLoss)
        batches = self.validation_dataloader
        unjudged = None  # why the first batch's outputs could not be scored
        for batch in batches:
            with self.strategy.autocast():
                out = self.validation_step(batch)
            loss, outputs, extra = validation_parts(out, self.validation_step)
            empty = getattr(batches, "empty", False)
            n = 0 if empty else _batch_len(batch)
            for name, value in extra.items():  # every rank sums the same names, even one
                total = mine.setdefault(name, torch.zeros((), device=dev, dtype=torch.float64))
                if not empty:
                    total += metric_tensor(value, name, dev) * n
            if empty:
                continue  # a stand-in batch of a rank with no samples left: not counted
            sums[0] += metric_tensor(loss, "loss", dev) * n
            sums[2] += n
            tensor = isinstance(outputs, torch.Tensor)
            if not (classify and tensor and outputs.dim() == 2):
                if classify and unjudged is None:
                    unjudged = (f"validation_step(){source_line(self.validation_step)} returned no "
                                "outputs to score: return `(loss, outputs)`" if outputs is None else
                                f"the validation outputs are a {type(outputs).__name__}, not a tensor"
                                if not tensor else f"the validation outputs are shaped {tuple(outputs.shape)}, not "
                                "(batch, classes)")
                continue
            if outputs.shape[1] == 1 and one_logit_is_zero:
                # softmax over one logit is 1: the loss is 0 whatever the model does
                raise TrainerError("the model has one output and the loss is CrossEntropyLoss, "
                                   "which is then always 0: for regression set `task = "
                                   "\"regression\"` (a trainer argument in the spec, or a class "
                                   "attribute) to train with MSELoss, or return one output per class")
            labels = _labels(batch)
            if isinstance(labels, torch.Tensor) and labels.is_floating_point() and labels.shape == outputs.shape:
                labels = labels.argmax(dim=1)  # one-hot or soft targets (Keras' layout): their class
            if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
                unjudged = unjudged or ("the validation labels are floats, not class indices"
                                        if isinstance(labels, torch.Tensor) else labels)
            else:
                hits = (outputs.argmax(dim=1) == labels).sum().to(sums.dtype)
                # NaN outputs (training diverged) predict nothing: argmax read them as class 0,
                # and a diverged trial ranked with the share of class 0 as its accuracy
                sums[1] += torch.where(outputs.isnan().any(), torch.full_like(hits, math.nan), hits)
                sums[3] += n
        names = sorted(mine)
        totals = self.strategy.all_reduce(torch.cat([sums, *(mine[k].reshape(1) for k in names)]))
        loss_total, correct, n_total, n_judged, *extra_totals = totals.tolist()
        metrics = {"val_loss": loss_total / max(n_total, 1)}
        if classify and (n_judged or not n_total):
            # not without outputs to judge (a validation_step that returns only the loss,
            # float labels): 0 would read as a model that is always wrong
            metrics["val_accuracy"] = correct / max(n_judged, 1)
        self._unjudged = unjudged if classify else "the trainer's `task` is not classification"
        metrics.update((k, v / max(n_total, 1)) for k, v in zip(names, extra_totals))
        return metrics

    # ------------------------------------------------------------ reporting

    def should_checkpoint(self, epoch: int) -> bool:
        policy = (self.plan or {}).get("checkpoint") or {"every": 1}
        every = int(policy.get("every") or 0)
        if every <= 0:  # checkpoints off
            return False
        return (epoch + 1) % every == 0 or epoch + 1 >= self.epochs

    def report(self, metrics: dict[str, Any], *, epoch: int | None = None,
               checkpoint: bool | None = None, extra: dict[str, Any] | None = None) -> None:
        """Report one epoch's metrics (all ranks call it) and checkpoint per the plan."""
        result = {k: reported(k, v) for k, v in metrics.items()}
        unjudged = getattr(self, "_unjudged", None)
        require_objective(self.plan, result, {"val_accuracy": unjudged} if unjudged else None)
        if epoch is not None:
            # training_iteration = epochs done, so schedulers and stop criteria count epochs
            # even after a retried trial restarted from a checkpoint.
            result["epoch"] = epoch + 1
            result["training_iteration"] = epoch + 1
        self.log_metrics({k: v for k, v in result.items() if k not in ("epoch", "training_iteration")},
                         step=epoch)
        getattr(getattr(self, "tracker", None), "reported", lambda: None)()  # no restore to wait for now
        if checkpoint is None:
            checkpoint = epoch is not None and self.should_checkpoint(epoch)
        directory = None
        if checkpoint:
            self._require_model("report", self.strategy.model)
            directory = scratch_dir()
            self.save_checkpoint(directory, epochs_done=(epoch + 1) if epoch is not None else 0,
                                 extra=extra)
        try:
            mine = directory if directory and (self.strategy.is_main or
                                               self.strategy.checkpoint_files_rank_local()) else None
            self.reporter.report(result, mine)
            self._reported = True
        finally:
            if directory:
                shutil.rmtree(directory, ignore_errors=True)

    def save_checkpoint(self, directory: str, *, epochs_done: int, extra: dict[str, Any] | None = None) -> None:
        self._require_model("save_checkpoint", self.strategy.model)
        state = {"epoch": epochs_done, "seed": self.seed, "rng": rng_state(),
                 "user": self.checkpoint_state(), "config": self.config}
        if getattr(self, "_built_lrs", None):  # what an exploiting trial scales its lr by
            state["built_lrs"] = self._built_lrs
        counts = getattr(getattr(self, "tracker", None), "steps", None)
        if counts is not None:  # rank 0's: where step-less metrics go on after a resume
            state["log_steps"] = counts()
            state["log_last"] = getattr(self.tracker, "last_steps", dict)()
        if extra:
            state["data"] = extra
        try:
            self.strategy.save_checkpoint(directory, state)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            if _pickles(state["user"]):
                raise
            # torch.save's "Can't pickle local object" names no line of the study's code
            raise TrainerError(f"checkpoint_state(){source_line(self.checkpoint_state)} returned what a "
                               f"checkpoint cannot hold: {exc} (save plain data: numbers, tensors, "
                               "state_dicts)") from None

    def restore(self) -> int:
        """Load the trial's latest checkpoint if there is one; the number of epochs done.

        A checkpoint that cannot be read (cut short by a full disk or a node lost while it
        was written) is skipped with a log line: the one before it is tried next, and with
        none left the trial starts over."""
        from hpoc.runtime.report import checkpoint_note, older_checkpoints

        self._require_model("restore", self.strategy.model)  # else every checkpoint reads as unreadable
        fresh = _optimizer_settings(self.strategy.optimizer)  # from this trial's config
        self._built_lrs = [g.get("initial_lr", g.get("lr")) for g in fresh]
        with self.reporter.latest_checkpoint() as directory:
            if directory is None:
                self._begin_attempt({})
                return 0
            self._resumed = True  # a trial resumed after its last epoch has none to report
            state, write = None, self.strategy.is_main
            for candidate in [directory, *older_checkpoints(directory)]:
                try:
                    state = self.strategy.load_checkpoint(candidate)
                except ModelMismatch as exc:
                    saved = exc.state.get("config")
                    if saved is not None and saved != self.config:
                        raise TrainerError(_exploit_misfit(self.trial.name, saved, self.config, exc)) from None
                    checkpoint_note(directory, f"trial {self.trial.name}: checkpoint {candidate} does not fit "
                                    f"the model ({_first_mismatch(exc)}); skipping it", write=write)
                    continue
                except Exception as exc:  # noqa: BLE001 - any unreadable file means "skip it"
                    checkpoint_note(directory, f"trial {self.trial.name}: checkpoint {candidate} is "
                                    f"unreadable ({type(exc).__name__}: {exc}); skipping it", write=write)
                    continue
                if candidate != directory:
                    checkpoint_note(directory, f"trial {self.trial.name}: resuming from the earlier "
                                    f"checkpoint {candidate} (epoch {state.get('epoch', 0)})", write=write)
                break
            if state is None:
                checkpoint_note(directory, f"trial {self.trial.name}: no readable checkpoint; "
                                "the trial starts over from epoch 0", write=write)
                self._begin_attempt({})
                return 0
        exploit = state.get("config") is not None and state["config"] != self.config
        if exploit:
            # Another trial's checkpoint (PBT's exploit): its weights, this trial's
            # hyperparameters; the optimizer state just loaded carries the donor's.
            _apply_optimizer_settings(self.strategy.optimizer, self.strategy.lr_scheduler, fresh,
                                      state.get("built_lrs"))
        # an exploit's points after the donor's checkpoint replace this trial's own there (a
        # checkpoint without its steps, from an older hpoc: first write wins, as before)
        self._begin_attempt((state.get("log_last") or None) if exploit else None)
        set_rng_state(state.get("rng"))
        self.load_checkpoint_state(state.get("user") or {})
        self.restored = state
        self._log_steps = state.get("log_steps") or {}
        self._log_last = state.get("log_last") or {}
        self._continue_log_steps()
        return int(state.get("epoch", 0))

    # itwinai's name for "report and checkpoint this epoch"
    def checkpoint_and_report(self, epoch: int, tuning_metrics: dict[str, Any],
                              checkpointing_data: dict[str, Any] | None = None) -> None:
        self.report(tuning_metrics, epoch=epoch, extra=checkpointing_data)

    # ------------------------------------------------------------ logging (rank 0 only)

    def initialize_logger(self, hyperparams: dict[str, Any] | None = None, rank: int | None = None) -> None:
        """Open the plan's loggers (MLflow, TensorBoard) on rank 0; they log the config."""
        if getattr(self, "tracker", None) is not None:
            return
        self.tracker = _NullTracker()
        self._batch_logging = False
        loggers = (self.plan or {}).get("loggers") or []
        if self.strategy.is_main and loggers:
            try:
                from hpoc.runtime.tracking import open_loggers
            except ImportError:  # a checkout without tracking: log nowhere
                return
            self.tracker = open_loggers(
                self.plan, self.trial.name, hyperparams if hyperparams is not None else self.config,
                self.strategy.rank, self.trial.index, parent_run_id=self.trial.parent_run_id,
                fresh_unless_told=self._attempt_before_restore)
            # per-batch values cost a copy per step and a host read per chunk: only when asked
            self._batch_logging = any(lg.get("log_freq") == "batch" for lg in loggers)
            self._continue_log_steps()

    def _continue_log_steps(self) -> None:
        """A resumed trial's step-less metrics go on at its checkpoint's counts, and the
        logger learns where the attempt starts, whichever of `restore()` and the logger
        comes first."""
        tracker = getattr(self, "tracker", None)
        go_on = getattr(tracker, "continue_steps", None)
        if go_on is not None and (getattr(self, "_log_steps", None) or getattr(self, "_log_last", None)):
            go_on(getattr(self, "_log_steps", None) or {}, getattr(self, "_log_last", None))
        begin = getattr(tracker, "begin", None)
        if begin is not None and hasattr(self, "_attempt_keep"):
            begin(self._attempt_keep)

    def _attempt_before_restore(self) -> Any:
        """What a metric logged before `restore()` takes the attempt for (`Tracker.begin`):
        one from scratch without a checkpoint given; with one, when a restore is known to come
        (itwinai's loop restores at its first batch; a `train()` that calls `self.restore()`,
        hpoc's among them, after `setup()` and its hooks), "later": the metric waits for it,
        which may find PBT's exploit of another trial's checkpoint or none readable; else a
        resume (a loop that loads its checkpoint itself)."""
        told = getattr(self, "_restore_to_come", None)  # itwinai's loop says
        if told:
            return "later"
        if not self._given_checkpoint():
            return True
        return "later" if told is None and _calls_restore(self) else False

    def _given_checkpoint(self) -> bool:
        try:
            return bool(self.reporter.has_checkpoint())
        except Exception:  # noqa: BLE001 — a reporter of the user's own, or outside a session
            return False

    def _begin_attempt(self, keep: dict[str, int] | None) -> None:
        """Where this attempt starts, for the logger (`Tracker.begin`): None at the trial's own
        checkpoint, else the last step per metric kept ({}: from scratch)."""
        self._attempt_keep = keep
        self._continue_log_steps()

    def log(self, value: Any, name: str, kind: str = "metric", step: int | None = None,
            **_: Any) -> None:
        """itwinai-style logging: metrics (and params) go to the plan's loggers on rank 0."""
        if not self.strategy.is_main:
            return
        if getattr(self, "tracker", None) is None:
            self.initialize_logger()
        if kind == "metric":
            self.tracker.log_metric(name, scalar(value), step)
        elif kind in ("param", "params", "hyperparameters"):
            self.tracker.log_params(value if isinstance(value, dict) else {name: value})
        else:  # itwinai's other kinds (artifact, torch, dict, figure, ...)
            hook = getattr(self.tracker, "log_item", None)
            if hook is not None:
                hook(kind, value, name)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if not self.strategy.is_main:
            return
        if getattr(self, "tracker", None) is None:
            self.initialize_logger()
        self.tracker.log_metrics(metrics, step)

    def close(self, status: str = "FINISHED") -> None:
        if getattr(self, "tracker", None) is not None:
            self.tracker.close(status)

    # ------------------------------------------------------------ entry points

    def execute(self) -> None:
        """Run `train()`: `train(self)` or the itwinai form `train(self, config, data)`."""
        seed_everything(self.seed, self.trial.deterministic)
        self.strategy.init()
        self._train_and_close(self.config)

    def _train_and_close(self, config: dict[str, Any]) -> None:
        """Run `train()` in either form, then close the loggers with how the trial ended."""
        from hpoc.runtime.tracking import run_status

        error: BaseException | None = None
        try:
            with self._workers_watched():
                if _takes_args(self.train) >= 2:
                    value = self.train(config, (self.train_data, self.validation_data, self.test_data))
                else:
                    value = self.train()
            if callable(flush := getattr(getattr(self, "reporter", None), "flush", None)):
                flush()  # the last checkpoint's sync (report.py), and what it met
            wanted = ((self.plan or {}).get("objective") or {}).get("metrics")
            if wanted and not (getattr(self, "_reported", False) or getattr(self, "_resumed", False)):
                # Tune would end the trial with no result, and its metric check the study;
                # metrics returned as a Ray function trainable may are not a report either
                world = getattr(self.strategy, "world_size", 1)
                rank = (f" on rank {self.strategy.rank} of {world} (every rank must call self.report "
                        "each epoch)") if isinstance(world, int) and world > 1 else ""
                how = (f"ended without reporting anything{rank}" if value is None else
                       f"returned {reprlib.repr(value)} instead of reporting it (hpoc does not read "
                       "what train() returns)")
                raise TrainerError(f"{type(self).__name__}.train(){source_line(self.train)} {how}: "
                                   f"{self.REPORT_HINT}")
        except SystemExit as exc:
            error = exc  # Tune stops a trial with SystemExit(0): finished, not failed
            if exc.code != 0 or not _asked_to_stop(exc):  # the trainer's own: Ray would kill
                # the worker (message lost), or take a 0 for an end it never reported
                error = TrainerError(f"the trainer called sys.exit({'' if exc.code is None else repr(exc.code)})"
                                     f"{raised_at(exc)}: raise an exception to fail the trial, "
                                     "or return from train() to end it")
                raise error from None
            raise
        except BaseException as exc:
            error = exc
            if _set_up_twice(exc):  # a DDP script's own setup: retries would fail the same way
                error = TrainerError(
                    f"the trainer called torch.distributed.init_process_group(){raised_at(exc)}, but "
                    "hpoc has set up this trial's process group already: remove the call, or guard "
                    "it with `if not torch.distributed.is_initialized()`")
                raise error from exc
            raise
        finally:
            self.close(run_status(error))

    def run_local(self, config: dict[str, Any], data: Any = None, *, directory: str | os.PathLike,
                  plan: dict[str, Any] | None = None, strategy: Strategy | None = None,
                  seed: int = 0, keep: int | None = 2) -> list[dict[str, Any]]:
        """Run this trainer in this process without Ray; results and checkpoints go to
        `directory`, and a second call with the same directory resumes. Returns the reports."""
        from hpoc.runtime.pipeline import as_splits

        reporter = LocalReporter(directory, keep=keep)
        training = (plan or {}).get("training") or {}
        strategy = strategy or Strategy(precision=training.get("precision", "auto"),
                                        compile=bool(training.get("compile", False)),
                                        grad_accumulation_steps=self.grad_accumulation_steps,
                                        channels_last=self.channels_last)
        splits = as_splits(data) if data is not None else None
        self.bind(config=config, strategy=strategy, reporter=reporter, plan=plan,
                  trial=TrialInfo(seed=seed, deterministic=True, dir=str(reporter.dir)), data=splits)
        self.execute()
        return reporter.history


def _set_up_twice(exc: BaseException) -> bool:
    """torch's error for a second `init_process_group`: a ValueError (a RuntimeError taken too,
    in case another torch version raises that)."""
    return isinstance(exc, (ValueError, RuntimeError)) and \
        "initialize the default process group twice" in str(exc)


def _asked_to_stop(exc: SystemExit) -> bool:
    """A SystemExit(0) from inside `report()`: Tune's (or a warm group's `TrialStopped`, a
    subclass) telling the trial to end. Not the trainer's own `sys.exit(0)`, which raises
    in its code, or a library's (argparse): Tune would fail that trial with "Should not have
    reached here"."""
    if type(exc) is not SystemExit:
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("ray.")


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _first_mismatch(exc: BaseException) -> str:
    """torch's first line on what does not fit (`size mismatch for fc.weight: ...`)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__).rstrip(".")


def _exploit_misfit(trial: str, donor: dict[str, Any], mine: dict[str, Any], exc: BaseException) -> str:
    """Why a trial given another trial's checkpoint (a PBT/PB2 exploit) cannot go on. It
    fails rather than start over: trained from scratch under PBT's clock, its epochs
    would count from the donor's and it would be ranked against trials trained twice as
    long - a study that is quietly not PBT. The change comes first: the driver's line is cut."""
    def shown(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else repr(v)

    before, after = _flat(donor), _flat(mine)
    changed = [f"{k} {shown(before.get(k))} → {shown(after.get(k))}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    said = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return (f"trial {trial}: PBT cannot copy weights across this exploit ({said or 'no hyperparameter changed'}): "
            "the other trial's weights do not fit this trial's model. Leave a hyperparameter that changes "
            "the model's shape out of `hyperparam_mutations` (PB2: `hyperparam_bounds`): each exploit then "
            f"copies its value with the weights (docs/language.md, PBT and PB2). torch: {_first_mismatch(exc)}")


def _step_lr_scheduler(scheduler: Any, metrics: dict[str, Any]) -> None:
    """One epoch's step. ReduceLROnPlateau needs a value to watch (`step()` raised
    TypeError): the epoch's `val_loss`, else its `train_loss`."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        value = metrics.get("val_loss", metrics.get("train_loss"))
        if value is None:
            raise TrainerError("ReduceLROnPlateau needs a loss to watch, and this epoch reported neither "
                               "`val_loss` nor `train_loss`: report one, or step the scheduler in your "
                               "own `train()`")
        scheduler.step(float(value))
    else:
        scheduler.step()


def _optimizer_settings(optimizer: Any) -> list[dict[str, Any]]:
    """Each param group's hyperparameters (lr, momentum, betas, ...), without its tensors."""
    groups = getattr(optimizer, "param_groups", None) or []
    return [{k: v for k, v in g.items() if k != "params" and isinstance(v, (bool, int, float, tuple))}
            for g in groups]


def _apply_optimizer_settings(optimizer: Any, scheduler: Any, fresh: list[dict[str, Any]],
                              donor_lrs: list[Any] | None = None) -> None:
    """Put `fresh` hyperparameters into a loaded optimizer. The learning rate keeps the
    factor the donor's training had reached: the new base lr times the loaded `lr` over the
    donor's base, which is `initial_lr` under a torch LR scheduler, else the lr the donor's
    optimizer was built with (`donor_lrs`, saved in its checkpoint): ReduceLROnPlateau keeps
    its reductions (its state, `best` and counters, is the donor's too). Without either, the
    new base lr as it is."""
    groups = getattr(optimizer, "param_groups", None) or []
    donor_lrs = donor_lrs if donor_lrs and len(donor_lrs) == len(groups) else [None] * len(groups)
    bases = []
    for group, new, donor_base in zip(groups, fresh, donor_lrs):
        base = new.get("initial_lr", new.get("lr"))
        factor = 1.0
        if "initial_lr" in group and group["initial_lr"]:
            factor = group["lr"] / group["initial_lr"]
            group["initial_lr"] = base
        elif isinstance(donor_base, (int, float)) and donor_base and isinstance(group.get("lr"), (int, float)):
            factor = group["lr"] / donor_base
        group.update({k: v for k, v in new.items() if k not in ("lr", "initial_lr")})
        if base is not None:
            group["lr"] = base * factor
        bases.append(base)
    if scheduler is not None and hasattr(scheduler, "base_lrs") and len(bases) == len(scheduler.base_lrs):
        scheduler.base_lrs = bases


def _reset_peak_memory(device: torch.device) -> None:
    """Peak-memory figures count from here (trial processes are reused across trials)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _inputs_targets(batch: Any, step: str) -> tuple[Any, Any]:
    """A batch as hpoc's own steps take it; a dict (a HuggingFace-style dataset's samples)
    failed as `KeyError: 0` on hpoc's line."""
    if isinstance(batch, Mapping):  # HF's BatchEncoding too, which is no dict
        raise TrainerError(f"the batches are dicts (keys {', '.join(map(str, batch))}), and hpoc's "
                           f"{step} takes a batch as (inputs, targets): return `(x, y)` from the "
                           "dataset's `__getitem__`, or override `train_step` and `validation_step` "
                           "to read the dict")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        # a bare tensor's batch[0] and batch[1] are its first two samples: one trained against the other
        shape = f"a tensor shaped {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else \
            f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise TrainerError(f"the batches hold inputs only ({shape}), and hpoc's {step} takes a batch as "
                           "(inputs, targets): give each sample its target (an autoencoder's is its "
                           "input: `(x, x)`), or override `train_step` and `validation_step`")
    y = batch[1]
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], str):  # collated strings stay strings
        shown = ", ".join(repr(str(t)) for t in y[:3])
        raise TrainerError(f"the targets are strings ({shown}, ...): the loss takes numbers: give the "
                           "classes as integers from the dataset's `__getitem__` (`classes.index(name)`, "
                           "or `pd.factorize(y)[0]` once in the getter)")
    return batch[0], y


LABEL_KEYS = ("label", "labels", "target", "targets", "y")


def _labels(batch: Any) -> torch.Tensor | str:
    """A validation batch's class labels, to score the outputs with, or why there are none:
    the second of a tuple, or a dict's one `label`-like key (a validation_step of the
    trainer's own reads dict batches)."""
    if isinstance(batch, Mapping):
        keys = [k for k in LABEL_KEYS if k in batch]
        if len(keys) == 1 and isinstance(batch[keys[0]], torch.Tensor):
            return batch[keys[0]]
        return (f"the validation batches are dicts whose labels hpoc cannot tell (keys "
                f"{', '.join(map(str, batch))}; one of {', '.join(LABEL_KEYS)} is read)")
    if len(batch) <= 1 or not isinstance(batch[1], torch.Tensor):
        return "the validation batches have no labels"
    return batch[1]


def _batch_len(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(first, Mapping):
        first = next(iter(first.values()))
    return int(first.shape[0])


def _materialise(dataset: Any) -> tuple[torch.Tensor, ...] | None:
    """Stack a map-style dataset into tensors once (`data_on_device: true`). Random
    augmentations in the dataset's transform are frozen by this - hence opt-in."""
    from torch.utils.data import DataLoader

    parts: list[list[torch.Tensor]] = []
    for batch in DataLoader(dataset, batch_size=1024, shuffle=False):
        batch = batch if isinstance(batch, (tuple, list)) else (batch,)
        if not parts:
            parts = [[] for _ in batch]
        for store, t in zip(parts, batch):
            store.append(torch.as_tensor(t))
    if not parts:
        return None
    return tuple(torch.cat(p) for p in parts)


__all__ = ["Trainer", "TrainerError", "TrialInfo", "num_samples"]
