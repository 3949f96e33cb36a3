"""Shared by the YAML readers: diagnostics, and YAML nodes → .hpo syntax nodes with spans.

The translation never decides what is valid for hpoc's own sections (the checker does
that, at the YAML's lines); it reports only what is YAML-specific: itwinai/Ray keys it
does not know, values of the wrong shape, and every place where it changes what the
config says (a WARNING naming the substitution and the fix - never silently).
"""

from __future__ import annotations

import re
from typing import Iterable

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, did_you_mean, one_of
from hpoc.yaml.nodes import YMap, YNode, YScalar, YSeq, describe, hpo_number_text

UNKNOWN, DUPLICATE, TYPE, VALUE, MISSING = "HP201", "HP202", "HP203", "HP204", "HP205"
SPACE = "HP301"
# Warnings of the YAML front end (docs/migrating-from-itwinai.md lists them).
SUBSTITUTED, IGNORED, DEFAULTED, UNTYPED, SHARED = "HP820", "HP821", "HP822", "HP826", "HP827"

_RAY_HOME = {"ScalingConfig": "ray.train"}  # where a Ray class is usually imported from (else ray.tune)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Builder:
    """Collects diagnostics and builds AST nodes whose spans point into the YAML file."""

    def __init__(self, file: str, workdir: str | None = None):
        self.file = file
        self.workdir = workdir
        self.pipeline: str | None = None  # the top-level key of the pipeline read, once found
        self.trainer: str | None = None  # its `module:Class`, once read: the space's checks read its source
        self.diagnostics: list[Diagnostic] = []
        self.comments: dict[str, list[str]] = {}  # section kind -> comments for `hpoc convert`
        # (span, .hpo name, YAML name): the checker's messages at `span` say the YAML's name.
        self.names: list[tuple[A.Span, str, str]] = []

    # -- reporting
    def report(self, severity: str, code: str, msg: str, span: A.Span | None,
               help: str | None = None, notes: Iterable[str] = ()) -> None:
        if span is None:
            d = Diagnostic(msg, code, self.file, severity=severity, help=help, notes=tuple(notes))
        else:
            end = span.end_col if span.end_line == span.line else span.col + 1
            d = Diagnostic(msg, code, self.file, span.line, span.col, span.line, end,
                           severity=severity, help=help, notes=tuple(notes))
        self.diagnostics.append(d)

    def error(self, code: str, msg: str, span: A.Span | None, help: str | None = None,
              notes: Iterable[str] = ()) -> None:
        self.report("error", code, msg, span, help, notes)

    def warn(self, code: str, msg: str, span: A.Span | None, help: str | None = None,
             notes: Iterable[str] = ()) -> None:
        self.report("warning", code, msg, span, help, notes)

    def note_in_output(self, section: str, text: str) -> None:
        """A comment `hpoc convert` writes above `section` (why it differs from the YAML)."""
        self.comments.setdefault(section, []).append(f"# {text}")

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    # -- shapes
    def mapping(self, node: YNode | None, where: str) -> YMap | None:
        """`node` if it is a mapping (None when absent or null); an error otherwise."""
        if self.given(node) is None:
            return None
        if not isinstance(node, YMap):
            self.error(TYPE, f"{where} must be a mapping, not {describe(node)}", node.span)
            return None
        return node

    @staticmethod
    def given(node: YNode | None) -> YNode | None:
        """An optional setting's value; None when absent or null: as in Ray, a null setting
        is unset and takes the default (not a value of its own)."""
        return None if node is None or (isinstance(node, YScalar) and node.value is None) else node

    def check_keys(self, node: YMap, known: Iterable[str], where: str,
                   homes: dict[str, str] | None = None, ray_class: str | None = None,
                   hints: dict[str, str] | None = None) -> None:
        """An error for each key of `node` that is not in `known`. With `ray_class`, the
        mapping may name that Ray class in hydra's `_target_` (`ray.tune.TuneConfig`), as
        itwinai's configs do. `hints`: the help for a key known to mean another one (`{value}`
        is its value as written)."""
        known = list(known)
        for key, kspan, value in node.entries:
            if key in known:
                continue
            if key == "_target_" and ray_class is not None:
                self.ray_target(value, (ray_class,), where)
                continue
            # where the key is known to belong says more than a near spelling does
            help = f"`{key}` belongs in `{homes[key]}`" if homes and key in homes else did_you_mean(key, known)
            if hints and key in hints:
                help = hints[key].format(value=value.text if isinstance(value, YScalar) else "N")
            if help is None:
                help = f"{where} takes {one_of(known)}" if known else f"{where} takes no keys"
            self.error(UNKNOWN, f"unknown key `{key}` in {where}", kspan, help=help)

    def ray_target(self, node: YNode, classes: Iterable[str], where: str) -> str | None:
        """The class name a `_target_: ray.<...>.<Class>` names when it is one of `classes`;
        an error otherwise."""
        text = self.word(node, f"`_target_` of {where}")
        if text is None:
            return None
        parts = text.strip().split(".")
        classes = list(classes)
        if len(parts) > 1 and parts[0] == "ray" and parts[-1] in classes:
            return parts[-1]
        self.error(VALUE, f"`_target_` of {where} must be a Ray class ({one_of(classes)}), not `{text}`",
                   node.span, help=did_you_mean(parts[-1], classes) or
                   (f"write `_target_: {_RAY_HOME.get(classes[0], 'ray.tune')}.{classes[0]}` or leave it out"
                    if len(classes) == 1 else f"or write `name:` instead of `_target_`"))
        return None

    def word(self, node: YNode | None, where: str) -> str | None:
        """A string scalar's value, else an error."""
        if node is None:
            return None
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        self.error(TYPE, f"{where} must be a name, not {describe(node)}", node.span)
        return None

    # -- values
    def value(self, node: YNode, *, words: Iterable[str] = ()) -> A.Value:
        """A .hpo value node for a YAML value; strings in `words` become bare names."""
        if isinstance(node, YScalar):
            v = node.value
            if v is None:
                return A.Null(span=node.span)
            if isinstance(v, bool):
                return A.Bool(v, span=node.span)
            if isinstance(v, (int, float)):
                return A.Number(v, hpo_number_text(node.text, v), span=node.span)
            if v in set(words):
                return A.Ref(v, span=node.span)
            return A.String(str(v), span=node.span)
        if isinstance(node, YSeq):
            return A.List(tuple(self.value(i) for i in node.items), span=node.span)
        return A.Map(tuple(A.Pair(k, self.value(v), key_span=ks, span=ks) for k, ks, v in node.entries),
                     span=node.span)

    def number_from_string(self, node: YNode) -> YNode:
        """A quoted number (`"1e-5"`) as a number: itwinai float()s domain bounds."""
        if isinstance(node, YScalar) and node.quoted and isinstance(node.value, str):
            try:
                num = float(node.value)
            except ValueError:
                return node
            if num == num and abs(num) != float("inf"):
                text = node.value.strip()
                value: int | float = int(text) if re.fullmatch(r"[-+]?\d+", text) else num
                return YScalar(value, text, node.span)
        return node

    def setting(self, key: str, value: A.Value, span: A.Span | None) -> A.Setting:
        return A.Setting(key, value, key_span=span, span=span)

    def kwargs(self, node: YMap | None, what: str) -> tuple[A.Pair, ...]:
        """Keyword arguments of a pipeline step; keys must be Python names."""
        out = []
        for key, kspan, v in node.entries if node is not None else ():
            if not _IDENT.fullmatch(key):
                self.error(VALUE, f"argument `{key}` of {what} is not a Python name", kspan,
                           help="keyword arguments are written `name: value` with a valid identifier")
                continue
            out.append(A.Pair(key, self.value(v), key_span=kspan, span=kspan))
        return tuple(out)


def block(kind: str, body: list[A.Item] | None, span: A.Span | None, label: A.Value | None = None,
          comments: list[str] | None = None) -> A.Block:
    """A section; `body=None` is the bare form (`search random`)."""
    return A.Block(kind, label, tuple(body) if body is not None else None,  # type: ignore[arg-type]
                   comments=tuple(comments or ()), kind_span=span, span=span)
