"""Strategies: how one trial's training runs on its process(es).

A `Strategy` hides single-process vs DDP vs DeepSpeed from trainer code: device placement,
wrapping model and optimizer (`distributed`), mixed precision, backward and optimizer step
(with gradient accumulation), sharding data across ranks, reductions, rank-0-only work and
checkpoints (DeepSpeed's sharded ones included). Trainer code never checks which strategy
it runs under and never moves tensors by hand.

    model, optimizer, scheduler = strategy.distributed(model, optimizer, scheduler)
    with strategy.autocast():
        loss = loss_fn(model(x), y)
    strategy.backward(loss)
    strategy.step()

The method names `device()`, `global_rank()`, `global_world_size()`, `local_rank()` and
`distributed(...) -> (model, optimizer, lr_scheduler)` match itwinai's strategies, so
trainers written for itwinai keep working.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import torch

from hpoc.plan import dsjson
from hpoc.runtime import deepspeed_log
from hpoc.runtime.deepspeed_autos import ds_bool, fill_autos, param_groups
from hpoc.runtime.deepspeed_refused import refused

STATE_FILE = "state.pt"
DS_TAG = "hpoc"
DS_EXTRA = "hpoc_extra"  # the trainer's part of a DeepSpeed checkpoint's client state
log = logging.getLogger("hpoc.strategy")


def _nothing_to_step() -> Exception:
    """A loop of the trainer's own that built its optimizer without handing it over failed
    with "'NoneType' object has no attribute 'step'", retried in every trial."""
    from hpoc.runtime.returns import TrainerError  # it imports this module

    return TrainerError("`self.strategy.step()` has no optimizer to step: build the model with "
                        "`self.setup()`, or hand yours to `self.strategy.distributed(model, optimizer)` "
                        "before the loop (docs/trainer.md, A loop of your own)")


class ModelMismatch(RuntimeError):
    """A checkpoint that reads, but whose weights do not fit the model (other layer shapes
    or names): not a damaged file, so not one to skip. `state` is the rest of it, the
    trial config it was saved with included."""

    def __init__(self, detail: str, state: dict[str, Any]) -> None:
        super().__init__(detail)
        self.state = state


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """`auto` -> bf16 on GPUs that support it, fp32 elsewhere; fp16 needs a GPU."""
    precision = (precision or "auto").lower()
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        log.warning("fp16 needs a GPU; training in fp32 on %s", device)
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision `{precision}` (auto, fp32, bf16 or fp16)")
    return precision


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def loader_workers(device: torch.device, threads: int) -> int:
    """DataLoader worker processes for a trial on `device` with `threads` CPU threads (the
    runtime sets them to `cpus_per_worker`): on GPU, decoding and transforms move off the
    training process (the seed loop went from 4,071 to 9,816 images/s with 4 workers on an
    H200); on CPU they would take cores from the training itself."""
    return max(0, min(8, threads - 1)) if device.type == "cuda" else 0


def _has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) for m in model.modules())


def _unwrap(model: Any) -> Any:
    """The user's module under DDP / DeepSpeed / torch.compile wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel) or \
                type(model).__name__ == "DeepSpeedEngine":
            model = model.module
        else:
            break
    return model


