"""The `space` section: search domains, constants, groups (dotted names) and conditions."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from hpoc.compiler import kinds as K
from hpoc.compiler import tables as T
from hpoc.compiler.check import (BOUNDS, CONDITION, DUPLICATE, MISPLACED, SPACE, TYPE, WARN_ALWAYS,
                                 WARN_DATA_DOMAIN, WARN_ONE_VALUE, WARN_PATH, Checker)
from hpoc.compiler.domain_maps import count_call, domain_call
from hpoc.dsl import ast as A
from hpoc.dsl.format import format_condition, format_setting
from hpoc.errors import did_you_mean, one_of
from hpoc.plan.space import multiples, on_grid, typed_key


@dataclass
class Param:
    """One searched parameter, plan-shaped, with the spans errors need."""

    name: str
    domain: str
    args: dict[str, Any]
    span: A.Span | None
    value_span: A.Span | None
    cond: A.Condition | None = None
    cond_prefix: str = ""
    condition: dict[str, Any] | None = None  # resolved: {"param": ..., "values": [...]}

    def plan(self) -> dict[str, Any]:
        return {"name": self.name, "domain": self.domain, "args": self.args, "condition": self.condition}


@dataclass
class Space:
    params: list[Param] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    constant_spans: dict[str, A.Span | None] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)  # parameters left out for their domain's errors
    # a constant's or group's key as written where it is (`lr` of `opt { lr = ... }`): a hint's
    written: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [p.name for p in self.params] + list(self.constants)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def read_domain(ch: Checker, call: A.Call, what: str, conditional: bool = False) -> tuple[str, dict[str, Any]] | None:
    """(domain, args with Ray Tune's names and defaults) of a domain call, or None. A
    `conditional` parameter's `choice` of one value is a value only some trials get."""
    sig = T.DOMAINS.get(call.func)
    span = call.func_span or call.span
    if sig is None:
        help = did_you_mean(call.func, T.DOMAINS) or f"search domains: {one_of(T.DOMAINS)}"
        prefix, _, last = call.func.rpartition(".")
        last = "grid" if last == "grid_search" else last
        if ":" in call.func or "." in call.func:
            help = f"{what} needs a search domain such as `uniform(0, 1)`, or a literal"
        if prefix in ("tune", "ray.tune") and last in T.DOMAINS:  # copied from a Ray Tune script
            help = f"write `{last}(...)`: hpoc's domains are Ray Tune's, without `{prefix}.`"
        ch.error(SPACE, f"unknown search domain `{call.func}` for {what}", span, help=help)
        return None
    if call.func in T.CATEGORICAL:
        return _categorical(ch, call, what, conditional)
    names = [name for name, _, _ in sig]
    given: dict[str, Any] = {}
    if len(call.args) > len(sig):
        extra = call.args[len(sig)]
        ch.error(
            SPACE, f"`{call.func}` takes at most {len(sig)} arguments ({', '.join(names)})",
            extra.span, help="remove the extra arguments",
        )  # fmt: skip
        return None
    for (name, _, _), node in zip(sig, call.args):
        given[name] = node
    for kw in call.kwargs:
        if kw.key not in names:
            ch.error(
                SPACE, f"`{call.func}` has no argument `{kw.key}`", kw.key_span or kw.span,
                help=did_you_mean(kw.key, names) or f"arguments: {', '.join(names)}",
            )  # fmt: skip
            return None
        if kw.key in given:
            ch.error(SPACE, f"`{kw.key}` is given twice to `{call.func}`", kw.key_span or kw.span)
            return None
        given[kw.key] = kw.value
    args: dict[str, Any] = {}
    ok = True
    for name, kind, default in sig:
        if name not in given:
            if default is ...:
                ch.error(
                    SPACE, f"`{call.func}` needs `{name}` for {what}", call.span,
                    help=f"write `{call.func}({', '.join(names)})`",
                )  # fmt: skip
                ok = False
            else:
                args[name] = default
            continue
        try:
            args[name] = kind(given[name])
        except K.Invalid as exc:
            code = TYPE if " not " in exc.msg else BOUNDS  # a bound out of range (int64)
            ch.error(code, f"`{name}` of `{call.func}` {exc.msg}", given[name].span, help=exc.help)
            ok = False
    if not ok:
        return None
    return (call.func, args) if _bounds(ch, call, args, given) else None


def _bounds(ch: Checker, call: A.Call, args: dict[str, Any], given: dict[str, Any]) -> bool:
    def bad(msg: str, arg: str, help: str | None = None) -> bool:
        node = given.get(arg)
        ch.error(BOUNDS, msg, node.span if node is not None else call.span, help=help)
        return False

    ok = True
    func = call.func
    if "lower" in args and args["lower"] >= args["upper"]:
        lo = args["lower"]
        help = "swap the bounds" if lo > args["upper"] else f"for the one value {lo}, write the constant `{lo}`"
        if lo == args["upper"] and func in ("randint", "lograndint"):
            help += f" (`{func}`'s upper bound is exclusive: `{func}({lo}, {lo + 1})` also gives only {lo})"
        ok = bad(f"`lower` must be less than `upper` in `{func}` (got {lo} and {args['upper']})", "upper", help=help)
    if func in T.LOG and args["lower"] <= 0:
        ok = bad(
            f"`{func}` needs `lower` > 0 (got {args['lower']})", "lower",
            help="log domains cannot reach 0; use a small positive bound such as "
                 + ("1" if func in T.INTEGER else "1e-8"),
        )  # fmt: skip
    if "base" in args and (args["base"] <= 0 or args["base"] == 1):
        ok = bad(f"`base` must be positive and not 1 (got {args['base']})", "base")
    if "q" in args and args["q"] <= 0:
        ok = bad(f"`q` must be positive (got {args['q']})", "q")
    if "sd" in args and args["sd"] <= 0:
        ok = bad(f"`sd` must be positive (got {args['sd']})", "sd")
    if ok and func in ("uniform", "quniform") and not math.isfinite(float(args["upper"]) - float(args["lower"])):
        ch.error(BOUNDS, f"`{func}({args['lower']:g}, {args['upper']:g})` is too wide to sample: `upper - lower` "
                         "overflows a float", call.span,
                 help="narrow the bounds (or search the exponent: `loguniform`)")  # numpy refuses the range
        ok = False
    if ok and "q" in args and "lower" in args:
        ok = _quantum(bad, func, args)
    if ok and func in T.INTEGER:
        _one_value(ch, call, args)
    return ok


def _one_value(ch: Checker, call: A.Call, args: dict[str, Any]) -> None:
    """An integer domain that holds one value searches nothing: `randint(1, 2)` is always 1
    (its upper bound is exclusive), `qrandint(1, 5, 4)` always 4."""
    lo, hi = args["lower"], args["upper"]
    first, last, q = multiples(call.func, args)
    if call.func in ("randint", "lograndint"):
        help = f"`{call.func}`'s upper bound is exclusive: `{call.func}({lo}, {hi + 1})` gives {lo} and {hi}"
    else:
        help = f"values are the multiples of `q` = {q} between the bounds; widen them or use a smaller `q`"
    if first == last:
        shown = ", ".join(str(args[k]) for k in ("lower", "upper", "q") if k in args)
        ch.warn(WARN_ONE_VALUE, f"`{call.func}({shown})` only ever gives {first}", call.span, help=help)


# The share of the draws at which a quantised log domain's first value has swallowed the
# low end of its log scale (HP810).
LOW_END_SHARE = 0.25


def low_end(ch: Checker, p: Param, alg: str, where: A.Span | None) -> None:
    """`qlograndint(1, 1000, 7)` under a searcher that draws on a log scale from `lower` and
    rounds to multiples of `q` (optuna as hpoc maps it, Ray's converters): every draw below
    10.5 becomes 7, a third of them. hpoc's own sampler (random, grid) draws the multiples of
    `q` on a log scale instead, from the first one."""
    if alg in ("random", "grid") or p.domain not in T.LOG or p.domain not in T.QUANTIZED:
        return
    lo, hi, q = p.args["lower"], p.args["upper"], p.args["q"]
    first = multiples(p.domain, p.args)[0]
    if lo <= 0 or not lo < first < hi:
        return

    def share(start: float) -> float:  # of draws log-uniform on [start, hi] that round to first
        return min(1.0, math.log((first + q / 2) / start) / math.log(hi / start))

    if share(lo) < LOW_END_SHARE:
        return
    func, edge = p.domain, _num(first + q / 2)
    ch.warn(WARN_ONE_VALUE, f"`{func}({_num(lo)}, {_num(hi)}, {_num(q)})` gives {_num(first)} in about "
                            f"{round(100 * share(lo))}% of the trials: `search {alg}` draws on a log scale "
                            f"from {_num(lo)} and rounds every draw below {edge} to {_num(first)}", where,
            help=f"start the domain at its first value, `{func}({_num(first)}, {_num(hi)}, {_num(q)})` "
                 f"({_num(first)} in about {round(100 * share(first))}%), or use a smaller `q`",
            notes=("warned when the draws that round to the first value are a quarter of them or more, "
                   "the log scale starting below it",))


def _quantum(bad: Any, func: str, args: dict[str, Any]) -> bool:
    """Values are the multiples of `q` within the bounds (Ray's rule). Ray refuses a float
    domain whose bounds are not multiples (ValueError at the first sample, mid-run), and an
    integer one with no multiple inside; Optuna would step from `lower` instead."""
    lo, hi = args["lower"], args["upper"]
    first, last, q = multiples(func, args)
    fix = f"write `{func}({_num(first)}, {_num(last)}, {_num(q)})`" if first < last else None
    if func in T.INTEGER:
        if first > hi:
            return bad(f"`{func}({lo}, {hi}, {q})` has no multiple of `q` = {q} between its bounds",
                       "q", help="values are multiples of `q`; widen the bounds or use a smaller `q`")
        return True
    for arg in ("lower", "upper"):
        if not on_grid(args[arg], q):
            return bad(f"`{arg}` of `{func}` must be a multiple of `q` = {_num(q)} (got {_num(args[arg])})",
                       arg, help=(fix + ": values are multiples of `q`") if fix else
                       "values are multiples of `q`; choose bounds that are")
    return True


def _num(x: float) -> str:
    return repr(round(x, 12)) if isinstance(x, float) else str(x)


def _categorical(ch: Checker, call: A.Call, what: str, conditional: bool = False) -> tuple[str, dict[str, Any]] | None:
    key = "categories" if call.func == "choice" else "values"
    if call.kwargs:
        kw = call.kwargs[0]
        ch.error(
            SPACE, f"`{call.func}` takes its {key} as plain arguments", kw.key_span or kw.span,
            help=f"write `{call.func}(a, b, c)`",
        )  # fmt: skip
        return None
    nodes = list(call.args)
    if len(nodes) == 1 and isinstance(nodes[0], A.List):  # `choice([a, b])` as in Ray
        nodes = list(nodes[0].items)
    if not nodes:
        ch.error(BOUNDS, f"`{call.func}` needs at least one value for {what}", call.span,
                 help=f"write `{call.func}(a, b)`")  # fmt: skip
        return None
    values, seen = [], {}
    ok = True
    for node in nodes:
        try:
            value = K.space_value(node)
        except K.Invalid as exc:
            ch.error(TYPE, f"value of `{call.func}` {exc.msg}", (exc.node or node).span, help=exc.help)
            ok = False
            continue
        import_paths(ch, node)
        tk = typed_key(value)
        if tk in seen:
            ch.error(DUPLICATE, f"`{call.func}` lists {K.describe(node)} twice", node.span,
                     notes=(f"first at {ch.at(seen[tk])}",), help="remove the repeated value")  # fmt: skip
            ok = False
            continue
        seen[tk] = node.span
        values.append(value)
    if ok and len(values) == 1 and not conditional:  # searches nothing, as `randint(1, 2)` does not (HP810)
        _one_category(ch, call, what, values[0])
    return (call.func, {key: values}) if ok else None


def _one_category(ch: Checker, call: A.Call, what: str, value: Any) -> None:
    shown = json.dumps(value) if value is None or isinstance(value, (str, bool, int, float)) else None
    help = "list the other values to search"
    if shown is not None and what.startswith("`") and what.endswith("`"):  # a parameter, not a mutation
        help += f", or write the constant: `{what.strip('`')} = {shown}`"
    ch.warn(WARN_ONE_VALUE, f"`{call.func}({shown or '...'})` only ever gives {shown or 'that value'}",
            call.span, help=help)


def import_paths(ch: Checker, node: A.Value) -> None:
    """`act = nn.ReLU` reads as the class, but a trial value is data: the trainer gets the
    string (the pipeline refuses the same, HP203; here a bare word is its string, kept so)."""
    if isinstance(node, A.List):
        for item in node.items:
            import_paths(ch, item)
    elif isinstance(node, A.Map):
        for pair in node.entries:
            import_paths(ch, pair.value)
    elif isinstance(node, A.Ref) and not K.bare_word(node.path):
        obj = node.path.replace(":", ".")
        module, _, name = obj.rpartition(".")
        module = "torch.nn" if module == "nn" else module
        ch.warn(WARN_PATH, f'`{node.path}` is the string "{node.path}" in the trial config, not the object it names',
                node.span, notes=("hpoc builds no object for a trial value",),
                help=f'quote it: "{node.path}", and let the trainer pick the object by its name '
                     f'(`getattr({module}, "{name}")`)')  # fmt: skip


def read_space(ch: Checker, block: A.Block | None) -> Space:
    space = Space()
    if block is None:
        return space
    first: dict[str, A.Span | None] = {}
    _walk(ch, block.body or (), "", None, "", space, first)
    _check_groups(ch, first)
    _resolve_conditions(ch, space)
    _check_counts(ch, space)
    return space


def domain_maps(ch: Checker, space: Space, as_map: Callable[[str, dict[str, Any]], bool]) -> None:
    """A warning for a constant map that reads as a domain (`lr = { type = "loguniform", min = 1e-4,
    max = 1e-1 }`, or a group block of the same keys): every trial would get the map. Not for
    one the trainer takes `as_map` (reads `config["clip"]["min"]`): data on purpose. Bounds
    without a `type` may be such data too: said as a constant, not as a mistake."""
    tree: dict[str, Any] = {}
    for name, value in space.constants.items():
        *groups, last = name.split(".")
        node = tree
        for g in groups:
            node = node.setdefault(g, {})
        node[last] = value

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict) or any(p.name.startswith(path + ".") for p in space.params):
            return
        found = domain_call(node) if path and path not in COUNTS else None  # counts: an error says it
        if found is None:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
            return
        call, typed = found
        if as_map(path, node):
            return
        # the setting, the first of its block's, or the map it is nested in
        span = space.constant_spans.get(path) or next(
            (s for n, s in space.constant_spans.items() if n.startswith(path + ".")), None) or next(
            (space.constant_spans[p] for p in _ancestors(path) if p in space.constant_spans), None)
        if typed:
            ch.warn(WARN_DATA_DOMAIN, f"`{path}` is a map, not a search domain: it is not searched, every trial "
                                      "gets the map as written", span, help=_domain_help(space, path, call))
        else:
            ch.warn(WARN_DATA_DOMAIN, f"`{path}` is a constant map: every trial gets it as written; a map in "
                                      "`space` is not searched", span,
                    help=f"to search it, {_domain_help(space, path, call)} (or `loguniform`, `randint`, ...); "
                         "if the trainer reads it as a map, it is right as written")

    walk(tree, "")


