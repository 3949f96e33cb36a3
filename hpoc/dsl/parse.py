"""Text → `hpoc.dsl.ast.Study`. The only module that touches Lark; no Lark type leaves it.

Every failure is a `SpecSyntaxError` with one diagnostic: unreadable files, invalid
UTF-8, too-large files, unexpected tokens (with expected tokens in words), unclosed
brackets and too-deep nesting. Comments are kept and attached to the nearest item so
that `hpoc fmt` can write them back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, SpecSyntaxError, fail

MAX_BYTES = 2 * 1024 * 1024  # a study is a page of text; anything bigger is a mistake
MAX_DEPTH = 48  # nesting of brackets; the tree transformer recurses, so keep it bounded

_GRAMMAR = Path(__file__).with_name("grammar.lark")
_OPEN = {"LBRACE": "{", "LSQB": "[", "LPAR": "("}
_CLOSE = {"RBRACE": "{", "RSQB": "[", "RPAR": "("}
_PAIR = {"{": "}", "[": "]", "(": ")"}

# Terminal name -> words for "expected ..." lists (in this order).
_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "EQUAL": "`=`",
    "_EQEQ": "`==`",
    "IN": "`in`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "COLON": "`:`",
    "DOT": "`.`",
    "COMMA": "`,`",
    "SEMICOLON": "`;`",
    "IF": "`if`",
    "OBJECTIVE": "`objective`",
    "MINIMIZE": "`minimize`",
    "MAXIMIZE": "`maximize`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "NULL": "`null`",
    "DURATION": "a duration",
    "SIZE": "a size",
    "CLOCK": "a time",
    "$END": "end of file",
}
_VALUE_START = {"STRING", "NUMBER", "LSQB", "TRUE", "FALSE", "NULL", "DURATION", "SIZE", "CLOCK"}


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    cache = _cache_path()
    if cache and os.path.isfile(cache) and "lark" not in sys.modules:
        _import_lark_without_interegular()
    from lark.exceptions import LexError

    try:
        return _build(cache)
    except LexError as exc:  # the cache was stale and the strict check needs interegular
        if "interegular" not in str(exc):
            raise
        import interegular
        import lark.lexer

        lark.lexer.interegular, lark.lexer.has_interegular = interegular, True
        return _build(cache)


def _build(cache: str | bool) -> Any:
    from lark import Lark

    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        strict=True,  # grammar conflicts and terminal collisions are errors, not warnings
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={
            "COMMENT": _on_comment,
            **{name: _on_open for name in _OPEN},
            **{name: _on_close for name in _CLOSE},
        },
        cache=cache,
    )


def _import_lark_without_interegular() -> None:
    """Import Lark without interegular, which it only needs to validate a new parser.

    A cached parser skips that validation, and interegular takes as long to import as
    the rest of Lark; `hpoc check` should start instantly.
    """
    missing = object()
    saved = sys.modules.get("interegular", missing)
    sys.modules["interegular"] = None  # type: ignore[assignment]
    try:
        import lark  # noqa: F401
    finally:
        if saved is missing:
            del sys.modules["interegular"]
        else:
            sys.modules["interegular"] = saved  # type: ignore[assignment]


def _cache_path() -> str | bool:
    """A private cache of the built parser (Lark pickles it; never in a shared /tmp)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "hpoc")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.stat(path).st_uid != os.getuid() or not os.access(path, os.W_OK):
            return False
    except OSError:
        return False
    digest = hashlib.sha256(_GRAMMAR.read_bytes()).hexdigest()[:16]
    return os.path.join(path, f"grammar-{digest}.lark-cache")


# ------------------------------------------------------------------ per-parse lexer state

_local = threading.local()


@dataclass
class _State:
    file: str
    comments: list[tuple[int, int, str]]
    stack: list[tuple[str, int, int]]  # open brackets: (char, line, col)
    mismatch: tuple[str, int, int] | None = None


class _TooDeep(Exception):
    def __init__(self, line: int, col: int):
        self.line, self.col = line, col


