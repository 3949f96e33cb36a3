"""itwinai's `RayTorchTrainer` API on hpoc's `Trainer`: an itwinai HPO trainer runs with only
its imports changed.

    from hpoc.compat.itwinai import Logger, RayDeepSpeedStrategy, RayTorchTrainer

This is not a second runtime: `RayTorchTrainer` is an `hpoc.Trainer` (the runtime builds it,
binds the trial's strategy, data and reporter, and calls `train(config, data)`), and the
strategy classes are hpoc's own under itwinai's names. What the layer adds:

- the trainer is built without itwinai's `config` argument (the study holds it): a
  subclass `__init__(self, config, ...)` gets `config={}`;
- `checkpoint_and_report` really checkpoints - model, optimizer, RNG and the
  `checkpointing_data` - through hpoc's checkpoint policy (itwinai's never saves them);
- resume: a retried or requeued trial restores its latest checkpoint when training
  starts and runs only the epochs left (the loop sees `config["epochs"]` reduced by the
  epochs done; epochs, log steps and `set_epoch` continue where they stopped);
- DeepSpeed: `loss.backward()` then `optimizer.step()` as itwinai loops write it works
  under ZeRO stages 1-3 (hpoc's default is 2); `optimizer.step()` steps the engine, so its
  step count, gradient clipping and accumulation apply. Accumulation windows end with the
  epoch, as in hpoc's own loop (the training batches mark each micro-batch's place), and
  the loop's per-batch `optimizer.zero_grad()` leaves an open window's gradients alone.
- DDP (and one worker): the trainer's `grad_accumulation_steps` apply as under DeepSpeed
  and as in hpoc's own loop: `optimizer.step()` steps at a window's end only, gradients
  are not all-reduced inside a window, each micro-batch's gradients count 1/steps, and
  the window ends with the epoch.
- a loop that `break`s out of the training batches part way drops its open window's
  gradients (DDP, ZeRO-3; ZeRO-1/2 keep them in buffers of their own, which reach the
  next step): the next epoch starts a full window.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any, Iterator

from hpoc.runtime.strategy import DDPStrategy, DeepSpeedStrategy, Strategy
from hpoc.runtime.trainer import Trainer, _takes_args, seed_everything

# itwinai's strategy names. Single-worker DDP trials run under hpoc's plain `Strategy`.
RayDDPStrategy = DDPStrategy
RayDeepSpeedStrategy = DeepSpeedStrategy
TorchDDPStrategy = DDPStrategy
RayTorchDistributedStrategy = DDPStrategy

RESUME_FILE = "itwinai.json"  # in each checkpoint: epochs done, read before training starts


class Logger:
    """itwinai's logger type, for annotations only: hpoc's loggers are set in the study
    (`logger mlflow { ... }`, or `MLFlowLogger` in the YAML config)."""


class RayTorchTrainer(Trainer):
    """Base class of itwinai-style HPO trainers (see the module docstring)."""

    REPORT_HINT = ("call `self.checkpoint_and_report(epoch, tuning_metrics={...})` each epoch "
                   "(docs/migrating-from-itwinai.md)")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        try:
            param = inspect.signature(init).parameters.get("config")
        except (TypeError, ValueError):
            return
        if param is None or param.default is not inspect.Parameter.empty:
            return

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kw: Any) -> None:
            if not args and "config" not in kw:  # built by hpoc: the study holds the config
                kw["config"] = {}
            init(self, *args, **kw)

        cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(self, config: dict[str, Any] | None = None, strategy: str = "ddp",
                 name: str | None = None, logger: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.itwinai_config = dict(config or {})
        # The study's `resources.strategy` decides; `self.strategy` is the live object.
        self.strategy_name = strategy
        self.name = name or type(self).__name__
        self.logger = logger
        self._epoch_offset = 0

    def bind(self, *, strategy: Strategy, **kwargs: Any) -> None:
        super().bind(strategy=strategy, **kwargs)
        self.strategy_name = "deepspeed" if isinstance(strategy, DeepSpeedStrategy) else "ddp"

    # ------------------------------------------------------------ config and optimizer

    @property
    def training_config(self) -> dict[str, Any]:
        return self.__dict__.get("_training_config", getattr(self, "config", {}))

    @training_config.setter
    def training_config(self, value: dict[str, Any]) -> None:
        self._training_config = value  # the runtime's `self.config` stays the trial's own

    @property
    def optimizer(self) -> Any:
        return self.__dict__.get("_optimizer")

    @optimizer.setter
    def optimizer(self, value: Any) -> None:
        strategy = self.__dict__.get("strategy")
        if value is not None and not isinstance(value, (EngineOptimizer, WindowOptimizer)):
            if getattr(strategy, "engine", None) is not None:
                value = EngineOptimizer(strategy, value)
            elif _accumulates(strategy):
                value = WindowOptimizer(strategy, value)
        self._optimizer = value

    # ------------------------------------------------------------ entry point

    def execute(self) -> None:
        if _takes_args(self.train) < 2:  # a train(self) loop of its own
            super().execute()
            return
        self._epoch_offset = self._epochs_done()
        self._restore_to_come = bool(self._epoch_offset)  # at the first batch: see _RestoreFirst
        seed_everything(self.seed, self.trial.deterministic)
        # the loop's batch (the trial's `batch_size`, or a `create_dataloaders(batch_size=...)` made
        # first) is DeepSpeed's micro-batch, as in hpoc's own loop: it was 1
        self.strategy.batch_size = self.batch_size
        self.strategy.init()
        config = dict(self.config)
        epochs = config.get("epochs")
        if self._epoch_offset and isinstance(epochs, int) and not isinstance(epochs, bool):
            config["epochs"] = max(0, epochs - self._epoch_offset)
        self._train_and_close(config)

    def _epochs_done(self) -> int:
        """The latest checkpoint's epochs done; its log step counts are taken on now, so that
        a step-less metric logged before the restore (at the first batch) counts on too."""
        with self.reporter.latest_checkpoint() as directory:
            if directory is None:
                return 0
            marker = Path(directory) / RESUME_FILE
            if not marker.is_file():
                return 0
            saved = json.loads(marker.read_text(encoding="utf-8"))
        self._log_steps, self._log_last = saved.get("log_steps") or {}, saved.get("log_last") or {}
        return int(saved.get("epoch", 0))

    # ------------------------------------------------------------ itwinai methods

    def create_dataloaders(self, train_dataset: Any = None, validation_dataset: Any = None,
                           test_dataset: Any = None, **loader_settings: Any) -> None:
        super().create_dataloaders(train_dataset, validation_dataset, test_dataset, **loader_settings)
        if (isinstance(self.strategy, DeepSpeedStrategy) or _accumulates(self.strategy)) \
                and self.train_dataloader is not None:
            self.train_dataloader = _EpochWindows(self.train_dataloader, self.strategy)
        if self._epoch_offset and self.train_dataloader is not None:
            # Restore when training starts: by then the loop has built and distributed
            # the model and optimizer, in whatever order it does so.
            self.train_dataloader = _RestoreFirst(self.train_dataloader, self)

    def _restore_now(self) -> None:
        if getattr(self, "_restored_epochs", None) is None:
            self._restored_epochs = self.restore()

    def _begin_attempt(self, keep: dict[str, int] | None) -> None:
        # no readable checkpoint: the loop still counts its epochs on from the marker's (its
        # epochs were set by then), so the run keeps its points up to there, not none
        if keep == {} and self._epoch_offset:
            keep = dict(getattr(self, "_log_last", None) or {})
        super()._begin_attempt(keep)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch + self._epoch_offset)

    def log(self, item: Any, identifier: str, kind: str = "metric", step: int | None = None,
            batch_idx: int | None = None, **kwargs: Any) -> None:
        if batch_idx is not None and self.strategy.is_main:
            # a batch's item: itwinai's loggers take it only under log_freq "batch", as
            # hpoc's per-batch values (MLflow: buffered, not one write per batch)
            if getattr(self, "tracker", None) is None:
                self.initialize_logger()
            if kind == "metric":
                self.tracker.log_batch_metric(identifier, item, step)
                return
            if not self._batch_logging:
                return
        super().log(item, identifier, kind=kind,
                    step=step + self._epoch_offset if step is not None and batch_idx is None else step)

    def initialize_logger(self, hyperparams: dict[str, Any] | None = None, rank: int | None = None) -> None:
        if hyperparams is not None and hyperparams is self.__dict__.get("_training_config"):
            hyperparams = self.config  # the trial's own values (`epochs` is not shortened)
        super().initialize_logger(hyperparams=hyperparams, rank=rank)

    def close_logger(self) -> None:
        """itwinai's: the loggers stay open until the trial ends, when hpoc closes them with
        how it ended (a loop that closed them itself failed every trial on this call)."""

    @property
    def device(self) -> Any:
        """itwinai's `self.device`: the trial's device (`self.strategy.device()`), unless
        the trainer set one of its own."""
        return self.__dict__["_own_device"] if "_own_device" in self.__dict__ else self.strategy.device()

    @device.setter
    def device(self, value: Any) -> None:
        self._own_device = value

    def checkpoint_and_report(self, epoch: int, tuning_metrics: dict[str, Any],
                              checkpointing_data: dict[str, Any] | None = None) -> None:
        """Report this epoch's metrics to Tune; checkpoint per the study's policy (every
        epoch by default), including `checkpointing_data`. Every rank must call it."""
        self.report(tuning_metrics, epoch=epoch + self._epoch_offset,
                    extra=_detached(checkpointing_data) if checkpointing_data else None)

    def save_checkpoint(self, directory: str, *, epochs_done: int, extra: dict[str, Any] | None = None) -> None:
        super().save_checkpoint(directory, epochs_done=epochs_done, extra=extra)
        if self.strategy.is_main:
            Path(directory).mkdir(parents=True, exist_ok=True)
            tracker = getattr(self, "tracker", None)
            steps = {"log_steps": tracker.steps(), "log_last": tracker.last_steps()} \
                if hasattr(tracker, "steps") else {}
            (Path(directory) / RESUME_FILE).write_text(json.dumps({"epoch": epochs_done, **steps}), encoding="utf-8")


class EngineOptimizer:
    """DeepSpeed's optimizer as itwinai loops use it: `zero_grad()`, `loss.backward()`,
    `step()`. The step goes through the strategy's engine; everything else reaches the optimizer."""

    def __init__(self, strategy: DeepSpeedStrategy, optimizer: Any) -> None:
        self.strategy, self.optimizer = strategy, optimizer

    @property
    def engine(self) -> Any:
        return self.strategy.engine

    def step(self, closure: Any = None) -> None:
        if closure is not None:
            raise TypeError("DeepSpeed optimizers take no closure")
        self.strategy.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        # Inside a window the gradients are the window's: the loop zeroes them every batch,
        # and ZeRO-3 dropped all but the last micro-batch's. The engine zeroes them as it steps.
        if self.strategy._micro == 0:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


