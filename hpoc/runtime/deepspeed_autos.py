"""HF-style "auto" values in a DeepSpeed config file, filled in from the trial as the HF
Trainer fills them from its arguments: the optimizer's settings from the trainer's own
optimizer (built from the trial's `lr`, `weight_decay`, ...), the warm-up's peak from that
learning rate, and `gradient_clipping` as hpoc's loop clips (not at all). What hpoc cannot
know (a warm-up's or a schedule's length in steps) `hpoc check` refuses; here it fails
naming the key, before DeepSpeed reads the string as a number."""

from __future__ import annotations

import json
from typing import Any

from hpoc.plan import DS_AUTO_OPTIMIZER, DS_AUTO_SCHEDULER

AUTO = "auto"


def fill_autos(config: dict[str, Any], optimizer: Any) -> list[str]:
    """Fill in `config`'s "auto" optimizer/scheduler params and `gradient_clipping` in place;
    `optimizer` is the trainer's (None when it gave none). The optimizer keys filled from it:
    with several param groups, `param_groups` gives each group's own to DeepSpeed."""
    amp = config.get("amp")
    enabled = amp.get("enabled", False) if isinstance(amp, dict) else True
    if enabled == AUTO or not ds_bool(enabled, "amp.enabled"):  # "false" too, as DeepSpeed reads it
        # the HF Trainer's Apex switch, on only for its Apex fp16 backend, which hpoc never
        # uses: DeepSpeed 0.19 refuses the section itself, and older ones read "auto" as on
        del config["amp"]
    if config.get("gradient_clipping") == AUTO:
        config["gradient_clipping"] = 0.0  # hpoc's loops do not clip (nor does DDP)
    params = _params(config, "optimizer")
    autos = [k for k, v in params.items() if v == AUTO]
    for key in autos:
        params[key] = _from_optimizer(optimizer, key)
    schedule = _params(config, "scheduler")
    for key in [k for k, v in schedule.items() if v == AUTO]:
        if key not in DS_AUTO_SCHEDULER:
            raise ValueError(f'the DeepSpeed config\'s `scheduler.params.{key}` is "auto", which hpoc does not '
                             "fill in (the HF Trainer counted it from its own arguments): give a number")
        lr = params.get("lr", AUTO)
        if key == "warmup_min_lr":
            schedule[key] = 0.0
        elif "lr" in autos and (groups := param_groups(optimizer, ["lr"])):
            schedule[key] = [g["lr"] for g in groups]  # each group's own peak
        else:
            schedule[key] = lr if lr != AUTO else _from_optimizer(optimizer, "lr")
    return autos


def param_groups(optimizer: Any, autos: list[str]) -> list[dict[str, Any]] | None:
    """The trainer's param groups for DeepSpeed's optimizer, each with its own values of the
    "auto" keys (a bias group without weight decay, a head at its own rate), where the
    trainer's optimizer has several: DeepSpeed otherwise builds one group with the first's."""
    groups = getattr(optimizer, "param_groups", None) or []
    if len(groups) < 2:
        return None
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            out.append({"params": params, **{k: _group_value(g, k) for k in autos}})
    return out


# How DeepSpeed's config models (pydantic) read a boolean written as a string, any case.
_FALSE_WORDS, _TRUE_WORDS = ("0", "off", "f", "false", "n", "no"), ("1", "on", "t", "true", "y", "yes")


def ds_bool(value: Any, key: str) -> bool:
    """`value` as DeepSpeed reads a boolean setting: "false" is false (not a truthy string)."""
    if isinstance(value, str) and value.lower() in _FALSE_WORDS + _TRUE_WORDS:
        return value.lower() in _TRUE_WORDS
    if type(value) in (bool, int, float) and value in (0, 1):
        return bool(value)
    raise ValueError(f"the DeepSpeed config's `{key}` is {json.dumps(value)}: DeepSpeed reads true or false "
                     "(or \"auto\", filled in by hpoc)")


def _params(config: dict[str, Any], section: str) -> dict[str, Any]:
    part = config.get(section)
    params = part.get("params") if isinstance(part, dict) else None
    return params if isinstance(params, dict) else {}


def _from_optimizer(optimizer: Any, key: str) -> Any:
    groups = getattr(optimizer, "param_groups", None)
    where = f'the DeepSpeed config\'s `optimizer.params.{key}` is "auto"'
    if key not in DS_AUTO_OPTIMIZER:
        raise ValueError(f"{where}, which hpoc does not fill in: give a value")
    if not groups:
        raise ValueError(f"{where}, filled in from the trainer's optimizer, and the trainer gave none: give a "
                         "value, or return the optimizer from `create_optimizer`")
    if key != "lr" and key not in groups[0]:
        raise ValueError(f"{where}, filled in from the trainer's optimizer, and its {type(optimizer).__name__} "
                         f"has no `{key}`: give a value")
    return _group_value(groups[0], key)


def _group_value(group: dict[str, Any], key: str) -> Any:
    if key == "lr":  # before a scheduler of the trainer's moved it (a warm-up's first factor)
        return group.get("initial_lr", group["lr"])
    value = group[key]
    return list(value) if isinstance(value, tuple) else value
