"""Whether a trainer takes a `space` map as the mapping it is: a constant such as
`clip = { min = -1, max = 1 }` is data to a trainer that reads `config["clip"]["min"]` or
spreads it (`x.clamp(**config["clip"])`), not a search domain missing its call or `type`
(HP826). Read from the trainer's source, never imported."""

from __future__ import annotations

import ast
from typing import Iterable

from hpoc.compiler.pysource import source_tree

_WALKS = {"items", "keys", "values"}  # `config["clip"].items()`: the map walked as one


def reads_as_map(target: str, workdir: str | None, path: str, keys: Iterable[str]) -> bool:
    """Whether the trainer's module reads one of the map's `keys` off the map itself, the
    value under the last key of `path` (`config["clip"]["min"]`, `.get("max")`, or through a
    name bound to it: `clip = config["clip"]; clip["min"]`), walks it (`.items()`) or
    spreads it into a call or dict (`**config["clip"]`). A key read off another dict
    (`stats["max"]`) says nothing of this map: the map may be a domain written as data."""
    tree = source_tree(target, workdir)[2]
    if tree is None:
        return False
    name, keys = path.rpartition(".")[2], set(keys)
    bound = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr))
             and node.value is not None and _takes(node.value, name)
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}

    def the_map(node: ast.AST) -> bool:
        return _takes(node, name) or isinstance(node, ast.Name) and node.id in bound

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
