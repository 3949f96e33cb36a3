"""Lark parse tree → the frozen `hpoc.dsl.ast` nodes, each with its source span.

Values are decoded here (string escapes, numbers, durations in seconds), and an `if`
written after a setting is merged into it. Lark is imported only when the first tree is
transformed, after `parse` has chosen how to import it.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, fail

_SURROGATE = re.compile("[\ud800-\udfff]")  # halves of a UTF-16 pair: no character alone
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[smhd])+")  # the grammar's DURATION
_NONZERO = re.compile(r"^-?0*[1-9]|^-?[0-9]*\.[0-9]*[1-9]")  # a mantissa that is not 0


def duration_seconds(text: str) -> int | float | None:
    """Seconds of a duration as .hpo writes it (`1h30m`); None when `text` is not one (the
    checks ask of a string that should have been one: `"2h"`)."""
    if not _DURATION.fullmatch(text):
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    return int(seconds) if seconds == int(seconds) else seconds


def _span(file: str, meta: Any) -> A.Span | None:
    if getattr(meta, "empty", True):
        return None
    return A.Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Any) -> A.Span:
    return A.Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@dataclass(frozen=True)
class _Suffix:
    """An `if` clause without a body: attaches to the setting before it."""

    condition: A.Condition
    span: A.Span | None


class _Rules:
    """What every rule's callback needs: the file, for spans and errors."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _sp(self, meta: Any) -> A.Span | None:
        return _span(self.file, meta)

    def _bad(self, tok: Any, msg: str, help: str | None = None) -> NoReturn:
        d = Diagnostic(
            msg, "HP105", self.file, tok.line, tok.column, tok.end_line, tok.end_column, help=help
        )
        fail(d)


class _Names(_Rules):
    """Dotted names, keys and references (`module:attr`)."""

    def dotted(self, meta: Any, names: list[Any]) -> tuple[str, A.Span | None]:
        return ".".join(str(n) for n in names), self._sp(meta)

    def key(self, meta: Any, children: list[Any]) -> tuple[str, A.Span | None]:
        (k,) = children
        if isinstance(k, tuple):  # dotted name
            return k
        s = self.string(meta, [k])  # STRING token
        return s.value, s.span

    def ref(self, meta: Any, children: list[Any]) -> A.Ref:
        mod, attr = children
        path = mod[0] if attr is None else f"{mod[0]}:{attr[0]}"
        return A.Ref(path, span=self._sp(meta))

    def ref1(self, meta: Any, children: list[Any]) -> A.Ref:
        return A.Ref(str(children[0]), span=self._sp(meta))


class _Literals(_Rules):
    """Values, decoded: string escapes, numbers, durations in seconds; lists, maps and calls."""

    def string(self, meta: Any, children: list[Any]) -> A.String:
        (tok,) = children
        try:
            value = json.loads(str(tok), strict=False)
        except json.JSONDecodeError:
            self._bad(
                tok,
                "invalid escape sequence in string",
                'valid escapes are \\" \\\\ \\n \\t \\r \\/ \\b \\f and \\uXXXX',
            )
        if _SURROGATE.search(value):  # `"\ud800"`: no character, cannot be written as UTF-8
            self._bad(tok, "unpaired surrogate escape in string",
                      "write the character itself, or both halves of a pair: `\\ud83d\\ude00`")
        return A.String(value, span=self._sp(meta))

    def number(self, meta: Any, children: list[Any]) -> A.Number:
        (tok,) = children
        text = str(tok)
        try:
            value: int | float = (
                float(text) if any(c in text for c in ".eE") else int(text)
            )
        except ValueError:
            self._bad(tok, "number has too many digits")
        if value in (float("inf"), float("-inf")):
            self._bad(tok, "number is out of range", f"the largest number is {sys.float_info.max!r}")
        if isinstance(value, float) and value == 0 and _NONZERO.search(text):
            # `1e-400` would be a silent 0 (a subnormal `1e-310` is kept: it round-trips as written)
            self._bad(tok, f"number `{text}` is too small: it would be 0",
                      f"the smallest number above 0 is {math.ulp(0.0)!r} (write `0` if zero is meant)")
        return A.Number(value, text, span=self._sp(meta))

    def duration(self, meta: Any, children: list[Any]) -> A.Duration:
        (tok,) = children
        seconds = duration_seconds(str(tok))
        assert seconds is not None  # the token is the grammar's DURATION
        return A.Duration(seconds, str(tok), span=self._sp(meta))

    def size(self, meta: Any, children: list[Any]) -> A.Size:
        return A.Size(str(children[0]), span=self._sp(meta))

    def clock(self, meta: Any, children: list[Any]) -> A.Clock:
        return A.Clock(str(children[0]), span=self._sp(meta))

    def true(self, meta: Any, children: list[Any]) -> A.Bool:
        return A.Bool(True, span=self._sp(meta))

    def false(self, meta: Any, children: list[Any]) -> A.Bool:
        return A.Bool(False, span=self._sp(meta))

    def null(self, meta: Any, children: list[Any]) -> A.Null:
        return A.Null(span=self._sp(meta))

    def list(self, meta: Any, children: list[Any]) -> A.List:
        return A.List(tuple(c for c in children if c is not None), span=self._sp(meta))

    def pair(self, meta: Any, children: list[Any]) -> A.Pair:
        (key, kspan), value = children
        return A.Pair(key, value, key_span=kspan, span=self._sp(meta))

    def kwarg(self, meta: Any, children: list[Any]) -> A.Pair:
        name, value = children
        return A.Pair(str(name), value, key_span=_tok_span(self.file, name), span=self._sp(meta))

    def map(self, meta: Any, children: list[Any]) -> A.Map:
        return A.Map(tuple(children), span=self._sp(meta))

    def call(self, meta: Any, children: list[Any]) -> A.Call:
        func, *rest = children
        args = [c for c in rest if c is not None and not isinstance(c, A.Pair)]
        kwargs = [c for c in rest if isinstance(c, A.Pair)]
        return A.Call(
            func.path, tuple(args), tuple(kwargs), func_span=func.span, span=self._sp(meta)
        )


