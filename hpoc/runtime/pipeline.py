"""The pipeline steps of a plan: import `module:qualname` targets and load the data once.

getter -> splitter -> trainer, as in the itwinai pipelines users come from. A getter or
splitter is any class whose instances have `execute(...)` (itwinai style) or are callable.
The getter takes no input, the splitter takes the getter's output, and the result must be
`(train, validation)` or `(train, validation, test)`.

Import problems are reported with the target and the directory searched, before Ray starts
(the driver imports every target once), instead of as a traceback from a remote worker.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

ROLES = ("getter", "splitter", "trainer")


class PipelineError(Exception):
    """A pipeline step that cannot be imported, built or run; the message names the target."""


def use_workdir(workdir: str | None) -> None:
    """Put the spec's directory first on sys.path (bare module names resolve there)."""
    if not workdir:
        return
    workdir = os.path.abspath(workdir)
    if sys.path[:1] != [workdir]:
        if workdir in sys.path:
            sys.path.remove(workdir)
        sys.path.insert(0, workdir)


def _evict_shadowed(module: str, workdir: str | None) -> None:
    """Forget an already imported module of the same top-level name from elsewhere.

    Specs name their modules `data` and `trainer`; a process that ran another study (tests,
    reused Ray workers) may hold a different `data` module in sys.modules."""
    if not workdir:
        return
    top = module.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is None or top in sys.stdlib_module_names:  # never swap out Python's own
        return
    local = Path(workdir, top + ".py").exists() or Path(workdir, top, "__init__.py").exists()
    origin = getattr(loaded, "__file__", None) or ""
    if local and not os.path.abspath(origin).startswith(os.path.abspath(workdir) + os.sep):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def workdir_gone(plan: dict[str, Any]) -> str | None:
    """Why a plan cannot run here when its spec's directory is gone: a plan compiled before
    its project moved would import the current directory's code and write its results to
    the old storage, recreating it (a purged scratch, say). None when it is there."""
    workdir = plan["source"].get("workdir")
    if not workdir or os.path.isdir(workdir):
        return None
    spec = plan["source"].get("file") or "the spec"
    return (f"the spec's directory {workdir} (`source.workdir` of this plan) does not exist here: "
            "moved since the plan was compiled?\n  help: compile the spec where it is now "
            f"(`hpoc run {spec}`, `hpoc submit {spec}` or `hpoc compile {spec}` in its directory): "
            "a moved study resumes there (docs/resume.md)")


def import_target(target: str, workdir: str | None = None, role: str = "target") -> Any:
    """The object named by `module:qualname` (a dotted `module.Name` is accepted too)."""
    if ":" in target:
        module_name, _, qualname = target.partition(":")
    else:
        module_name, _, qualname = target.rpartition(".")
    if not module_name or not qualname:
        raise PipelineError(f"{role} `{target}`: expected `module:ClassName`")
    use_workdir(workdir)
    _evict_shadowed(module_name, workdir)
    where = f" (searched {workdir} and the Python path)" if workdir else ""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            gone = ""
            if workdir and not os.path.isdir(workdir):  # a plan compiled before its project moved
                gone = (f"\n  help: {workdir}, the spec's directory when this plan was compiled, "
                        "does not exist here (moved since?): compile the spec where it is now "
                        "(`hpoc compile`, or `hpoc run`/`hpoc submit` on the spec), not an old plan")
            raise PipelineError(f"{role} `{target}`: no module named `{module_name}`{where}{gone}") from None
        help = f"install `{exc.name}` in the environment the study runs in"
        if (exc.name or "").split(".")[0] == "itwinai":  # a tutorial's trainer as it is: hpoc needs no itwinai
            help = "import it from `hpoc.compat.itwinai` (docs/migrating-from-itwinai.md)"
        raise PipelineError(f"{role} `{target}`: importing `{module_name}` failed: {exc}\n  help: {help}") from None
    except SyntaxError as exc:
        raise PipelineError(f"{role} `{target}`: syntax error in {exc.filename}:{exc.lineno}: "
                            f"{exc.msg}") from None
    except Exception as exc:  # the module's own top-level code failed
        raise PipelineError(f"{role} `{target}`: importing `{module_name}` failed: "
                            f"{_describe(exc)}") from None
    obj: Any = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            path = getattr(module, "__file__", module_name)
            raise PipelineError(f"{role} `{target}`: `{module_name}` ({path}) has no `{part}`{hint}")
        obj = getattr(obj, part)
    return obj


