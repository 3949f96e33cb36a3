"""Syntax-error diagnostics: a failed Lark parse in the user's words.

Each function raises one `SpecSyntaxError` at the real mistake rather than where Lark
stopped: keywords cut from their argument by a line end, names glued to numbers (`64g`),
unclosed or mismatched brackets, and likely misspelt keywords. Lark's exceptions are
read duck-typed, so this module never imports Lark.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NoReturn

from hpoc.dsl.terminals import CLOSE, OPEN_WORD, PAIR, VALUE_START, WORDS
from hpoc.errors import Diagnostic, fail

if TYPE_CHECKING:
    from hpoc.dsl.parse import _State


# A goal keyword that ends its line: newlines are not significant, so the next line's first
# word would be taken as the metric (`objective minimize` then `search optuna` on the next).
_GOAL_ALONE = re.compile(r"^([ \t]*(?:objective[ \t]+)?)(minimize|maximize)[ \t]*(?:#[^\n]*)?$", re.M)


# `study` alone on its line, a section after it: `study pipeline { ... }` to the grammar.
_STUDY_ALONE = re.compile(r"^([ \t]*study)[ \t]*(?:#[^\n]*)?\n\s*([A-Za-z_]\w*)[ \t]*\{", re.M)


def keyword_alone(text: str, file: str) -> None:
    """Fail where `study`, `minimize` or `maximize` ends its line: the grammar would take
    the next line's first word as its argument and report the mistake too late."""
    for m in _STUDY_ALONE.finditer(text):
        fail_at(text, file, "`study` needs its name on the same line", "HP101", text.count("\n", 0, m.start()) + 1,
                len(m.group(1)) + 1, help=f'write `study "my-study"`; the `{m.group(2)} {{ ... }}` below would be '
                "taken as the name")
    for m in _GOAL_ALONE.finditer(text):
        if m.group(1).strip() or text.rfind("{", 0, m.start()) > text.rfind("}", 0, m.start()):
            line = text.count("\n", 0, m.start()) + 1
            word = m.group(2)
            example = f"{word} {'val_loss' if word == 'minimize' else 'val_accuracy'}"
            fail_at(text, file, f"`{word}` needs its metric on the same line", "HP101", line, m.end(2) + 1
                    - m.start(), help=f"write `{m.group(1).strip() + ' ' if m.group(1).strip() else ''}{example}`")


