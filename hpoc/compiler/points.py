"""`points_to_evaluate`: each entry is a trial config the searcher runs first.

Optuna (`enqueue_trial`) and HyperOpt only find a bad point when the study runs: a category
not in `choice` or a string for a number raises there, and HyperOpt needs every parameter.
So each entry must set every parameter that is active in it, each value within its domain.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

from hpoc.compiler import tables as T
from hpoc.compiler.check import MISSING, TYPE, UNKNOWN, VALUE, Checker
from hpoc.compiler.space import Param, Space
from hpoc.dsl import ast as A
from hpoc.errors import did_you_mean, one_of
from hpoc.plan.space import flatten, is_active, nest, on_grid, typed_key

WHAT = "`points_to_evaluate`"


def check_points(ch: Checker, points: list[Any], space: Space, node: A.Value | None,
                 span: A.Span | None, trials: int | None = None) -> list[Any]:
    """The entries nested like trial configs; every problem reported at its key or value.
    `trials`: how many the study runs (points past it would never run)."""
    entries = node.items if isinstance(node, A.List) else ()
    by_name = {p.name: p for p in space.params}
    out = []
    for i, point in enumerate(points):
        entry = entries[i] if i < len(entries) else None
        where = entry.span if entry is not None and entry.span else span
        if trials is not None and i == trials:
            ch.error(VALUE, f"{WHAT} lists {len(points)} points but the study runs {trials} trial(s): "
                            f"this one and those after it never run", where,
                     help="raise `trials.num_samples`, or remove points: they count toward it")  # fmt: skip
        if not isinstance(point, dict):
            ch.error(VALUE, f"each entry of {WHAT} must be a map `{{ name = value }}`", where)
            continue
        # a parameter's value may be a map itself (`choice({ b1 = 0.9 }, ...)`): keep it whole
        flat = flatten(point, keep=by_name)
        nodes = dict(_flat_nodes(entry, keep=by_name)) if isinstance(entry, A.Map) else {}
        for key, value in flat.items():
            kspan, vnode = nodes.get(key, (where, None))
            p = by_name.get(key)
            if p is None:
                if key in space.invalid:  # its domain's error is reported: the name is not unknown
                    continue
                # `lr` for `optimizer.lr`: a group's parameter by its own name
                grouped = next((n for n in by_name if n.endswith("." + key)), None)
                group, _, leaf = (grouped or "").rpartition(".")
                ch.error(UNKNOWN, f"{WHAT} sets `{key}`, which is not a searched parameter", kspan,
                         help=f"did you mean `{grouped}`? (`{{ {grouped} = ... }}`, or `{{ {group} = {{ {leaf} = "
                              "... } }`)" if grouped else did_you_mean(key, by_name))  # fmt: skip
                continue
            _value(ch, p, value, (vnode.span if vnode is not None else None) or kspan)
        active = _active(space, flat)
        for p in space.params:
            if p.name in flat and p.condition is not None and p not in active:
                _inactive(ch, p, flat, nodes.get(p.name, (where, None))[0])
        missing = [f"`{p.name}`" for p in active if p.name not in flat]
        if missing:  # one error for the entry: they are all at its place
            names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
            ch.error(MISSING, f"an entry of {WHAT} has no value for {names}", where,
                     help=(f"add {missing[0][:-1]} = ...`" if len(missing) == 1 else "add them")
                     + ": a point sets every parameter that exists in it")  # fmt: skip
        out.append(nest(flat))
    return out


def _value(ch: Checker, p: Param, value: Any, span: A.Span | None) -> None:
    a = p.args
    if p.domain in T.CATEGORICAL:
        cats = a.get("categories", a.get("values", []))
        if typed_key(value) not in {typed_key(c) for c in cats}:
            ch.error(VALUE, f"`{p.name}` in {WHAT} is {_show(value)}, not one of its `{p.domain}` values", span,
                     help=f"`{p.name}` takes {one_of((_show(c) for c in cats), limit=10)}")  # fmt: skip
        return
    whole = p.domain in T.INTEGER
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (whole and not isinstance(value, int)):
        kind = "an integer" if whole else "a number"
        help = f"write {int(value)}" if whole and isinstance(value, float) and value.is_integer() else None
        ch.error(TYPE, f"`{p.name}` in {WHAT} must be {kind}, not {_show(value)}", span, help=help)
        return
    if "lower" not in a:  # randn, qrandn: any number (a multiple of q)
        a = {**a, "lower": -math.inf, "upper": math.inf}
    exclusive = p.domain in ("randint", "lograndint")  # Ray's upper bound is exclusive there
    if value < a["lower"] or value > a["upper"] or (exclusive and value == a["upper"]):
        help = f"`{p.name}` takes values from {a['lower']} to {a['upper']}"
        if exclusive:
            help = f"`{p.name}` takes {a['lower']} to {a['upper'] - 1} (the upper bound of `{p.domain}` is exclusive)"
        ch.error(VALUE, f"`{p.name}` in {WHAT} is {_show(value)}, outside `{p.domain}({a['lower']}, {a['upper']})`",
                 span, help=help)  # fmt: skip
    elif "q" in a and not on_grid(value, a["q"]):
        near = round(value / a["q"]) * a["q"]
        ch.error(VALUE, f"`{p.name}` in {WHAT} is {_show(value)}, not a multiple of `q` = {a['q']}", span,
                 help=f"the values of `{p.domain}` are multiples of `q`: write {_show(round(near, 12))}")  # fmt: skip


def _inactive(ch: Checker, p: Param, flat: dict[str, Any], span: A.Span | None) -> None:
    """A value for a parameter whose condition the point's own values make false: the
    searcher drops it without a word, so the trial runs without what the user wrote."""
    cond = p.condition or {}
    parent = cond.get("param")
    wants = " or ".join(_show(v) for v in cond.get("values", ()))
    has = f"sets `{parent} = {_show(flat[parent])}`" if parent in flat else f"has no `{parent}` in use"
    ch.error(VALUE, f"{WHAT} sets `{p.name}`, which does not exist in this point: it exists only when "
                    f"`{parent}` is {wants}, and the point {has}", span,
             help=f"remove `{p.name}` from this point, or set `{parent}` to {wants}")  # fmt: skip


def _active(space: Space, flat: dict[str, Any]) -> list[Param]:
    """The parameters that exist in the trial `flat` describes. The space is parents-first,
    so a parent is decided before its children; an unresolved condition (an error already)
    makes its parameter absent."""
    values: dict[str, Any] = {}
    active = []
    for p in space.params:
        if p.cond is not None and p.condition is None:
            continue
        if is_active(p.plan(), values):
            active.append(p)
            if p.name in flat:
                values[p.name] = flat[p.name]
    return active


def _flat_nodes(m: A.Map, prefix: str = "", keep: Any = ()) -> Iterator[tuple[str, tuple[A.Span | None, A.Value]]]:
    """(dotted name, (key span, value node)) of a point, as `flatten` names its values."""
    for pair in m.entries:
        if isinstance(pair.value, A.Map) and pair.value.entries and f"{prefix}{pair.key}" not in keep:
            yield from _flat_nodes(pair.value, f"{prefix}{pair.key}.", keep)
        else:
            yield f"{prefix}{pair.key}", (pair.key_span or pair.span, pair.value)


def _show(v: Any) -> str:
    return json.dumps(v)