def _domain_help(space: Space, path: str, call: str) -> str:
    """The line to write where the map is: its key as written there (in `opt { }`, `lr`, not
    `opt.lr`, which would be `opt.opt.lr`); inside a map, that map made a group (a dotted
    `opt.lr` beside the map `opt` is refused: both a parameter and a group)."""
    if path in space.written:
        return f"write `{space.written[path]} = {call}`"
    outer = next((p for p in _ancestors(path) if p in space.constants), None)
    if outer is not None:
        key = space.written.get(outer, outer)
        return f"write `{key}` as a group, `{key} {{ ... }}`, with `{path[len(outer) + 1:]} = {call}` in it"
    # dotted keys (`lr.type = ...`): the name less the prefix of the group they are written in
    child = next((n for n in space.written if n.startswith(path + ".") and "." in space.written[n]), None)
    prefix = child[: len(child) - len(space.written[child])] if child else ""
    return f"write `{path[len(prefix):] if path.startswith(prefix) else path} = {call}`"


def _ancestors(path: str) -> list[str]:
    """`a.b.c` -> [`a.b`, `a`]."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


# What the default train loop counts with: `epochs = 2.5` trained 2 epochs without a word, and
# `batch_size = 0` failed every trial once Ray ran it.
COUNTS = ("epochs", "batch_size")


def is_count(v: Any) -> bool:
    """A count as the trainer takes it: `10`, or `10.0` (a whole number all the same)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def as_count(v: Any) -> Any:
    """`10.0` as 10, as the plan holds a count: a trainer's own `range(config["epochs"])`
    cannot take a float."""
    return int(v) if isinstance(v, float) and is_count(v) else v