def _on_comment(tok: Any) -> None:
    _local.state.comments.append((tok.line, tok.column, str(tok).rstrip("\r")))  # CRLF files


def _on_open(tok: Any) -> Any:
    st = _local.state
    st.stack.append((str(tok), tok.line, tok.column))
    if len(st.stack) > MAX_DEPTH:
        raise _TooDeep(tok.line, tok.column)
    return tok


def _on_close(tok: Any) -> Any:
    st = _local.state
    if st.stack and st.stack[-1][0] == _CLOSE[tok.type]:
        st.stack.pop()
    elif st.mismatch is None:
        st.mismatch = st.stack[-1] if st.stack else ("", 0, 0)
    return tok


# --------------------------------------------------------------------------- reading


def read_spec(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, sha256 of the bytes) of a spec file; SpecSyntaxError if unusable."""
    name = str(path)

    def whole_file(msg: str, code: str = "HP001", help: str | None = None) -> NoReturn:
        fail(Diagnostic(msg, code, name, help=help))

    try:
        if os.path.isdir(path):
            whole_file("is a directory, not a study file", help="pass the path of a .hpo file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        whole_file("no such file")
    except PermissionError:
        whole_file("permission denied")
    except OSError as exc:
        whole_file(f"cannot read file: {exc.strerror or exc}")
    if len(data) > MAX_BYTES:
        whole_file(
            f"file is too large for a study (more than {MAX_BYTES // (1024 * 1024)} MiB)",
            "HP002",
        )
    return decode(data, name), hashlib.sha256(data).hexdigest()


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of a spec; invalid bytes are reported at their line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        prefix = data[start : exc.start].decode("utf-8", "replace")
        shown = data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")
        fail(
            Diagnostic(
                f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                "HP003",
                name,
                line,
                len(prefix) + 1,
                help="save the file as UTF-8",
                source_line=shown.rstrip("\r"),
            )
        )
    return text[1:] if text.startswith("\ufeff") else text


# --------------------------------------------------------------------------- parsing


def parse(text: str, file: str = "<study>") -> A.Study:
    """Parse .hpo text into a Study (with spans and comments).

    On a syntax error the parse goes on at the next top-level item, so that one run
    reports a mistake in each broken section (see `_later_errors`)."""
    try:
        return _parse_text(text, file)
    except SpecSyntaxError as exc:
        first = exc.diagnostics[0]
        more = _later_errors(text, file, first.line) if first.line is not None else []
        if not more:
            raise
        raise SpecSyntaxError([*exc.diagnostics, *more]) from None


MAX_SYNTAX_ERRORS = 20  # after this many, more are noise
_RECOVER_LINES, _RECOVER_ITEMS = 5000, 200  # studies are a page: don't spend time on garbage


def _later_errors(text: str, file: str, after_line: int) -> list[Diagnostic]:
    """The first syntax error of each top-level item that starts after the item holding
    `after_line`, each parsed on its own (at its own line numbers).

    Items are cut by brackets only (`_top_level_items`): a block left open (a missing `}`)
    runs to the end of the file and ends the search, rather than producing follow-on
    errors that are not real."""
    lines = text.split("\n")
    if len(lines) > _RECOVER_LINES:
        return []
    chunks = _top_level_items(text)[:_RECOVER_ITEMS]
    holding = next((end for start, end in chunks if start <= after_line <= end), after_line)
    found: list[Diagnostic] = []
    for start, end in chunks:
        if start <= holding:
            continue
        piece = "\n" * (start - 1) + "\n".join(lines[start - 1 : end])
        try:
            _parse_text(piece, file)
        except SpecSyntaxError as exc:
            found.extend(d.with_source(text) for d in exc.diagnostics[:1])
            if len(found) >= MAX_SYNTAX_ERRORS:
                break
    return found


def _top_level_items(text: str) -> list[tuple[int, int]]:
    """(first line, last line) of each run of lines that forms one top-level item or a
    group of them: it ends at a line end where every bracket opened in it is closed and
    the next line that is not blank or a comment starts in column 1. A
    closing bracket closes the nearest open one of its kind and any left open inside it
    (`f(a` then `}`), the usual reading of a forgotten `)`; one with nothing to close is
    ignored."""
    items: list[tuple[int, int]] = []
    stack: list[str] = []
    line, start, ended = 1, None, None  # `ended`: the line where the current item may end
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == "\n":
            if start is not None and not stack:
                ended = ended or line
            line += 1
        elif not ch.isspace():
            if ended is not None:
                if i == 0 or text[i - 1] == "\n":  # an indented line continues the item
                    items.append((start, ended))
                    start = None
                ended = None
            if start is None:
                start = line
            if ch == '"':  # strings end on their line; an unterminated one ends there too
                j = i + 1
                while j < n and text[j] not in '"\n':
                    j += 2 if text[j] == "\\" else 1
                i = j if j < n and text[j] == "\n" else j + 1
                continue
            if ch in "{[(":
                stack.append(ch)
            elif ch in "}])":
                opener = "{[("["}])".index(ch)]
                if opener in stack:
                    del stack[len(stack) - 1 - stack[::-1].index(opener):]
        i += 1
    if start is not None:
        items.append((start, ended or line))
    return items


def _parse_text(text: str, file: str) -> A.Study:
    parser = _parser()  # first: it decides how Lark gets imported
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, VisitError

    if len(text) > MAX_BYTES:
        fail(Diagnostic("text is too large for a study", "HP002", file))
    _keyword_alone(text, file)
    state = _State(file, [], [])
    _local.state = state
    try:
        tree = parser.parse(text)
        study = _ToAst(file).transform(tree)
    except _TooDeep as exc:
        _error(
            text,
            file,
            f"brackets nested too deeply (more than {MAX_DEPTH} levels)",
            "HP104",
            exc.line,
            exc.col,
            help="flatten the value; studies never need this much nesting",
        )
    except UnexpectedCharacters as exc:
        _unexpected_char(text, file, exc)
    except UnexpectedInput as exc:
        _unexpected_token(text, file, exc, state)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpecSyntaxError):
            err = exc.orig_exc
            raise type(err)([d.with_source(text) for d in err.diagnostics]) from None
        raise
    finally:
        _local.state = None
    return _attach_comments(study, state.comments, text)


# A goal keyword that ends its line: newlines are not significant, so the next line's first
# word would be taken as the metric (`objective minimize` then `search optuna` on the next).
_GOAL_ALONE = re.compile(r"^([ \t]*(?:objective[ \t]+)?)(minimize|maximize)[ \t]*(?:#[^\n]*)?$", re.M)


# `study` alone on its line, a section after it: `study pipeline { ... }` to the grammar.
_STUDY_ALONE = re.compile(r"^([ \t]*study)[ \t]*(?:#[^\n]*)?\n\s*([A-Za-z_]\w*)[ \t]*\{", re.M)


def _keyword_alone(text: str, file: str) -> None:
    for m in _STUDY_ALONE.finditer(text):
        _error(text, file, "`study` needs its name on the same line", "HP101", text.count("\n", 0, m.start()) + 1,
               len(m.group(1)) + 1, help=f'write `study "my-study"`; the `{m.group(2)} {{ ... }}` below would be '
               "taken as the name")
    for m in _GOAL_ALONE.finditer(text):
        if m.group(1).strip() or text.rfind("{", 0, m.start()) > text.rfind("}", 0, m.start()):
            line = text.count("\n", 0, m.start()) + 1
            word = m.group(2)
            example = f"{word} {'val_loss' if word == 'minimize' else 'val_accuracy'}"
            _error(text, file, f"`{word}` needs its metric on the same line", "HP101", line, m.end(2) + 1
                   - m.start(), help=f"write `{m.group(1).strip() + ' ' if m.group(1).strip() else ''}{example}`")


def _error(
    text: str,
    file: str,
    msg: str,
    code: str,
    line: int,
    col: int,
    *,
    width: int = 1,
    help: str | None = None,
    notes: tuple[str, ...] = (),
) -> NoReturn:
    d = Diagnostic(msg, code, file, line, col, line, col + width, help=help, notes=notes)
    fail(d.with_source(text))


def _describe_char(ch: str) -> str:
    return f"`{ch}`" if ch.isprintable() and ch != "`" else repr(ch)


def _unexpected_char(text: str, file: str, exc: Any) -> NoReturn:
    ch = exc.char
    help = None
    if ch == '"':
        msg, help = "unterminated string", "close the string with `\"` on the same line"
    elif ch == "'":
        msg, help = "unexpected character `'`", "strings use double quotes: \"like this\""
    elif ch in "=!<>" and "_EQEQ" in (exc.allowed or ()):
        msg, help = f"unexpected character {_describe_char(ch)}", "compare with `==` or `in`"
    else:
        msg = f"unexpected character {_describe_char(ch)}"
        expected = _expected_words(exc.allowed or ())
        if expected:
            msg += f", expected {expected}"
        number = re.match(r"\+(\d[\w.]*)", text[exc.pos_in_stream:]) if ch == "+" else None
        if number:
            help = f"write `{number.group(1)}`: numbers take no `+`"
    _error(text, file, msg, "HP102", exc.line, exc.column, help=help)


def _describe_token(tok: Any) -> str:
    if tok.type == "$END":
        return "end of file"
    word = _WORDS.get(tok.type)
    if tok.type in ("NAME", "STRING", "NUMBER", "DURATION", "SIZE", "CLOCK"):
        value = str(tok)
        if len(value) > 40:
            value = value[:37] + "..."
        if tok.type == "STRING":
            return f"string {value}"
        return f"{word.removeprefix('a ')} `{value}`"
    return word or f"`{tok}`"


def _expected_words(expected: Any) -> str:
    names = set(expected)
    words = []
    if names >= {"STRING", "NUMBER", "LSQB"}:
        names -= _VALUE_START
        words.append("a value")
    if {"COMMA", "SEMICOLON"} & names and names - {"COMMA", "SEMICOLON", "RPAR", "RSQB"}:
        names -= {"COMMA", "SEMICOLON"}  # optional separators: not worth listing
    words += [_WORDS[n] for n in _WORDS if n in names]
    words += sorted(f"`{n.lower()}`" for n in names if n not in _WORDS and not n.startswith("__"))
    if len(words) > 8:
        return ", ".join(words[:8]) + ", …"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _unexpected_token(text: str, file: str, exc: Any, state: _State) -> NoReturn:
    tok = getattr(exc, "token", None)
    expected = set(getattr(exc, "expected", None) or ())
    try:  # LALR merges lookaheads; ask the parser what it really accepts here
        expected = set(exc.interactive_parser.accepts()) or expected
    except Exception:  # noqa: BLE001 - best effort, the plain set is still right
        pass
    glued = _glued_suffix(text, len(text) if tok is None or tok.type == "$END" else tok.start_pos or 0)
    if glued is not None:
        line, col, width, msg, help = glued
        _error(text, file, msg, "HP101", line, col, width=width, help=help)
    if tok is None or tok.type == "$END":
        if state.stack:
            ch, line, col = state.stack[-1]
            _error(
                text,
                file,
                f"unclosed `{ch}`: the file ends before it is closed",
                "HP103",
                line,
                col,
                help=f"add `{_PAIR[ch]}` where the {_OPEN_WORD[ch]} should end",
            )
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        if line > 1 and not lines[-1]:
            line, col = line - 1, len(lines[-2]) + 1
        _error(
            text,
            file,
            f"unexpected end of file, expected {_expected_words(expected)}",
            "HP103",
            line,
            col,
            help=_keyword_hint(text, tok),
        )
    help = None
    notes: tuple[str, ...] = ()
    msg = f"unexpected {_describe_token(tok)}"
    if tok.type in _CLOSE and state.mismatch is not None:
        ch, line, col = state.mismatch
        if ch:
            msg = f"mismatched `{tok}`: `{ch}` opened at {line}:{col} is still open"
            help = f"close it with `{_PAIR[ch]}` first"
        else:
            msg = f"unmatched `{tok}`: nothing is open here"
            help = "remove it, or check the brackets above"
        _error(text, file, msg, "HP101", tok.line, tok.column, help=help)
    if expected:
        msg += f", expected {_expected_words(expected)}"
    if tok.type == "COLON" and "EQUAL" in expected:
        help = "settings are written `key = value`, not `key: value`"
    elif tok.type == "EQUAL" and "_EQEQ" in expected:
        help = "compare with `==`"
    elif "MINIMIZE" in expected:
        help = _keyword_hint(text, tok) or "write `objective minimize val_loss` or `objective maximize val_accuracy`"
    elif tok.type in ("NUMBER", "NAME") and re.search(r"(?:^|\n)\s*study\s+$", text[: tok.start_pos]):
        help = f'the study name is a string: `study "{tok}"`'
    elif "EQUAL" in expected and tok.type in _VALUE_START | {"NAME"}:
        help = "settings are written `key = value`"
    elif "COMMA" in expected and ("RSQB" in expected or "RPAR" in expected):
        help = "separate items with `,`"
    elif tok.type == "NAME" and str(tok) in ("True", "False", "None"):
        help = f"write `{ {'True': 'true', 'False': 'false', 'None': 'null'}[str(tok)] }`"
    elif tok.type == "DOT":  # `.5` and `5.`, as Python and YAML allow
        before, after = text[: tok.start_pos], text[tok.end_pos:]
        if re.match(r"\d", after) and not re.search(r"[\w.]$", before):
            help = f"write `0.{re.match(r'[0-9]+', after).group(0)}`"  # type: ignore[union-attr]
        elif re.search(r"(?<![\w.])\d+$", before):
            whole = re.search(r"\d+$", before).group(0)  # type: ignore[union-attr]
            help = f"write `{whole}.0` or `{whole}`"
    if help is None:
        help = _keyword_hint(text, tok)
    width = max(1, (tok.end_column or tok.column + 1) - tok.column) if tok.end_line == tok.line else 1
    _error(text, file, msg, "HP101", tok.line, tok.column, width=width, help=help, notes=notes)


# A number, then a name: glued (`64g`), or one unit letter after a space that ends the
# value (`64 G }`; `a = 1 m = 2` is two settings). An exponent is part of the number (`1e-3` is not the number 1 and a name `e`).
_GLUED = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![eE][+-]?\d)"
                    r"([A-Za-z_]\w*|[ \t]+[KMGTsmhd](?=[ \t]*(?:[,;})\]#]|$)))")
_VALID_GLUED = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+|(?:\d+(?:\.\d+)?[smhd])*[smhd])|\d+[KMGT]B?")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNIT_HELP = "sizes are written like `64G` (K, M, G, T) and durations like `90m`, `2h` (s, m, h, d)"


def _glued_suffix(text: str, offset: int) -> tuple[int, int, int, str, str] | None:
    """A name glued to a number (`64g`, `2hrs`) on the error's line or the line before.

    With optional separators `mem = 64g` parses as `mem = 64` then an item `g`, so the
    parser fails later; this finds the real mistake.
    """
    start = text.rfind("\n", 0, text.rfind("\n", 0, offset)) + 1
    found = None
    for line_start in _line_starts(text, start, offset):
        line_end = text.find("\n", line_start)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        for m in _GLUED.finditer(line):
            before = line[: m.start()]
            if "#" in before or before.count('"') % 2 or line_start + m.start() > offset:
                continue
            if _VALID_GLUED.fullmatch(m.group(0).lstrip("-")):
                continue
            number, suffix = m.group(1), m.group(2)
            col, width = m.start(2) + 1, len(suffix)
            if re.fullmatch(r"(?:_\d+)+", suffix):  # `1_000`, as Python would allow
                col, width = m.start(1) + 1, len(m.group(0))
                msg, help = f"digits are not grouped with `_` in `{number}{suffix}`", \
                    f"write `{number}{suffix.replace('_', '')}`"
            elif suffix[0] in " \t":  # `64 G`
                suffix = suffix.strip()
                col, width = m.start(2) + 1 + m.group(2).index(suffix), len(suffix)
                msg, help = f"space between the number `{number}` and its unit `{suffix}`", f"write `{number}{suffix}`"
            elif suffix in "KMGT" and not number.lstrip("-").isdigit():
                msg = f"a size must be a whole number, not `{number}{suffix}`"
                help = "use a smaller unit: `1536M` rather than `1.5G`"
            else:
                msg, help = f"unexpected name `{suffix}` right after the number `{number}`", _UNIT_HELP
            found = (text.count("\n", 0, line_start) + 1, col, width, msg, help)
    return found


def _line_starts(text: str, start: int, offset: int) -> list[int]:
    starts = [start]
    while True:
        nl = text.find("\n", starts[-1])
        if nl < 0 or nl >= offset:
            return starts
        starts.append(nl + 1)


_KEYWORDS = ("objective", "minimize", "maximize", "if", "in")
_SYNONYMS = {
    "when": "if", "where": "if", "minimise": "minimize", "maximise": "maximize",
    "min": "minimize", "max": "maximize", "objectives": "objective", "goal": "objective",
}  # fmt: skip
_WORD = re.compile(r'"(?:[^"\\\n]|\\.)*"|#.*|([A-Za-z_]\w*)')


def _keyword_hint(text: str, tok: Any) -> str | None:
    """"did you mean `objective`?" for a misspelt keyword on the error's line."""
    if tok is None or tok.type == "$END":
        line_no = text.rstrip().count("\n") + 1
    else:
        line_no = tok.line
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines):
        return None
    import difflib

    for m in _WORD.finditer(lines[line_no - 1]):
        word = m.group(1)
        if not word or word in _KEYWORDS:
            continue
        guess = _SYNONYMS.get(word) or next(iter(difflib.get_close_matches(word, _KEYWORDS, 1, 0.75)), None)
        if guess:
            return f"did you mean `{guess}`?"
    return None


