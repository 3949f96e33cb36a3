"""YAML text → a small tree of `YMap`/`YSeq`/`YScalar` with a span on every node.

PyYAML's `compose` gives node marks (line/column) but no checks; this module adds what a
config reader must not skip: one document only, duplicate keys are errors, merge keys
(`<<`) are honoured, aliases are expanded under a budget (no "billion laughs"), nesting is
bounded, unsupported tags are reported, and plain scalars such as `1e-5` - strings to
YAML 1.1 - are numbers, as a user means them. Every failure is a `Diagnostic` at a
line and column of the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, SpecSyntaxError

MAX_BYTES = 256 * 1024  # an HPO config is a page of YAML; more is a mistake or an attack
MAX_NODES = 50_000  # values after expanding aliases
MAX_DEPTH = 48  # nesting of mappings and sequences

SYNTAX, TOO_BIG, TAG = "HP110", "HP111", "HP112"
DUPLICATE = "HP202"


@dataclass(frozen=True)
class YScalar:
    """A scalar: `value` typed (str, int, float, bool, None), `text` as written."""

    value: Any
    text: str
    span: A.Span
    quoted: bool = False


@dataclass(frozen=True)
class YSeq:
    items: tuple["YNode", ...]
    span: A.Span


@dataclass(frozen=True)
class YMap:
    """A mapping with string keys in file order: `(key, key_span, value)` entries."""

    entries: tuple[tuple[str, A.Span, "YNode"], ...]
    span: A.Span
    index: dict[str, int] = field(default_factory=dict, compare=False)

    def get(self, key: str) -> "YNode | None":
        i = self.index.get(key)
        return self.entries[i][2] if i is not None else None

    def key_span(self, key: str) -> A.Span | None:
        i = self.index.get(key)
        return self.entries[i][1] if i is not None else None

    def keys(self) -> list[str]:
        return [k for k, _, _ in self.entries]


YNode = Union[YScalar, YSeq, YMap]

# YAML 1.2 numbers that YAML 1.1 (PyYAML) leaves as strings: `1e-5`, `3E+2`, `+7`.
_NUMBER_12 = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_HPO_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)  # what .hpo files can spell


def span_of(file: str, node: Any) -> A.Span:
    start, end = node.start_mark, node.end_mark
    if end.line > start.line and end.column == 0 and end.line > 0:
        # Block nodes end at the start of the next line: keep the span on its own lines.
        return A.Span(file, start.line + 1, start.column + 1, start.line + 1, start.column + 2)
    return A.Span(file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


def hpo_number_text(text: str, value: Any) -> str | None:
    """`text` if a .hpo file may spell `value` that way (so `hpoc convert` keeps `1e-5`)."""
    if not _HPO_NUMBER.fullmatch(text):
        return None
    parsed: int | float = float(text) if any(c in text for c in ".eE") else int(text)
    if type(parsed) is not type(value) or parsed != value:
        return None
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")
_STANDARD = "tag:yaml.org,2002:"  # YAML's own tags, written `!!name`


def _as_written(tag: str) -> str:
    """`!!python/tuple`, not the parser's `tag:yaml.org,2002:python/tuple`."""
    return "!!" + tag[len(_STANDARD):] if tag.startswith(_STANDARD) else tag


def load(text: str, file: str) -> YNode:
    """The single document of `text` as a YNode; SpecSyntaxError with one diagnostic."""
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        _fail(file, f"file is too large for a config (more than {MAX_BYTES // 1024} KiB)", TOO_BIG)
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        _fail(file, "file is empty", SYNTAX, help="the config needs a pipeline such as `ray_training_pipeline:`")
    try:
        # The pure-Python loader: its composer recurses in Python (a RecursionError on deep
        # nesting), where the C one could overflow the C stack.
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p] if exc.problem_mark is not None else [exc.context]
        msg = " ".join(" ".join(str(p) for p in parts if p).split()) or "invalid YAML"
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        help = None
        if "found character '\\t'" in msg or "\\t" in msg:
            indent = line is not None and col is not None and not text.split("\n")[line - 1][: col - 1].strip()
            help = "YAML indents with spaces, not tabs" if indent else "YAML takes no tab here: write a space"
        elif "expected a single document" in msg:
            help = "keep one document in the file (remove the extra `---`)"
        elif "mapping values are not allowed here" in msg and line is not None and col is not None:
            help = _mapping_value_help(text.split("\n"), line, col)
        elif "expected <block end>, but found '?'" in msg and line is not None and col is not None:
            help = _item_key_help(text.split("\n"), line, col)
        elif "flow" in msg and line is not None and col is not None and \
                text.split("\n")[line - 1][max(col - 2, 0):col] == "${":
            # `{name: run-${epochs}}`: inside braces, YAML reads the reference's `{` as a mapping
            help = 'quote a value holding `${...}` inside `{...}` or `[...]`: `key: "run-${epochs}"`'
        _fail(file, f"invalid YAML: {msg}", SYNTAX, line, col, help=help, text=text)
    except yaml.YAMLError as exc:  # e.g. a ReaderError (a control character): a position only
        pos = getattr(exc, "position", None)
        line = col = None
        if isinstance(pos, int) and 0 <= pos <= len(text):
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        # PyYAML names the stream and the offset: the location says both, for the file
        msg = re.sub(r'\s+in "<[^"]*>", position \d+$', "", " ".join(str(exc).split()))
        _fail(file, f"invalid YAML: {msg}", SYNTAX, line, col, text=text)
    except RecursionError:
        _fail(file, "YAML is nested too deeply", TOO_BIG, help="configs never need this much nesting")
    if node is None:
        _fail(file, "file is empty", SYNTAX, help="the config needs a pipeline such as `ray_training_pipeline:`")
    return _Converter(file, text).convert(node, 0)