def _check_counts(ch: Checker, space: Space) -> None:
    for name in COUNTS:
        help = f"`{name}` counts, so it takes whole numbers from 1 up"
        if (found := count_call(space.constants.get(name))) is not None:
            help = f"to search it, write `{name} = {found}`"  # a YAML domain's map
        elif isinstance(space.constants.get(name), str) and is_count(_integer(space.constants[name])):
            help = f"remove the quotes: {space.constants[name].strip()}"  # `epochs = "4"`
        elif isinstance(space.constants.get(name), list) and space.constants[name]:
            help = f"to search these values, write `{name} = choice({', '.join(map(_show, space.constants[name]))})`"
        if name in space.constants and not is_count(space.constants[name]):
            ch.error(TYPE, f"`{name}` must be a whole number of at least 1, not {_show(space.constants[name])}",
                     space.constant_spans.get(name), help=help)
        elif name in space.constants:
            space.constants[name] = as_count(space.constants[name])
        p = space.param(name)
        if p is None:
            continue
        if p.domain in T.CATEGORICAL:
            key = "categories" if "categories" in p.args else "values"
            bad = [v for v in p.args.get(key, []) if not is_count(v)]
            if not bad and key in p.args:
                p.args[key] = [as_count(v) for v in p.args[key]]
            if bad:
                ch.error(TYPE, f"`{name}` must take whole numbers of at least 1, not {_show(bad[0])}",
                         p.value_span or p.span, help=help)
        elif p.domain not in T.INTEGER:
            ch.error(TYPE, f"`{name} = {p.domain}(...)` draws fractional values", p.value_span or p.span,
                     help=f"use `randint`, `qrandint` or `choice` for `{name}`")
        elif not is_count(p.args.get("lower")):
            ch.error(BOUNDS, f"`{name}` may be drawn as {_show(p.args.get('lower'))}", p.value_span or p.span,
                     help=help)