def _describe(exc: BaseException) -> str:
    """`Type: message (file:line)` at the innermost frame, without a whole traceback; when
    that is a library's (torchvision's reader of a truncated file), also the study's own
    line that called it."""
    from hpoc.runtime.summary import one_line, raised_where

    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    own = raised_where(exc)
    if own and own != where:
        where += f", called from {own}"
    at = f" ({where})" if where else ""
    # torchvision's download error spans three lines: the location after it stood on a line
    # of its own. As one line when that fits, else the location after its first line.
    text = str(exc).strip()
    if "\n" not in text:
        return f"{type(exc).__name__}: {text}{at}"
    joined = one_line(text.splitlines())
    if len(joined) <= 240:
        return f"{type(exc).__name__}: {joined}{at}"
    first, _, rest = text.partition("\n")
    return f"{type(exc).__name__}: {first.rstrip()}{at}" + "".join(
        f"\n    {ln.strip()}" for ln in rest.splitlines() if ln.strip())


def check_imports(plan: dict[str, Any]) -> dict[str, Any]:
    """Import every pipeline target of the plan; `{role: object}` or PipelineError. In the
    spec's directory, where the trials import them too."""
    workdir = plan["source"]["workdir"]
    out = {}
    with _cwd(workdir):
        for role in ROLES:
            step = plan["pipeline"].get(role)
            if step:
                out[role] = import_target(step["target"], workdir, role)
    if "trainer" in out:
        require_trainer_class(out["trainer"], plan["pipeline"]["trainer"]["target"], plan)
    return out


def require_trainer_class(obj: Any, target: str, plan: dict[str, Any] | None = None) -> None:
    """The runtime drives the trainer through `hpoc.Trainer`'s methods: say so here, not as
    an AttributeError from every trial; nor a TrainerError from every trial that `plan`
    gives hpoc's loop no number of epochs."""
    from hpoc.runtime.hooks import (data_missing, epochs_missing, grouped, hook_problems, model_missing,
                                    source_line)
    from hpoc.runtime.trainer import NO_DATA, NO_EPOCHS, Trainer

    if isinstance(obj, type) and issubclass(obj, Trainer):

        problems = hook_problems(obj)
        if problems:
            raise PipelineError(f"trainer `{target}`: {'; '.join(problems)}: hpoc calls "
                                f"{'this hook' if len(problems) == 1 else 'these hooks'} so\n"
                                "  help: docs/trainer.md (Hooks) lists them with their arguments")
        misses = model_missing(obj)
        if misses is not None:
            raise PipelineError(f"trainer `{target}` defines no model: implement `create_model(self, "
                                "config)` (or `create_model_loss_optimizer`)"
                                + "".join(f"; {m}" for m in misses))
        if plan is not None and epochs_missing(obj, plan):
            inside = "".join(f" (`{g}` is inside a group: the loop reads `epochs` at the top of "
                             "the config)" for g in grouped(plan, "epochs")[:1])
            raise PipelineError(f"trainer `{target}` runs hpoc's default loop, and {NO_EPOCHS}{inside}")
        if plan is not None and data_missing(obj, plan):
            raise PipelineError(f"trainer `{target}` runs hpoc's default loop, which has {NO_DATA}")
        if plan is not None:
            _require_buildable(obj, target, plan["pipeline"]["trainer"].get("args") or {})
        return
    name = getattr(obj, "__name__", target.rpartition(":")[2])
    where = source_line(obj)
    what = "a class that does not subclass `hpoc.Trainer`" if isinstance(obj, type) else \
        f"a {type(obj).__name__}, not a class"
    raise PipelineError(f"trainer `{target}`{where} is {what}\n"
                        f"  help: write `class {name}(hpoc.Trainer):` (docs/trainer.md)")