def _mapping_value_help(lines: list[str], line: int, col: int) -> str | None:
    """Why a `key:` is not allowed where it is: a `: ` inside an unquoted value, or (as in
    configs copied from rendered docs) a key indented deeper than the line above it."""
    here = lines[line - 1] if line <= len(lines) else ""
    before = here[: col - 1].strip()
    if ": " in before.removeprefix("- "):
        return "a value holding `: ` must be quoted: `key: \"a: b\"`"
    above = next((i for i in range(line - 2, -1, -1) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
                 None)
    if above is None:
        return None
    indent = len(here) - len(here.lstrip())
    prev = lines[above]
    if indent > len(prev) - len(prev.lstrip()) and ":" in prev:
        return (f"`{before}` is indented deeper than line {above + 1}, whose key already has a value: "
                "indent it as the keys beside it (in a list item, as the first key after `- `)")
    return None


def _item_key_help(lines: list[str], line: int, col: int) -> str | None:
    """A key lined up with the `- ` of the list item above it (it belongs to that item)."""
    here = lines[line - 1] if line <= len(lines) else ""
    key = here.strip().split(":", 1)[0]
    for i in range(line - 2, -1, -1):
        prev = lines[i]
        if not prev.strip() or prev.lstrip().startswith("#"):
            continue
        if len(prev) - len(prev.lstrip()) == col - 1 and prev.lstrip().startswith("- "):
            return (f"`{key}` is lined up with the `- ` of line {i + 1}: indent it two more spaces to put it "
                    "in that item, beside its first key")
        return None
    return None


def _fail(file: str, msg: str, code: str, line: int | None = None, col: int | None = None,
          *, help: str | None = None, text: str | None = None, end_col: int | None = None) -> Any:
    d = Diagnostic(msg, code, file, line, col, line, end_col or (col + 1 if col else None), help=help)
    if text is not None:
        d = d.with_source(text)
    raise SpecSyntaxError([d])


class _Converter:
    def __init__(self, file: str, text: str):
        self.file, self.text = file, text
        self.count = 0
        self.seen: set[int] = set()  # nodes converted once: seeing one again means an alias
        self.keys: list[A.Span] = []  # spans of the mapping keys on the path being converted
        self.alias_site: A.Span | None = None  # key under which an alias is being expanded
        import yaml

        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def fail(self, node: Any, msg: str, code: str, help: str | None = None,
             notes: tuple[str, ...] = ()) -> Any:
        self.fail_at(span_of(self.file, node), msg, code, help, notes)

    def fail_at(self, sp: A.Span, msg: str, code: str, help: str | None = None,
                notes: tuple[str, ...] = ()) -> Any:
        end = sp.end_col if sp.end_line == sp.line else None
        d = Diagnostic(msg, code, self.file, sp.line, sp.col, sp.line, end, help=help, notes=notes)
        raise SpecSyntaxError([d.with_source(self.text)])

    def convert(self, node: Any, depth: int) -> YNode:
        started = False
        if id(node) in self.seen and self.alias_site is None:
            self.alias_site = self.keys[-1] if self.keys else span_of(self.file, node)
            started = True
        self.seen.add(id(node))
        try:
            return self._convert(node, depth)
        finally:
            if started:
                self.alias_site = None

    def _convert(self, node: Any, depth: int) -> YNode:
        import yaml

        self.count += 1
        if self.count > MAX_NODES:
            msg = f"YAML expands to more than {MAX_NODES} values"
            if self.alias_site is not None:
                self.fail_at(self.alias_site, msg, TOO_BIG,
                             help="aliases (`*name`) repeat whole subtrees; a config never needs this many")
            self.fail(node, msg, TOO_BIG, help="a config needs a few hundred values at most")
        if depth > MAX_DEPTH:
            self.fail_at(self.alias_site or span_of(self.file, node),
                         f"YAML is nested more than {MAX_DEPTH} levels deep", TOO_BIG,
                         help="a recursive alias (`&a [*a]`) nests without end"
                         if self.alias_site else "configs never need this much nesting")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            self.plain_tag(node, "tag:yaml.org,2002:seq")
            return YSeq(tuple(self.convert(n, depth + 1) for n in node.value), span_of(self.file, node))
        self.plain_tag(node, "tag:yaml.org,2002:map")
        return self.mapping(node, depth)

    def plain_tag(self, node: Any, tag: str) -> None:
        if node.tag != tag:
            self.fail(node, f"unsupported YAML tag `{_as_written(node.tag)}`", TAG, help="remove the tag")

    def no_surrogate(self, node: Any) -> None:
        if _SURROGATE.search(node.value):  # `"\ud800"`: half a pair, cannot be written as UTF-8
            self.fail(node, "unpaired surrogate escape in string", SYNTAX,
                      help="write the character itself, or both halves of a pair: `\\ud83d\\ude00`")

    def scalar(self, node: Any) -> YScalar:
        import yaml

        self.no_surrogate(node)
        sp = span_of(self.file, node)
        quoted = node.style in ("'", '"', "|", ">")
        tag = node.tag
        if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            if not quoted and _NUMBER_12.fullmatch(node.value):  # `1e-5` means a number
                num = float(node.value) if any(c in node.value for c in ".eE") else int(node.value)
                return self.number(node, num, sp)
            return YScalar(node.value, node.value, sp, quoted)
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                       "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
            self.fail(node, f"unsupported YAML tag `{_as_written(tag)}`", TAG,
                      help="write a plain value: a number, string, true/false or null")
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self.fail(node, f"invalid value: {' '.join(str(exc).split())}", SYNTAX)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self.number(node, value, sp)
        return YScalar(value, node.value, sp)

    def number(self, node: Any, value: int | float, sp: A.Span) -> YScalar:
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, f"`{node.value}` is not a finite number", SYNTAX,
                      help="search bounds and settings must be finite")
        return YScalar(value, node.value, sp)

    def mapping(self, node: Any, depth: int) -> YMap:
        import yaml

        entries: list[tuple[str, A.Span, YNode]] = []
        index: dict[str, int] = {}
        merged: list[tuple[str, A.Span, YNode]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged.extend(self.merge(value_node, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, "mapping keys must be plain names, not collections", SYNTAX)
            self.no_surrogate(key_node)
            key = str(key_node.value)
            kspan = span_of(self.file, key_node)
            if key in index:
                first = entries[index[key]][1]
                self.fail(key_node, f"`{key}` appears twice in this mapping", DUPLICATE,
                          help="remove one of them (YAML would silently keep the last)",
                          notes=(f"first at line {first.line}",))
            index[key] = len(entries)
            self.keys.append(kspan)
            entries.append((key, kspan, self.convert(value_node, depth + 1)))
            self.keys.pop()
        for key, kspan, value in merged:  # `<<: *base` fills in keys not written here
            if key not in index:
                index[key] = len(entries)
                entries.append((key, kspan, value))
        return YMap(tuple(entries), span_of(self.file, node), index)

    def merge(self, node: Any, depth: int) -> list[tuple[str, A.Span, YNode]]:
        import yaml

        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[tuple[str, A.Span, YNode]] = []
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                self.fail(src, "`<<` merges mappings only", SYNTAX)
            converted = self.convert(src, depth + 1)
            assert isinstance(converted, YMap)
            out.extend(converted.entries)
        return out


def to_python(node: YNode) -> Any:
    """Plain Python value of a node (for literal arguments)."""
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [to_python(n) for n in node.items]
    return {k: to_python(v) for k, _, v in node.entries}


def describe(node: YNode) -> str:
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    v = node.value
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"`{'true' if v else 'false'}`"
    if isinstance(v, (int, float)):
        return f"the number `{node.text}`"
    text = v if len(v) <= 30 else v[:27] + "..."
    return f'the string "{text}"'