def _walk(
    ch: Checker,
    items: tuple[A.Item, ...],
    prefix: str,
    cond: A.Condition | None,
    cond_prefix: str,
    space: Space,
    first: dict[str, A.Span | None],
) -> None:
    for item in items:
        if isinstance(item, A.Setting):
            _setting(ch, item, prefix, cond, cond_prefix, space, first)
        elif isinstance(item, A.Block):
            if item.label is not None or item.body is None:
                ch.error(
                    MISPLACED, f"`{item.kind} {item.label_text or ''}`: groups in `space` are written `name {{ ... }}`",
                    item.span, help="remove the label",
                )  # fmt: skip
                continue
            if not _valid_key(ch, item.kind, item.kind_span):
                continue
            space.written.setdefault(prefix + item.kind, item.kind)
            _walk(ch, item.body, f"{prefix}{item.kind}.", cond, cond_prefix, space, first)
        elif isinstance(item, A.IfBlock):
            if cond is not None:
                ch.error(
                    CONDITION, "`if` blocks cannot be nested", item.condition.span,
                    help="a parameter can depend on one condition; use `in [...]` for several values",
                )  # fmt: skip
                continue
            _walk(ch, item.body, prefix, item.condition, prefix, space, first)
        else:
            ch.error(MISPLACED, "`objective` belongs at the top level, not in `space`", item.span)