def _require_buildable(cls: type, target: str, args: dict[str, Any]) -> None:
    """Every trial builds the trainer with the step's arguments: one they cannot build (an
    `__init__(self, config)`) failed each trial, retried, after Ray came up."""
    import inspect

    from hpoc.runtime.hooks import source_line

    try:  # not through functools.wraps: the itwinai compat trainer's wrapper supplies `config`
        signature = inspect.signature(cls, follow_wrapped=False)
    except (TypeError, ValueError):
        return  # no signature to read
    try:
        signature.bind(**args)
    except TypeError as exc:
        given = ", ".join(sorted(args)) or "none"
        fix = (": the trial's config reaches the trainer as `self.config` and the hooks' `config` "
               "argument, after it is built: take `config` out of `__init__`"
               if "'config'" in str(exc) and "config" not in args else "")
        raise PipelineError(f"trainer `{target}`{source_line(cls.__init__)} cannot be built with the "
                            f"step's arguments ({given}): {exc}{fix}") from None


def _run_step(obj: Any, role: str, target: str, *inputs: Any) -> Any:
    call = getattr(obj, "execute", None) or (obj if callable(obj) else None)
    if call is None:
        name = target.replace(":", ".").rpartition(".")[2]
        if type(obj).__name__ == name:  # the class named, without the method
            raise PipelineError(f"{role} `{target}`: has neither `execute()` nor `__call__`\n"
                                f"  help: give `{name}` an `execute(self)` that returns the data")
        # a function named, which returned the data: hpoc called it to build the step
        raise PipelineError(f"{role} `{target}`: calling it built a {type(obj).__name__}, which has no "
                            "`execute()` (hpoc calls the target with the step's arguments to build the "
                            "step, then runs the step's `execute()`)\n"
                            "  help: a step is a class whose `execute(self)` returns the data: "
                            f"`class {name.title().replace('_', '')}:` with `def execute(self): ... "
                            "return train, validation`")
    try:
        return call(*inputs)
    except FileNotFoundError as exc:
        raise PipelineError(f"{role} `{target}` failed: {_missing(exc)}") from None
    except PipelineError as exc:
        raise PipelineError(f"{role} `{target}` failed: {exc}") from None
    except Exception as exc:
        raise PipelineError(f"{role} `{target}` failed: {_describe(exc)}{_offline_help(exc)}") from exc


# What a download says when the machine has no internet (torchvision puts the URLError's text
# in a RuntimeError of its own, without the URLError as its cause).
_OFFLINE_TEXT = ("urlopen error", "name or service not known", "temporary failure in name resolution",
                 "network is unreachable", "failed to resolve", "max retries exceeded",
                 "failed to establish a new connection", "couldn't reach", "couldn't connect",
                 "connection timed out", "no route to host", "nodename nor servname")


def _offline_help(exc: BaseException) -> str:
    """A help line for a step that tried to download on a machine without internet (a
    compute node): where to download instead. Empty for any other failure."""
    import socket
    import urllib.error

    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 8:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    network = (urllib.error.URLError, socket.gaierror, socket.timeout, ConnectionError)
    offline = any(isinstance(e, network) or type(e).__name__ in ("ConnectionError", "ConnectTimeout",
                                                                 "LocalEntryNotFoundError")
                  or any(t in str(e).lower() for t in _OFFLINE_TEXT) for e in seen)
    if not offline:
        return ""
    return ("\n  help: it tried to download, and compute nodes usually have no internet: download "
            "the data once on a login node, into a directory the jobs can read (`hpoc data fetch "
            "NAME --root DIR` for the datasets `hpoc data list` names, else the library's own "
            "download there), and read it from that directory in the getter (`download=False`)")


def _missing(exc: FileNotFoundError) -> str:
    """A step's own FileNotFoundError says how to get the data: shown as it is. One the OS
    raised (`np.load("data/x.npy")`), or a library (`np.loadtxt`'s "x.csv not found."), names
    only a path: also where a relative one was looked for (the spec's directory, wherever hpoc
    was started) and the study's line."""
    from hpoc.runtime.summary import raised_at

    at = raised_at(exc)
    if exc.filename is None and not _raised_in_library(exc, at):
        return str(exc)
    text = str(exc)
    if exc.filename is None:
        text += f" (a relative path is looked for in {os.getcwd()}, the spec's directory)"
    elif not os.path.isabs(os.fsdecode(exc.filename)):
        text += f" (relative to {os.getcwd()}, the spec's directory)"
    return text + at + _unexpanded(exc.filename)


