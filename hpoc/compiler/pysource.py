"""The study's own Python modules, found and parsed but never imported (no torch on a
login node). The step checks (targets.py), the rules on what the trainer reports
(metrics.py) and on its hooks (trainer_hooks.py) read the same files: one lookup, one
parse cache. A check that must not guess (HP804's idle GPUs) reads an installed trainer's
source too, or says why it could not (`source_tree`)."""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
import os
import warnings


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


def module_source(module: str, workdir: str | None) -> tuple[str | None, str]:
    """(file, "") of `module`'s Python source: beside the spec (first on the nodes' path),
    else where this Python has it installed, found without importing anything (`find_spec`
    of the top-level name only: a submodule's would import its package); (None, why) when
    there is no source to read (not found, compiled, in a zip archive, built in)."""
    if workdir and (path := find_module(workdir, module)):
        return path, ""
    top = module.partition(".")[0]
    if workdir and find_module(workdir, top):  # a module or package beside the spec owns the name
        return None, "not found beside the spec"
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # a broken finder, or a module in sys.modules without a spec
        spec = None
    if spec is None:
        return None, "not found here"
    if spec.submodule_search_locations is not None:  # a package, namespace ones included
        roots = [os.path.dirname(p) for p in spec.submodule_search_locations]
    elif spec.origin and spec.origin.endswith(".py"):
        roots = [os.path.dirname(spec.origin)]
    else:
        return None, "built into Python" if spec.origin in ("built-in", "frozen", None) else \
            f"compiled: {os.path.basename(spec.origin)}"
    for root in roots:
        if path := find_module(root, module):
            return path, ""
    return None, _no_source(roots, module)


def _no_source(roots: list[str], module: str) -> str:
    """Why an installed `module` has no Python file in its package's `roots`."""
    parts = module.split(".")
    compiled = (*importlib.machinery.EXTENSION_SUFFIXES, *importlib.machinery.BYTECODE_SUFFIXES)
    for root in roots:
        archive = root
        while archive and not os.path.exists(archive):  # a path into a zip: the archive is a file
            archive = os.path.dirname(archive)
        if os.path.isfile(archive):
            return f"in a zip archive: {archive}"
        for base in (os.path.join(*parts), os.path.join(*parts, "__init__")):
            for suffix in compiled:
                if os.path.isfile(os.path.join(root, base + suffix)):
                    return f"compiled: {base + suffix}"
    return "not found here"


def source_tree(target: str, workdir: str | None) -> tuple[str, str | None, ast.Module | None, str]:
    """(module, path, tree, "") of the module that defines a step's `target` (`pkg.mod:Class`),
    beside the spec or installed (see `module_source`), following a package's re-export
    (`from .impl import T` in its __init__.py); (module, None, None, why) when it cannot be
    read, the module at fault named."""
    module, _, qual = target.partition(":")
    if not module:
        return module, None, None, "no module named"
    for _ in range(4):
        path, why = module_source(module, workdir)
        tree = parse_module(path) if path else None
        if not isinstance(tree, ast.Module):
            return module, None, None, why or "it does not parse"
        if qual and "." not in qual and _bound_unseen(tree, qual):
            return module, None, None, f"it does not say where `{qual}` comes from"
        origin = _imported_from(tree, path, module, qual)  # type: ignore[arg-type]
        if origin is None:
            return module, path, tree, ""
        module, qual = origin
    return module, None, None, "re-exported too many times"


def _bound_unseen(tree: ast.Module, name: str) -> bool:
    """Whether `name` may come only from what the module does not write out: a
    `from m import *`, or a module `__getattr__`."""
    dynamic = False
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                return False
            dynamic = dynamic or node.name == "__getattr__"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return False
            dynamic = dynamic or any(a.name == "*" for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                return False
    return dynamic


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


def called(call: ast.Call) -> str | None:
    """The name of the function or method a call calls (`helper(...)`, `self.helper(...)`)."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


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
        # The module's warnings (the parser's invalid escape, the compiler's `is` with a
        # literal) are not the check's to print, nor errors under `-W error`.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, path)
            # What only the compiler refuses (an import above `from __future__`, a `return`
            # outside a function) parses, and fails at import on the node all the same.
            compile(tree, path, "exec", dont_inherit=True)
        return tree
    except SyntaxError as exc:
        return exc.with_traceback(None)  # kept in the cache: not the frames it was raised in
    except (ValueError, RecursionError):  # a NUL byte (before Python 3.12); nesting too deep
        return None