def _valid_key(ch: Checker, key: str, span: A.Span | None) -> bool:
    if not key or any(part == "" for part in key.split(".")):
        ch.error(SPACE, f'"{key}" is not a valid parameter name', span,
                 help="names are non-empty; use groups or dotted names for nesting")  # fmt: skip
        return False
    return True


def _setting(
    ch: Checker,
    item: A.Setting,
    prefix: str,
    cond: A.Condition | None,
    cond_prefix: str,
    space: Space,
    first: dict[str, A.Span | None],
) -> None:
    if not _valid_key(ch, item.key, item.key_span):
        return
    name = prefix + item.key
    if item.condition is not None and cond is not None:
        ch.error(
            CONDITION, f"`{name}` is already inside an `if` block", item.condition.span,
            help="a parameter can depend on one condition; use `in [...]` for several values",
        )  # fmt: skip
        return
    if name in first:
        ch.error(DUPLICATE, f"parameter `{name}` is defined twice", item.key_span,
                 notes=(f"first defined at {ch.at(first[name])}",), help="remove one of them")  # fmt: skip
        return
    first[name] = item.key_span
    condition = item.condition or cond
    cprefix = prefix if item.condition is not None else cond_prefix
    value = item.value
    if isinstance(value, A.Call):
        domain = read_domain(ch, value, f"`{name}`", conditional=condition is not None)
        if domain is not None:
            space.params.append(
                Param(name, domain[0], domain[1], item.span, value.span, condition, cprefix)
            )
        else:
            space.invalid.add(name)
        return
    if condition is not None:
        help = "only searched parameters (`choice`, `uniform`, ...) can have conditions"
        if isinstance(value, (A.String, A.Number, A.Bool, A.Ref)) and K.bare_word(getattr(value, "path", "x")):
            # a value only some trials get: a choice of that one value, under the condition
            shown = format_setting(item.key, K.space_value(value)).partition(" = ")[2]
            # in an `if` block, the block is the condition (a second one is refused, nested)
            where = f" if {format_condition(condition)}`" if item.condition is not None else "` in the `if` block"
            help = ("a constant is in every trial; for a value only these trials get, write "
                    f"`{item.key} = choice({shown}){where}")
        ch.error(CONDITION, f"constant `{name}` cannot be conditional", condition.span, help=help)
        return
    if isinstance(value, A.Ref) and value.path in T.DOMAINS:
        ch.error(SPACE, f"`{value.path}` needs arguments", value.span,
                 help=f"write `{value.path}(...)`")  # fmt: skip
        return
    try:
        space.constants[name] = K.space_value(value)
        space.constant_spans[name] = item.span
        space.written[name] = item.key
        import_paths(ch, value)
    except K.Invalid as exc:
        ch.error(TYPE, f"`{name}` {exc.msg}", (exc.node or value).span, help=exc.help)


