"""Pipeline steps checked against their source, without importing it.

A step is built as `Class(**arguments)` in every trial (hpoc/runtime/pipeline.py), so a
class the module does not define, or an argument its `__init__` does not take, fails only
when the study runs. When the module is a Python file under the study's directory, its
syntax tree answers both at compile time. Whatever the tree cannot tell for certain (an
`__init__` inherited from another module, `**kwargs`, decorators, `import *`, a module
`__getattr__`) is not reported. A module found neither there nor on this Python's path
(`find_spec`, which imports nothing) is a warning: the nodes' Python may have it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from hpoc.compiler.pysource import find_module, parse_module
from hpoc.errors import did_you_mean, one_of


@dataclass(frozen=True)
class Problem:
    """A step that cannot be built: `arg` names the argument at fault (None: the target)."""

    message: str
    help: str | None = None
    arg: str | None = None
    warning: bool = False
    module: str | None = None  # set when the module itself is at fault: one report for all its steps
    notes: tuple[str, ...] = ()


def check_step(target: str, args: Mapping[str, object], workdir: str | None,
               supplied: Iterable[str] = ()) -> list[Problem]:
    """Problems building `target` (`pkg.mod:Name`) with keyword `args` (their values are
    checked against plain annotations too); `supplied` are arguments the runtime adds
    itself (the compat trainer's `config`)."""
    module, _, qual = target.partition(":")
    if not workdir or not module or not qual:
        return []
    path = find_module(workdir, module)
    if path is None:
        return _missing_module(module, workdir, qual)
    tree = parse_module(path)
    shown = os.path.relpath(path, workdir)
    if isinstance(tree, SyntaxError):  # a warning: the Python that runs it may be newer
        at = f":{tree.lineno}" if tree.lineno else ""  # none for a NUL byte
        return [Problem(f"`{module}` ({shown}{at}) has a syntax error: {tree.msg}",
                        "importing it would fail in every run; `python -m py_compile "
                        f"{shown}` shows where", warning=True, module=module)]
    if tree is None:
        return []
    return _itwinai(tree, module, shown) + _class(tree, qual, args, supplied, module, shown)


def _class(tree: ast.Module, qual: str, args: Mapping[str, object], supplied: Iterable[str], module: str,
           shown: str) -> list[Problem]:
    if "." in qual:
        return []
    names = bindings(tree)
    if names is None:  # `import *` or a module `__getattr__`: any name may exist
        return []
    if qual not in names:
        defined = [n for n, node in names.items() if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
        return [Problem(f"`{module}` ({shown}) defines no `{qual}`",
                        did_you_mean(qual, defined) or (f"it defines {one_of(defined)}" if defined else None))]
    init = _init(names[qual], names)
    if init is None:
        return []
    supplied = set(supplied)
    if "config" in supplied and _hpoc_trainer(names[qual], names):
        supplied.discard("config")  # only the itwinai compat trainer is built with one
    problems = [replace(p, help="the trial's config reaches the trainer as `self.config` and the "
                                "hooks' `config` argument, after it is built: take `config` out of "
                                "`__init__`")
                if p.message.endswith(_ARGS_ONLY) and "`config`" in p.message else p
                for p in _arguments(init, list(args), supplied, f"`{qual}`", shown)]
    return problems or _types(init, args, f"`{qual}`", shown)


def function_step(target: str, role: str, workdir: str | None) -> Problem | None:
    """A step named by a plain function of its module (`getter = data:load`): hpoc builds a
    step by calling its target with the step's arguments, then runs the `execute()` of what
    that returns (the trainer must be an `hpoc.Trainer` class), so a function that returns
    the data fails as the run starts. A function that returns a class's instance (a
    factory) builds a step, and is left alone."""
    module, _, qual = target.partition(":")
    path = find_module(workdir, module) if workdir and module and qual and "." not in qual else None
    tree = parse_module(path) if path else None
    names = bindings(tree) if isinstance(tree, ast.Module) else None
    fn = (names or {}).get(qual)
    if not isinstance(fn, ast.FunctionDef) or fn.decorator_list or fn not in tree.body:  # type: ignore[union-attr]
        return None
    if role != "trainer" and _builds_a_step(fn, names or {}):
        return None
    shown = os.path.relpath(path, workdir)  # type: ignore[arg-type]
    name = "".join(w.title() for w in qual.split("_")) or qual
    if role == "trainer":
        fix = f"write `class {name}(hpoc.Trainer):` with `create_model(self, config)` (docs/trainer.md)"
    else:
        takes = "self, data" if role == "splitter" else "self"
        fix = (f"a step is a class whose `execute({takes})` returns the data, built with the step's "
               f"arguments: `class {name}:` with `__init__` taking them and `def execute({takes}): ... "
               "return train, validation` (docs/trainer.md)")
    return Problem(f"`{qual}` ({shown}:{fn.lineno}) is a function, not a class: hpoc calls the target with the "
                   "step's arguments to build the step"
                   + ("" if role == "trainer" else ", then runs the `execute()` of what it returns"), fix)


def without_execute(target: str, workdir: str | None) -> Problem | None:
    """A getter or splitter class with neither `execute()` nor `__call__`, when its classes,
    up to `object`, are all in its module as written: the run stops on it."""
    module, _, qual = target.partition(":")
    path = find_module(workdir, module) if workdir and module and qual and "." not in qual else None
    tree = parse_module(path) if path else None
    names = bindings(tree) if isinstance(tree, ast.Module) else None
    cls = (names or {}).get(qual)
    if not isinstance(cls, ast.ClassDef):
        return None
    return _without_execute(cls, names or {}, os.path.relpath(path, workdir))  # type: ignore[arg-type]


def _without_execute(cls: ast.ClassDef, names: dict[str, ast.AST], shown: str) -> Problem | None:
    methods: dict[str, ast.AST] = {}
    node: ast.AST | None = cls
    for _ in range(8):
        if not isinstance(node, ast.ClassDef) or node.decorator_list or node.keywords or len(node.bases) > 1 \
                or any(isinstance(item, (ast.If, ast.Try, ast.With, ast.For, ast.While)) for item in node.body):
            return None  # a metaclass, a decorator, conditional methods: cannot tell
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                methods.setdefault(item.name, item)
            elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                for t in item.targets if isinstance(item, ast.Assign) else [item.target]:
                    if isinstance(t, ast.Name):
                        methods.setdefault(t.id, item)
        if not node.bases or (isinstance(node.bases[0], ast.Name) and node.bases[0].id == "object"):
            break
        node = names.get(node.bases[0].id) if isinstance(node.bases[0], ast.Name) else None
    else:
        return None
    if "execute" in methods or "__call__" in methods or "__getattr__" in methods:
        return None
    public = [m for m in methods if not m.startswith("_")]
    fix = (f"rename `{public[0]}` ({shown}:{getattr(methods[public[0]], 'lineno', 0)}) to `execute`" if len(public) == 1
           else f"give `{cls.name}` an `execute(self)` that returns the data (docs/trainer.md)")
    return Problem(f"`{cls.name}` ({shown}:{cls.lineno}) has no `execute()`: hpoc builds the step, then runs "
                   "its `execute()`", fix)


def _builds_a_step(fn: ast.FunctionDef, names: dict[str, ast.AST], depth: int = 0) -> bool:
    """Whether `fn` may return a step: a call of a class (of this module, or a capitalised
    name from elsewhere), or of a module function that may."""
    for node in ast.walk(fn):
        if not isinstance(node, ast.Return) or not isinstance(node.value, ast.Call):
            continue
        func = node.value.func
        callee = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        bound = names.get(callee) if isinstance(func, ast.Name) else None
        if isinstance(bound, ast.ClassDef) or (bound is None and callee[:1].isupper()):
            return True
        if isinstance(bound, ast.FunctionDef) and bound is not fn and depth < 3 \
                and _builds_a_step(bound, names, depth + 1):
            return True
        if not isinstance(bound, (ast.ClassDef, ast.FunctionDef)) and isinstance(func, ast.Name) \
                and bound is not None:
            return True  # imported or assigned: cannot tell
    return False


def _hpoc_trainer(node: ast.AST, names: dict[str, ast.AST], depth: int = 0) -> bool:
    """Whether class `node` is an `hpoc.Trainer` for sure: its bases in this module lead to
    `hpoc.Trainer` (or `Trainer` imported from hpoc), not to itwinai's `RayTorchTrainer`."""
    if not isinstance(node, ast.ClassDef) or len(node.bases) != 1 or depth > 8:
        return False
    base = node.bases[0]
    if isinstance(base, ast.Attribute):
        return base.attr == "Trainer" and isinstance(base.value, ast.Name) and base.value.id == "hpoc"
    if not isinstance(base, ast.Name):
        return False
    bound = names.get(base.id)
    if isinstance(bound, ast.ImportFrom):
        return base.id == "Trainer" and bound.module == "hpoc" and \
            any(a.name == "Trainer" and a.asname is None for a in bound.names)
    return _hpoc_trainer(bound, names, depth + 1) if isinstance(bound, ast.ClassDef) else False


def _missing_module(module: str, workdir: str, qual: str = "") -> list[Problem]:
    """A module neither under the spec's directory nor installed here. A warning: the
    nodes' Python (`slurm.python`, a container) may have packages this machine lacks."""
    parts = module.split(".")
    # The study's directory comes first on the nodes' path: a module or regular package
    # there owns the name; a plain directory (a namespace portion) does not.
    local = find_module(workdir, parts[0]) is not None
    if not local and _installed(parts[0]):
        return []
    base = "/".join(parts)
    path = "" if local else ", then on this Python's path"
    close, notes = _nearby(parts, workdir)
    if parts[-1] == "py" and len(parts) > 1 and find_module(workdir, ".".join(parts[:-1])):
        close = f"write `{'.'.join(parts[:-1])}:{qual}`: a module is named without `.py`"  # the file's name
    return [Problem(f"no module `{module}` beside the spec, nor installed here",
                    close or f"put {base}.py beside the spec, or install it for the Python the trials run with",
                    warning=True, module=module,
                    notes=(f"looked for {base}.py and {base}/__init__.py beside the spec{path}", *notes))]


def _nearby(parts: list[str], workdir: str) -> tuple[str | None, tuple[str, ...]]:
    """(did-you-mean, notes) from where the module's path stops under the spec's
    directory: `models/nets.py` for `models.net`, the files there for `model:Net`."""
    depth = 1
    while depth < len(parts) and os.path.isdir(os.path.join(workdir, *parts[:depth])):
        depth += 1
    folder, name = os.path.join(workdir, *parts[:depth - 1]), parts[depth - 1]
    inside = "/".join(parts[:depth - 1])
    if depth < len(parts) and os.path.isfile(os.path.join(folder, name + ".py")):
        return None, (f"{'/'.join(parts[:depth])}.py is a module, not a package: it holds no modules",)
    there = sorted(n for n in _modules_in(folder) if n != name)  # not a data/ folder of datasets for data.py
    close = did_you_mean(name, there)
    if close:
        return close.replace("`", f"`{inside.replace('/', '.')}." if inside else "`", 1), ()
    if not there:
        return None, ()
    shown = (n + "/" if os.path.isdir(os.path.join(folder, n)) else n + ".py" for n in there)
    return None, (f"{inside + '/' if inside else 'beside the spec'}: {one_of(shown, limit=8)}",)


def _installed(top: str) -> bool:
    """Whether this Python finds `top`, without importing it (no torch on a login node)."""
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a broken finder, or a module in sys.modules without a spec
        return False


def _modules_in(folder: str) -> list[str]:
    """Names importable from `folder`: its .py files and subdirectories."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [n[:-3] if n.endswith(".py") else n for n in names
            if (n.endswith(".py") and n[:-3].isidentifier())
            or (n.isidentifier() and os.path.isdir(os.path.join(folder, n)))]


# What hpoc/compat/itwinai.py provides (its `__all__`; not imported here: it needs torch).
ITWINAI_COMPAT = ("Logger", "RayTorchTrainer", "RayDDPStrategy", "RayDeepSpeedStrategy", "TorchDDPStrategy",
                  "RayTorchDistributedStrategy", "EngineOptimizer", "Strategy")


def _itwinai(tree: ast.Module, module: str, shown: str) -> list[Problem]:
    """A module still importing itwinai (a tutorial's file copied as it is): where the study
    runs it is not installed, or its `RayTorchTrainer` is no hpoc trainer; either way every
    trial fails."""
    found = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "itwinai"
             or isinstance(n, ast.Import) and any(a.name.split(".")[0] == "itwinai" for a in n.names)]
    if not found:
        return []
    names = sorted({a.name for n in found if isinstance(n, ast.ImportFrom) for a in n.names
                    if a.name in ITWINAI_COMPAT})
    listed = ", ".join(f"`{n}`" for n in names[:-1]) + (" and " if len(names) > 1 else "") + f"`{names[-1]}`" \
        if names else ""
    fix = (f"import {listed} from `hpoc.compat.itwinai` instead" if names
           else "hpoc.compat.itwinai provides its trainer, logger and strategies")
    return [Problem(f"`{module}` ({shown}:{found[0].lineno}) imports from `itwinai`: hpoc runs its trainers "
                    "without it", f"{fix} (docs/migrating-from-itwinai.md)", warning=True, module=module)]


def bindings(tree: ast.Module) -> dict[str, ast.AST] | None:
    """Top-level names of a module and what binds them; None when names are dynamic."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else (node,):
            if isinstance(sub, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if sub.name == "__getattr__" and sub in tree.body:
                    return None
                out.setdefault(sub.name, sub)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                for alias in sub.names:
                    if alias.name == "*":
                        return None
                    out.setdefault(alias.asname or alias.name.split(".")[0], sub)
            elif isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            out.setdefault(n.id, sub)
    return out


def _init(node: ast.AST, names: dict[str, ast.AST], depth: int = 0) -> ast.arguments | None:
    """The parameters building `node` takes (after `self`), when the module says for sure."""
    if isinstance(node, ast.FunctionDef) and not node.decorator_list:
        return node.args
    if not isinstance(node, ast.ClassDef) or node.decorator_list or node.keywords or depth > 8:
        return None
    if any(isinstance(item, (ast.If, ast.Try, ast.With, ast.For)) for item in node.body):
        return None  # `__init__` may be defined conditionally
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            if item.decorator_list or not item.args.args:
                return None
            a = item.args
            return ast.arguments(posonlyargs=a.posonlyargs[1:] if a.posonlyargs else [],
                                 args=a.args[1:] if not a.posonlyargs else a.args, vararg=a.vararg,
                                 kwonlyargs=a.kwonlyargs, kw_defaults=a.kw_defaults, kwarg=a.kwarg,
                                 defaults=a.defaults)
        if isinstance(item, (ast.FunctionDef, ast.Assign)) and _defines(item, ("__new__", "__signature__")):
            return None
    # Inherited: only from one class of this module (another module's __init__ is unknown).
    if len(node.bases) == 1 and isinstance(node.bases[0], ast.Name):
        base = names.get(node.bases[0].id)
        if isinstance(base, ast.ClassDef):
            return _init(base, names, depth + 1)
    if not node.bases:  # `object.__init__`: no arguments
        return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                             kwarg=None, defaults=[])
    return None


def _defines(item: ast.AST, names: tuple[str, ...]) -> bool:
    if isinstance(item, ast.FunctionDef):
        return item.name in names
    return any(isinstance(t, ast.Name) and t.id in names for t in getattr(item, "targets", ()))


_ARGS_ONLY = ": hpoc builds it with the step's arguments only"


def _arguments(a: ast.arguments, given: list[str], supplied: set[str], what: str, shown: str) -> list[Problem]:
    keyword = [p.arg for p in a.args] + [p.arg for p in a.kwonlyargs]
    out: list[Problem] = []
    if a.kwarg is None:
        for arg in given:
            if arg not in keyword:
                out.append(Problem(f"{what} ({shown}) takes no argument `{arg}`",
                                   did_you_mean(arg, keyword) or (f"it takes {one_of(keyword)}" if keyword
                                                                  else "it takes no arguments"), arg))
    required = [p.arg for p in a.posonlyargs]
    required += [p.arg for p in a.args[: len(a.args) - len(a.defaults)]]
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    missing = [r for r in required if r not in given and r not in supplied]
    if missing and not a.posonlyargs and not out:  # after a misspelt argument, this is noise
        listed = ", ".join(f"`{m}`" for m in missing)
        out.append(Problem(f"{what} ({shown}) needs {listed}{_ARGS_ONLY}",
                           f"give {'it' if len(missing) == 1 else 'them'} in the step's arguments"))
    return out


# Annotations whose values a config can be checked against for sure, as jsonargparse does
# in itwinai: a string for a `float` fails in every trial, after `hpoc check` said valid.
_PLAIN = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}  # what each takes as is


def _plain(note: ast.expr | None) -> str | None:
    """`float` for `float`, `float | None` or `Optional[float]` (None is never checked); else None."""
    if isinstance(note, ast.Constant) and isinstance(note.value, str):  # a quoted annotation
        try:
            note = ast.parse(note.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(note, ast.Name) and note.id in _PLAIN:
        return note.id
    if isinstance(note, ast.BinOp) and isinstance(note.op, ast.BitOr):
        sides = [note.left, note.right]
        nones = [x for x in sides if isinstance(x, ast.Constant) and x.value is None]
        rest = [x for x in sides if x not in nones]
        if len(nones) == 1 and len(rest) == 1 and isinstance(rest[0], ast.Name) and rest[0].id in _PLAIN:
            return rest[0].id
    if isinstance(note, ast.Subscript) and isinstance(note.value, ast.Name) and note.value.id == "Optional" \
            and isinstance(note.slice, ast.Name) and note.slice.id in _PLAIN:
        return note.slice.id
    return None


def _accepts(name: str, value: object) -> bool:
    """Whether a plain annotation takes the value: what would break the step (a string for
    a number, `no` read as false for a string), not what Python would coerce anyway."""
    if isinstance(value, (list, dict)):
        return False
    if name == "str":
        return not isinstance(value, bool)  # a number reads fine as text; `name: no` is false
    if name == "bool":
        return not isinstance(value, str)  # "false" is true
    return isinstance(value, _PLAIN[name]) and not isinstance(value, bool)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, (int, float)):
        return f"the number `{value}`"
    if isinstance(value, str):
        return f'the string "{value if len(value) <= 30 else value[:27] + "..."}"'
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else "this value"


def _types(a: ast.arguments, given: Mapping[str, object], what: str, shown: str) -> list[Problem]:
    out: list[Problem] = []
    for p in a.args + a.kwonlyargs:
        if p.arg not in given:
            continue
        name = _plain(p.annotation)
        value = given[p.arg]
        if name is None or value is None:  # None: the runtime passes it; a default may expect it
            continue
        if not _accepts(name, value):
            out.append(Problem(f"{what} ({shown}) takes `{p.arg}: {name}`, not {_describe(value)}",
                               None, p.arg))
    return out
