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
    when it is there and parses."""
    module = target.partition(":")[0]
    found = module_tree(workdir, module) if workdir and module else None
    return (found[0], found[1]) if found and isinstance(found[1], ast.Module) else None


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