def _unexpanded(filename: Any) -> str:
    """`$DATA/x.npy` or `~/x.npy` as the config wrote it: a step gets its arguments as written
    (as jsonargparse hands them on in itwinai), and `open` expands neither."""
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else ""
    variable = re.search(r"\$\{?(\w+)", name)
    if variable:
        what, how = f"`${variable.group(1)}`", "os.path.expandvars"
    elif name.startswith("~"):
        what, how = "`~`", "os.path.expanduser"
    else:
        return ""
    return (f"\n  help: {what} in the path is not expanded: a step gets its arguments as written; "
            f"expand them there (`{how}`)")


def _raised_in_library(exc: BaseException, at: str) -> bool:
    """Whether the innermost frame of `exc` is not the study's own line `at` (` at file:line`)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and at != f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def build(role: str, step: dict[str, Any], workdir: str | None) -> Any:
    cls = import_target(step["target"], workdir, role)
    try:
        return cls(**(step.get("args") or {}))
    except TypeError as exc:
        raise PipelineError(f"{role} `{step['target']}`: cannot construct it with the plan's "
                            f"arguments {sorted((step.get('args') or {}))}: {exc}") from None
    except (FileNotFoundError, PipelineError) as exc:
        raise PipelineError(f"{role} `{step['target']}`: {exc}") from None
    except Exception as exc:
        raise PipelineError(f"{role} `{step['target']}`: constructing it failed: {_describe(exc)}"
                            f"{_offline_help(exc)}") from exc


def enter_workdir(workdir: str | None) -> None:
    """Make the spec's directory this process's working directory (every trial runs there,
    as the getter does: a trainer's relative paths resolve as in the spec's arguments)."""
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)


def adopt_workdir(workdir: str | None) -> None:
    """Where a trial's code runs: the spec's directory first on sys.path and as the working
    directory (not the temporary folder Ray Tune or Ray Train made current)."""
    use_workdir(workdir)
    enter_workdir(workdir)


@contextlib.contextmanager
def _cwd(directory: str | None) -> Iterator[None]:
    if not directory or not os.path.isdir(directory):
        yield
        return
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


# Seconds a getter's download may wait on the network, as `hpoc data fetch`'s: torchvision's
# urlopen has no timeout, so behind a firewall that drops packets (a compute node's) it waited
# on the kernel's connect retries, minutes per mirror and file, before failing.
NETWORK_TIMEOUT_S = 30.0


def load_data(plan: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """Run getter and splitter in the spec's directory (relative paths in their arguments
    resolve there); `(train, validation, test)` or None without either step."""
    with _cwd(plan["source"]["workdir"]), _network_timeout():
        return _load_data(plan)


@contextlib.contextmanager
def _network_timeout() -> Iterator[None]:
    """Sockets the steps open without a timeout of their own give up after NETWORK_TIMEOUT_S
    of silence (each connect or read: a slow download that goes on is not cut)."""
    import socket

    previous = socket.getdefaulttimeout()
    if previous is None:  # one the process set is kept
        socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _said(value: Any) -> str:
    """A step's output in a note: its type, and its shape or a short repr."""
    import reprlib

    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {kind} of shape {tuple(shape)}"
    if isinstance(value, (tuple, list, dict)):
        return f"a {kind} of {len(value)} item(s)"
    return f"a {kind} ({reprlib.repr(value)})"


