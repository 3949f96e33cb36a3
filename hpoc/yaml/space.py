"""`train_loop_config` → the `space` section.

An entry is a search domain when it is a mapping with `type` (or Ray's `{grid_search: [...]}`);
anything else is a constant passed to every trial. Both vocabularies are accepted: itwinai's tutorial names
(`options`, `min`, `max`, `stddev`, `grid_search`) and Ray Tune's own argument names
(`categories`, `lower`, `upper`, `q`, `mean`, `sd`, `base`, `values`), for every Ray Tune
domain. Nested mappings without `type` that hold domains become dotted names
(`optimizer.lr`), which trials see as nested dicts, as Ray's nested param_space does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpoc.compiler import tables as T
from hpoc.compiler.map_reads import reads_as_map
from hpoc.dsl import ast as A
from hpoc.errors import did_you_mean, one_of
from hpoc.yaml.build import DUPLICATE, MISSING, SPACE, TYPE, UNKNOWN, UNTYPED, VALUE, Builder
from hpoc.yaml.nodes import YMap, YNode, YScalar, YSeq, describe

TYPE_ALIASES = {"grid_search": "grid", "sample": None, "sample_from": None, "function": None}
ARG_ALIASES = {"min": "lower", "max": "upper", "low": "lower", "high": "upper",
               "stddev": "sd", "std": "sd"}
LIST_KEYS = ("categories", "options", "values")


@dataclass
class Param:
    """What the rest of the translation needs to know about a searched parameter."""

    name: str
    domain: str
    span: A.Span


def read_space(b: Builder, node: YMap | None) -> tuple[list[A.Setting], list[Param]]:
    settings: list[A.Setting] = []
    params: list[Param] = []
    if node is not None:
        _walk(b, node, "", settings, params)
    return settings, params


def _walk(b: Builder, node: YMap, prefix: str, settings: list[A.Setting], params: list[Param]) -> None:
    for key, kspan, value in node.entries:
        name = prefix + key
        if "." in key:  # hpoc nests dotted names; Ray hands the trainer this key as it is
            b.error(VALUE, f"`{key}` holds a `.`: the trial's config would nest it "
                           f"(config[\"{key.split('.')[0]}\"][...]), where Ray passes config[\"{key}\"]",
                    kspan, help=f"nest it as a mapping and read it nested, or rename it "
                                f"(`{key.replace('.', '_')}`)")
            continue
        value = hydra_domain(value)
        typo = _misspelt_type(value) or _misspelt_grid(value)
        if isinstance(value, YMap) and "type" in value.index:
            call = read_domain(b, value, name)
            if call is not None:
                settings.append(A.Setting(name, call, key_span=kspan, span=kspan))
                params.append(Param(name, call.func, kspan))
        elif typo is not None:
            b.error(UNKNOWN, f"unknown key `{typo[0]}` in `{name}`", typo[1],
                    notes=(f"without `{typo[2]}`, `{name}` is not searched: every trial would get this mapping",),
                    help=f"did you mean `{typo[2]}`?")
        elif isinstance(value, YMap) and value.entries and _has_domain(value):
            _walk(b, value, name + ".", settings, params)
        elif _python_domain(b, value, name):
            continue
        else:
            _untyped_domain(b, value, name, kspan)
            settings.append(A.Setting(name, b.value(value), key_span=kspan, span=kspan))


# `tune.choice([32, 64])` written as a value: a string to YAML, Python code to the user.
_PY_DOMAIN = re.compile(r"\s*(?:ray\.)?(?:tune\.)?(\w+)\s*\((.*)\)\s*", re.S)


def _python_domain(b: Builder, node: YNode, name: str, mutated: bool = False) -> bool:
    """An error for a Ray Tune call written as a string (it would reach trials as that string)."""
    if not (isinstance(node, YScalar) and isinstance(node.value, str)):
        return False
    m = _PY_DOMAIN.fullmatch(node.value)
    text = node.value.strip()
    func = m.group(1).lower() if m else ""
    if not m or not (text.startswith(("tune.", "ray.tune.")) or func in T.DOMAINS or func in TYPE_ALIASES):
        return False
    func = TYPE_ALIASES.get(func, func) or "sample_from"
    key = name.rsplit(".", 1)[-1]  # the key as written where it is nested
    if func in T.CATEGORICAL:  # tune.choice takes the list
        hint = f"`{key}: {domain_map(func, [m.group(2).strip()])}`"
    elif func in T.DOMAINS:
        hint = f"`{key}: {domain_map(func, [a.strip() for a in m.group(2).split(',')])}`"
    else:
        hint = "a domain such as `{type: choice, categories: [...]}`: functions need Python code"
    fate = (f"PBT cannot mutate `{name}` with a string" if mutated else
            f"`{name}` would be this string in every trial, not searched")
    b.error(SPACE, f"`{text}` is Python code, which a config cannot hold: {fate}", node.span, help=f"write {hint}")
    return True


def yaml_type(func: str) -> str:
    """The `type` a config writes for the .hpo domain `func` (Ray's name for `grid`)."""
    return "grid_search" if func == "grid" else func


def domain_map(func: str, args: list[str]) -> str:
    """A Ray Tune domain as a config writes it: `{type: qrandint, lower: 16, upper: 64, q: 16}`.
    `args` as written: a categorical's one list (`[a, b]`); a keyword argument (`q=8`) keeps
    its name; one written as its parameter's name (`uniform(lower, upper)`) stands for `...`."""
    if func in T.CATEGORICAL:
        key = "categories" if func == "choice" else "values"
        return f"{{type: {yaml_type(func)}, {key}: {args[0] if args else '[]'}}}"
    names = [n for n, _, _ in T.DOMAINS[func]]
    pairs = "".join(f", {a.split('=', 1)[0].strip()}: {a.split('=', 1)[1].strip()}" if "=" in a
                    else f", {n}: {'...' if a == n else a}" for n, a in zip(names, args) if a)
    return f"{{type: {func}{pairs}}}"


def hydra_domain(node: YNode) -> YNode:
    """`{_target_: ray.tune.choice, categories: [...]}` (hydra, as newer itwinai writes a Ray
    domain) and `{grid_search: [...]}` (what `tune.grid_search` returns, which Ray's
    param_space enumerates) as `{type: ..., ...}`; any other node as it is."""
    if isinstance(node, YMap) and node.keys() == ["grid_search"]:
        (_, kspan, values), = node.entries
        return YMap((("type", kspan, YScalar("grid_search", "grid_search", kspan)), ("values", kspan, values)),
                    node.span, {"type": 0, "values": 1})
    target = node.get("_target_") if isinstance(node, YMap) and "type" not in node.index else None
    if not (isinstance(target, YScalar) and isinstance(target.value, str)):
        return node
    m = re.fullmatch(r"(?:ray\.)?tune(?:\.search\.sample)?\.(\w+)", target.value.strip())
    if m is None:
        return node
    entries = tuple(("type", ks, YScalar(m.group(1), m.group(1), target.span)) if k == "_target_" else (k, ks, v)
                    for k, ks, v in node.entries)  # type: ignore[union-attr]
    return YMap(entries, node.span, {k: i for i, (k, _, _) in enumerate(entries)})  # type: ignore[union-attr]


# Every argument a domain mapping may hold besides `type`.
_DOMAIN_ARGS = {a for sig in T.DOMAINS.values() for a, _, _ in sig} | set(ARG_ALIASES) | set(LIST_KEYS)


def _misspelt_type(node: YNode) -> tuple[str, A.Span, str] | None:
    """(key, span, "type") of a misspelt `type` (`tpye`, `Type`) in a mapping whose other keys are
    all a domain's arguments: read as a constant, it would reach trials as a dict."""
    if not isinstance(node, YMap) or "type" in node.index:
        return None
    others = [k for k in node.keys() if k not in _DOMAIN_ARGS]
    if len(others) != 1 or len(node.entries) < 2 or did_you_mean(others[0].lower(), ["type"]) is None:
        return None
    return others[0], node.key_span(others[0]), "type"  # type: ignore[return-value]


def _misspelt_grid(node: YNode) -> tuple[str, A.Span, str] | None:
    """(key, span, "grid_search") of a misspelt `{grid_search: [...]}` (`grid_serach`): read
    as a constant, it would reach trials as a dict."""
    if not (isinstance(node, YMap) and len(node.entries) == 1 and isinstance(node.entries[0][2], YSeq)):
        return None
    import difflib

    key = node.entries[0][0]
    # only a near spelling: `{grid_size: [7, 7]}`, `{grid: [4, 4]}` are a model's constants
    near = difflib.SequenceMatcher(None, key.lower().replace("-", "_"), "grid_search").ratio() >= 0.85
    if key == "grid_search" or not near:
        return None
    return key, node.entries[0][1], "grid_search"


# A mapping of only a domain's arguments lacks its `type` (forgotten): the type to add. Not
# `{mean, std}`: far more often a normalisation's constants than a `randn` without its type.
_UNTYPED = ((("options", "categories"), "`type: choice`"), (("values",), "`type: grid_search`"),
            (("min", "max", "lower", "upper", "low", "high"), "`type: uniform` (or `loguniform`, `randint`, ...)"))
_LISTED = {"options", "categories", "values"}


def _untyped_domain(b: Builder, node: YNode, name: str, span: A.Span) -> None:
    """A warning for `{min: 1e-5, max: 1e-3}` with no `type`, nested in a constant too: every
    trial gets the dict. Not for one the trainer reads by its keys (`["min"]`): data on
    purpose; nor said as a mistake, as such data may be meant where the source does not show it."""
    if not isinstance(node, YMap) or not node.entries:
        return
    if any(k not in _DOMAIN_ARGS for k in node.keys()):
        for key, kspan, value in node.entries:
            _untyped_domain(b, value, f"{name}.{key}", kspan)
        return
    fix = next((t for keys, t in _UNTYPED if any(k in node.index for k in keys)), None)
    # a domain's bounds are numbers, its values a list: `{min: [0, 0], max: [1, 1]}` is data
    shaped = all(isinstance(v, YSeq) if k in _LISTED else
                 isinstance(v, YScalar) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
                 for k, _, v in node.entries)
    if fix is not None and shaped and not reads_as_map(b.trainer or "", b.workdir, name, node.keys()):
        b.warn(UNTYPED, f"`{name}` is a constant mapping: every trial gets it as written; without a `type` "
                        "it is not searched", span,
               help=f"to search it, add {fix}; if the trainer reads it as a mapping, it is right as written")


def _has_domain(node: YNode) -> bool:
    node = hydra_domain(node)
    if isinstance(node, YMap):
        return "type" in node.index or (_misspelt_type(node) or _misspelt_grid(node)) is not None or \
            any(_has_domain(v) for _, _, v in node.entries)
    # a nested `tune.choice(...)` string: walked, so that it is reported
    return isinstance(node, YScalar) and isinstance(node.value, str) and \
        node.value.strip().startswith(("tune.", "ray.tune.")) and _PY_DOMAIN.fullmatch(node.value) is not None


def read_domain(b: Builder, node: YMap, name: str) -> A.Call | None:
    """`{type: uniform, min: 1e-5, max: 1e-3}` → `uniform(1e-5, 1e-3)` (spans kept)."""
    type_node = node.get("type")
    raw = b.word(type_node, f"`type` of `{name}`")
    if raw is None or type_node is None:
        return None
    func = raw.strip().lower()
    func = TYPE_ALIASES.get(func, func)  # type: ignore[assignment]
    if func is None:
        b.error(SPACE, f"`{raw}` cannot be written in a config file (`{name}`)", type_node.span,
                help="it needs Python code; use a domain such as `choice` or `uniform`")
        return None
    if func not in T.DOMAINS:
        names = list(T.DOMAINS) + ["grid_search"]
        b.error(SPACE, f"unknown search domain `{raw}` for `{name}`", type_node.span,
                help=did_you_mean(func, names) or f"a mapping with `type` is a search domain: {one_of(names)}")
        return None
    if func in T.CATEGORICAL:
        return _categorical(b, node, name, func, type_node)
    return _numeric(b, node, name, func, type_node)


def _categorical(b: Builder, node: YMap, name: str, func: str, type_node: YNode) -> A.Call | None:
    given = [(k, ks, v) for k, ks, v in node.entries if k in LIST_KEYS]
    unknown = [(k, ks) for k, ks, _ in node.entries if k != "type" and k not in LIST_KEYS]
    for key, kspan in unknown:
        b.error(SPACE, f"`{func}` has no argument `{key}` (`{name}`)", kspan,
                help=did_you_mean(key, list(LIST_KEYS))
                or f"list the values under `{'categories' if func == 'choice' else 'values'}`")
    if not given and unknown:  # a misspelt `options`: its error says it all
        return None
    if not given:
        b.error(MISSING, f"`{func}` needs its values for `{name}`", type_node.span,
                help=f"add `{'categories' if func == 'choice' else 'values'}: [a, b, c]`")
        return None
    if len(given) > 1:
        b.error(DUPLICATE, f"`{name}` lists its values twice (`{given[0][0]}` and `{given[1][0]}`)",
                given[1][1], help="keep one of them")
        return None
    key, kspan, values = given[0]
    # The checker's hints at this domain (`grid` needs a value: write `{type: grid, values: ...}`)
    # say what the config wrote: `grid_search`, `options`.
    renamed = [("categories" if func == "choice" else "values", key)]
    if func == "grid" and isinstance(type_node, YScalar) and str(type_node.value).strip().lower() == "grid_search":
        renamed.append(("grid", "grid_search"))
    b.names.extend((at, hpo, yml) for at in (node.span, type_node.span, values.span)
                   for hpo, yml in renamed if hpo != yml)
    if not isinstance(values, YSeq):
        b.error(TYPE, f"values of `{name}` must be a list, not {describe(values)}", values.span,
                help="write `[a, b, c]`")
        return None
    return A.Call(func, tuple(b.value(v) for v in values.items), (),
                  func_span=type_node.span, span=node.span)


def _numeric(b: Builder, node: YMap, name: str, func: str, type_node: YNode) -> A.Call | None:
    sig = T.DOMAINS[func]
    names = [n for n, _, _ in sig]
    given: dict[str, tuple[str, YNode]] = {}
    ok = True
    for key, kspan, value in node.entries:
        if key == "type":
            continue
        arg = ARG_ALIASES.get(key, key)
        if arg not in names:
            accepted = names + [a for a, t in ARG_ALIASES.items() if t in names]
            b.error(SPACE, f"`{func}` has no argument `{key}` (`{name}`)", kspan,
                    help=did_you_mean(key, accepted) or f"`{func}` takes {one_of(names)}")
            ok = False
            continue
        if arg in given:
            b.error(DUPLICATE, f"`{arg}` is given twice to `{name}` (`{given[arg][0]}` and `{key}`)", kspan,
                    help="keep one of them")
            ok = False
            continue
        given[arg] = (key, b.number_from_string(value))
    for arg, _, default in sig:
        if ok and arg not in given and default is ...:  # after a misspelt one, this is noise
            alias = next((a for a, t in ARG_ALIASES.items() if t == arg and a in ("min", "max", "stddev")), None)
            also = f" (or `{alias}`)" if alias else ""
            b.error(MISSING, f"`{func}` needs `{arg}`{also} for `{name}`", type_node.span,
                    help=f"`{func}` takes {one_of(names)}")
            ok = False
    if not ok:
        return None
    # `min`/`max`/`stddev` are `lower`/`upper`/`sd` to the checker: its messages at any of
    # this domain's values (`lower` must be less than `upper`) name them as written.
    renamed = [(arg, key) for arg, (key, _) in given.items() if key != arg]
    for at in [node.span, type_node.span] + [v.span for _, v in given.values()]:
        b.names.extend((at, arg, key) for arg, key in renamed)
    args: list[A.Value] = []
    kwargs: list[A.Pair] = []
    for arg, _, default in sig:  # required arguments by position, optional ones by name
        if arg not in given:
            continue
        key, value = given[arg]
        v = b.value(value)
        if default is ... and not kwargs:
            args.append(v)
        else:
            kwargs.append(A.Pair(arg, v, key_span=value.span, span=value.span))
    return A.Call(func, tuple(args), tuple(kwargs), func_span=type_node.span, span=node.span)


def mutation_value(b: Builder, node: YNode, name: str) -> A.Value:
    """A PBT mutation: a list of values, or a domain mapping."""
    node = hydra_domain(node)
    if isinstance(node, YMap) and "type" in node.index:
        call = read_domain(b, node, name)
        if call is not None:
            return call
        return A.Null(span=node.span)
    if _python_domain(b, node, name, mutated=True):  # `"tune.uniform(1e-4, 1e-2)"`: the mapping to write instead
        return A.Null(span=node.span)
    return b.value(node)

