"""Value kinds: convert one syntax value to a plain Python value or explain why not.

A kind is a callable `kind(value_node) -> python value` that raises `Invalid`; its
`expects` attribute says in words what it accepts (for messages and docs).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable

from hpoc.dsl import ast as A
from hpoc.dsl.transform import duration_seconds
from hpoc.errors import did_you_mean, one_of

Kind = Callable[[A.Value], Any]


class Invalid(Exception):
    """A value of the wrong type or out of range; `msg` completes "`key` ..."."""

    def __init__(self, msg: str, help: str | None = None, node: A.Node | None = None):
        super().__init__(msg)
        self.msg, self.help, self.node = msg, help, node


def describe(v: A.Value) -> str:
    """What the user wrote, in words: "a string", "the name `ddp`", "a list"."""
    if isinstance(v, A.String):
        text = v.value if len(v.value) <= 30 else v.value[:27] + "..."
        return f'the string "{text}"'
    if isinstance(v, A.Bool):
        return f"`{'true' if v.value else 'false'}`"
    if isinstance(v, A.Number):
        return f"the number `{v.text or v.value}`"
    if isinstance(v, A.Null):
        return "`null`"
    if isinstance(v, A.Duration):
        return f"the duration `{v.text}`"
    if isinstance(v, A.Size):
        return f"the size `{v.text}`"
    if isinstance(v, A.Clock):
        return f"the time `{v.text}`"
    if isinstance(v, A.Ref):
        return f"the name `{v.path}`"
    if isinstance(v, A.List):
        return "a list"
    if isinstance(v, A.Map):
        return "a map"
    if isinstance(v, A.Call):
        return f"the call `{v.func}(...)`"
    return "a block"


def _kind(expects: str) -> Callable[[Kind], Kind]:
    def wrap(fn: Kind) -> Kind:
        fn.expects = expects  # type: ignore[attr-defined]
        return fn

    return wrap


def _wrong(v: A.Value, expects: str) -> Invalid:
    help = None
    if isinstance(v, A.Ref) and "string" in expects:
        help = f'quote it: "{v.path}"'
    numeric = "number" in expects or "integer" in expects
    if isinstance(v, A.String) and numeric and _looks_numeric(v.value):
        help = f"remove the quotes: {v.value}"
    if isinstance(v, A.Ref) and v.path in _PYTHON_WORDS:
        help = f"write `{_PYTHON_WORDS[v.path]}`"
    if isinstance(v, A.String) and "`true`" in expects and v.value.strip().lower() in ("true", "false"):
        help = f"write `{v.value.strip().lower()}`, without quotes"
    return Invalid(f"must be {expects}, not {describe(v)}", help, v)


_PYTHON_WORDS = {"True": "true", "False": "false", "None": "null"}


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# Integers numpy, Ray and SLURM's tools can hold; larger ones fail only when the study runs.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DURATION_S = 365 * 86400  # longer than any walltime or study budget: a typo


def _range(value: float, lo: float | None, hi: float | None, lo_open: bool = False) -> None:
    shown = str(value) if len(str(value)) <= 30 else str(value)[:27] + "..."
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise Invalid(f"must be {'greater than' if lo_open else 'at least'} {lo} (got {shown})")
    if hi is not None and value > hi:
        raise Invalid(f"must be at most {hi} (got {shown})")


def _int64(v: A.Number, help: str | None = None) -> None:
    """An integer literal beyond int64 (a float such as 1e30 is not one)."""
    if isinstance(v.value, int) and not INT64_MIN <= v.value <= INT64_MAX:
        try:
            _range(v.value, INT64_MIN, INT64_MAX)
        except Invalid as exc:
            raise Invalid(exc.msg, help, v) from None


def integer(lo: int | None = None, hi: int | None = None) -> Kind:
    lo = INT64_MIN if lo is None else lo
    hi = INT64_MAX if hi is None else hi

    @_kind("an integer")
    def conv(v: A.Value) -> int:
        if not (isinstance(v, A.Number) and isinstance(v.value, int)):
            if isinstance(v, A.Number) and float(v.value).is_integer():
                raise Invalid(
                    f"must be an integer, not {describe(v)}", f"write {int(v.value)}", v
                )
            raise _wrong(v, "an integer")
        _range(v.value, lo, hi)
        return v.value

    return conv


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Kind:
    @_kind("a number")
    def conv(v: A.Value) -> int | float:
        if not isinstance(v, A.Number):
            raise _wrong(v, "a number")
        _int64(v)
        _range(v.value, lo, hi, lo_open)
        return v.value

    return conv


@_kind("`true` or `false`")
def boolean(v: A.Value) -> bool:
    if isinstance(v, A.Bool):
        return v.value
    raise _wrong(v, "`true` or `false`")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The escapes a Windows path makes of its backslashes: `"C:\results"` holds a carriage return.
_ESCAPES = {"\t": ("t", "a tab"), "\n": ("n", "a newline"), "\r": ("r", "a carriage return"),
            "\b": ("b", "a backspace"), "\f": ("f", "a form feed")}


def _escape_help(ch: str, v: A.String) -> str | None:
    span = v.span  # an escape is two characters of source for one of value; a tab may be typed
    typed = span is not None and span.line == span.end_line and span.end_col - span.col - 2 == len(v.value)
    if ch not in _ESCAPES or typed:
        return None
    letter, what = _ESCAPES[ch]
    return f"`\\{letter}` in a string is an escape ({what}): write a path with `/`, or each `\\` as `\\\\`"


def string(pattern: str | None = None, what: str = "", single_line: bool = True, blank: bool = True,
           max_len: int | None = None, hint: str | None = None) -> Kind:
    """A string; `blank=False` refuses "" and spaces only (a SLURM name or a program); `hint`
    is the help of a value that does not match `pattern`."""
    regex = re.compile(pattern) if pattern else None

    @_kind("a string")
    def conv(v: A.Value) -> str:
        if not isinstance(v, A.String):
            raise _wrong(v, "a string")
        if single_line and (bad := _CONTROL.search(v.value)):
            raise Invalid("must be one line without control characters", _escape_help(bad.group(0), v), v)
        if not blank and not v.value.strip():
            raise Invalid("must not be empty", "leave the setting out to use the default", v)
        if max_len is not None and len(v.value) > max_len:
            raise Invalid(f"must be at most {max_len} characters (got {len(v.value)})", None, v)
        if regex is not None and not regex.fullmatch(v.value):
            raise Invalid(f'is not a valid {what}: "{v.value}"', hint, v)
        return v.value

    return conv


def metric(pattern: str | None = None) -> Kind:
    """A metric name: bare (`val_loss`) as in `objective`, or quoted ("val/loss")."""
    text = string(pattern, "metric name", blank=False)  # "" names nothing Ray could report

    @_kind("a metric name")
    def conv(v: A.Value) -> str:
        if isinstance(v, A.Ref):
            v = A.String(v.path, span=v.span)
        if not isinstance(v, A.String):
            raise _wrong(v, "a metric name")
        return text(v)

    return conv


def optional(kind: Kind) -> Kind:
    """`null` or the kind."""

    def conv(v: A.Value) -> Any:
        return None if isinstance(v, A.Null) else kind(v)

    conv.expects = f"{getattr(kind, 'expects', 'a value')} or `null`"  # type: ignore[attr-defined]
    return conv


def enum(values: Iterable[Any], aliases: dict[str, str] | None = None) -> Kind:
    """One of fixed words, written bare (`ddp`) or quoted ("ddp"); bools allowed as values.
    `aliases`: other spellings (lower case, a library's class name) and the word to write."""
    choices = list(values)
    words = [c for c in choices if isinstance(c, str)]

    @_kind(one_of(str(c).lower() if isinstance(c, bool) else c for c in choices))
    def conv(v: A.Value) -> Any:
        if isinstance(v, A.Bool) and v.value in [c for c in choices if isinstance(c, bool)]:
            return v.value
        word = v.path if isinstance(v, A.Ref) else v.value if isinstance(v, A.String) else None
        if isinstance(word, str) and word in words:
            return word
        help = did_you_mean(word, words) if isinstance(word, str) else None
        if isinstance(word, str) and (alias := (aliases or {}).get(word.rpartition(".")[2].lower())):
            help = f"write `{alias}`"
        if isinstance(word, str) and word.strip().lower() in ("true", "false") and any(isinstance(c, bool) for c in choices):
            help = f"write `{word.strip().lower()}`" + (", without quotes" if isinstance(v, A.String) else "")
        raise Invalid(f"must be {conv.expects}, not {describe(v)}", help, v)  # type: ignore[attr-defined]

    return conv


# What a duration may be, as the checks' messages say it (the YAML front end rewords it).
DURATION_EXPECTED = "a duration such as `90m` or `2h`, a walltime such as `02:00:00`, or a number of seconds"


@_kind("a duration such as `90m` or `2h`, a walltime such as `02:00:00`, or seconds")
def duration(v: A.Value) -> int | float:
    if isinstance(v, A.Duration):
        return v.seconds
    if isinstance(v, A.Number) and not isinstance(v.value, bool):
        return v.value
    if isinstance(v, A.Clock):  # a walltime means what it means in `slurm.time`
        from hpoc.compiler.sections import format_slurm_time, slurm_time

        seconds, problem = slurm_time(v.text)
        if problem is None and seconds is not None:
            return seconds
        if problem is not None:  # `00:90:00`: SLURM refuses it, so no other reading is safer
            raise Invalid(f"has an invalid walltime `{v.text}`: {problem}",
                          f"write `{format_slurm_time(seconds)}` or `{_duration_text(seconds)}` for the same time", v)  # fmt: skip
    wrong = _wrong(v, DURATION_EXPECTED)
    if isinstance(v, A.String) and (duration_seconds(v.value) is not None or re.fullmatch(r"\d+[-:][\d:-]*", v.value)):
        wrong.help = f"remove the quotes: {v.value}"
    raise wrong


def _duration_text(seconds: int) -> str:
    """`5400` as `1h30m`: how a duration is written."""
    parts, rest = [], seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def positive_duration(allow_zero: bool = False) -> Kind:
    @_kind(duration.expects)  # type: ignore[attr-defined]
    def conv(v: A.Value) -> int | float:
        s = duration(v)
        if s < 0 or (s == 0 and not allow_zero) or not math.isfinite(s):
            raise Invalid(f"must be {'at least 0' if allow_zero else 'positive'} (got {s})", None, v)
        if s > MAX_DURATION_S:
            text = v.text if isinstance(v, (A.Duration, A.Clock, A.Number)) and v.text else s
            raise Invalid(f"must be at most 365 days (got {text})", None, v)
        return s

    return conv


def whole_seconds(lo: int, hi: int, why: str) -> Kind:
    """A duration that must be a whole number of seconds in [lo, hi] (`why`: whose limit)."""
    @_kind(duration.expects)  # type: ignore[attr-defined]
    def conv(v: A.Value) -> int:
        s = duration(v)
        if not (math.isfinite(s) and s == int(s) and lo <= s <= hi):
            text = v.text if isinstance(v, (A.Duration, A.Clock, A.Number)) and v.text else s
            raise Invalid(f"must be whole seconds from {lo} to {hi} ({why}), got {text}", None, v)
        return int(s)

    return conv


def list_of(kind: Kind, allow_single: bool = False) -> Kind:
    @_kind(f"a list of {getattr(kind, 'expects', 'values').removeprefix('a ').removeprefix('an ')}s")
    def conv(v: A.Value) -> list[Any]:
        if allow_single and not isinstance(v, A.List):
            return [kind(v)]
        if not isinstance(v, A.List):
            raise _wrong(v, conv.expects)  # type: ignore[attr-defined]
        return [kind(item) for item in v.items]

    return conv


@_kind("a literal value")
def literal(v: A.Value) -> Any:
    """An argument handed to Python (a pipeline step's, a searcher's `*_kwargs`): a literal
    or a bare word as its string (`mode = train`); durations become seconds. An import path
    (`nn.ReLU`, `models:Net`) is refused: it reads as an object hpoc would build, and it
    would arrive as a string."""
    return _literal(v, paths=False)


@_kind("a literal value")
def space_value(v: A.Value) -> Any:
    """A value a parameter takes (a constant, a `choice` value, a point, a mutation): a
    literal, or a bare word as its string, as a condition reads it (`if opt == sgd`)."""
    return _literal(v, paths=True)


def bare_word(path: str) -> bool:
    """`train`, read as its string; not an import path (`nn.ReLU`, `models:Net`)."""
    return not re.search(r"[.:]", path)


def _literal(v: A.Value, paths: bool) -> Any:
    if isinstance(v, (A.String, A.Number, A.Bool)):
        return v.value
    if isinstance(v, A.Null):
        return None
    if isinstance(v, A.Duration):
        return v.seconds
    if isinstance(v, (A.Size, A.Clock)):
        return v.text
    if isinstance(v, A.List):
        return [_literal(i, paths) for i in v.items]
    if isinstance(v, A.Map):
        out = {}
        for p in v.entries:
            if p.key in out:
                raise Invalid(f"has the key `{p.key}` twice", None, p)
            out[p.key] = _literal(p.value, paths)
        return out
    if isinstance(v, A.Ref):
        if v.path in _PYTHON_WORDS:  # Python's spelling: a string "True" would be a silent surprise
            raise Invalid(f"must be a literal value, not {describe(v)}", f"write `{_PYTHON_WORDS[v.path]}`", v)
        if paths or bare_word(v.path):
            return v.path
        raise Invalid(f"must be a literal value, not the import path `{v.path}` (hpoc builds no object for an argument)",
                      f'quote it for the string: "{v.path}"', v)  # fmt: skip
    raise Invalid(f"must be a literal value, not {describe(v)}", None, v)


@_kind("a number")
def any_number(v: A.Value) -> int | float:
    if isinstance(v, A.Number):
        _int64(v, "write a float such as 1e30 for a number this large")
        return v.value
    raise _wrong(v, "a number")


def expects(kind: Kind) -> str:
    return getattr(kind, "expects", "a value")