class Strategy:
    """One process, one device: the strategy of a one-worker trial.

    Subclasses: `DDPStrategy` (torch DistributedDataParallel; NCCL on GPU, Gloo on CPU) and
    `DeepSpeedStrategy` (ZeRO stages). Build one with `Strategy.create(...)`."""

    name = "single"

    def __init__(self, *, device: torch.device | str | None = None, precision: str = "auto",
                 grad_accumulation_steps: int = 1, compile: bool = False,
                 channels_last: bool | str = "auto", find_unused_parameters: bool = False) -> None:
        self._device = torch.device(device) if device is not None else self._default_device()
        self.precision = resolve_precision(precision, self._device)
        self.grad_accumulation_steps = max(1, int(grad_accumulation_steps))
        self.compile = bool(compile)
        self.channels_last_setting = channels_last
        # DDP: a model with parameters the loss leaves unused (costs a graph walk per step)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.channels_last = False
        self.model: Any = None
        self.optimizer: Any = None
        self.lr_scheduler: Any = None
        self.batch_size: int | None = None  # hint for DeepSpeed's micro-batch size
        self._micro = 0
        self.scaler = None
        if self.precision == "fp16" and self._device.type == "cuda" and self.name != "deepspeed":
            self.scaler = torch.amp.GradScaler("cuda")

    # ------------------------------------------------------------ factory

    @staticmethod
    def create(kind: str = "single", **kwargs: Any) -> "Strategy":
        """`single`, `ddp` or `deepspeed` (`deepspeed=` takes the plan's deepspeed block)."""
        kinds = {"single": Strategy, "ddp": DDPStrategy, "deepspeed": DeepSpeedStrategy}
        if kind not in kinds:
            raise ValueError(f"unknown strategy `{kind}` (one of {', '.join(kinds)})")
        if kind != "deepspeed":
            kwargs.pop("deepspeed", None)
        return kinds[kind](**kwargs)

    # ------------------------------------------------------------ ranks and devices

    def _default_device(self) -> torch.device:
        try:  # inside a Ray Train worker: the GPU Ray assigned to it
            from ray.train.torch import get_device

            from hpoc.runtime.report import in_train_worker

            if in_train_worker():
                return get_device()
        except ImportError:
            pass
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        return self._device

    def global_rank(self) -> int:
        return self.rank

    def global_world_size(self) -> int:
        return self.world_size

    def local_world_size(self) -> int:
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))

    def is_main_worker(self) -> bool:
        return self.is_main

    def init(self) -> None:
        """Set up the process group if needed (idempotent; Ray Train has done it already)."""
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)

    def cleanup(self) -> None:
        pass

    # ------------------------------------------------------------ model and optimizer

    def distributed(self, model: torch.nn.Module, optimizer: Any = None, lr_scheduler: Any = None,
                    **kwargs: Any) -> tuple[Any, Any, Any]:
        """Move `model` to the device and wrap it (and the optimizer) for this strategy."""
        self.init()
        model = self._place(model)
        model = self._wrap(model, **kwargs)
        self.model, self.optimizer, self.lr_scheduler = model, optimizer, lr_scheduler
        return model, optimizer, lr_scheduler

    def _place(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self._device)
        setting = self.channels_last_setting
        self.channels_last = bool(setting is True or (
            setting == "auto" and self._device.type == "cuda" and _has_conv(model)))
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _wrap(self, model: torch.nn.Module, **kwargs: Any) -> Any:
        return self._compiled(model)

    def _compiled(self, model: Any) -> Any:
        if not self.compile:
            return model
        mode = "reduce-overhead" if self._device.type == "cuda" else None
        return torch.compile(model, mode=mode)

    def unwrap(self, model: Any = None) -> Any:
        return _unwrap(self.model if model is None else model)

    # ------------------------------------------------------------ steps

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in ("bf16", "fp16"):
            return torch.autocast(self._device.type, dtype=_DTYPES[self.precision])
        return contextlib.nullcontext()

    def is_boundary(self, last: bool = False) -> bool:
        """Whether the current micro-batch ends an accumulation window."""
        return last or (self._micro + 1) % self.grad_accumulation_steps == 0

    @contextlib.contextmanager
    def micro_batch(self, last: bool = False) -> Iterator[None]:
        """Around forward *and* backward of one micro-batch (DDP skips the gradient
        all-reduce inside an accumulation window); `last` closes the window early."""
        self._boundary = self.is_boundary(last)
        yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.grad_accumulation_steps > 1:
            loss = loss / self.grad_accumulation_steps
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def end_micro_batch(self) -> bool:
        """Count the micro-batch as done; True when it ended its window (time to step)."""
        boundary = getattr(self, "_boundary", None)
        if boundary is None:
            boundary = self.is_boundary()
        self._boundary = None
        self._micro = 0 if boundary else self._micro + 1
        return boundary

    def close_window(self) -> None:
        """End an accumulation window a loop left open (a `break` part way through an epoch):
        its gradients are dropped, not stepped - under DDP they were never all-reduced - and
        the next epoch starts a full window instead of adding to this one."""
        if self._micro == 0 and getattr(self, "_boundary", None) is None:
            return
        self._micro, self._boundary = 0, None
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> bool:
        """Optimizer step at the end of an accumulation window; True when it stepped."""
        if self.optimizer is None:
            raise _nothing_to_step()
        if not self.end_micro_batch():
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    # ------------------------------------------------------------ data

    def to_device(self, batch: Any) -> Any:
        """Tensors (in tuples/lists/dicts) onto this strategy's device, asynchronously."""
        if isinstance(batch, torch.Tensor):
            t = batch.to(self._device, non_blocking=True)
            if t.is_floating_point():
                if self.input_dtype is not None and t.dtype != self.input_dtype:
                    t = t.to(self.input_dtype)
                if self.channels_last and t.dim() == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
            return t
        if isinstance(batch, (list, tuple)):
            out = [self.to_device(b) for b in batch]
            return type(batch)(out) if not hasattr(batch, "_fields") else type(batch)(*out)
        if isinstance(batch, Mapping):  # HF's BatchEncoding too, a UserDict
            moved = {k: self.to_device(v) for k, v in batch.items()}
            return moved if type(batch) is dict else type(batch)(moved)
        return batch

    @property
    def input_dtype(self) -> torch.dtype | None:
        """dtype floating inputs must have (DeepSpeed's half-precision engines); None = any."""
        return None

    def shard(self, n: int, *, pad: bool) -> tuple[int, int, int]:
        """(start, stop, step) of this rank's part of `n` items; with `pad` every rank gets the
        same count (what lockstep training needs; the short ranks wrap around)."""
        if pad:
            per = -(-n // self.world_size)
            return self.rank, per * self.world_size, self.world_size
        return self.rank, n, self.world_size

    def dataloader(self, dataset: Any, batch_size: int, *, shuffle: bool = False,
                   drop_last: bool = False, seed: int = 0, prepare: Any = None, pad: bool = True,
                   **kwargs: Any):
        """A DataLoader over this rank's shard whose batches arrive on the device.

        `pad=False` (validation): the samples DistributedSampler repeats to even out the
        ranks are cut from the batches, and a batch of nothing else is marked `empty`."""
        from hpoc.runtime.batches import DeviceLoader

        from torch.utils.data import DataLoader, DistributedSampler

        sampler = None
        if self.world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=shuffle, seed=seed, drop_last=drop_last)
            shuffle = False
        generator = None
        if shuffle:
            generator = torch.Generator()
            generator.manual_seed(seed)
        # Pinning needs a GPU to copy to: on a CPU trial torch warns of it, once per loader.
        kwargs["pin_memory"] = bool(kwargs.get("pin_memory", True)) and self._device.type == "cuda"
        workers = loader_workers(self._device, torch.get_num_threads())
        if workers and "num_workers" not in kwargs:
            kwargs.update(num_workers=workers, persistent_workers=True)
        if not kwargs.get("num_workers"):  # a GPU loop's settings on a CPU trial, which has no workers:
            for key in ("persistent_workers", "prefetch_factor"):  # torch refuses them without
                kwargs.pop(key, None)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                            drop_last=drop_last, generator=generator, **kwargs)
        keep = None
        if sampler is not None and not pad and not drop_last:
            keep = len(range(self.rank, len(dataset), self.world_size))
        return DeviceLoader(loader, self, seed=seed, shuffle=shuffle, prepare=prepare, keep=keep)

    # ------------------------------------------------------------ collectives

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (a no-op on one process)."""
        return tensor

    def barrier(self) -> None:
        pass

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    # ------------------------------------------------------------ checkpoints

    def save_checkpoint(self, directory: str | os.PathLike, extra: dict[str, Any]) -> None:
        """Model, optimizer, lr scheduler and grad scaler states plus `extra`, into
        `directory` (rank 0 writes; every rank must call)."""
        if self.is_main:
            state = dict(extra)
            state["model"] = self.unwrap().state_dict()
            if self.optimizer is not None:
                state["optimizer"] = self.optimizer.state_dict()
                state["optimizer_class"] = type(self.optimizer).__qualname__
            if self.lr_scheduler is not None and hasattr(self.lr_scheduler, "state_dict"):
                state["lr_scheduler"] = self.lr_scheduler.state_dict()
            if self.scaler is not None:
                state["scaler"] = self.scaler.state_dict()
            Path(directory).mkdir(parents=True, exist_ok=True)
            torch.save(state, Path(directory) / STATE_FILE)
        self.barrier()

    def load_checkpoint(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Restore what `save_checkpoint` wrote; returns the `extra` part."""
        # Our own file: it holds RNG states that weights_only loading refuses.
        state = torch.load(Path(directory) / STATE_FILE, map_location=self._device,
                           weights_only=False)
        try:
            self.unwrap().load_state_dict(state.pop("model"))
        except RuntimeError as exc:  # torch's "size mismatch for ...", "Missing key(s) ..."
            raise ModelMismatch(str(exc), state) from None
        saved, kind = state.pop("optimizer", None), state.pop("optimizer_class", None)
        if saved is not None and self.optimizer is not None:
            if kind is not None and kind != type(self.optimizer).__qualname__:
                # Another trial's checkpoint (a PBT/PB2 exploit that mutated the optimizer's
                # name): its state does not fit this optimizer (Adam cannot load SGD's, and
                # the failed load read as an unreadable checkpoint: the trial started over).
                # The weights are the other trial's; this optimizer starts fresh on them.
                log.info("checkpoint %s: its optimizer is %s, this trial's %s: optimizer state "
                         "not loaded", directory, kind, type(self.optimizer).__qualname__)
            else:
                self.optimizer.load_state_dict(saved)
        scheduler, scaler = state.pop("lr_scheduler", None), state.pop("scaler", None)
        if scheduler is not None and self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(scheduler)
        if scaler is not None and self.scaler is not None:
            self.scaler.load_state_dict(scaler)
        return state

    def checkpoint_files_rank_local(self) -> bool:
        """Whether every rank writes its own checkpoint files (and must report them)."""
        return False


