"""The study's own Python modules, found and parsed but never imported (no torch on a
login node). The step checks (targets.py), the rules on what the trainer reports
(metrics.py) and on its hooks (trainer_hooks.py) read the same files: one lookup, one
parse cache."""

from __future__ import annotations

import ast
import functools
import os


def find_module(workdir: str, module: str) -> str | None:
    """The file of `module` (`pkg.mod`) under `workdir`: `pkg/mod/__init__.py`, else
    `pkg/mod.py`, the order in which Python's import looks for them."""
    base = os.path.join(workdir, *module.split("."))
    for path in (os.path.join(base, "__init__.py"), base + ".py"):
        if os.path.isfile(path):
            return path
    return None


def module_tree(workdir: str, module: str) -> tuple[str, ast.Module | SyntaxError | None] | None:
    """(path, tree) of `module` under `workdir` (see `parse_module`); None when not there."""
    path = find_module(workdir, module)
    return None if path is None else (path, parse_module(path))


def target_tree(target: str, workdir: str | None) -> tuple[str, ast.Module] | None:
    """(path, tree) of the module of a step's `target` (`pkg.mod:Class`) under `workdir`,
    when it is there and parses: the module that defines the class, when the one named
    imports it (`from .trainer import T` in a package's __init__.py); None when that one is
    not under `workdir` (what it holds is not known)."""
    module, _, qual = target.partition(":")
    for _ in range(4):
        found = module_tree(workdir, module) if workdir and module else None
        if not (found and isinstance(found[1], ast.Module)):
            return None
        origin = _imported_from(found[1], found[0], module, qual)
        if origin is None:
            return found[0], found[1]
        module, qual = origin
        if find_module(workdir, module) is None:  # type: ignore[arg-type]
            return None
    return None


def _imported_from(tree: ast.Module, path: str, module: str, name: str) -> tuple[str, str] | None:
    """(module, name) that a top-level `from ... import` of `tree` binds `name` to, when the
    module does not define it itself."""
    if not name or "." in name:
        return None
    origin = None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return None
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            if node.level:  # relative to the package this module is in (or is, for an __init__.py)
                parts = module.split(".")
                package = parts if os.path.basename(path) == "__init__.py" else parts[:-1]
                base = package[:len(package) - node.level + 1] if node.level <= len(package) else None
                if base is None:
                    return None
                origin = (".".join(p for p in (*base, node.module or "") if p), alias.name)
            else:
                origin = (node.module or "", alias.name)
    return origin


def parse_module(path: str) -> ast.Module | SyntaxError | None:
    """The tree of the file at `path`; its SyntaxError when it does not parse; None when it
    cannot be read (or is too deep to parse)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, ValueError):  # ValueError: not UTF-8
        return None
    return _parse(text, path)


@functools.lru_cache(maxsize=8)
def _parse(text: str, path: str) -> ast.Module | SyntaxError | None:
    # One compile reads the trainer's module several times (its step, its hooks, what it
    # reports, the config keys it reads) and a module may hold several steps; keyed by the
    # text, an edited module is parsed anew. Callers only read the tree.
    try:
        return ast.parse(text, path)
    except SyntaxError as exc:
        return exc.with_traceback(None)  # kept in the cache: not the frames it was raised in
    except (ValueError, RecursionError):  # a NUL byte (before Python 3.12); nesting too deep
        return None