def _load_data(plan: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    steps, workdir = plan["pipeline"], plan["source"]["workdir"]
    out: Any = None
    have = False
    if steps.get("getter"):
        getter = build("getter", steps["getter"], workdir)
        out = _run_step(getter, "getter", steps["getter"]["target"])
        have = True
    if steps.get("splitter"):
        splitter = build("splitter", steps["splitter"], workdir)
        args = (out,) if have else ()
        try:
            out = _run_step(splitter, "splitter", steps["splitter"]["target"], *args)
        except PipelineError as exc:
            if not have:
                raise
            getter = steps["getter"]["target"]
            if out is None:  # a getter without its `return`: the splitter is where it fails
                raise PipelineError(f"{exc}\n  note: the getter `{getter}` returned None: "
                                    "does its execute() end with a `return`?") from exc.__cause__
            if isinstance(exc.__cause__, (TypeError, ValueError)) and "unpack" in str(exc.__cause__):
                # `x, y = data` of a path, a dict or one array: the getter's output is the cause
                raise PipelineError(f"{exc}\n  note: the getter `{getter}` returned {_said(out)}, "
                                    "which the splitter could not unpack") from exc.__cause__
            raise
        have = True
    if not have:
        return None
    last = steps.get("splitter") or steps.get("getter")
    return as_splits(out, f"{'splitter' if steps.get('splitter') else 'getter'} `{last['target']}`")


def require_datasets(trainer: Any, data: tuple[Any, Any, Any] | None, plan: dict[str, Any]) -> None:
    """A DataLoader as a split of a trainer that hpoc's loop batches, splits it cannot batch
    (strings, inputs and targets of different lengths, a dict, a stream: splitcheck.py),
    values it cannot train on (NaN), or no validation split for a validation objective:
    said as the data loads, naming the step that returned it, rather than by every trial."""
    from hpoc.runtime.batches import LOADER_HELP, SPLITS, as_tensors, loader_split, not_tensors
    from hpoc.runtime.hooks import batches_splits

    if data is None or not batches_splits(trainer):
        return
    maker = data_step(plan)
    name = loader_split(data)
    if name:
        raise PipelineError(f"{maker} returned a DataLoader as its {name} "
                            f"split\n  help: {LOADER_HELP}")
    if data[1] is None:
        _require_validation(trainer, plan, maker, data)
    from hpoc.runtime.splitcheck import not_finite, unbatchable
    from hpoc.runtime.trainer import Trainer

    # hpoc's own steps feed the values to the loss as they are; a step of one's own may mask them
    hpocs = {"train": "train_step", "validation": "validation_step"}
    for name, split in zip(SPLITS, data):
        why = not_tensors(split)
        why = why or (unbatchable(split) if split is not None else None)
        if why:  # every trial would fail inside torch's DataLoader
            raise PipelineError(f"{maker} returned a {name} split hpoc cannot "
                                f"batch: {why}")
        step = hpocs.get(name)
        tensors = as_tensors(split, cast=False) if step and getattr(trainer, step) is getattr(Trainer, step) else None
        why = not_finite(tensors) if tensors is not None else None
        if why:  # every trial's loss would be NaN, as if training diverged
            raise PipelineError(f"{maker} returned a {name} split hpoc's "
                                f"{step} cannot use: {why}")


def data_step(plan: dict[str, Any]) -> str:
    """The step whose splits a message is about, as it names it: "splitter `data:Split`"."""
    role = "splitter" if plan["pipeline"].get("splitter") else "getter"
    return f"{role} `{plan['pipeline'][role]['target']}`"


def in_model_dtype(trainer: Any, data: tuple[Any, Any, Any] | None) -> tuple[Any, Any, Any] | None:
    """The splits with `model_dtype_cast`'s cast alone (the driver casts them as it compacts
    them: compact.for_ray)."""
    from hpoc.runtime import compact

    cast = model_dtype_cast(trainer)
    return data if cast is None else compact.walk(data, views=False, arrays=False, cast=cast)


def model_dtype_cast(trainer: Any) -> Callable[[Any, bool], Any] | None:
    """`cast(part, first)` for each part of a split: float64 NumPy arrays (np.loadtxt's) and
    pandas frames as torch's default float, once in the driver before Ray shares them:
    converted in each trial (as hpoc's batches do, docs/trainer.md) every running trial
    held its own copy. Only for hpoc's loop, which batches them (None otherwise); a trainer's
    own loaders get the arrays as returned. float64 tensors (and a TensorDataset's) are cast
    for their inputs (`first`) only, which hpoc's `prepare_inputs` casts per batch: their
    targets went to the loss as they are."""
    import numpy as np
    import torch

    from hpoc.runtime.hooks import _keeps, batches_splits

    default = torch.get_default_dtype()
    dtype = {torch.float32: np.float32, torch.float16: np.float16}.get(default)
    if dtype is None or not batches_splits(trainer):
        return None
    inputs = _keeps(trainer, "prepare_inputs")  # else its own may want them as they are
    done: dict[int, Any] = {}  # one array given twice (train and validation) stays one

    def convert(part: Any, first: bool) -> Any:
        if isinstance(part, torch.Tensor):
            if not (first and inputs and part.dtype == torch.float64):
                return part
        else:
            frame = type(part).__module__.split(".")[0] == "pandas" and hasattr(part, "to_numpy")
            if not (isinstance(part, np.ndarray) or frame) or getattr(
                    part.to_numpy() if frame else part, "dtype", None) != np.float64:
                return part  # a frame of float64 (or int and float) columns arrives as float64 too
        if id(part) not in done:
            done[id(part)] = part.to(default) if isinstance(part, torch.Tensor) else part.astype(dtype)
        return done[id(part)]

    return convert


def _require_validation(trainer: Any, plan: dict[str, Any], maker: str, data: tuple[Any, Any, Any]) -> None:
    """No validation split, and an objective that hpoc's loop computes from it: every trial
    failed after its first epoch with "reported `train_loss` but not `val_accuracy`"."""
    from hpoc.runtime.hooks import _keeps

    metrics = [m["name"] for m in (plan.get("objective") or {}).get("metrics") or ()]
    wanted = [m for m in metrics if m in ("val_loss", "val_accuracy")]
    if not wanted or not _keeps(trainer, "validation_epoch", "report"):
        return
    said = ("train and test splits but no validation split" if data[2] is not None else
            "no validation split")
    never = " (never on `test`)" if data[2] is not None else ""
    raise PipelineError(f"{maker} returned {said}, and hpoc's loop "
                        f"computes the objective `{wanted[0]}` on the validation split{never}"
                        "\n  help: return (train, validation[, test]), or a dict with `train` and "
                        "`validation` (or `val`)")


def shared_validation(plan: dict[str, Any], data: tuple[Any, Any, Any] | None) -> str | None:
    """A warning when the validation split holds training samples, naming the step."""
    from hpoc.runtime.splitcheck import shared_rows

    why = shared_rows(data[0], data[1]) if data else None
    if why is None:
        return None
    return (f"{data_step(plan)}: {why}: val_loss and val_accuracy measure "
            "data the model trains on, and rank the trials that memorise it best")


def as_splits(out: Any, what: str = "data") -> tuple[Any, Any, Any]:
    splits = _splits(out, what)
    _require_samples(splits[0], "train", what)
    _require_samples(splits[1], "validation", what)
    return splits


def _splits(out: Any, what: str) -> tuple[Any, Any, Any]:
    if isinstance(out, dict):
        keys = ("train", "validation", "test")
        other = [k for k in out if k not in (*keys, "val")]
        if other and "validation" not in out and "val" not in out:
            # `valid`, `eval`: read as no validation split, and the trials lack val_loss
            from hpoc.errors import did_you_mean

            hint = did_you_mean(str(other[0]), keys) if isinstance(other[0], str) else None
            raise PipelineError(f"{what} returned a dict with the key {other[0]!r}, which hpoc does not "
                                f"read (keys: train, validation or val, test)"
                                + (f"; {hint}" if hint else ""))
        if "train" in out:
            return out["train"], out.get("validation", out.get("val")), out.get("test")
        raise PipelineError(f"{what} returned a dict without `train` (expected keys {keys})")
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        if len(out) == 2 and (pair := _inputs_and_targets(*out)):
            said = ("that is (inputs, targets), not (train, validation) splits" if pair[0] != pair[1]
                    else "hpoc cannot tell (inputs, targets) from (train, validation) splits of as "
                         "many rows")
            raise PipelineError(
                f"{what} returned two arrays of {pair[0][0]} rows, shaped {pair[0]} and {pair[1]}: "
                f"{said}\n"
                "  help: add a splitter to `pipeline`, or return "
                "`{\"train\": (x_train, y_train), \"validation\": (x_val, y_val)}`")
        train, val, *rest = out
        return train, val, (rest[0] if rest else None)
    if isinstance(out, (tuple, list)) and len(out) == 4 and _inputs_and_targets(out[0], out[2]) \
            and _inputs_and_targets(out[1], out[3]):
        raise PipelineError(
            f"{what} returned four arrays, as scikit-learn's `train_test_split(x, y)` gives them: "
            "(x_train, x_val, y_train, y_val), not (train, validation) splits\n  help: return "
            "`(x_train, y_train), (x_val, y_val)`")
    raise PipelineError(f"{what} must return (train, validation) or (train, validation, test); "
                        f"got {type(out).__name__}"
                        + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))