class DDPStrategy(Strategy):
    """torch DistributedDataParallel over the processes of one trial."""

    name = "ddp"

    @property
    def rank(self) -> int:
        import torch.distributed as dist

        return dist.get_rank() if dist.is_available() and dist.is_initialized() else \
            int(os.environ.get("RANK", 0))

    @property
    def world_size(self) -> int:
        import torch.distributed as dist

        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else \
            int(os.environ.get("WORLD_SIZE", 1))

    @property
    def local_rank(self) -> int:
        try:
            from hpoc.runtime.report import in_train_worker

            if in_train_worker():
                import ray.train

                return ray.train.get_context().get_local_rank()
        except ImportError:
            pass
        return int(os.environ.get("LOCAL_RANK", 0))

    def backend(self) -> str:
        return "nccl" if self._device.type == "cuda" else "gloo"

    def init(self) -> None:
        import torch.distributed as dist

        super().init()
        if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            dist.init_process_group(self.backend())  # torchrun-style env:// launch

    def cleanup(self) -> None:
        pass  # Ray Train owns the process group

    def _wrap(self, model: torch.nn.Module, **kwargs: Any) -> Any:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # A model the trainer wrapped itself keeps its wrapper: a second one all-reduced twice.
        if self.world_size > 1 and not isinstance(model, DDP):
            ids = [self._device.index] if self._device.type == "cuda" else None
            kwargs.setdefault("find_unused_parameters", self.find_unused_parameters)
            model = DDP(model, device_ids=ids, **kwargs)
        return self._compiled(model)

    @contextlib.contextmanager
    def micro_batch(self, last: bool = False) -> Iterator[None]:
        self._boundary = self.is_boundary(last)
        no_sync = getattr(self.model, "no_sync", None)
        if not self._boundary and no_sync is not None:
            with no_sync():
                yield
        else:
            yield

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.world_size > 1:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        import torch.distributed as dist

        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