def _check_groups(ch: Checker, first: dict[str, A.Span | None]) -> None:
    """`a` and `a.b` cannot both exist: a trial config is a nested dict."""
    names = sorted(first)
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            group = ".".join(parts[:i])
            if group in first:
                ch.error(
                    DUPLICATE, f"`{group}` is both a parameter and a group (of `{name}`)",
                    first[name], notes=(f"`{group}` is defined at {ch.at(first[group])}",),
                    help="rename one of them",
                )  # fmt: skip
                break


def _resolve_conditions(ch: Checker, space: Space) -> None:
    by_name = {p.name: p for p in space.params}
    categorical = [p.name for p in space.params if p.domain in T.CATEGORICAL]
    resolved: dict[int, list[Any] | None] = {}
    always: dict[int, tuple[A.Condition, str, list[str]]] = {}
    for p in space.params:
        c = p.cond
        if c is None:
            continue
        names = (p.cond_prefix + c.param, c.param)
        target = next((n for n in names if n in by_name or n in space.constants), None)
        if target is None and any(n in space.invalid for n in names):
            continue  # its domain's error is reported: the parameter is not unknown
        if target is None:
            others = [n for n in categorical if n != p.name]  # not the parameter under the condition
            ch.error(
                CONDITION, f"condition on unknown parameter `{c.param}`", c.param_span,
                help=did_you_mean(c.param, others)
                or (f"conditions can test {one_of(others)}" if others else "add a `choice` parameter to test"),
            )  # fmt: skip
            continue
        parent = by_name.get(target)
        if parent is None or parent.domain not in T.CATEGORICAL:
            what = "a constant" if parent is None else f"a `{parent.domain}` parameter"
            ch.error(
                CONDITION, f"condition tests `{target}`, which is {what}", c.param_span,
                help="conditions test `choice` or `grid` parameters",
            )  # fmt: skip
            continue
        if parent is p:
            ch.error(CONDITION, f"`{p.name}` cannot depend on itself", c.param_span)
            continue
        if id(c) not in resolved:  # an `if` block's settings share one condition: check it once
            resolved[id(c)] = _condition_values(ch, c, target, parent)
        values = resolved[id(c)]
        if values is not None and parent.cond is None and _every_value(values, parent):
            # in every trial: no condition, so that every searcher takes it and models it
            always.setdefault(id(c), (c, target, []))[2].append(p.name)
            p.cond = None  # unconditional from here on (a cond without condition marks an error)
        elif values is not None:
            p.condition = {"param": target, "values": values}
    for c, target, names in always.values():  # one warning for an `if` block
        which = " and ".join(f"`{n}`" for n in names)
        ch.warn(WARN_ALWAYS, f"the condition holds for every value of `{target}`: {which} "
                             f"{'is' if len(names) == 1 else 'are'} in every trial", c.span,
                help="remove the condition")  # fmt: skip
    _check_cycles(ch, space)
    _parents_first(space)