class _Items(_Rules):
    """Settings, blocks and their `if`s, the objective, the study."""

    def setting(self, meta: Any, children: list[Any]) -> A.Setting:
        (key, kspan), value = children
        return A.Setting(key, value, key_span=kspan, span=self._sp(meta))

    def block(self, meta: Any, children: list[Any]) -> A.Block:
        name, label, body = children
        return A.Block(
            str(name),
            label,
            body,
            kind_span=_tok_span(self.file, name),
            span=self._sp(meta),
        )

    def block_bare(self, meta: Any, children: list[Any]) -> A.Block:
        name, label = children
        return A.Block(
            str(name), label, None, kind_span=_tok_span(self.file, name), span=self._sp(meta)
        )

    def body(self, meta: Any, children: list[Any]) -> tuple[A.Item, ...]:
        return _attach_suffixes(children, self.file)

    def cond_eq(self, meta: Any, children: list[Any]) -> A.Condition:
        (param, pspan), value = children
        return A.Condition(param, (value,), "==", param_span=pspan, span=self._sp(meta))

    def cond_in(self, meta: Any, children: list[Any]) -> A.Condition:
        (param, pspan), values = children
        return A.Condition(param, values.items, "in", param_span=pspan, span=self._sp(meta))

    def if_clause(self, meta: Any, children: list[Any]) -> A.IfBlock | _Suffix:
        cond, body = children
        if body is None:
            return _Suffix(cond, self._sp(meta))
        return A.IfBlock(cond, body, span=self._sp(meta))

    def goal(self, meta: Any, children: list[Any]) -> A.Goal:
        word, metric = children
        if isinstance(metric, tuple):  # dotted name
            name, mspan = metric
        else:  # STRING token
            name, mspan = self.string(meta, [metric]).value, _tok_span(self.file, metric)
        mode = "min" if str(word) == "minimize" else "max"
        return A.Goal(mode, name, metric_span=mspan, span=self._sp(meta))

    def objective(self, meta: Any, children: list[Any]) -> A.Objective:
        return A.Objective(tuple(children), False, span=self._sp(meta))

    def objective_braced(self, meta: Any, children: list[Any]) -> A.Objective:
        return A.Objective(tuple(children), True, span=self._sp(meta))

    def start(self, meta: Any, children: list[Any]) -> A.Study:
        return A.Study(_attach_suffixes(children, self.file), self.file, span=self._sp(meta))


def _make_transformer() -> type:
    """The Lark transformer of the rules above, each callback given its node's position.
    `v_args` wraps only the callbacks a class defines itself: they are copied into it."""
    from lark import Transformer, v_args

    parts = (_Names, _Literals, _Items)
    rules = {name: f for part in parts for name, f in vars(part).items() if not name.startswith("_")}
    return v_args(meta=True)(type("ToAst", (*parts, Transformer), {**rules, "__module__": __name__}))


def to_ast(tree: Any, file: str) -> A.Study:
    """The Study of a Lark tree; a value that cannot be decoded raises `SpecSyntaxError`
    inside Lark's `VisitError`."""
    return _transformer_class()(file).transform(tree)


@functools.lru_cache(maxsize=1)
def _transformer_class() -> type:
    return _make_transformer()


def _attach_suffixes(children: list[Any], file: str) -> tuple[A.Item, ...]:
    """Merge `if` clauses without a body into the setting written just before them."""
    out: list[Any] = []
    for child in children:
        if not isinstance(child, _Suffix):
            out.append(child)
            continue
        prev = out[-1] if out else None
        cond_span = child.span
        if (
            isinstance(prev, A.Setting)
            and prev.condition is None
            and prev.span is not None
            and cond_span is not None
            and prev.span.end_line == cond_span.line
        ):
            span = replace(prev.span, end_line=cond_span.end_line, end_col=cond_span.end_col)
            out[-1] = replace(prev, condition=child.condition, span=span)
            continue
        where = cond_span or A.Span(file, 1, 1, 1, 2)
        help = "write the condition after a setting on the same line, or give it a `{ ... }` body"
        if isinstance(prev, A.Setting) and prev.condition is not None:
            help = "combine the conditions into one (`if p in [...]`)"
        fail(
            Diagnostic(
                "`if` clause is not attached to a setting",
                "HP106",
                file,
                where.line,
                where.col,
                where.line,
                where.col + 2,
                help=help,
            )
        )
    return tuple(out)
