"""Helpers on a spec's values shared by the rule modules: finer spans, paths expanded as on
the login node, numbers as the user wrote them."""

from __future__ import annotations

import os
import re

from hpoc.compiler.check import VALUE, Checker
from hpoc.dsl import ast as A


def item_spans(block: A.Block | None, key: str) -> list[A.Span | None]:
    """Spans of the items of the list `key = [...]` in `block` (one span for a single value)."""
    value = setting_value(block, key)
    if value is None:
        return []
    return [i.span for i in value.items] if isinstance(value, A.List) else [value.span]


def setting_value(block: A.Block | None, key: str) -> A.Value | None:
    """The value node of `key = ...` in `block` (for spans finer than the setting's)."""
    for item in (block.body or ()) if block is not None else ():
        if isinstance(item, A.Setting) and item.key == key:
            return item.value
    return None


_VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def expand_vars(path: str) -> tuple[str, str | None]:
    """`path` with `~` and `$VARS` expanded as on this node, and the first `$VAR` left in it
    (one not set here: a directory named `$SCRATCH` is where nothing looks), or None."""
    expanded = os.path.expanduser(os.path.expandvars(path))
    left = _VAR.search(expanded)
    return expanded, left.group(0) if left else None


# What an empty path's help suggests, by the key that holds it.
_EXAMPLES = {"config": "ds_config.json", "image": "pytorch.sif", "python": ".venv/bin/python"}


def expand_path(ch: Checker, path: str, where: str) -> str | None:
    """`~` and `$VARS` expanded as on the login node (`$SCRATCH/hpo`); unset ones, unknown
    users and an empty path are errors."""
    key = where.rsplit('.', 1)[-1]
    if not path.strip():
        ch.error(VALUE, f"`{key}` is empty", ch.spans.get(where), help=f'write a path, e.g. "{_EXAMPLES.get(key, "results")}"')
        return None
    expanded, unset = expand_vars(path)
    if expanded.startswith("~"):  # expanduser keeps `~name/...` when there is no such user
        user = expanded[1:].split("/", 1)[0]
        ch.error(VALUE, f"`{key}` starts with `~{user}`, but there is no user `{user}` here",
                 ch.spans.get(where), help="write `~/...` for your home, or the path out")  # fmt: skip
        return None
    if unset:
        ch.error(VALUE, f"`{key}` uses `{unset}`, which is not set here",
                 ch.spans.get(where), help="set it before `hpoc compile`, or write the path out")  # fmt: skip
        return None
    return expanded


def fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
