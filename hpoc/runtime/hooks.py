"""A trainer's hooks checked against the calls the default loop makes, before Ray starts
(and whether the plan gives that loop its epochs and data).

`def create_model(self):` fails every trial with a TypeError, and every retry of it, after a
cluster and a worker per trial came up. The driver (and `hpoc check --preflight`) imports the
trainer anyway: its class says it at once. Only hooks hpoc itself calls are checked: one the
trainer's own code calls instead (it overrides the method that calls it) may take anything.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

# hook -> (the arguments hpoc passes, the methods whose override means hpoc no longer calls it)
_MODEL = ("train", "setup", "_create_model", "create_model_loss_optimizer")
HOOKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "create_model": (("config",), _MODEL),
    "create_loss": (("config",), _MODEL),
    "create_optimizer": (("model", "config"), _MODEL),
    "create_lr_scheduler": (("optimizer", "config"), _MODEL),
    "train_step": (("batch",), ("train", "train_epoch")),
    "validation_step": (("batch",), ("train", "validation_epoch")),
    "prepare_inputs": (("x",), ("train", "setup", "create_dataloaders", "batches")),
    "checkpoint_state": ((), ("save_checkpoint",)),
    "load_checkpoint_state": (("state",), ("restore",)),
}


def hook_problems(cls: type) -> list[str]:
    """`name(self, ...)` (file:line) must be ...: each hook of `cls` hpoc cannot call."""
    out = []
    for name, (args, callers) in HOOKS.items():
        if not _users(cls, name) or any(_users(cls, c) for c in callers):
            continue
        raw = inspect.getattr_static(cls, name)
        func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        if not inspect.isfunction(func) or hasattr(func, "__wrapped__"):
            continue  # a decorated or callable object: its real signature is unknown
        try:
            sig = inspect.signature(func)
            sig.bind(*([] if isinstance(raw, staticmethod) else [None]), *[None] * len(args))
        except TypeError:
            out.append(f"`{name}{sig}`{source_line(func)} must be `{name}({', '.join(('self', *args))})`")
        except ValueError:
            continue
    return out


def model_missing(cls: type) -> list[str] | None:
    """None when `cls` makes a model; else the near misses that may have been meant for
    `create_model` (`create_modle`): hpoc's own `create_model` raises in every trial."""
    if not _keeps(cls, "create_model", *_MODEL):
        return None
    return [m for m in near_misses(cls) if "did you mean `create_model`?" in m]


def epochs_missing(cls: type, plan: dict[str, Any]) -> bool:
    """Whether hpoc's loop would fail every trial of `plan` at its start for want of a
    number of epochs (a trainer that overrides the loop, or how it reads settings, may
    need none)."""
    from hpoc.runtime.trainer import plan_epochs

    if not _keeps(cls, "train", "epochs", "setting"):
        return False
    return not _given(plan, "epochs") and plan_epochs(plan) is None


def _names(plan: dict[str, Any]) -> list[str]:
    space = plan.get("space") or {}
    return [*(space.get("constants") or {}), *(p.get("name") for p in space.get("params") or ())]


def _given(plan: dict[str, Any], name: str) -> bool:
    """Whether the trial config (or the trainer's arguments) has `name` at its top level."""
    return name in _names(plan) or name in (plan["pipeline"]["trainer"].get("args") or {})


def grouped(plan: dict[str, Any], name: str) -> list[str]:
    """The space's names for `name` inside a group (`data.batch_size`)."""
    return [n for n in _names(plan) if n.endswith("." + name)]


def ignored_in_groups(cls: type, plan: dict[str, Any]) -> list[str]:
    """`data.batch_size = choice(16, 32)`: hpoc's loop reads `batch_size` at the config's top
    level, so every trial trained with the default 64 and the search searched nothing."""
    out = []
    for name in ("epochs", "batch_size"):
        if _given(plan, name) or not _keeps(cls, "train", name, "setting"):
            continue
        out += [f"`{g}` is inside a group, and hpoc's default loop reads `{name}` at the top of "
                f"the config only: it never sees it (write `{name} = ...` outside the group)"
                for g in grouped(plan, name)]
    return out


def trainer_warnings(trainer: Any, plan: dict[str, Any] | None) -> list[str]:
    """What `hpoc run` (as it starts) and `hpoc check --preflight` warn of in a trainer
    class (nothing for anything else: its import error is said elsewhere)."""
    if not isinstance(trainer, type):
        return []
    return near_misses(trainer) + (ignored_in_groups(trainer, plan) if plan is not None else [])


def batches_splits(cls: Any) -> bool:
    """Whether hpoc's loop makes the batches of `cls`'s splits (a loop of its own may
    iterate a DataLoader itself)."""
    return isinstance(cls, type) and _keeps(cls, "train", "setup", "create_dataloaders", "batches")


def data_missing(cls: type, plan: dict[str, Any]) -> bool:
    """Whether hpoc's loop would find no training data in every trial of `plan`: no getter
    nor splitter, and a trainer that loads none itself."""
    steps = plan["pipeline"]
    if steps.get("getter") or steps.get("splitter"):
        return False
    return _keeps(cls, "train", "setup", "create_dataloaders")


def _keeps(cls: type, *names: str) -> bool:
    """Whether `cls` has `hpoc.Trainer`'s own `names`: the default loop's, unchanged."""
    from hpoc.runtime.trainer import Trainer

    return all(getattr(cls, name, None) is getattr(Trainer, name) for name in names)


def near_misses(cls: type) -> list[str]:
    """Methods of the user's named like a misspelt hook: hpoc never calls them, and the
    default it calls instead runs without a word (`create_lr_schedular`: no scheduler)."""
    from hpoc.runtime.trainer import Trainer

    out = []
    for klass in cls.__mro__:
        if (klass.__module__ or "").startswith("hpoc.") or klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or hasattr(Trainer, name) or not inspect.isfunction(value):
                continue
            close = difflib.get_close_matches(name, (*HOOKS, "train"), n=1, cutoff=0.85)
            if close:
                out.append(f"`{name}`{source_line(value)} is not a hook hpoc calls (did you mean "
                           f"`{close[0]}`?): the default `{close[0]}` runs instead")
    return out


def _users(cls: type, name: str) -> bool:
    """Whether `name` comes from a class of the user's (not from hpoc's own classes)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return not (klass.__module__ or "").startswith("hpoc.")
    return False


def source_line(fn: Any) -> str:
    """` (file.py:12)` where `fn` (a function, method or class) is defined, or ""."""
    try:
        fn = inspect.unwrap(getattr(fn, "__func__", fn))
        return f" ({inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]})"
    except (TypeError, OSError):
        return ""
