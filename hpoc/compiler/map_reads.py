"""Whether a trainer takes a `space` map as the mapping it is: a constant such as
`clip = { min = -1, max = 1 }` is data to a trainer that reads `config["clip"]["min"]` or
spreads it (`x.clamp(**config["clip"])`), not a search domain missing its call or `type`
(HP826). Read from the trainer's source, never imported."""

from __future__ import annotations

import ast
from typing import Callable, Iterable

from hpoc.compiler.pysource import called, source_tree

_WALKS = {"items", "keys", "values"}  # `config["clip"].items()`: the map walked as one
_COPIES = {"dict", "copy", "deepcopy"}  # `dict(config["clip"])`: the map still


def reads_as_map(target: str, workdir: str | None, path: str, keys: Iterable[str]) -> bool:
    """Whether the trainer's module reads one of the map's `keys` off the map itself, the
    value under the last key of `path` (`config["clip"]["min"]`, `.get("max")`, or through a
    name bound to it, `clip = config["clip"]; clip["min"]`, or a helper's parameter it is
    handed to), walks it (`.items()`) or spreads it into a call or dict (`**config["clip"]`).
    A key read off another dict (`stats["max"]`) says nothing of this map: it may be a
    domain written as data."""
    tree = source_tree(target, workdir)[2]
    if tree is None:
        return False
    name, keys = path.rpartition(".")[2], set(keys)
    bound: set[str] = set()

    def the_map(node: ast.AST) -> bool:
        if isinstance(node, ast.Call) and node.args and called(node) in _COPIES:  # `dict(config["clip"])`
            return the_map(node.args[0])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "copy":
            return the_map(node.func.value)
        return _takes(node, name) or isinstance(node, ast.Name) and node.id in bound

    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for _ in range(3):  # a name bound to it, a helper's parameter it is handed to, and one more hop
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None \
                    and the_map(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.Call) and (f := functions.get(called(node))) is not None:
                bound.update(_parameters(f, node, the_map))

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _constant(node.slice, keys) and the_map(node.value):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and the_map(node.func.value) and (
                node.func.attr in _WALKS or node.func.attr == "get" and node.args and _constant(node.args[0], keys)):
            return True
        if isinstance(node, ast.keyword) and node.arg is None and the_map(node.value):
            return True
        if isinstance(node, ast.Dict) and any(k is None and the_map(v) for k, v in zip(node.keys, node.values)):
            return True
    return False


def _parameters(f: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call,
                given: Callable[[ast.AST], bool]) -> list[str]:
    """The parameters of `f` that `call` hands a `given` value, by position or keyword
    (`self.helper(x, config["clip"])`: the method's `self` skipped)."""
    params = [*f.args.posonlyargs, *f.args.args]
    if isinstance(call.func, ast.Attribute) and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    out = [p.arg for p, a in zip(params, call.args) if given(a)]
    return out + [k.arg for k in call.keywords if k.arg and given(k.value)]


def _takes(node: ast.AST, name: str) -> bool:
    """Whether `node` is the value under `name` of some mapping or object: `cfg["clip"]`,
    `cfg.get("clip")`, `cfg.clip`."""
    if isinstance(node, ast.Subscript):
        return _constant(node.slice, {name})
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and _constant(node.args[0], {name})
    return isinstance(node, ast.Attribute) and node.attr == name


def _constant(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