def _require_samples(split: Any, name: str, what: str) -> None:
    """An empty split trains nothing, or validates nothing: the default loop's val_loss and
    val_accuracy are then 0 in every trial, and a minimised val_loss ranks any trial best."""
    if split is None:
        return
    from hpoc.runtime.batches import num_samples

    try:
        n = num_samples(split)
    except Exception:  # noqa: BLE001 - no length (an iterable dataset): nothing to check
        return
    if n == 0:
        raise PipelineError(
            f"{what} returned an empty {name} split (0 samples)\n"
            f"  help: check the data and the splitter's proportions"
            + (", or give None as the validation split if the trainer does not validate"
               if name == "validation" else ""))


def _inputs_and_targets(a: Any, b: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The shapes of `a` and `b` when they may be one dataset's inputs and targets: two
    arrays with as many rows. Of different rank or row shape (`(N, 10)` and `(N, 1)`) they
    are; of the same shape (`(N, 1)` and `(N, 1)`: one feature, a regression target) they
    may be - two splits of one dataset rarely have as many rows, and a dict says which."""
    sa, sb = getattr(a, "shape", None), getattr(b, "shape", None)
    try:
        sa, sb = tuple(int(n) for n in sa), tuple(int(n) for n in sb)
    except (TypeError, ValueError):  # no shape, or unknown sizes (a dask array's NaN)
        return None
    if sa and sb and sa[0] == sb[0]:
        return sa, sb
    return None


def unshareable(plan: dict[str, Any], data: Any, exc: BaseException) -> str:
    """Why the splits cannot go to the trials (Ray could not pickle them), naming the step
    and the splits at fault; Ray's own message holds the whole data's repr."""
    from ray import cloudpickle

    def fails(split: Any) -> bool:  # pickled into nothing: arrays are not copied
        try:
            cloudpickle.CloudPickler(_Sink(), protocol=5, buffer_callback=lambda b: None).dump(split)
        except Exception:  # noqa: BLE001 - whatever pickling raises, this split is at fault
            return True
        return False

    cause = exc.__cause__ or exc
    bad = [name for name, split in zip(("train", "validation", "test"), data or ())
           if split is not None and fails(split)]
    what = f"the {' and '.join(bad)} split{'s' if len(bad) > 1 else ''}" if bad else "the data"
    reason = str(cause).splitlines()[0][:200] if str(cause) else ""
    return (f"{what} from {data_step(plan)} cannot be sent to the trials: "
            f"{type(cause).__name__}: {reason}\n"
            "  help: Ray pickles the splits to share them; return tensors, arrays, lists or a "
            "Dataset that pickles (not a generator, an open file or a lock)")


class _Sink:
    def write(self, b: Any) -> int:
        return len(b)


# Trials that run in one process reuse the data already fetched there (Tune reuses the
# trial actors), keyed by the object-store reference the driver created.
_CACHE: dict[str, Any] = {}


def fetch(ref: Any) -> Any:
    """The data behind a Ray ObjectRef, fetched once per process."""
    if ref is None:
        return None
    key = ref.hex() if hasattr(ref, "hex") else str(id(ref))
    if key not in _CACHE:
        import ray

        _CACHE.clear()  # one study's data at a time
        _CACHE[key] = ray.get(ref)
    return _CACHE[key]