_OPEN_WORD = {"{": "block", "[": "list", "(": "argument list"}


# ------------------------------------------------------------------------ tree → AST


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


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


def _make_transformer() -> type:
    from lark import Transformer, v_args

    @v_args(meta=True)
    class ToAst(Transformer):  # type: ignore[misc]
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

        # -- names
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

        # -- literals
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
                self._bad(tok, "number is out of range")
            return A.Number(value, text, span=self._sp(meta))

        def duration(self, meta: Any, children: list[Any]) -> A.Duration:
            (tok,) = children
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(str(tok)))
            if seconds == int(seconds):
                seconds = int(seconds)
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

        # -- items
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

    return ToAst


@functools.lru_cache(maxsize=1)
def _transformer_class() -> type:
    return _make_transformer()


def _ToAst(file: str) -> Any:
    return _transformer_class()(file)


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


# ---------------------------------------------------------------------- comments


class _Comments:
    def __init__(self, comments: list[tuple[int, int, str]]):
        self.items = sorted(comments)
        self.i = 0

    def before(self, line: int) -> tuple[str, ...]:
        out = []
        while self.i < len(self.items) and self.items[self.i][0] < line:
            out.append(self.items[self.i][2])
            self.i += 1
        return tuple(out)

    def on(self, line: int) -> str | None:
        if self.i < len(self.items) and self.items[self.i][0] == line:
            self.i += 1
            return self.items[self.i - 1][2]
        return None

    def through(self, line: int) -> tuple[str, ...]:
        return self.before(line + 1)