DEFAULT_ZERO_STAGE = 2  # as the compiler's default (docs/language.md)


def _orphan_scheduler(scheduler: Any) -> Exception:
    """The trainer's lr scheduler beside a DeepSpeed config's own optimizer: it would move the
    learning rate of the trainer's optimizer, which trains nothing, and the trial would
    train at the file's constant rate."""
    from hpoc.runtime.returns import TrainerError  # it imports this module

    return TrainerError(f"the DeepSpeed config defines an `optimizer`, which trains instead of the trainer's: "
                        f"the trainer's lr scheduler ({type(scheduler).__name__}) would step an optimizer that "
                        "trains nothing\n  help: give the DeepSpeed config a `scheduler` section too (WarmupLR, "
                        "WarmupDecayLR, ...), or remove its `optimizer` (the trainer's then trains, with its scheduler)")


def file_precision(config: dict[str, Any], precision: str) -> str:
    """The engine's precision under a DeepSpeed config whose `bf16`/`fp16` sections say
    (a section without `enabled` is off, as DeepSpeed reads it; "auto" or no section leaves
    `precision` as it is)."""
    said = {k: ds_bool(config[k].get("enabled", False), f"{k}.enabled") for k in ("bf16", "fp16")
            if isinstance(config.get(k), dict) and config[k].get("enabled") != "auto"}
    on = [k for k, enabled in said.items() if enabled]
    if on:
        return on[0]
    return "fp32" if said.get(precision) is False else precision


