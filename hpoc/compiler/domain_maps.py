"""A search domain written as data in `space`: itwinai's YAML map (`lr = { type = "loguniform",
min = 1e-4, max = 1e-1 }`) or its bounds alone (`hidden = { min = 16, max = 128 }`) is a
constant, so every trial gets the map itself (the YAML front end warns of the same, HP826)."""

from __future__ import annotations

import json
from typing import Any

from hpoc.compiler import tables as T

_ALIASES = {"min": "lower", "max": "upper", "low": "lower", "high": "upper"}
_LISTS = ("options", "categories", "values")
_ARGS = {a for sig in T.DOMAINS.values() for a, _, _ in sig} | set(_ALIASES) | set(_LISTS)


def domain_call(value: Any) -> tuple[str, bool] | None:
    """(the call the map stands for, whether it named its domain), or None for a map that is
    data. Untyped bounds read as `uniform`; a map with other keys (`{ mean = 0.5, std = 0.2 }`,
    a normalisation's constants) is data."""
    if not isinstance(value, dict) or not value or any(k not in _ARGS and k != "type" for k in value):
        return None
    func = value.get("type")
    if func is not None:
        if not isinstance(func, str) or func.lower().replace("grid_search", "grid") not in T.DOMAINS:
            return None
        func = func.lower().replace("grid_search", "grid")
    args = {_ALIASES.get(k, k): v for k, v in value.items() if k != "type"}
    listed = [k for k in _LISTS if k in args]
    if listed:
        values = args[listed[0]]
        if len(args) != 1 or not isinstance(values, list) or func not in (None, *T.CATEGORICAL):
            return None
        return f"{func or 'choice'}({', '.join(map(_text, values))})", func is not None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args.values()):
        return None  # bounds are numbers: `{ min = [0, 0], max = [1, 1] }` is data
    if func is None and set(args) != {"lower", "upper"}:
        return None
    names = [a for a, _, _ in T.DOMAINS[func or "uniform"]]
    if func in T.CATEGORICAL or any(k not in names for k in args):
        return None
    shown, positional = [], True
    for name in names:
        if name not in args:
            positional = False
        elif positional:
            shown.append(_text(args[name]))
        else:
            shown.append(f"{name} = {_text(args[name])}")
    return f"{func or 'uniform'}({', '.join(shown)})", func is not None


def _text(v: Any) -> str:
    """A value as the .hpo file writes it (JSON's spelling is the language's)."""
    return json.dumps(v)


# A count's whole-number domain for a fractional one (upper exclusive in `randint`, `lograndint`).
_WHOLE = {"uniform": "randint", "loguniform": "lograndint", "quniform": "qrandint", "qloguniform": "qlograndint"}


def count_call(value: Any) -> str | None:
    """The call a count (`epochs`, `batch_size`) written as a domain's map is searched with:
    `{ min = 2, max = 10 }` is `randint(2, 11)`, not `uniform(2, 10)`, which is refused for
    drawing fractions. None where whole bounds do not say it (`min = 1.5`, a `base`)."""
    found = domain_call(value)
    if found is None:
        return None
    func = found[0].partition("(")[0]
    if func in T.INTEGER or func in T.CATEGORICAL:
        return found[0]
    args = {_ALIASES.get(k, k): v for k, v in value.items() if k != "type"}
    if func not in _WHOLE or not set(args) <= {"lower", "upper", "q"} or \
            not all(type(v) is int for v in args.values()):
        return None
    if "q" in args:
        return f"{_WHOLE[func]}({args['lower']}, {args['upper']}, {args['q']})"
    return f"{_WHOLE[func]}({args['lower']}, {args['upper'] + 1})"
