"""What a trainer's hooks and reports hand back, checked where hpoc takes it: a wrong type
fails later deep in the loop or in Ray, without the user's line; here it is a
`TrainerError` naming the hook, its file:line and what to return instead."""

from __future__ import annotations

import reprlib
from typing import Any

import torch

from hpoc.runtime.hooks import source_line
from hpoc.runtime.strategy import Strategy
from hpoc.runtime.summary import RAY_KEYS


class TrainerError(Exception):
    """A trainer that cannot run as configured; the message says what to change."""


def returned(value: Any) -> str:
    """What a hook returned, as a message says it: None is a `return` left out."""
    return "None (is its `return` missing?)" if value is None else type(value).__name__


def require_module(model: Any, hook: Any) -> Any:
    """A model that is not an `nn.Module` fails later with an AttributeError deep in hpoc."""
    if not isinstance(model, torch.nn.Module):
        raise TrainerError(f"{getattr(hook, '__name__', 'create_model')}(){source_line(hook)} returned "
                           f"{returned(model)}, not a torch.nn.Module")
    return model


# A validation_step's own metric of one of these names would replace hpoc's or Ray's.
TAKEN_METRICS = RAY_KEYS | {"val_loss", "val_accuracy", "train_loss", "epoch"}


def validation_parts(out: Any, hook: Any) -> tuple[Any, Any, dict[str, Any]]:
    """`(loss, outputs, metrics)` of what `validation_step` returned: `(loss, outputs)`, a
    loss, or a dict with `loss`, maybe `outputs`, and metrics of the trainer's own."""
    if isinstance(out, dict):
        if "loss" not in out:
            raise TrainerError(f"validation_step(){source_line(hook)} returned a dict without "
                               f"`loss` (keys: {', '.join(map(str, out)) or 'none'}): add the "
                               "batch's loss as `loss`")
        taken = sorted(k for k in out if k in TAKEN_METRICS)
        if taken:
            raise TrainerError(f"validation_step(){source_line(hook)} returned `{taken[0]}`, a name hpoc "
                               "or Ray Tune reports itself (`val_loss` is the mean of `loss`, "
                               "`val_accuracy` of the outputs' argmax): give your metric another name")
        return out["loss"], out.get("outputs"), {k: v for k, v in out.items() if k not in ("loss", "outputs")}
    if isinstance(out, (tuple, list)) and out:
        return out[0], (out[1] if len(out) > 1 else None), {}
    if isinstance(out, (torch.Tensor, int, float)) and not isinstance(out, bool):
        return out, None, {}
    raise TrainerError(f"validation_step(){source_line(hook)} returned {returned(out)}: "
                       "return `(loss, outputs)`, the loss, or a dict with `loss` and metrics "
                       "of yours (`{\"loss\": loss, \"val_f1\": f1}`)")


def metric_tensor(value: Any, name: str, device: torch.device) -> torch.Tensor:
    """A batch's value of a validation metric as a float64 scalar on the device."""
    try:
        return torch.as_tensor(value, device=device).detach().double().mean()
    except (TypeError, ValueError, RuntimeError):
        raise TrainerError(f"validation_step() returned `{name}` = {reprlib.repr(value)}: "
                           "a validation metric must be a number or a tensor") from None


# Element-wise losses, which broadcast outputs against targets of another shape: torch only
# warns, in a trial's stderr no one reads, and trains the model towards the targets' mean.
ELEMENTWISE_LOSSES = (torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.SmoothL1Loss, torch.nn.HuberLoss)


def require_same_shape(out: torch.Tensor, targets: Any, loss: Any, model: Any) -> torch.Tensor:
    """The default steps' outputs, refused where an element-wise loss would broadcast them
    against the targets: (16, 1) outputs and scikit-learn's 1-D (16,) targets make a (16, 16) loss."""
    if (not isinstance(loss, ELEMENTWISE_LOSSES) or not isinstance(targets, torch.Tensor)
            or out.shape == targets.shape):
        return out
    try:
        both = tuple(torch.broadcast_shapes(out.shape, targets.shape))
    except RuntimeError:
        return out  # torch's own error names both shapes
    if both == tuple(out.shape):
        return out
    forward = type(getattr(model, "module", model)).forward  # DDP's wrapped model
    # nn.Linear's own forward is not a line of the study's
    where = "" if forward.__module__.startswith("torch.") else source_line(forward)
    fix = (f"return the targets as a column from the getter or splitter (`y.reshape(-1, 1)`), or "
           f"outputs shaped as the targets from forward(){where}" if targets.dim() < out.dim() else
           f"return outputs shaped as the targets from forward(){where}")
    raise TrainerError(f"outputs shaped {tuple(out.shape)}, targets {tuple(targets.shape)}: "
                       f"{type(loss).__name__} would broadcast them to {both}; {fix}")


# Losses over class labels: torch's errors name neither the data nor the fix, and a label
# out of range is, on a GPU, a device-side assert that leaves the process's CUDA unusable.
CLASS_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)
_CLASS_DTYPES = (torch.int64, torch.uint8)


