"""Text → `hpoc.dsl.ast.Study`: reading a spec, building the Lark parser and running it.

Lark is set up here and used only here and in `transform` (tree → AST); no Lark type
leaves the package. Every failure is a `SpecSyntaxError`: unreadable files, invalid
UTF-8, too-large files and too-deep nesting here, the rest in `syntax_errors` (unexpected
tokens with expected tokens in words, unclosed brackets). Comments are kept and attached
to the nearest item (`comments`) so that `hpoc fmt` can write them back.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hpoc.dsl import ast as A
from hpoc.dsl.comments import attach_comments
from hpoc.dsl.digest import _as_read, spec_digest
from hpoc.dsl.syntax_errors import fail_at, keyword_alone, unexpected_char, unexpected_token
from hpoc.dsl.terminals import CLOSE, OPEN
from hpoc.dsl.transform import to_ast
from hpoc.errors import Diagnostic, SpecSyntaxError, fail
from hpoc.files import missing_hint

MAX_BYTES = 2 * 1024 * 1024  # a study is a page of text; anything bigger is a mistake
MAX_DEPTH = 48  # nesting of brackets; the tree transformer recurses, so keep it bounded

_GRAMMAR = Path(__file__).with_name("grammar.lark")


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
            **{name: _on_open for name in OPEN},
            **{name: _on_close for name in CLOSE},
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
    """A private cache of the built parser (Lark pickles it; `hpoc.cache`). Lark checks
    its own version and the grammar inside the file; the name holds the grammar's digest
    and Python's version, so two Pythons sharing a $HOME do not rebuild it in turn."""
    from hpoc.cache import cache_dir

    path = cache_dir()
    if path is None:
        return False
    digest = hashlib.sha256(_GRAMMAR.read_bytes()).hexdigest()[:16]
    return os.path.join(path, f"grammar-{digest}-py{sys.version_info[0]}{sys.version_info[1]}.lark-cache")


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
    if st.stack and st.stack[-1][0] == CLOSE[tok.type]:
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
            whole_file("is a directory, not a study file", help=_in_directory(name))
        if name.endswith(".py"):  # the trainer, given for the study that names it
            whole_file("is a Python file, not a study",
                       help="pass the .hpo study whose `pipeline { trainer = ... }` names it")
        if name.endswith(".json"):  # most often a build's plan.json
            whole_file("is a JSON file, not a study",
                       help=f"{_compiled_from(name)} (`hpoc run` and `hpoc status` take a plan.json)")
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        stdin = ("studies are read from files, not from standard input (only `hpoc fmt -` reads one): save it to "
                 "a file and pass its path")
        whole_file("no such file", help=stdin if name == "-" else missing_hint(name, (".hpo", ".yaml", ".yml")))
    except PermissionError:
        whole_file("permission denied")
    except OSError as exc:
        whole_file(f"cannot read file: {exc.strerror or exc}")
    return _checked(data, name), spec_digest(data)


def _in_directory(directory: str) -> str:
    """What to pass instead of a directory: the studies in it, or the spec its plan names."""
    try:
        studies = sorted(e for e in os.listdir(directory) if e.endswith((".hpo", ".yaml", ".yml")))
    except OSError:
        studies = []
    if studies:
        shown = ", ".join(f"`{os.path.join(directory, e)}`" for e in studies[:3])
        return f"pass the path of a study file: {shown}" + (" …" if len(studies) > 3 else "")
    plan = os.path.join(directory, "plan.json")
    if os.path.isfile(plan):
        return f"this is a build directory: {_compiled_from(plan)}"
    return "pass the path of a .hpo file"


def _compiled_from(plan: str) -> str:
    """Advice to pass the spec a plan.json was compiled from, named when the plan says."""
    import json

    try:
        with open(plan, encoding="utf-8") as fh:
            source = json.load(fh)["source"]
        spec = os.path.join(source["workdir"], source["file"])
    except (OSError, ValueError, KeyError, TypeError):
        return "pass the spec it was compiled from"
    return f"pass the spec it was compiled from, `{spec}`"


def read_stream(stream: Any, name: str = "<stdin>") -> str:
    """The text of a spec read from a binary stream (`hpoc fmt -`, from an editor)."""
    return _checked(stream.read(MAX_BYTES + 1), name)


def _checked(data: bytes, name: str) -> str:
    if len(data) > MAX_BYTES:
        fail(Diagnostic(f"file is too large for a study (more than {MAX_BYTES // (1024 * 1024)} MiB)", "HP002",
                        name))
    return decode(data, name)


def decode(data: bytes, name: str) -> str:
    """UTF-8 text of a spec (as read: `_as_read`); invalid bytes are reported at their
    line and column."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # what Windows editors call "Unicode"
        fail(Diagnostic("file is UTF-16, not UTF-8", "HP003", name, help="save the file as UTF-8"))
    data = _as_read(data)
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
    return text


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
    keyword_alone(text, file)
    state = _State(file, [], [])
    _local.state = state
    try:
        tree = parser.parse(text)
        study = to_ast(tree, file)
    except _TooDeep as exc:
        fail_at(
            text,
            file,
            f"brackets nested too deeply (more than {MAX_DEPTH} levels)",
            "HP104",
            exc.line,
            exc.col,
            help="flatten the value; studies never need this much nesting",
        )
    except UnexpectedCharacters as exc:
        unexpected_char(text, file, exc)
    except UnexpectedInput as exc:
        unexpected_token(text, file, exc, state)
    except VisitError as exc:
        if isinstance(exc.orig_exc, SpecSyntaxError):
            err = exc.orig_exc
            raise type(err)([d.with_source(text) for d in err.diagnostics]) from None
        raise
    finally:
        _local.state = None
    return attach_comments(study, state.comments, text)