def node_nvme_paths(config: dict[str, Any]) -> None:
    """Expand `~` and `$VARS` in ZeRO's NVMe offload paths on the node, where a node-local
    disk's variable (`$LOCAL_SCRATCH`, `$TMPDIR`) is set: DeepSpeed takes the path literally,
    and swapped to a directory named "$LOCAL_SCRATCH" in the trial's working directory."""
    zero = config.get("zero_optimization")
    for part in ("offload_optimizer", "offload_param") if isinstance(zero, dict) else ():
        offload = zero.get(part)
        path = offload.get("nvme_path") if isinstance(offload, dict) else None
        if not isinstance(path, str):
            continue
        expanded = os.path.expanduser(os.path.expandvars(path))
        if "$" in expanded:
            raise ValueError(f"the DeepSpeed config's `zero_optimization.{part}.nvme_path` \"{path}\" uses a "
                             f"variable that is not set on this node ({os.uname().nodename})")
        offload["nvme_path"] = expanded


class DeepSpeedStrategy(DDPStrategy):
    """DeepSpeed engines with ZeRO stage 0-3; bf16/fp16 on GPU, fp32 on CPU (Gloo)."""

    name = "deepspeed"

    def __init__(self, *, deepspeed: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ds = dict(deepspeed or {})
        # None with a config file: the file's stage, else the documented default (DeepSpeed
        # 0.19 refuses a plain `loss.backward()` under stage 0).
        self.zero_stage = int(ds["zero_stage"]) if ds.get("zero_stage") is not None else DEFAULT_ZERO_STAGE
        self.config_file = ds.get("config_file")
        wanted = ds.get("precision") or kwargs.get("precision") or "auto"
        self.precision = resolve_precision(wanted, self._device)
        if self._device.type != "cuda":
            self.precision = "fp32"  # DeepSpeed's CPU path trains in fp32
        self.engine: Any = None

    def init(self) -> None:
        import deepspeed
        import torch.distributed as dist

        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        deepspeed.utils.logger.setLevel(logging.WARNING)
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)
        if not dist.is_initialized():
            if int(os.environ.get("WORLD_SIZE", 1)) == 1 and "MASTER_ADDR" not in os.environ:
                # One process: a private group (DeepSpeed needs one even for a single rank).
                from hpoc.runtime.report import free_port

                for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
                    os.environ.setdefault(key, value)
                dist.init_process_group(self.backend(), rank=0, world_size=1,
                                        init_method=f"tcp://127.0.0.1:{free_port()}")
        if dist.is_initialized() and dist.get_world_size() == 1:
            # A group made earlier in this process (an earlier trial, the user's own code)
            # may not have left LOCAL_RANK behind, and DeepSpeed refuses to start without it.
            os.environ.setdefault("LOCAL_RANK", "0")
        deepspeed.init_distributed(dist_backend=self.backend(), verbose=False)

    def ds_config(self, extra: dict[str, Any] | None = None, optimizer: Any = None) -> dict[str, Any]:
        """The config the engine gets: the file's over hpoc's settings, its "auto" values
        filled in (HF-style ones from the trainer's `optimizer`), then the trainer's `extra`."""
        config: dict[str, Any] = {}
        if self.config_file:
            config = dsjson.read(self.config_file)  # as DeepSpeed reads it: comments allowed
            node_nvme_paths(config)
        # The file's precision wins: the section hpoc fills in and the inputs' dtype follow it.
        self.precision = file_precision(config, self.precision)
        ours = {
            "train_micro_batch_size_per_gpu": self.batch_size or 1,
            "gradient_accumulation_steps": self.grad_accumulation_steps,
            "zero_optimization": {"stage": self.zero_stage},
            "bf16": {"enabled": self.precision == "bf16"},
            "fp16": {"enabled": self.precision == "fp16"},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": deepspeed_log.QUIET_STEPS,
            "wall_clock_breakdown": False,
        }
        if isinstance(config.get("train_batch_size"), int):
            # the file's global batch: DeepSpeed derives what of the split hpoc does not know
            # (the accumulation from the trial's batch_size and the workers, as documented)
            if self.grad_accumulation_steps == 1:
                del ours["gradient_accumulation_steps"]
            if not self.batch_size:
                del ours["train_micro_batch_size_per_gpu"]
        for key, value in ours.items():  # the user's file wins, except for "auto" values
            if config.get(key, "auto") == "auto":
                config[key] = value
            elif isinstance(value, dict) and isinstance(config[key], dict):
                # inside a section too (`"stage": "auto"`): DeepSpeed reads that "auto" as stage 0
                config[key] = {k: value[k] if v == "auto" and k in value else v for k, v in config[key].items()}
        # This DeepSpeed clips gradients at norm 1.0 unless told: the same trainer then trained
        # differently under DeepSpeed than under DDP, which clips nothing. A file's value stays.
        config.setdefault("gradient_clipping", 0.0)
        self._optimizer_autos = fill_autos(config, optimizer)
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            if config.get(key) == "auto":  # left to DeepSpeed, which derives it from the others
                del config[key]
        for key, value in (extra or {}).items():
            config[key] = value
        return config

    def distributed(self, model: torch.nn.Module, optimizer: Any = None, lr_scheduler: Any = None,
                    **kwargs: Any) -> tuple[Any, Any, Any]:
        import deepspeed

        try:
            config = self.ds_config(kwargs.pop("config_params", None), optimizer)
        except ValueError as exc:  # the file as hpoc reads it: every retry would fail alike
            from hpoc.runtime.returns import TrainerError  # it imports this module

            raise TrainerError(str(exc)) from exc
        if "optimizer" in config and "scheduler" not in config and lr_scheduler is not None:
            raise _orphan_scheduler(lr_scheduler)
        self.init()
        deepspeed_log.quiet(deepspeed.utils.logger, config)
        model = model.to(self._device)
        # The lr scheduler stays ours: stepped per epoch like with the other strategies
        # (DeepSpeed would step it per optimizer step) and saved in the client state. A
        # DeepSpeed config file that defines its own optimizer or scheduler wins.
        args: dict[str, Any] = {"model": model, "config": config, "dist_init_required": False}
        if "optimizer" in config:
            if optimizer is not None and not self._optimizer_autos:
                log.warning("the DeepSpeed config defines an optimizer; the trainer's is not used")
            groups = param_groups(optimizer, self._optimizer_autos) if self._optimizer_autos else None
            args["model_parameters"] = groups or [p for p in model.parameters() if p.requires_grad]
        else:
            args["optimizer"] = optimizer
        if "scheduler" in config:
            lr_scheduler = None  # the engine steps its own
        try:
            engine, ds_optimizer, _, _ = deepspeed.initialize(**args, **kwargs)
        except Exception as exc:  # pydantic's refusal of a key, a half precision's, DeepSpeedConfigError
            if (said := refused(exc, self._device.type)) is None:
                raise
            raise said from exc
        self.engine = engine
        self.model, self.optimizer, self.lr_scheduler = engine, ds_optimizer, lr_scheduler
        return engine, ds_optimizer, lr_scheduler

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the engine holds the model in its precision

    @property
    def input_dtype(self) -> torch.dtype | None:
        return _DTYPES[self.precision] if self.precision in ("bf16", "fp16") else None

    # The windows are ours, not the engine's count of micro-steps since it started: that count
    # ignored `last` and carried an epoch's leftover micro-batches into the next epoch's window.

    @contextlib.contextmanager
    def micro_batch(self, last: bool = False) -> Iterator[None]:
        self.mark_micro_batch(last)
        yield

    def mark_micro_batch(self, last: bool = False) -> None:
        """Open the next micro-batch's place in its window, for a loop that backs through
        the engine's hooks (`loss.backward()`) rather than `micro_batch()`."""
        self._boundary = self.is_boundary(last)
        self.engine.set_gradient_accumulation_boundary(self._boundary)  # before forward, as DeepSpeed asks

    def is_boundary(self, last: bool = False) -> bool:
        # the engine's accumulation: the file's, or derived from its `train_batch_size`
        steps = self.engine.gradient_accumulation_steps() if self.engine is not None else 1
        return last or (self._micro + 1) % steps == 0

    def backward(self, loss: torch.Tensor) -> None:
        if getattr(self, "_boundary", None) is None:  # a loop without `micro_batch`
            self._boundary = self.is_boundary()
            self.engine.set_gradient_accumulation_boundary(self._boundary)
        self.engine.backward(loss)

    def close_window(self) -> None:
        if self._micro == 0 and getattr(self, "_boundary", None) is None:
            return
        self._micro, self._boundary = 0, None
        if self.optimizer is not None:
            from hpoc.runtime.zero import drop_window

            drop_window(self.optimizer)  # ZeRO-2 holds them beyond `zero_grad()`'s reach

    def step(self) -> bool:
        if self.engine is None:
            raise _nothing_to_step()
        boundary = getattr(self, "_boundary", None)
        if boundary is None:  # nothing marked the micro-batch: its backward went by the engine's count
            boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        self._boundary = None
        self._micro = 0 if boundary else self._micro + 1
        return boundary

    def save_checkpoint(self, directory: str | os.PathLike, extra: dict[str, Any]) -> None:
        # Every rank writes its own ZeRO partition; Ray merges the workers' files. `extra` under
        # a key of its own: DeepSpeed hands back its own fields beside a client state.
        state: dict[str, Any] = {DS_EXTRA: dict(extra)}
        if self.lr_scheduler is not None and hasattr(self.lr_scheduler, "state_dict"):
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        self.engine.save_checkpoint(str(directory), tag=DS_TAG, client_state=state)

    def load_checkpoint(self, directory: str | os.PathLike) -> dict[str, Any]:
        """Restore what `save_checkpoint` wrote; returns the `extra` part, as the other strategies.
        Weights that do not fit the model raise `ModelMismatch`, as under DDP."""
        from hpoc.runtime.zero import misfit, model_states

        saved = model_states(Path(directory) / DS_TAG)
        detail = misfit(saved, self.unwrap())
        if detail is not None:
            raise ModelMismatch(detail, dict(saved.get(DS_EXTRA, saved)))
        try:
            _, client_state = self.engine.load_checkpoint(
                str(directory), tag=DS_TAG, load_optimizer_states=True,
                load_lr_scheduler_states=self.engine.lr_scheduler is not None)
        except RuntimeError as exc:  # ZeRO-1/2 load the module's state dict: its buffers too
            if not str(exc).startswith("Error(s) in loading state_dict"):
                raise
            raise ModelMismatch(str(exc), dict(saved.get(DS_EXTRA, saved))) from None
        state = dict(client_state or {})
        scheduler = state.pop("lr_scheduler", None)
        if scheduler is not None and self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(scheduler)
        # a checkpoint written before `extra` had its own key: all of it, as then
        return dict(state.get(DS_EXTRA, state))

    def checkpoint_files_rank_local(self) -> bool:
        return True