class WindowOptimizer:
    """A torch optimizer as itwinai loops use it, accumulating over the strategy's windows:
    `step()` steps at a window's end, `zero_grad()` zeroes at its start. The loop calls
    `loss.backward()` itself, so each gradient is scaled by 1/steps as it arrives (before
    any clipping, as scaling the loss would)."""

    def __init__(self, strategy: Strategy, optimizer: Any) -> None:
        self.strategy, self.optimizer = strategy, optimizer
        scaled = strategy.__dict__.setdefault("_scaled_params", set())
        share = 1.0 / strategy.grad_accumulation_steps
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.requires_grad and id(param) not in scaled:
                    scaled.add(id(param))
                    param.register_hook(lambda grad: grad * share)

    def step(self, closure: Any = None) -> Any:
        if self.strategy.end_micro_batch():
            return self.optimizer.step() if closure is None else self.optimizer.step(closure)
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.strategy._micro == 0:
            self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def _accumulates(strategy: Any) -> bool:
    return not isinstance(strategy, DeepSpeedStrategy) and getattr(strategy, "grad_accumulation_steps", 1) > 1


class _EpochWindows:
    """Training batches that hold each micro-batch in its place in an accumulation window
    while the loop trains on it, the epoch's last closing it (the loop steps the optimizer
    itself; a count of its own let a window run on into the next epoch). Under DDP the
    micro-batches inside a window skip the gradient all-reduce."""

    def __init__(self, loader: Any, strategy: Strategy) -> None:
        self._loader, self._strategy = loader, strategy

    def __iter__(self) -> Iterator[Any]:
        try:
            last = len(self._loader) - 1
        except TypeError:  # an iterable dataset's: no batch is known to be the last
            last = -1
        try:
            for i, batch in enumerate(self._loader):
                with self._strategy.micro_batch(last=i == last):  # forward and backward inside
                    yield batch
        finally:  # a loop that broke out part way: its open window ends with the epoch too
            self._strategy.close_window()

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _RestoreFirst:
    """A training loader that restores the trial's checkpoint before its first batch."""

    def __init__(self, loader: Any, trainer: RayTorchTrainer) -> None:
        self._loader, self._trainer = loader, trainer

    def __iter__(self) -> Iterator[Any]:
        self._trainer._restore_now()
        if self._trainer.train_dataloader is self:  # restored: later epochs use the loader itself
            self._trainer.train_dataloader = self._loader
        return iter(self._loader)

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _detached(data: Any) -> Any:
    """`checkpointing_data` without autograd graphs (loss tensors), on the CPU."""
    import torch

    if isinstance(data, torch.Tensor):
        return data.detach().cpu()
    if isinstance(data, dict):
        return {k: _detached(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_detached(v) for v in data) if not hasattr(data, "_fields") else data
    return data


__all__ = ["Logger", "RayTorchTrainer", "RayDDPStrategy", "RayDeepSpeedStrategy", "TorchDDPStrategy",
           "RayTorchDistributedStrategy", "EngineOptimizer", "Strategy"]
