"""OmegaConf-style `${path}` references, as newer itwinai configs write them.

    batch_size: 64
    ray_training_pipeline:
      ... train_loop_config: {batch_size: ${batch_size}}

A value that is exactly `${a.b}` becomes the node at `a.b` (from the document root, typed:
a number stays a number); `${a.b}` inside a longer string is replaced by its text.
`${oc.env:VAR}` and `${oc.env:VAR,default}` are read as OmegaConf reads them (a string; the
default when unset, itself maybe a `${...}`), when hpoc compiles: the plan holds the value,
as it holds a `storage_path`'s `$VARS` expanded. An unset one, or a job's own `SLURM_*`
(not known then), is refused where the pipeline hpoc runs needs it. Other resolvers and
relative paths (`${.x}`) are reported, not guessed.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hpoc.errors import Diagnostic, SpecSyntaxError, did_you_mean
from hpoc.yaml.nodes import MAX_NODES, TOO_BIG, YMap, YNode, YScalar, YSeq

INTERPOLATION = "HP113"
MAX_HOPS = 16
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)  # how environment variables are named


def resolve(root: YNode, text: str) -> tuple[YNode, list[tuple[str | None, Diagnostic]]]:
    """The document with references replaced; SpecSyntaxError listing every bad one. With
    it, each `${oc.env:...}` that cannot be read when hpoc compiles (unset, a job's own) and
    the top-level key of the value that needs it: only the pipeline hpoc runs must have it,
    as OmegaConf resolves only what is read."""
    if not isinstance(root, YMap):
        return root, []
    resolver = _Resolver(root, text)
    out = resolver.walk(root, 0)
    if resolver.problems:
        raise SpecSyntaxError(list(dict.fromkeys([*resolver.problems, *(d for _, d in resolver.unknown)])))
    return out, resolver.unknown


class _Bad(Exception):
    """A reference that cannot be resolved (recorded; the value stays as written)."""


class _Resolver:
    def __init__(self, root: YMap, text: str):
        self.root, self.text = root, text
        self.count = 0
        self.site: YScalar | None = None  # the reference being expanded
        self.problems: list[Diagnostic] = []
        self.unknown: list[tuple[str | None, Diagnostic]] = []  # see `resolve`

    def _diagnostic(self, node: YScalar, msg: str, help: str | None, code: str) -> Diagnostic:
        sp = node.span
        d = Diagnostic(msg, code, sp.file, sp.line, sp.col, sp.line,
                       sp.end_col if sp.end_line == sp.line else sp.col + 1, help=help)
        return d.with_source(self.text)

    def fail(self, node: YScalar, msg: str, help: str | None = None, code: str = INTERPOLATION) -> Any:
        """Stop at once (cycles, expansion bombs): going on would repeat the damage."""
        raise SpecSyntaxError([*dict.fromkeys(self.problems), self._diagnostic(node, msg, help, code)])

    def bad(self, node: YScalar, msg: str, help: str | None = None) -> Any:
        """Record a bad reference and go on, so that every one is reported (once: where it is
        written, not again where a value that holds it is referenced)."""
        if node is self.site:
            self.problems.append(self._diagnostic(node, msg, help, INTERPOLATION))
        raise _Bad

    def walk(self, node: YNode, hops: int) -> YNode:
        self.count += 1
        if self.count > MAX_NODES:  # references repeat subtrees, like aliases
            self.fail(self.site or _first_scalar(node), f"`${{...}}` references expand to more than {MAX_NODES} values",
                      help="a config never needs this many", code=TOO_BIG)
        if isinstance(node, YMap):
            entries = tuple((k, ks, self.walk(v, hops)) for k, ks, v in node.entries)
            return YMap(entries, node.span, node.index)
        if isinstance(node, YSeq):
            return YSeq(tuple(self.walk(v, hops) for v in node.items), node.span)
        if isinstance(node.value, str) and "${" in node.value:
            return self.scalar(node, hops)
        return node

    def scalar(self, node: YScalar, hops: int) -> YNode:
        if hops > MAX_HOPS:
            self.fail(self.site or node, "`${...}` references go round in a circle",
                      help="a value cannot refer to itself")
        outer = self.site
        self.site = self.site or node
        try:
            return self._scalar(node, hops)
        finally:
            self.site = outer

    def _scalar(self, node: YScalar, hops: int) -> YNode:
        refs = _refs(node.value)
        if refs == [(0, len(node.value))]:
            try:
                target = self.ref(node, node.value[2:-1], hops)
            except _Bad:
                return node
            if target is None:  # a resolver's value: not a reference again
                return YScalar(None, "null", node.span)
            if not isinstance(target, YNode):
                return YScalar(target, target, node.span, True)
            # The referenced value, placed where the reference is (errors point here).
            return self.walk(_moved(target, node), hops + 1)
        try:
            return YScalar(self.expand(node, node.value, hops, refs), node.text, node.span, node.quoted)
        except _Bad:  # each bad reference recorded where it is written; the value stays as written
            return node

    def ref(self, node: YScalar, inner: str, hops: int) -> YNode | str | None:
        """What `${inner}` stands for: the node it names, or an `oc.env` value (a string,
        None); `${...}` nested in it (a resolver's argument) read first, as OmegaConf does."""
        if _resolver(inner) == "oc.env":
            return self.env(node, inner, hops)
        if _refs(inner):  # `${a.${b}}`: the key named by what `${b}` holds
            inner = self.expand(node, inner, hops + 1)
        return self.lookup(node, inner)

    def expand(self, node: YScalar, value: str, hops: int, refs: list[tuple[int, int]] | None = None) -> str:
        """`value` with each `${...}` in it replaced by its text (every bad one recorded
        before _Bad is raised)."""
        if hops > MAX_HOPS:  # `${oc.env:A,${oc.env:B,...}}` nested deeper than any config needs
            self.fail(self.site or node, f"`${{...}}` nested more than {MAX_HOPS} deep",
                      help="a config never needs this many", code=TOO_BIG)
        out, at, bad = [], 0, False
        for start, end in _refs(value) if refs is None else refs:
            out.append(value[at:start])
            at = end
            inner = value[start + 2 : end - 1]
            try:
                target = self.ref(node, inner, hops)
                if isinstance(target, YNode):
                    target = self.walk(target, hops + 1)
                    if not isinstance(target, YScalar):
                        self.bad(node, f"`${{{inner}}}` is a collection and cannot be part of a string")
                    target = target.value if isinstance(target.value, str) or target.value is None else target.text
            except _Bad:
                bad = True
                continue
            out.append("null" if target is None else str(target))
        if bad:
            raise _Bad
        return "".join(out) + value[at:]

    def env(self, node: YScalar, path: str, hops: int) -> str | None:
        """`${oc.env:VAR}`, `${oc.env:VAR,default}`: the variable as set where hpoc compiles,
        else the default (`null` is None; any other, a string, as OmegaConf gives it)."""
        args = _env_args(path.partition(":")[2])
        if len(args) > 2:
            written = path.partition(":")[2].partition(",")
            self.bad(node, f"`${{{path.strip()}}}` has more than a variable and a default",
                     help=f"quote a default that holds a comma: `${{oc.env:{written[0].strip()},"
                          f"'{written[2].strip()}'}}`")
        name, default = (self.expand(node, a, hops + 1) if isinstance(a, str) else a for a in (*args, None)[:2])
        if not name:
            self.bad(node, f"`${{{path.strip()}}}` names no variable",
                     help="write `${oc.env:VAR}`, or `${oc.env:VAR,default}`")
        if name.startswith("SLURM_"):  # set inside the job only; an allocation's would be another job's
            self.unknowable(node, f"`${{{path.strip()}}}` is the job's own variable: hpoc reads `${{oc.env:...}}` "
                                  "when it compiles, before the job exists",
                            help=f'read it where it is used, as the trial runs (`os.environ["{name}"]`)')
        value = os.environ.get(name)
        if value is None and len(args) < 2:
            self.unknowable(node, f"environment variable `{name}` is not set (`${{{path.strip()}}}`)",
                            help=f"hpoc reads it when it compiles, here: export it before `hpoc check`/`submit`, "
                                 f"or give a default, `${{oc.env:{name},/a/path}}`")
        return default if value is None else value

    def unknowable(self, node: YScalar, msg: str, help: str) -> Any:
        """A variable hpoc cannot read: said where it is written, if the value that needs it
        (the reference being expanded, maybe elsewhere) is under the pipeline hpoc runs."""
        site = self.site or node
        # the top-level entry it is under: the last whose key comes before it (a block's
        # span is where it starts)
        top = next((k for k, ks, _ in reversed(self.root.entries) if ks.line <= site.span.line), None)
        self.unknown.append((top, self._diagnostic(node, msg, help, INTERPOLATION)))
        raise _Bad

    def lookup(self, node: YScalar, path: str) -> YNode:
        path = path.strip()
        if ":" in path:
            help = ("hpoc reads `${oc.env:VAR}` (or `${oc.env:VAR,default}`) and references to the file's own "
                    "keys (`${a.b}`); write the value itself")
            if _resolver(path) == "itwinai.cwd":  # itwinai's newer configs root paths there
                help = "drop it: relative paths (`storage_path: ray_checkpoints`) resolve against the config's directory"
            self.bad(node, f"resolver `${{{path}}}` is not supported", help=help)
        if not path or path.startswith("."):
            self.bad(node, f"relative reference `${{{path}}}` is not supported",
                     help="refer from the top of the file: `${section.key}`")
        cur: YNode = self.root
        for part in path.split("."):
            if isinstance(cur, YMap) and part in cur.index:
                cur = cur.get(part)  # type: ignore[assignment]
            elif isinstance(cur, YSeq) and part.isdigit() and int(part) < len(cur.items):
                cur = cur.items[int(part)]
            else:
                keys = cur.keys() if isinstance(cur, YMap) else []
                help = did_you_mean(part, keys)
                if help is None and path == part and _VARIABLE.fullmatch(part):  # shell's `${SCRATCH}`
                    help = f"`${{{part}}}` names a key of this file; for the environment variable write " \
                           f"`${{oc.env:{part}}}` (read when hpoc compiles)"
                self.bad(node, f"`${{{path}}}` refers to nothing: no `{part}` there", help=help)
        return cur


def _resolver(path: str) -> str | None:
    """The resolver of `${name:args}` (`oc.env`), None for a reference to a key."""
    return path.partition(":")[0].strip() if ":" in path else None


def _refs(value: str) -> list[tuple[int, int]]:
    """(start, end) of each outermost `${...}` in `value`, those nested in it (`${a,${b}}`)
    and `{...}` inside; none from an unclosed `${` on."""
    out: list[tuple[int, int]] = []
    i = value.find("${")
    while i >= 0:
        depth, j = 0, i + 1
        while j < len(value):
            depth += {"{": 1, "}": -1}.get(value[j], 0)
            if depth == 0:
                break
            j += 1
        if depth:
            break
        out.append((i, j + 1))
        i = value.find("${", j + 1)
    return out


def _env_args(arg: str) -> list[str | None]:
    """The arguments of `VAR` or `VAR,default`, as OmegaConf reads them: split at commas
    outside quotes, `${...}` and `[...]`, spaces around each dropped, a quoted one unquoted, an
    unquoted `null` (any case) None, `\\,` a comma."""
    parts, depth, quote, cur, i = [], 0, "", "", 0
    while i < len(arg):
        c = arg[i]
        if c == "\\" and not quote and i + 1 < len(arg):
            cur += arg[i : i + 2]
            i += 2
            continue
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        elif c == "," and not depth:
            parts.append(cur)
            cur, i = "", i + 1
            continue
        cur += c
        i += 1
    parts.append(cur)
    out: list[str | None] = []
    for part in (p.strip() for p in parts):
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            out.append(part[1:-1])
        else:
            unescaped = re.sub(r"\\([\\,\[\]{}():= \t])", r"\1", part)
            out.append(None if part.lower() == "null" else _scalar_text(unescaped))
    return out


_UINT = r"(?:0|[1-9](?:_?\d)*)"
_INT = re.compile(rf"[+-]?{_UINT}")
_POINT = rf"(?:{_UINT}?\.\d(?:_?\d)*|{_UINT}\.)"
_FLOAT = re.compile(rf"[+-]?(?:{_POINT}|(?:{_UINT}|{_POINT})[eE][+-]?\d(?:_?\d)*|inf|nan)", re.IGNORECASE)


def _scalar_text(text: str) -> str:
    """An unquoted argument as OmegaConf's grammar reads it and `oc.env` gives it back, a
    string: `1e-3` is "0.001", `true` "True", `1_000` "1000" (`007`, not a number, as written)."""
    if text.lower() in ("true", "false"):
        return str(text.lower() == "true")
    if _INT.fullmatch(text):
        return str(int(text))
    return str(float(text)) if _FLOAT.fullmatch(text) else text


def _moved(node: YNode, at: YScalar) -> YNode:
    if isinstance(node, YScalar):
        return YScalar(node.value, node.text, at.span, node.quoted)
    return node


def _first_scalar(node: YNode) -> YScalar:
    while not isinstance(node, YScalar):
        items = [v for _, _, v in node.entries] if isinstance(node, YMap) else list(node.items)
        if not items:
            return YScalar(None, "", node.span)
        node = items[0]
    return node
