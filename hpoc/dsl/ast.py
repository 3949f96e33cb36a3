"""Syntax tree of a .hpo study: frozen dataclasses, each with an optional `span`.

The tree mirrors the generic syntax (settings, blocks, `if` clauses, `objective`),
not the meaning of sections: that is the checker's job. Nodes can be built from
Python without spans (the YAML front end does), and `from_python` turns plain values
into value nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Span:
    """A source range; lines and columns count from 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Node:
    """Base of all syntax nodes."""

    span: Span | None


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True)
class String(Node):
    """A double-quoted string literal."""

    value: str
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Number(Node):
    """An int or float literal; `text` keeps the spelling (`1e-5`) for the formatter."""

    value: int | float
    text: str | None = field(default=None, compare=False)
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Bool(Node):
    """`true` or `false`."""

    value: bool
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Null(Node):
    """`null`: the setting is explicitly unset."""

    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Duration(Node):
    """A duration such as `90m`, `2h` or `1h30m`, in seconds."""

    seconds: float
    text: str
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Size(Node):
    """A memory size in SLURM notation, e.g. `64G`."""

    text: str
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Clock(Node):
    """A SLURM walltime written bare, e.g. `02:00:00` or `1-12:00`."""

    text: str
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Ref(Node):
    """A bare name or import path: `ddp`, `optimizer.name`, `data:Getter`."""

    path: str
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class List(Node):
    """`[a, b, c]`."""

    items: tuple[Value, ...]
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Pair(Node):
    """`key = value` inside a map or a call's keyword arguments."""

    key: str
    value: Value
    key_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Map(Node):
    """`{ key = value, ... }` in value position."""

    entries: tuple[Pair, ...]
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Call(Node):
    """`func(args, key = value)`: a search domain or a pipeline step with arguments."""

    func: str
    args: tuple[Value, ...] = ()
    kwargs: tuple[Pair, ...] = ()
    func_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)


Value = Union[String, Number, Bool, Null, Duration, Size, Clock, Ref, List, Map, Call]


# ------------------------------------------------------------------------------ items


@dataclass(frozen=True)
class Condition(Node):
    """`param == value` or `param in [values]`: when a search parameter exists."""

    param: str
    values: tuple[Value, ...]
    op: str = "=="  # "==" or "in"
    param_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Setting(Node):
    """`key = value [if condition]`."""

    key: str
    value: Value
    condition: Condition | None = None
    comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    trailing: str | None = field(default=None, compare=False, kw_only=True)
    blank_before: bool = field(default=False, compare=False, kw_only=True)  # kept by `hpoc fmt`
    # The value's source lines, when comments sit inside it: `hpoc fmt` keeps them in place.
    verbatim: tuple[str, ...] | None = field(default=None, compare=False, kw_only=True)
    key_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Block(Node):
    """`kind [label] { body }`; `body` is None for the bare form `search random`."""

    kind: str
    label: String | Ref | None = None
    body: tuple[Item, ...] | None = ()
    comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    trailing: str | None = field(default=None, compare=False, kw_only=True)
    blank_before: bool = field(default=False, compare=False, kw_only=True)  # kept by `hpoc fmt`
    end_comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    closing: str | None = field(default=None, compare=False, kw_only=True)  # a comment after `}`
    kind_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)

    @property
    def label_text(self) -> str | None:
        if isinstance(self.label, String):
            return self.label.value
        if isinstance(self.label, Ref):
            return self.label.path
        return None


@dataclass(frozen=True)
class IfBlock(Node):
    """`if condition { settings }`: every setting inside shares the condition."""

    condition: Condition
    body: tuple[Item, ...]
    comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    trailing: str | None = field(default=None, compare=False, kw_only=True)
    blank_before: bool = field(default=False, compare=False, kw_only=True)  # kept by `hpoc fmt`
    end_comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    closing: str | None = field(default=None, compare=False, kw_only=True)  # a comment after `}`
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Goal(Node):
    """`minimize metric` or `maximize metric`; `mode` is "min" or "max"."""

    mode: str
    metric: str
    comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    trailing: str | None = field(default=None, compare=False, kw_only=True)
    metric_span: Span | None = field(default=None, compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Objective(Node):
    """`objective minimize m` or `objective { ... }` with several goals."""

    goals: tuple[Goal, ...]
    braced: bool = False
    comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    trailing: str | None = field(default=None, compare=False, kw_only=True)
    blank_before: bool = field(default=False, compare=False, kw_only=True)  # kept by `hpoc fmt`
    end_comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    closing: str | None = field(default=None, compare=False, kw_only=True)  # a comment after `}`
    span: Span | None = field(default=None, compare=False, kw_only=True)


Item = Union[Setting, Block, IfBlock, Objective]


@dataclass(frozen=True)
class Study(Node):
    """A whole .hpo file: top-level items in source order."""

    items: tuple[Item, ...]
    file: str = field(default="<study>", compare=False)
    end_comments: tuple[str, ...] = field(default=(), compare=False, kw_only=True)
    span: Span | None = field(default=None, compare=False, kw_only=True)

    def blocks(self, kind: str) -> list[Block]:
        return [i for i in self.items if isinstance(i, Block) and i.kind == kind]


# ---------------------------------------------------------------------------- helpers


def from_python(value: Any) -> Value:
    """Value node for a plain Python value (str, int, float, bool, None, list, dict)."""
    if value is None:
        return Null()
    if isinstance(value, bool):
        return Bool(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written in a .hpo file")
        return Number(value)
    if isinstance(value, str):
        return String(value)
    if isinstance(value, (list, tuple)):
        return List(tuple(from_python(v) for v in value))
    if isinstance(value, dict):
        return Map(tuple(Pair(str(k), from_python(v)) for k, v in value.items()))
    if isinstance(value, Node):
        return value  # type: ignore[return-value]
    raise TypeError(f"cannot express {type(value).__name__} as a .hpo value")


def to_python(value: Value) -> Any:
    """Plain Python value of a literal node (refs become their path, calls fail)."""
    if isinstance(value, (String, Number, Bool)):
        return value.value
    if isinstance(value, Null):
        return None
    if isinstance(value, (Size, Clock)):
        return value.text
    if isinstance(value, Duration):
        return value.seconds
    if isinstance(value, Ref):
        return value.path
    if isinstance(value, List):
        return [to_python(v) for v in value.items]
    if isinstance(value, Map):
        return {p.key: to_python(p.value) for p in value.entries}
    raise TypeError(f"{type(value).__name__} is not a literal")


def dump(node: Any, indent: int = 0) -> str:
    """Readable tree dump (for `hpoc compile --emit ast` and golden tests); no spans."""
    pad = "  " * indent
    if isinstance(node, tuple):
        return "\n".join(dump(n, indent) for n in node)
    if not isinstance(node, Node):
        return pad + repr(node)
    fields = [
        (k, v)
        for k, v in vars(node).items()
        if not k.endswith("span")
        and k not in ("comments", "trailing", "end_comments", "closing", "verbatim", "blank_before")
        and not (k == "text" and isinstance(node, Number))
    ]
    simple = all(not isinstance(v, (Node, tuple)) or v == () for _, v in fields)
    if simple:
        inner = ", ".join(f"{k}={v!r}" for k, v in fields)
        return f"{pad}{type(node).__name__}({inner})"
    lines = [f"{pad}{type(node).__name__}"]
    for k, v in fields:
        if isinstance(v, (Node, tuple)) and v != ():
            lines.append(f"{pad}  {k}:")
            lines.append(dump(v, indent + 2))
        else:
            lines.append(f"{pad}  {k}={v!r}")
    return "\n".join(lines)