def _every_value(values: list[Any], parent: Param) -> bool:
    """Whether `values` are all those of `parent`, of two or more (a choice narrowed to one
    value keeps the conditions written for its others)."""
    cats = parent.args.get("categories", parent.args.get("values", []))
    return len(cats) > 1 and {typed_key(v) for v in values} == {typed_key(v) for v in cats}


def _condition_values(ch: Checker, c: A.Condition, target: str, parent: Param) -> list[Any] | None:
    """The values `c` tests, each one `parent` can take, none twice; None after an error."""
    cats = parent.args.get("categories", parent.args.get("values", []))
    if not c.values:
        ch.error(CONDITION, "the condition lists no values, so it never holds", c.span,
                 help=f"list the values of `{target}` it needs, e.g. `if {c.param} in [{_show(cats[0])}]`"
                 if cats else "remove the condition")  # fmt: skip
        return None
    keys = {typed_key(v) for v in cats}
    values, ok = [], True
    seen: dict[tuple[str, str], A.Span | None] = {}
    for node in c.values:
        try:
            value = K.space_value(node)
        except K.Invalid as exc:
            ch.error(TYPE, f"condition value {exc.msg}", node.span, help=exc.help)
            ok = False
            continue
        tk = typed_key(value)
        if tk not in keys:
            words = [str(v) for v in cats if isinstance(v, str)]
            hint = did_you_mean(str(value), words) if isinstance(value, str) else None
            ch.error(
                CONDITION, f"`{target}` never takes {K.describe(node)}", node.span,
                help=hint or f"`{target}` takes {one_of((_show(v) for v in cats), limit=10)}",
            )  # fmt: skip
            ok = False
        elif tk in seen:
            ch.error(DUPLICATE, f"the condition lists {K.describe(node)} twice", node.span,
                     notes=(f"first at {ch.at(seen[tk])}",), help="remove the repeated value")  # fmt: skip
            ok = False
        else:
            seen[tk] = node.span
            values.append(value)
    return values if ok else None


def _check_cycles(ch: Checker, space: Space) -> None:
    by_name = {p.name: p for p in space.params}
    for p in space.params:
        seen = {p.name}
        cur = p
        while cur.condition is not None:
            nxt = by_name[cur.condition["param"]]
            if nxt.name in seen:
                ch.error(
                    CONDITION, f"conditions of `{p.name}` form a cycle", p.cond.span if p.cond else p.span,
                    help="a parameter cannot (indirectly) depend on itself",
                )  # fmt: skip
                p.condition = None
                break
            seen.add(nxt.name)
            cur = nxt


def _parents_first(space: Space) -> None:
    """A condition may name a parameter written further down; the runtime samples in plan
    order and needs the parent's value first (docs/plan.md). Otherwise source order."""
    placed: set[str] = set()
    ordered: list[Param] = []
    while len(ordered) < len(space.params):  # no cycles are left, so each pass places one
        for p in space.params:
            if p.name not in placed and (p.condition is None or p.condition["param"] in placed):
                ordered.append(p)
                placed.add(p.name)
                break
    space.params[:] = ordered


def _show(v: Any) -> str:
    import json

    return json.dumps(v)
