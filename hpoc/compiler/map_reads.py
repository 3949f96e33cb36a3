"""Whether a trainer takes a `space` map as the mapping it is: a constant such as
`clip = { min = -1, max = 1 }` is data to a trainer that reads `config["clip"]["min"]` or
spreads it (`x.clamp(**config["clip"])`), not a search domain missing its call or `type`
(HP826). Read from the trainer's source, never imported."""

from __future__ import annotations

import ast
from typing import Iterable

from hpoc.compiler.pysource import source_tree


def reads_as_map(target: str, workdir: str | None, path: str, keys: Iterable[str]) -> bool:
    """Whether the trainer's module names the map's key (the last of `path`: `"clip"`,
    `.clip`) and reads one of its `keys` by name (`["min"]`, `.get("max")`) or spreads a
    mapping it reads under that key into a call (`**config["clip"]`)."""
    tree = source_tree(target, workdir)[2]
    if tree is None:
        return False
    name, keys = path.rpartition(".")[2], set(keys)
    named = by_key = False
    for node in ast.walk(tree):
        if _names(node, name):
            named = True
        elif isinstance(node, ast.Subscript) and _names(node.slice, keys):
            by_key = True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and _names(node.args[0], keys):
            by_key = True
        elif isinstance(node, ast.keyword) and node.arg is None and any(_names(n, name) for n in ast.walk(node.value)):
            return True
    return named and by_key


def _names(node: ast.AST, names: str | set[str]) -> bool:
    """A string constant, or an attribute (`cfg.clip`), among `names`."""
    value = node.value if isinstance(node, ast.Constant) else node.attr if isinstance(node, ast.Attribute) else None
    return isinstance(value, str) and (value == names if isinstance(names, str) else value in names)