def fail_at(
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
    """Fail with one diagnostic at `line`:`col`, `width` columns wide, its line shown."""
    d = Diagnostic(msg, code, file, line, col, line, col + width, help=help, notes=notes)
    fail(d.with_source(text))


# `if a == 1 and b == 2`: the grammar takes `and b` for a block and fails at the `==` after it.
_COMBINED = re.compile(r"\bif\s+[\w.]+\s*(?:==|in\b)[^#]*?\s(and|or|&&|\|\|)(?=\s)")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def combined_condition(text: str, file: str, line: int) -> None:
    """Fail at an `and`/`or` that joins two conditions on `line`: the language has none."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return
    masked = _STRING.sub(lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', lines[line - 1])
    m = _COMBINED.search(masked.split("#", 1)[0])
    if m:
        fail_at(text, file, f"conditions cannot be combined with `{m.group(1)}`", "HP101", line, m.start(1) + 1,
                width=len(m.group(1)), help="a parameter depends on one condition: `if p == v`, or `if p in [v, w]` "
                "for several values of one parameter")


def _accepted(exc: Any, plain: Any) -> set[str]:
    """What the parser really accepts where `exc` stopped; else the exception's `plain` set,
    which is still a hint."""
    try:
        return set(exc.interactive_parser.accepts()) or set(plain or ())
    except Exception:  # noqa: BLE001 - best effort
        return set(plain or ())


def _describe_char(ch: str) -> str:
    return f"`{ch}`" if ch.isprintable() and ch != "`" else repr(ch)


def unexpected_char(text: str, file: str, exc: Any) -> NoReturn:
    """Fail for a character that starts no token (Lark's `UnexpectedCharacters`)."""
    combined_condition(text, file, exc.line)
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
        # the lexer's set merges the contexts that share a state (`}`, `]` inside a call)
        expected = _expected_words(_accepted(exc, exc.allowed))
        if expected:
            msg += f", expected {expected}"
        number = re.match(r"\+(\d[\w.]*)", text[exc.pos_in_stream:]) if ch == "+" else None
        # `src/train:Net`, `src/train.py:Net`: a module's file by its path from the spec
        start = re.search(r"[\w/.]*$", text[: exc.pos_in_stream]).start()  # type: ignore[union-attr]
        path = re.match(r"((?:\w+/)+\w+?)(?:\.py)?(:\w+)(?![\w/.])", text[start:]) if ch == "/" else None
        line_start = text.rfind("\n", 0, exc.pos_in_stream) + 1  # `batch-size = ...`, as YAML spells it
        key = re.match(r"[ \t]*([A-Za-z_][\w.]*(?:-[\w.]+)+)[ \t]*=(?!=)", text[line_start:]) if ch == "-" else None
        if text.startswith(("//", "/*"), exc.pos_in_stream):  # C's and JSON5's comments
            help = "comments start with `#`"
        elif key:
            help = (f"names are letters, digits and `_`: write `{key[1].replace('-', '_')}`, or quote the key: "
                    f'`"{key[1]}"`')
        elif ch == "-" and (word := re.search(r"[=(,\[][ \t]*([A-Za-z_]\w*)$", text[: exc.pos_in_stream])):
            whole = word[1] + re.match(r"[\w-]*", text[exc.pos_in_stream:]).group(0)  # type: ignore[union-attr]
            help = f'a bare word is letters, digits and `_`: quote it, `"{whole}"`'  # `act = leaky-relu`
        elif path:
            help = (f"write `{path[1].replace('/', '.')}{path[2]}`: a module is named as Python imports it, "
                    "from the spec's directory")
        elif number:
            help = f"write `{number.group(1)}`: numbers take no `+`"
        elif ch in "*/+" and re.search(r"[\w.)]\s*$", text[: exc.pos_in_stream]):
            help = "values are literals, not expressions: write the result"
        else:
            help = _non_ascii_hint(text, exc.pos_in_stream)
    fail_at(text, file, msg, "HP102", exc.line, exc.column, help=help)


def _article(name: str) -> str:
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _non_ascii_hint(text: str, pos: int) -> str | None:
    """What to write for a character that looks like one the language has: a digit of
    another script, a typographic quote, another space; or for a name in other letters."""
    import unicodedata

    ch = text[pos]
    if ch.isascii():
        return None
    if unicodedata.decimal(ch, None) is not None:
        return f"write `{unicodedata.decimal(ch)}`: numbers are written with ASCII digits"
    if ch in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\u2018\u2019\u201a\u201b":
        return 'strings use straight double quotes: "like this"'
    if unicodedata.category(ch) == "Pd" or ch == "\u2212":  # a dash or minus from a paper
        name = _article(unicodedata.name(ch, "dash").lower())
        return f"write `-`: `{ch}` is {name} (U+{ord(ch):04X}), not the ASCII minus sign"
    if unicodedata.category(ch) == "Cf":  # zero-width space or joiner, from a web page
        return f"this is an invisible {unicodedata.name(ch, 'format character').lower()} (U+{ord(ch):04X}): delete it"
    if unicodedata.category(ch) == "Zs":
        return f"this is a {unicodedata.name(ch, 'space').lower()} (U+{ord(ch):04X}): write a plain space"
    if not ch.isalpha() and (plain := unicodedata.normalize("NFKC", ch)).isascii() and plain.isprintable():
        return f"write `{plain}`: `{ch}` is {unicodedata.name(ch, 'a full-width sign').lower()}, not ASCII"  # an IME's
    if ch.isalpha():
        before, after = re.search(r"\w*$", text[:pos]), re.match(r"\w*", text[pos:])
        word = (before.group(0) if before else "") + (after.group(0) if after else "")
        name = unicodedata.name(ch, "").lower()
        if (plain := unicodedata.normalize("NFKC", ch)).isascii():  # full-width, from an IME
            return f"write `{plain}`: `{ch}` is {name}, not an ASCII letter"
        rest = word.replace(ch, "")
        if rest and rest.isascii() and name.startswith(("cyrillic", "greek")):  # a pasted homoglyph
            return f"`{ch}` is {name}, which looks like an ASCII letter: retype it"
        return f'names are ASCII letters, digits and `_`; other text goes in a string: "{word}"'
    return None


def _describe_token(tok: Any) -> str:
    if tok.type == "$END":
        return "end of file"
    word = WORDS.get(tok.type)
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
        names -= VALUE_START
        words.append("a value")
    if {"COMMA", "SEMICOLON"} & names and names - {"COMMA", "SEMICOLON", "RPAR", "RSQB"}:
        names -= {"COMMA", "SEMICOLON"}  # optional separators: not worth listing
    words += [WORDS[n] for n in WORDS if n in names]
    words += sorted(f"`{n.lower()}`" for n in names if n not in WORDS and not n.startswith("__"))
    if len(words) > 8:
        return ", ".join(words[:8]) + ", …"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def unexpected_token(text: str, file: str, exc: Any, state: _State) -> NoReturn:
    """Fail for a token the grammar does not accept there, or the end of the file; the
    lexer's `state` tells which bracket is left open or mismatched."""
    tok = getattr(exc, "token", None)
    expected = _accepted(exc, getattr(exc, "expected", None))  # LALR merges lookaheads
    if tok is not None and tok.type != "$END":
        combined_condition(text, file, tok.line)
    glued = _glued_suffix(text, len(text) if tok is None or tok.type == "$END" else tok.start_pos or 0)
    if glued is not None:
        line, col, width, msg, help = glued
        code = "HP102" if msg.startswith("unexpected character") else "HP101"  # `1e−5`'s minus
        fail_at(text, file, msg, code, line, col, width=width, help=help)
    end = tok is None or tok.type == "$END"
    if not (end and state.stack):  # a file that ends inside a bracket: that is said first
        stray_word(text, file, len(text) if end else tok.start_pos or 0, state)
    if tok is None or tok.type == "$END":
        _unexpected_end(text, file, tok, expected, state)
    if tok.type in CLOSE and state.mismatch is not None:
        ch, line, col = state.mismatch
        if ch:
            msg = f"mismatched `{tok}`: `{ch}` opened at {line}:{col} is still open"
            help = f"close it with `{PAIR[ch]}` first"
        else:
            msg = f"unmatched `{tok}`: nothing is open here"
            help = "remove it, or check the brackets above"
        fail_at(text, file, msg, "HP101", tok.line, tok.column, help=help)
    msg = f"unexpected {_describe_token(tok)}"
    if expected:
        msg += f", expected {_expected_words(expected)}"
    width = max(1, (tok.end_column or tok.column + 1) - tok.column) if tok.end_line == tok.line else 1
    fail_at(text, file, msg, "HP101", tok.line, tok.column, width=width,
            help=_left_open(text, tok, state) or _keyword_key(text, tok, state) or _token_help(text, tok, expected)
            or _keyword_hint(text, tok))


def _keyword_key(text: str, tok: Any, state: _State) -> str | None:
    """`space { if = 1 }`: a key named like a keyword that begins an item is written quoted."""
    word = re.search(r"(?:^|[\s{,;])(if|objective)[ \t]*$", text[: tok.start_pos])
    if tok.type != "EQUAL" or word is None or not state.stack:
        return None
    value = re.match(r"[ \t]*([^\s,;}]*)", text[tok.end_pos:]).group(1) or "..."  # type: ignore[union-attr]
    what = "a condition" if word[1] == "if" else "the objective"
    return f'`{word[1]}` begins {what}; a setting of that name is quoted: `"{word[1]}" = {value}`'


def _left_open(text: str, tok: Any, state: _State) -> str | None:
    """`lr = loguniform(1e-4, 1e-2` with `epochs = 2` on the next line: the `)` is missing,
    not a `,` (which would make the setting an argument)."""
    if not state.stack or state.stack[-1][0] not in "([" or tok.type != "NAME":
        return None
    ch, line, col = state.stack[-1]
    if line >= tok.line or not re.match(r"[ \t]*=(?!=)", text[tok.end_pos:]):
        return None
    opened = sum(len(row) + 1 for row in text.split("\n")[: line - 1]) + col  # just after the bracket
    if re.search(r"[A-Za-z_]\w*[ \t]*=(?!=)", text[opened: tok.start_pos]):
        return None  # keyword arguments (`data:Getter(root = "d"`): a `,` may be what is missing
    return f"close the `{ch}` of line {line} (column {col}) with `{PAIR[ch]}`: a setting starts here"


def _unexpected_end(text: str, file: str, tok: Any, expected: set[str], state: _State) -> NoReturn:
    """The file ends inside a bracket, or where the grammar wants more."""
    if state.stack:
        ch, line, col = state.stack[-1]
        fail_at(text, file, f"unclosed `{ch}`: the file ends before it is closed", "HP103", line, col,
                help=_where_to_close(text, ch, line) or f"add `{PAIR[ch]}` where the {OPEN_WORD[ch]} should end")
    help = _keyword_hint(text, tok)
    if help is None:
        last_words(text, file)
    lines = text.split("\n")
    line, col = len(lines), len(lines[-1]) + 1
    if line > 1 and not lines[-1]:  # point at the last line's end, not past the final newline
        line, col = line - 1, len(lines[-2]) + 1
    fail_at(text, file, f"unexpected end of file, expected {_expected_words(expected)}", "HP103", line, col,
            help=help)


# The file's last line of words alone (`extra stuff here`): the parser reads a block's head
# and runs out of file, so it would say "end of file" at the end of that line.
_LAST_WORDS = re.compile(r"(?:^|\n)([ \t]*)([A-Za-z_]\w*(?:[ \t]+[A-Za-z_]\w*)*)[ \t]*\s*$")


def last_words(text: str, file: str) -> None:
    """Fail where a line of bare words that ends the file starts: it is no item."""
    masked = _COMMENT_OR_STRING.sub(_blank, text)
    m = _LAST_WORDS.search(masked)
    if m is None or m.group(2).split()[0] in _NOT_STRAY:
        return
    line = masked.count("\n", 0, m.start(2)) + 1
    words = " ".join(m.group(2).split())
    fail_at(text, file, f"`{words}` is neither a setting nor a block", "HP101", line, len(m.group(1)) + 1,
            width=len(m.group(2)), help="a setting is written `key = value`, a block `kind { ... }`; "
            "a note goes after `#`")


def _where_to_close(text: str, ch: str, line: int) -> str | None:
    """"before line N": the first line after `line` that starts in column 1, when it reads
    as a section's head (`trials {`, `search random`) rather than a setting (`a = 1`) of a
    block written without indentation."""
    if ch != "{":
        return None
    lines = text.split("\n")
    for n in range(line + 1, len(lines) + 1):
        row = lines[n - 1]
        if not row.strip() or row.lstrip().startswith("#") or row[0].isspace() or row[0] in "}])":
            continue
        head = re.match(r"([A-Za-z_]\w*)(?:\s*\{|\s+[A-Za-z_\"])", row)
        if head is None:
            return None
        return f"add `}}` before line {n}, where `{head[1]}` starts in column 1 as a section does"
    return None


def _section_with_equals(text: str, tok: Any) -> str | None:
    """`search optuna` of `search = optuna {` or `search optuna = {` at a line's start (a
    config language's way to write a block), when `tok` is that `{` or `=`."""
    line = text[text.rfind("\n", 0, tok.start_pos) + 1 : tok.start_pos]
    word = r"[A-Za-z_]\w*"
    if tok.type == "LBRACE":
        m = re.fullmatch(rf"({word})\s*=\s*({word})\s*", line)
    elif tok.type == "EQUAL" and re.match(r"\s*\{", text[tok.end_pos:]):
        m = re.fullmatch(rf"({word})\s+({word})\s*", line)
    else:
        m = None
    return f"{m[1]} {m[2]}" if m else None


def _token_help(text: str, tok: Any, expected: set[str]) -> str | None:
    """The likely fix for a token written as another language would (YAML's `:`, Python's
    `True`, `.5`), or where the grammar wants a setting or a separator."""
    if tok.type == "DURATION" and re.search(r"(?<![\w.])\d+(?:\.\d+)?[smhd][ \t]+$", text[: tok.start_pos]):
        whole = re.search(r"(\S+)[ \t]+$", text[: tok.start_pos]).group(1)  # type: ignore[union-attr]
        return f"write `{whole}{tok}`: a duration is one word"
    clock = re.search(r"(?<![\w.:-])(\d+-)?(\d+):(\d+):(\d+)$", text[: tok.start_pos])
    if tok.type == "COLON" and clock:  # `1:00:00:00`, days as a fourth field
        if clock[1]:
            return "a walltime has at most three fields: `D-HH:MM:SS`, `HH:MM:SS` or `MM:SS`"
        return f"a walltime has at most three fields: for days write `{clock[2]}-{clock[3]}:{clock[4]}:" \
               f"{re.match(r'[0-9]*', text[tok.end_pos:]).group(0) or '00'}` (`D-HH:MM:SS`)"  # type: ignore[union-attr]
    if tok.type == "COLON" and "EQUAL" in expected:
        return "settings are written `key = value`, not `key: value`"
    if (listed := _logger_list(text, tok.line)) is not None:
        return listed
    line = text[text.rfind("\n", 0, tok.start_pos) + 1 : tok.start_pos]
    if tok.type == "LPAR" and (called := re.fullmatch(r"\s*((?:search|scheduler|logger)[ \t]+\w+)[ \t]*", line)):
        inner = re.match(r"[^)\n]*", text[tok.end_pos:]).group(0).strip()  # type: ignore[union-attr]
        return f"options go in braces: `{called[1]} {{ {inner} }}`"  # as Python builds `OptunaSearch(...)`
    head = _section_with_equals(text, tok)
    if head:
        return f"a section takes no `=`: write `{head} {{ ... }}`"
    if tok.type == "EQUAL" and "_EQEQ" in expected:
        return "compare with `==`"
    if tok.type == "EQUAL" and text[: tok.start_pos].endswith("="):  # `epochs == 4`
        return "a setting is `key = value`, with one `=` (`==` compares, after `if`)"
    if tok.type == "LSQB" and "LPAR" in expected and (name := re.search(r"([A-Za-z_]\w*)$", line)):
        inner = re.match(r"[^\]\n]*", text[tok.end_pos:]).group(0).strip()  # type: ignore[union-attr]
        return f"arguments go in parentheses: `{name[1]}({inner})`"  # `choice[32, 64]`
    if "_EQEQ" in expected:  # a condition written as Python tests a flag: `if use_bn {`, `if not use_bn`
        before = text[: tok.start_pos]
        if tok.type == "NAME" and re.search(r"\bif[ \t]+not[ \t]+$", before):
            return f"write `if {tok} == false`: a condition compares with `==` or `in`"
        if flag := re.search(r"\bif[ \t]+([A-Za-z_][\w.]*)[ \t]*$", before):
            if str(tok) in ("is", "eq", "equals"):
                return f"compare with `==`: `if {flag[1]} == ...`"
            if tok.type in ("STRING", "NUMBER", "NAME"):  # `if opt "sgd"`: the `==` left out
                return f"write `if {flag[1]} == {tok}`"
            if tok.type == "LSQB":
                return f"write `if {flag[1]} in [...]`"
            if tok.type in ("LBRACE", "COMMA", "RBRACE"):  # `if use_bn {`, `if use_bn, lr = ...`, `if use_bn }`
                return _flag_help(flag[1])
    if "MINIMIZE" in expected:
        return _keyword_hint(text, tok) or "write `objective minimize val_loss` or `objective maximize val_accuracy`"
    if tok.type in ("NUMBER", "NAME") and re.search(r"(?:^|\n)\s*study\s+$", text[: tok.start_pos]):
        return f'the study name is a string: `study "{tok}"`'
    if "EQUAL" in expected and tok.type in VALUE_START | {"NAME"}:
        return "settings are written `key = value`"
    if "COMMA" in expected and ("RSQB" in expected or "RPAR" in expected):
        return "separate items with `,`"
    if tok.type == "NAME" and str(tok) in ("True", "False", "None"):
        return f"write `{ {'True': 'true', 'False': 'false', 'None': 'null'}[str(tok)] }`"
    if tok.type == "DOT":  # `.5` and `5.`, as Python and YAML allow
        before, after = text[: tok.start_pos], text[tok.end_pos:]
        path = re.match(r"/((?:\w+/)*\w+?)(?:\.py)?(:\w+)?(?![\w/.])", after)  # `./models/net.py:Net`
        if path:
            module = path[1].replace("/", ".") + (path[2] or "")
            return f"write `{module}`: a module is named as Python imports it, from the spec's directory"
        if re.match(r"\d", after) and not re.search(r"[\w.]$", before):
            return f"write `0.{re.match(r'[0-9]+', after).group(0)}`"  # type: ignore[union-attr]
        if re.search(r"(?<![\w.])\d+$", before):
            whole = re.search(r"\d+$", before).group(0)  # type: ignore[union-attr]
            return f"write `{whole}.0` or `{whole}`"
    return None


# A number, then a name: glued (`64g`), or one unit letter after a space that ends the
# value (`64 G }`; `a = 1 m = 2` is two settings). An exponent is part of the number (`1e-3` is not the number 1 and a name `e`).
_GLUED = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![eE][+-]?\d)"
                    r"([A-Za-z_]\w*|[ \t]+(?:[KMGT]i?B?|[smhd])(?=[ \t]*(?:[,;})\]#]|$)))")