def _attach_comments(study: A.Study, comments: list[tuple[int, int, str]], text: str) -> A.Study:
    cs = _Comments(comments)
    # Blank lines the author left between items of a block (groups of settings) are kept.
    lines = text.split("\n")
    blank = {n for n, line in enumerate(lines, 1) if not line.strip()}
    items = _attach_items(study.items, cs, blank, None, lines)
    return replace(study, items=items, end_comments=cs.before(10**12))


def _verbatim(item: A.Item, lines: list[str]) -> tuple[str, ...] | None:
    """A setting's value as written, its lines after the first re-indented relative to the
    setting's own line (so `hpoc fmt` can move it and stay idempotent)."""
    value = getattr(item, "value", None)
    sp = value.span if isinstance(item, A.Setting) and value is not None else None
    if sp is None or item.span is None or sp.end_line == sp.line:
        return None
    base = len(lines[item.span.line - 1]) - len(lines[item.span.line - 1].lstrip())
    out = [lines[sp.line - 1][sp.col - 1:].rstrip()]
    for n in range(sp.line + 1, sp.end_line + 1):
        line = lines[n - 1][: sp.end_col - 1] if n == sp.end_line else lines[n - 1].rstrip()
        indent = len(line) - len(line.lstrip())
        out.append(" " * max(0, indent - base) + line.lstrip())
    return tuple(out)


