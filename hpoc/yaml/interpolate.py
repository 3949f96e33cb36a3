"""OmegaConf-style `${path}` references, as newer itwinai configs write them.

    batch_size: 64
    ray_training_pipeline:
      ... train_loop_config: {batch_size: ${batch_size}}

A value that is exactly `${a.b}` becomes the node at `a.b` (from the document root, typed:
a number stays a number); `${a.b}` inside a longer string is replaced by its text.
`${oc.env:VAR}` and `${oc.env:VAR,default}` are read as OmegaConf reads them (a string; the
default when unset), when hpoc compiles: the plan holds the value, as it holds a
`storage_path`'s `$VARS` expanded. A job's own `SLURM_*` variables cannot be known then, and
are refused. Other resolvers and relative paths (`${.x}`) are reported, not guessed.
"""

from __future__ import annotations

import os
import re
from typing import Any

from hpoc.errors import Diagnostic, SpecSyntaxError, did_you_mean
from hpoc.yaml.nodes import MAX_NODES, TOO_BIG, YMap, YNode, YScalar, YSeq

REF = re.compile(r"\$\{([^{}]*)\}")
INTERPOLATION = "HP113"
MAX_HOPS = 16
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)  # how environment variables are named


def resolve(root: YNode, text: str) -> YNode:
    """The document with references replaced; SpecSyntaxError listing every bad one."""
    if not isinstance(root, YMap):
        return root
    resolver = _Resolver(root, text)
    out = resolver.walk(root, 0)
    if resolver.problems:
        raise SpecSyntaxError(list(dict.fromkeys(resolver.problems)))
    return out


class _Bad(Exception):
    """A reference that cannot be resolved (recorded; the value stays as written)."""


class _Resolver:
    def __init__(self, root: YMap, text: str):
        self.root, self.text = root, text
        self.count = 0
        self.site: YScalar | None = None  # the reference being expanded
        self.problems: list[Diagnostic] = []

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
        whole = REF.fullmatch(node.value)
        if whole:
            try:
                if _resolver(whole.group(1)) == "oc.env":
                    return self.env(node, whole.group(1))
                target = self.lookup(node, whole.group(1))
            except _Bad:
                return node
            # The referenced value, placed where the reference is (errors point here).
            return self.walk(_moved(target, node), hops + 1)

        def text_of(m: re.Match[str]) -> str:
            try:
                if _resolver(m.group(1)) == "oc.env":  # its text as set: not a reference again
                    target = self.env(node, m.group(1))
                else:
                    target = self.walk(self.lookup(node, m.group(1)), hops + 1)
                if not isinstance(target, YScalar):
                    self.bad(node, f"`${{{m.group(1)}}}` is a collection and cannot be part of a string")
            except _Bad:
                return m.group(0)
            return "null" if target.value is None else str(target.text if not isinstance(target.value, str)
                                                           else target.value)
        return YScalar(REF.sub(text_of, node.value), node.text, node.span, node.quoted)

    def env(self, node: YScalar, path: str) -> YScalar:
        """`${oc.env:VAR}`, `${oc.env:VAR,default}`: the variable as set where hpoc compiles,
        else the default (`null` is None; any other, a string, as OmegaConf gives it)."""
        name, comma, default = _env_args(path.partition(":")[2])
        if not name:
            self.bad(node, f"`${{{path.strip()}}}` names no variable",
                     help="write `${oc.env:VAR}`, or `${oc.env:VAR,default}`")
        if name.startswith("SLURM_"):  # set inside the job only; an allocation's would be another job's
            self.bad(node, f"`${{{path.strip()}}}` is the job's own variable: hpoc reads `${{oc.env:...}}` when it "
                           "compiles, before the job exists",
                     help=f'read it where it is used, as the trial runs (`os.environ["{name}"]`)')
        value = os.environ.get(name)
        if value is None and not comma:
            self.bad(node, f"environment variable `{name}` is not set (`${{{path.strip()}}}`)",
                     help=f"hpoc reads it when it compiles, here: export it before `hpoc check`/`submit`, or "
                          f"give a default, `${{oc.env:{name},/a/path}}`")
        if value is None:
            value = default
        return YScalar(value, "null" if value is None else value, node.span, value is not None)

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


def _env_args(arg: str) -> tuple[str, bool, str | None]:
    """(variable, whether a default follows, the default) of `VAR` or `VAR,default`, as
    OmegaConf reads them: spaces around each dropped, a quoted default unquoted (its commas
    kept), `null` None."""
    name, comma, default = arg.partition(",")
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] and default[0] in "'\"":
        return name.strip(), True, default[1:-1]
    return name.strip(), bool(comma), None if default == "null" else default


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