_VALID_GLUED = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+|(?:\d+(?:\.\d+)?[smhd])*[smhd])|\d+[KMGT]B?")
# `0x10`, `0o17`, `0b101` after their `0`: base, digits, what the literal is called
_BASES = {"x": (16, r"[0-9A-Fa-f]+", "a hexadecimal"), "o": (8, r"[0-7]+", "an octal"),
          "b": (2, r"[01]+", "a binary")}
_UNIT_HELP = "sizes are written like `64G` (K, M, G, T) and durations like `90m`, `2h` (s, m, h, d)"


_UNIT_WORDS = {"s": ("s", "sec", "secs", "second", "seconds"), "m": ("min", "mins", "minute", "minutes"),
               "h": ("hr", "hrs", "hour", "hours"), "d": ("day", "days")}


def _whole_size(number: str, unit: str) -> str:
    """`1536G` for `1.5T`: the same size in the next smaller unit, a whole number there."""
    units = "KMGT"
    value, i = float(number), units.index(unit)
    while i > 0 and not value.is_integer():
        value, i = value * 1024, i - 1
    if value.is_integer() and units[i] != unit:
        return f"write `{int(value)}{units[i]}`: a size is a whole number of its unit"
    return "use a smaller unit: `1536M` rather than `1.5G`"


