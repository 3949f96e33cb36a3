"""A Python class written as a YAML object, in either style the configs hpoc reads use:
hydra's `_target_` with the arguments beside it (`{_target_: pkg.Class, x: 1}`), or
jsonargparse's `class_path` with them under `init_args` (`{class_path: pkg.Class,
init_args: {x: 1}}`), where anything else beside `class_path` is an error, as jsonargparse
has it. itwinai's pipeline steps (hpoc/yaml/itwinai.py) say that in their own words (an
argument beside `class_path` "belongs in `init_args`") and pass those keys as `besides`."""

from __future__ import annotations

from hpoc.dsl import ast as A
from hpoc.yaml.build import DUPLICATE, UNKNOWN, Builder
from hpoc.yaml.nodes import YMap, YNode

KEYS = ("_target_", "class_path")


def class_key(m: YMap) -> str | None:
    """The key that names `m`'s class, None when it names none."""
    return next((k for k in KEYS if k in m.index), None)


def class_args(b: Builder, m: YMap, what: str,
               besides: tuple[str, ...] = ()) -> list[tuple[str, A.Span, YNode]] | None:
    """The arguments of the class `m` names (class_key: not None), as (key, span, value);
    keys in `besides` are the caller's to read. `what` names `m` in messages, as written
    (with its backticks: "`stop`", "step 2 of `pipeline`"). None when they cannot be told (said): both
    keys, or `init_args` not a mapping."""
    key = class_key(m)
    if all(k in m.index for k in KEYS):
        b.error(DUPLICATE, f"{what} names its class twice, with `_target_` and `class_path`",
                m.key_span("class_path"), help="keep one of them")
        return None
    entries = [e for e in m.entries if e[0] not in (key, *besides)]
    if key == "_target_":
        for k, ks, _ in entries:
            if k == "init_args":
                b.error(UNKNOWN, f"`init_args` beside `_target_` in {what}", ks,
                        help="beside `_target_` the class's arguments stand on their own (`init_args` "
                             "goes with `class_path`)")
                return None
        return entries
    for k, ks, _ in entries:
        if k != "init_args":
            b.error(UNKNOWN, f"unknown key `{k}` beside `class_path` in {what}", ks,
                    help="put the class's arguments under `init_args`")
    args = b.mapping(m.get("init_args"), "`init_args`")
    if args is None and b.given(m.get("init_args")) is not None:
        return None
    return list(args.entries) if args is not None else []
