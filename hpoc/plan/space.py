"""What a plan's space means, for every reader of plans: config shapes (dotted names
nested and flattened), which parameters are active, the points of an enumerated grid.
Pure (no numpy, no Ray): the compiler checks and counts with it, the runtime samples with
it, `hpoc status` sizes the study with it."""

from __future__ import annotations

import copy
import functools
import json
import math
import numbers
from typing import Any


class SpaceError(ValueError):
    """A space the runtime cannot use (the compiler normally catches these first)."""


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1, "c": 2}` -> `{"a": {"b": 1}, "c": 2}`."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpaceError(f"`{name}` nests under `{part}`, which is already a value")
            node = child
        node[leaf] = copy.deepcopy(value)
    return out


def flatten(nested: dict[str, Any], prefix: str = "", keep: Any = ()) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; a name in `keep` (a parameter whose values are
    dicts, `choice({...}, ...)`) keeps its value whole."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name not in keep:
            out.update(flatten(value, name + ".", keep))
        else:
            out[name] = value
    return out


def is_active(param: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether `param`'s condition holds given the values of the parameters decided so far.

    A parent that is itself inactive is absent from `values`, so conditions chain."""
    cond = param.get("condition")
    if not cond:
        return True
    if cond["param"] not in values:
        return False
    key = typed_key(values[cond["param"]])
    return any(typed_key(o) == key for o in cond["values"])


def typed_key(value: Any) -> tuple[str, str]:
    """Equality key of a category value (hashable), the one rule for what a category is:
    `true` is not `1` or `"1"` (Python's `True == 1`), 1 and 1.0 are one number."""
    value = _plain(value)
    tag = "b" if isinstance(value, bool) else "n" if isinstance(value, numbers.Real) else "o"
    if tag == "n":
        return tag, repr(value)
    return tag, json.dumps(value, sort_keys=True)


def _plain(value: Any) -> Any:
    """`value` with every number a float, at any depth (`{x = 1}` is `{x = 1.0}`), bools kept."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a searcher's numpy scalar (json cannot write numpy's bool)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def same_category(a: Any, b: Any) -> bool:
    return typed_key(a) == typed_key(b)


INT_DOMAINS = ("randint", "qrandint", "lograndint", "qlograndint")


def multiples(domain: str, args: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(first, last, q) of a quantised or integer domain: its values are the multiples of
    `q` (1 for randint) from first to last, Ray's rule. Integers exactly (randint's and
    lograndint's upper bound is exclusive, a quantised one's inclusive); floats within
    rounding."""
    q, lo, hi = args.get("q") or 1, args["lower"], args["upper"]
    if domain in INT_DOMAINS:
        return -(-lo // q) * q, (hi if domain.startswith("q") else hi - 1) // q * q, q
    return math.ceil(lo / q - 1e-9) * q, math.floor(hi / q + 1e-9) * q, q


def on_grid(x: float, q: float) -> bool:
    """Whether `x` is a multiple of `q`, by Ray's own test (ray.tune.search.sample:
    Float.quantized): the compiler asks it of a quantised domain's bounds, the runtime of
    its range (whether Optuna's steps from `lower` are Ray's multiples)."""
    return math.isclose(x / q, round(x / q))


def _grid_params(params: list[dict[str, Any]], enumerate_choices: bool) -> list[dict[str, Any]]:
    return [p for p in params if p["domain"] == "grid" or (enumerate_choices and p["domain"] == "choice")]


def grid_points(space: dict[str, Any], *, enumerate_choices: bool = False) -> list[dict[str, Any]]:
    """Every combination of the enumerated parameters, honouring conditions between them.

    With `enumerate_choices` (search algorithm `grid`) choices are enumerated too; a
    parameter whose condition depends on one is enumerated only where the condition holds."""
    params = space["params"]
    enumerated = {p["name"] for p in _grid_params(params, enumerate_choices)}
    points: list[dict[str, Any]] = [{}]
    for p in params:
        if p["name"] not in enumerated:
            continue
        options = list(p["args"]["values"] if p["domain"] == "grid" else p["args"]["categories"])
        cond = p.get("condition")
        decided_by_grid = cond is None or cond["param"] in enumerated
        nxt = []
        for point in points:
            if decided_by_grid and not is_active(p, point):
                nxt.append(point)
                continue
            nxt.extend({**point, p["name"]: copy.deepcopy(o)} for o in options)
        points = nxt
    return points


def count_grid(space: dict[str, Any], enumerate_choices: bool = False) -> int:
    """How many points `grid_points` makes. One compile asks of one space three or four
    times (the shards, the schedulers, the search's points, the summary), and a grid may
    hold 100,000 points: they are enumerated once, keyed by the parameters' JSON."""
    try:
        params = json.dumps(space["params"], sort_keys=True)
    except (TypeError, ValueError):  # not a plan's values: counted, not kept
        return len(grid_points(space, enumerate_choices=enumerate_choices))
    return _count_grid(params, enumerate_choices)


@functools.lru_cache(maxsize=8)
def _count_grid(params: str, enumerate_choices: bool) -> int:
    return len(grid_points({"params": json.loads(params)}, enumerate_choices=enumerate_choices))


def grid_bound(space: dict[str, Any], *, enumerate_choices: bool = False) -> int:
    """At most this many grid points (conditions can only make fewer); counted, not built."""
    n = 1
    for p in _grid_params(space["params"], enumerate_choices):
        n *= len(p["args"]["values"] if p["domain"] == "grid" else p["args"]["categories"])
    return n


def total_trials(plan: dict[str, Any]) -> int:
    """Trials of the whole study: for random and grid search, `num_samples` repetitions of
    the grid (Ray's semantics); other searchers run `num_samples` trials."""
    return plan["trials"]["num_samples"] * trials_per_sample(plan)


def trials_per_sample(plan: dict[str, Any]) -> int:
    """The trials one `num_samples` stands for: the grid's points under random and grid
    search, else 1."""
    algorithm = plan["search"]["algorithm"]
    if algorithm in ("random", "grid"):
        return count_grid(plan["space"], enumerate_choices=algorithm == "grid")
    return 1


def domain_size(param: dict[str, Any]) -> int | None:
    """How many values a parameter can take; None for a continuous (or normal) one."""
    d, a = param["domain"], param["args"]
    if d == "grid":
        return len(a["values"])
    if d == "choice":
        return len(a["categories"])
    if d in INT_DOMAINS or d in ("quniform", "qloguniform"):
        first, last, q = multiples(d, a)
        return max(0, round((last - first) / q) + 1)
    return None


def distinct_configs(space: dict[str, Any], *, at_most: int = 100_000) -> int | None:
    """How many different configs the space holds (conditions honoured: a parameter counts
    only where it exists); None when a parameter is continuous, or when the categorical
    ones alone may make more than `at_most` combinations (not enumerated then)."""
    params = space["params"]
    sizes = {p["name"]: domain_size(p) for p in params}
    if any(n is None for n in sizes.values()) or grid_bound(space, enumerate_choices=True) > at_most:
        return None
    total = 0
    for point in grid_points(space, enumerate_choices=True):
        n = 1
        for p in params:  # the integer and quantised ones; conditions name categorical ones
            if p["domain"] not in ("grid", "choice") and is_active(p, point):
                n *= sizes[p["name"]]
        total += n
    return total