def _spelt_unit(number: str, suffix: str) -> str | None:
    """`120m` for `120min`, `1h30m` for `1h30`: a duration's unit as a word, or a minute
    count left without its `m`."""
    word = suffix.lower()
    for letter, words in _UNIT_WORDS.items():
        if word in words:
            return f"{number}{letter}"
    if re.fullmatch(r"h\d+", suffix) and number.isdigit():
        return f"{number}{suffix}m"
    return None


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
                if m.group(1).startswith("-") and not re.search(r"[eE]", m.group(1)):  # `-5m`: `-5`, then a key `m`
                    what = "duration" if m.group(0)[-1] in "smhd" else "size"
                    return (text.count("\n", 0, line_start) + 1, m.start() + 1, len(m.group(0)),
                            f"a {what} cannot be negative: `{m.group(0)}`", f"write `{m.group(0)[1:]}`")
                continue
            number, suffix = m.group(1), m.group(2)
            col, width = m.start(2) + 1, len(suffix)
            after = line[m.end() : m.end() + 1]
            if suffix in ("e", "E") and after and (dash := _non_ascii_hint(after, 0)) and dash.startswith("write `-`"):
                # `1e−5` from a paper: the minus is the mistake, not a name after the number
                return text.count("\n", 0, line_start) + 1, m.end() + 1, 1, f"unexpected character `{after}`", dash
            if re.fullmatch(r"(?:_\d+)+", suffix):  # `1_000`, as Python would allow
                col, width = m.start(1) + 1, len(m.group(0))
                msg, help = f"digits are not grouped with `_` in `{number}{suffix}`", \
                    f"write `{number}{suffix.replace('_', '')}`"
            elif suffix[0] in " \t":  # `64 G`
                suffix = suffix.strip()
                col, width = m.start(2) + 1 + m.group(2).index(suffix), len(suffix)
                unit = suffix[0] if "i" in suffix else suffix  # `64 GiB`: SLURM's G is one
                msg, help = f"space between the number `{number}` and its unit `{suffix}`", f"write `{number}{unit}`"
            elif suffix in "KMGT" and not number.lstrip("-").isdigit():
                msg = f"a size must be a whole number, not `{number}{suffix}`"
                help = _whole_size(number, suffix)
            elif number.lstrip("-") == "0" and (base := _BASES.get(suffix[0].lower())) \
                    and re.fullmatch(base[1], suffix[1:]):  # `0x10`, as C and Python write it
                col, width = m.start(1) + 1, len(m.group(0))
                decimal = int(suffix[1:], base[0]) * (-1 if number.startswith("-") else 1)
                msg = f"`{number}{suffix}` is {base[2]} literal: numbers here are decimal"
                help = f"write `{decimal}`"
            elif re.fullmatch(r"[KMGT]iB?", suffix) and number.isdigit():  # as `free -h` prints it
                msg = f"unexpected name `{suffix}` right after the number `{number}`"
                help = f"write `{number}{suffix[0]}`: SLURM's units are binary, its {suffix[0]} is a {suffix[0]}iB"
            elif re.fullmatch(r"[kgt]b?|mb", suffix) and number.isdigit():  # `64g`: `m` alone is minutes
                msg = f"unexpected name `{suffix}` right after the number `{number}`"
                help = (f"write `{number}{suffix.upper()}`: a size's unit is a capital letter "
                        f'(`"{number}{suffix}"` as a string is read too)')
            else:
                msg, help = f"unexpected name `{suffix}` right after the number `{number}`", _UNIT_HELP
                unit = _spelt_unit(number, suffix)
                if unit:
                    help = f"write `{unit}`"
            found = (text.count("\n", 0, line_start) + 1, col, width, msg, help)
    return found