def require_class_labels(out: torch.Tensor, targets: Any, loss: Any, *, check_range: bool) -> None:
    """Targets that a class loss cannot take from the default steps, said in the data's
    terms: a column `(N, 1)` (scikit-learn's `y.reshape(-1, 1)`), floats or int32 (a CSV read
    with `np.loadtxt`), labels outside `0 .. classes - 1` (`check_range`: one sync, so only
    on a step's first batch)."""
    if not isinstance(loss, CLASS_LOSSES) or not isinstance(targets, torch.Tensor) or out.dim() != 2:
        return
    name, fix = type(loss).__name__, "return them so from the getter or splitter"
    if targets.dim() == 2 and targets.shape[1] == 1 and out.shape[1] > 1:
        raise TrainerError(f"the targets are shaped {tuple(targets.shape)}: {name} takes class labels "
                           f"as a 1-D tensor; {fix} (`y.reshape(-1)`)")
    if targets.dim() != 1:
        return  # class probabilities (CrossEntropyLoss's soft targets), or torch's own error
    if targets.dtype not in _CLASS_DTYPES:
        raise TrainerError(f"the targets are {str(targets.dtype).removeprefix('torch.')}: {name} takes "
                           f"class labels as int64; {fix} (`y.astype(np.int64)`, `y.long()`)")
    if check_range:
        labels = targets[targets != getattr(loss, "ignore_index", -100)]
        if labels.numel():
            low, high, classes = int(labels.min()), int(labels.max()), out.shape[1]
            if low < 0 or high >= classes:
                raise TrainerError(f"class labels from {low} to {high}, but the model has {classes} outputs "
                                   f"(classes 0 to {classes - 1}): number the classes from 0"
                                   + (" (`y - 1`)" if low == 1 and high == classes else "")
                                   + ", or give the model one output per class")


def require_optimizer(optimizer: Any, hook: Any, strategy: Strategy) -> Any:
    """An optimizer hpoc cannot step fails in its loop, an AttributeError without the
    user's line. None is DeepSpeed's: its config file's optimizer then."""
    if optimizer is None and strategy.name == "deepspeed":
        return optimizer
    if not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
        raise TrainerError(f"{getattr(hook, '__name__', 'create_optimizer')}(){source_line(hook)} "
                           f"returned {returned(optimizer)} as the optimizer, not a torch "
                           "optimizer (`torch.optim.Adam(model.parameters(), lr=...)`)")
    return optimizer


def require_loss(loss: Any, hook: Any) -> Any:
    """A loss the default steps cannot call failed in them: "'str' object is not callable"."""
    if not callable(loss):
        raise TrainerError(f"{getattr(hook, '__name__', 'create_loss')}(){source_line(hook)} returned "
                           f"{returned(loss)} as the loss: return a callable such as "
                           "`torch.nn.CrossEntropyLoss()`")
    return loss


def require_scheduler(scheduler: Any, hook: Any) -> Any:
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TrainerError(f"{getattr(hook, '__name__', 'create_lr_scheduler')}(){source_line(hook)} "
                           f"returned {type(scheduler).__name__} as the lr scheduler: return a torch "
                           "LR scheduler (`torch.optim.lr_scheduler.StepLR(optimizer, ...)`), or None")
    return scheduler


def whole_count(name: str, value: Any, least: int) -> int:
    """`epochs` or `batch_size` as the loop uses it: 2.5 epochs were 2, 0 epochs a trial
    that reports nothing, and a batch size of 0 a ZeroDivisionError deep in the batching."""
    try:
        number = int(value) if not isinstance(value, bool) else None
        whole = number is not None and number == float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        whole = False
    if not whole or number < least:
        raise TrainerError(f"`{name}` is {reprlib.repr(value)}: it must be a whole number of at "
                           f"least {least} (set in the study's `space`, or the trainer's arguments)")
    return number


def require_objective(plan: dict[str, Any] | None, result: dict[str, Any],
                      why: dict[str, str] | None = None) -> None:
    """Searchers and schedulers need the objective in every report; Ray would stop the
    whole study with a traceback. A mistake of the trainer (or the spec): say which, and
    `why` hpoc's loop left a metric of its own out (`val_accuracy`: no outputs to score)."""
    wanted = [m["name"] for m in ((plan or {}).get("objective") or {}).get("metrics") or ()]
    missing = [name for name in wanted if name not in result]
    if missing:
        from hpoc.errors import closest

        close = closest(missing[0], list(result))
        # either name may be the one to change: say both, and where
        hint = close and (f"did you mean `{close}`? name it in the spec's `objective`, or report it "
                          f"as `{missing[0]}`")
        cause = (why or {}).get(missing[0])
        if cause:  # short: the study prints one line of it per trial
            raise TrainerError(f"`{missing[0]}`, the objective's metric, is missing: {cause}")
        raise TrainerError(
            f"the trainer reported {', '.join(f'`{k}`' for k in sorted(result)) or 'nothing'} but not "
            f"{', '.join(f'`{m}`' for m in missing)}, the objective's metric"
            + (f"; {hint}" if hint else "; report it every epoch, or change `objective` in the spec"))
    for name in wanted:  # searchers rank by it: a string or None read as "never reported"
        value = result[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainerError(f"the objective's metric `{name}` must be a number; the trainer reported "
                               f"{reprlib.repr(value)} ({type(value).__name__}): report a float (`float(x)`, "
                               "`tensor.item()`)")


def reported(name: str, value: Any) -> Any:
    """A reported metric as Tune takes it: a tensor of several values would be its mean,
    without a word (per-class accuracies ranked as their average)."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise TrainerError(f"the trainer reported `{name}` as a tensor of shape {tuple(value.shape)}: "
                           "report one number per metric (`.mean()`, or one name per class)")
    return scalar(value)


def scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item()
    elif hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    return value