def _starts_on(items: Any, line: int) -> bool:
    """Whether the first of `items` (items or goals) starts on `line`."""
    return bool(items) and items[0].span is not None and items[0].span.line == line


def _attach_items(items: tuple[A.Item, ...], cs: _Comments, blank: set[int],
                  opened: int | None, lines: list[str], closed: int | None = None) -> tuple[A.Item, ...]:
    out: list[A.Item] = []
    previous = opened  # last line of the item before (or of the block's `{`); None at top level
    for k, item in enumerate(items):
        span = item.span
        if span is None:
            out.append(item)
            continue
        # A comment ends its line: it is about the last item there (`x = 1, y = 2  # on y`),
        # or follows the `}` of the block that ends there.
        owns_end = not _starts_on(items[k + 1:], span.end_line) and span.end_line != closed
        top = cs.items[cs.i][0] if cs.i < len(cs.items) and cs.items[cs.i][0] < span.line else span.line
        gap = previous is not None and previous != opened and any(n in blank for n in range(previous + 1, top))
        lead = cs.before(span.line)
        body = getattr(item, "body", None)
        if isinstance(item, (A.Block, A.IfBlock)) and body is not None:
            # A comment on the line of `}` follows it (nothing can follow a comment).
            one_line = span.end_line == span.line  # `trials { ... }  # note`: after the `}`
            trailing = None if one_line or _starts_on(body, span.line) else cs.on(span.line)
            new_body = _attach_items(body, cs, blank, span.line, lines, span.end_line)
            end = cs.before(span.end_line)
            out.append(replace(item, comments=lead, trailing=trailing, body=new_body, end_comments=end,
                               closing=cs.on(span.end_line) if owns_end else None,
                               blank_before=gap))
        elif isinstance(item, A.Objective) and item.braced:
            one_line = span.end_line == span.line
            trailing = None if one_line or _starts_on(item.goals, span.line) else cs.on(span.line)
            goals = []
            for j, g in enumerate(item.goals):
                if g.span is None or one_line:
                    goals.append(g)
                    continue
                last = not _starts_on(item.goals[j + 1:], g.span.end_line) and g.span.end_line != span.end_line
                goals.append(replace(g, comments=cs.before(g.span.line),
                                     trailing=cs.on(g.span.end_line) if last else None))
            end = cs.before(span.end_line)
            out.append(replace(item, comments=lead, trailing=trailing, goals=tuple(goals), end_comments=end,
                               closing=cs.on(span.end_line) if owns_end else None,
                               blank_before=gap))
        else:
            inner = cs.before(span.end_line)  # comments inside a multi-line value
            trailing = cs.on(span.end_line) if owns_end else None
            verbatim = _verbatim(item, lines) if inner else None
            if verbatim is None:  # nowhere to keep them but above the item
                out.append(replace(item, comments=lead + inner, trailing=trailing, blank_before=gap))
            else:
                out.append(replace(item, comments=lead, trailing=trailing, blank_before=gap, verbatim=verbatim))
        previous = span.end_line
    return tuple(out)