# A word ending the line after a value (`x = choice(1, 2) stray`): with newlines not
# significant it starts the next item, a block `stray y` or a key `stray`, and the parser
# fails on the next line. Up to `pos`: the word, line breaks, at most two more words.
_STRAY = re.compile(r"(?<![\w.])([A-Za-z_]\w*)[ \t]*\n\s*(?:(?:[A-Za-z_]\w*|\"[^\"\n]*\")\s*){0,2}$")
# What comes before it on its line: a setting (or a condition) with a whole value, or a goal.
_AFTER_VALUE = re.compile(r"(?:=|\bobjective[ \t]+(?:minimize|maximize)\b)[^\n]*[\w\"\)\]\}][ \t]+$")
_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_NOT_STRAY = {"if", "in", "objective", "minimize", "maximize", "true", "false", "null"}


def _blank(m: re.Match[str]) -> str:
    """A string's content or a comment as spaces, so that neither is read as words."""
    s = m.group(0)
    return '"' + " " * (len(s) - 2) + '"' if s[0] == '"' else " " * len(s)


def stray_word(text: str, file: str, pos: int, state: _State) -> None:
    """Fail at a word left after a value at the end of its line, not at the next line where
    the parser noticed."""
    if state.mismatch is not None:
        return
    masked = _COMMENT_OR_STRING.sub(_blank, text[:pos])
    m = _STRAY.search(masked)
    if m is None or m.group(1) in _NOT_STRAY:
        return
    line_start = masked.rfind("\n", 0, m.start(1)) + 1
    if not _AFTER_VALUE.search(masked[line_start : m.start(1)]):
        return
    word = m.group(1)
    help = f"one setting per line, written `key = value`: remove `{word}` or finish its setting"
    if re.search(r"\bif[ \t]+$", masked[line_start : m.start(1)]):  # `... if use_bn`, Python's truth test
        help = _flag_help(word)
    fail_at(text, file, f"unexpected word `{word}` after the value", "HP101", text.count("\n", 0, m.start(1)) + 1,
            m.start(1) - line_start + 1, width=len(word), help=help)


