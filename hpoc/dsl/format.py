"""The canonical .hpo layout (`hpoc fmt`): AST → text, keeping comments.

Two-space indents, one blank line between top-level sections, inside a block one blank
line where the author left any (it also ends an `=`-aligned run of one-line settings),
values inline when they fit in 100 columns. Numbers keep their spelling (`1e-5`).
Formatting is idempotent and never changes the plan.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hpoc.dsl import ast as A
from hpoc.errors import cells

WIDTH = 100
INDENT = "  "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = {"if", "in", "true", "false", "null", "objective", "minimize", "maximize"}


def format_study(study: A.Study) -> str:
    """Canonical text of a study (ends with one newline)."""
    chunks = [_item(item, 0) for item in study.items]
    text = "\n\n".join(chunks)
    if study.end_comments:
        text += ("\n\n" if text else "") + "\n".join(study.end_comments)
    return text + "\n" if text else ""


def format_setting(key: str, value: Any) -> str:
    """`key = value` for a plain Python value, as a spec writes it (one line)."""
    return f"{_name(key)} = {_flat(A.from_python(value))}"


def _name(key: str) -> str:
    """A key as written: bare when every dotted part is a plain name, else quoted."""
    parts = key.split(".")
    if all(_NAME.fullmatch(p) and p not in _KEYWORDS for p in parts):
        return key
    return _string(key)


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _lead(comments: tuple[str, ...], pad: str) -> list[str]:
    return [pad + c if c else "" for c in comments]  # "": a blank line the author left


def _item(item: A.Item, depth: int) -> str:
    pad = INDENT * depth
    if isinstance(item, A.Setting):
        lines = _lead(item.comments, pad)
        lines.append(pad + _setting(item, len(_name(item.key)), depth))
        return "\n".join(lines)
    if isinstance(item, A.Objective):
        lines = _lead(item.comments, pad)
        goals = [f"{'minimize' if g.mode == 'min' else 'maximize'} {_metric(g.metric)}" for g in item.goals]
        if len(goals) == 1 and not item.braced:
            lines.append(f"{pad}objective {goals[0]}{_trail(item.trailing)}")
        else:
            lines.append(f"{pad}objective {{{_trail(item.trailing)}")
            for g, text in zip(item.goals, goals):
                lines += _lead(g.comments, pad + INDENT) + [pad + INDENT + text + _trail(g.trailing)]
            lines += _lead(item.end_comments, pad + INDENT)
            lines.append(pad + "}" + _trail(item.closing))
        return "\n".join(lines)
    if isinstance(item, A.IfBlock):
        head = f"if {_condition(item.condition)}"
        return _braced(head, item.body, item, depth)
    head = item.kind
    if item.label is not None:
        head += " " + _value(item.label, depth)
    if item.body is None:
        return "\n".join(_lead(item.comments, pad) + [pad + head + _trail(item.trailing)])
    return _braced(head, item.body, item, depth)


def _braced(head: str, body: tuple[A.Item, ...], item: A.Block | A.IfBlock, depth: int) -> str:
    pad = INDENT * depth
    lines = _lead(item.comments, pad)
    if not body and not item.end_comments:
        lines.append(f"{pad}{head} {{}}{_trail(item.trailing or item.closing)}")
        return "\n".join(lines)
    lines.append(f"{pad}{head} {{{_trail(item.trailing)}")
    lines += _body(body, depth + 1)
    lines += _lead(item.end_comments, pad + INDENT)
    lines.append(pad + "}" + _trail(item.closing))
    return "\n".join(lines)


def _body(items: tuple[A.Item, ...], depth: int) -> list[str]:
    """Items of a block; `=` aligned across each run of one-line settings."""
    pad = INDENT * depth
    out: list[str] = []
    run: list[A.Setting] = []

    def flush() -> None:
        width = max((cells(_name(s.key)) for s in run), default=0)
        for s in run:
            out.extend(_lead(s.comments, pad))
            out.append(pad + _setting(s, width, depth))
        run.clear()

    for n, item in enumerate(items):
        if n and getattr(item, "blank_before", False):  # the author's groups stay apart
            flush()
            out.append("")
        if isinstance(item, A.Setting):
            run.append(item)
            continue
        flush()
        out.append(_item(item, depth))
    flush()
    return out


def _setting(s: A.Setting, width: int, depth: int) -> str:
    key = _name(s.key)
    key += " " * (width - cells(key))  # aligned as an editor shows it
    cond = f" if {_condition(s.condition)}" if s.condition is not None else ""
    prefix = len(INDENT * depth) + cells(key) + 3
    if s.verbatim is not None:  # comments inside the value: as written, re-indented
        value = "\n".join([s.verbatim[0]] + [INDENT * depth + v if v else v for v in s.verbatim[1:]])
    else:
        value = _value(s.value, depth, prefix, len(cond))
    return f"{key} = {value}{cond}{_trail(s.trailing)}"


def _trail(comment: str | None) -> str:
    return f"  {comment}" if comment else ""


def _metric(name: str) -> str:
    return _name(name)


def format_condition(c: A.Condition) -> str:
    """`opt == "sgd"`, `opt in ["sgd", "rmsprop"]`: a condition as the formatter writes it."""
    return _condition(c)


def _condition(c: A.Condition) -> str:
    if c.op == "in":
        return f"{_name(c.param)} in [{', '.join(_value(v, 0) for v in c.values)}]"
    return f"{_name(c.param)} == {_value(c.values[0], 0)}"


def _number(n: A.Number) -> str:
    if n.text is not None:
        return n.text
    if isinstance(n.value, bool):
        raise TypeError("a bool is not a Number")
    return repr(n.value)


def _value(v: A.Value, depth: int, used: int = 0, tail: int = 0) -> str:
    """`v` inline when it fits in WIDTH after `used` columns, else spread over lines."""
    flat = _flat(v)
    if "\n" not in flat and used + len(flat) + tail <= WIDTH:
        return flat
    pad, inner = INDENT * depth, INDENT * (depth + 1)
    if isinstance(v, A.List) and v.items:
        rows = [inner + _value(i, depth + 1, len(inner)) + "," for i in v.items]
        return "[\n" + "\n".join(rows) + "\n" + pad + "]"
    if isinstance(v, A.Map) and v.entries:
        rows = [inner + _pair(p, depth + 1) for p in v.entries]
        return "{\n" + "\n".join(rows) + "\n" + pad + "}"
    if isinstance(v, A.Call) and (v.args or v.kwargs):
        rows = [inner + _value(a, depth + 1, len(inner)) + "," for a in v.args]
        rows += [inner + _pair(p, depth + 1) + "," for p in v.kwargs]
        return f"{v.func}(\n" + "\n".join(rows) + "\n" + pad + ")"
    return flat


def _pair(p: A.Pair, depth: int) -> str:
    key = _name(p.key)
    return f"{key} = {_value(p.value, depth, len(INDENT * depth) + len(key) + 3)}"


def _flat(v: A.Value) -> str:
    if isinstance(v, A.String):
        return _string(v.value)
    if isinstance(v, A.Number):
        return _number(v)
    if isinstance(v, A.Bool):
        return "true" if v.value else "false"
    if isinstance(v, A.Null):
        return "null"
    if isinstance(v, A.Duration):
        return v.text
    if isinstance(v, (A.Size, A.Clock)):
        return v.text
    if isinstance(v, A.Ref):
        return v.path
    if isinstance(v, A.List):
        return "[" + ", ".join(_flat(i) for i in v.items) + "]"
    if isinstance(v, A.Map):
        if not v.entries:
            return "{}"
        return "{ " + ", ".join(f"{_name(p.key)} = {_flat(p.value)}" for p in v.entries) + " }"
    if isinstance(v, A.Call):
        args = [_flat(a) for a in v.args] + [f"{p.key} = {_flat(p.value)}" for p in v.kwargs]
        return f"{v.func}({', '.join(args)})"
    raise TypeError(f"cannot format {type(v).__name__}")
