"""A DeepSpeed config file read as DeepSpeed reads it: DeepSpeed loads it with hjson, which
takes comments (`//`, `#`, `/* */`) and trailing commas, as its tutorials' files have them.
hjson comes with DeepSpeed, not with hpoc on a login node, and reads much else as strings (a
YAML file, a missing quote): comments and trailing commas are blanked out here, keeping
every other character where it was (an error's line and column are the file's), and the
rest is read as JSON, in `hpoc check` and in the trials alike."""

from __future__ import annotations

import json
from typing import Any, Callable


def loads(text: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """The file's value; json.JSONDecodeError, at the file's line and column, for what is not
    JSON once its comments and trailing commas are left out."""
    return json.loads(blank_comments(text), object_pairs_hook=object_pairs_hook)


def read(path: str) -> Any:
    """The file at `path` (a trial's read); ValueError naming `path:line:col` when it is not JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the DeepSpeed config is not JSON: {path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None


def blank_comments(text: str) -> str:
    """`text` with its comments and trailing commas as spaces (newlines kept), strings as they are."""
    out = list(text)
    i, n = 0, len(text)
    comma = -1  # the last comma outside strings, while only blanks and comments follow it
    while i < n:
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            comma = -1
            continue
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2  # unclosed: JSON's error at the end then
        else:
            if c in "}]" and comma >= 0:
                out[comma] = " "
            if not c.isspace():
                comma = i if c == "," else -1
            i += 1
            continue
        for k in range(i, end):
            if out[k] != "\n":
                out[k] = " "
        i = end
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """The index after the string that opens at `start` (escapes skipped)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        elif text[i] == "\n":  # JSON refuses it: left for json.loads to say where
            return i
        else:
            i += 1
    return i