def _flag_help(name: str) -> str:
    return f"write `if {name} == true` (or the value that switches it on): a condition compares with `==` or `in`"


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


def _logger_list(text: str, line_no: int) -> str | None:
    """`logger mlflow, tensorboard` (or `[...]`) on the error's line or the one before:
    the parser read one logger, then a stray item."""
    lines = text.split("\n")
    for row in lines[max(0, line_no - 2) : line_no][::-1]:
        m = re.fullmatch(r"logger\s*\[?\s*(\w+)\s*,?\s*((?:\w+\s*,?\s*)+)\]?\s*(?:#.*)?", row.strip())
        if m:
            kinds = [m[1], *re.findall(r"\w+", m[2])]
            return "one `logger` per kind, each on its own line: " + ", ".join(f"`logger {k}`" for k in kinds)
    return None


def _keyword_hint(text: str, tok: Any) -> str | None:
    """"did you mean `objective`?" for a misspelt keyword on the error's line."""
    if tok is None or tok.type == "$END":
        line_no = text.rstrip().count("\n") + 1
    else:
        line_no = tok.line
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines):
        return None
    if (listed := _logger_list(text, line_no)) is not None:
        return listed
    import difflib

    for m in _WORD.finditer(lines[line_no - 1]):
        word = m.group(1)
        if not word or word in _KEYWORDS:
            continue
        guess = _SYNONYMS.get(word) or next(iter(difflib.get_close_matches(word, _KEYWORDS, 1, 0.75)), None)
        if guess:
            return f"did you mean `{guess}`?"
    return None
