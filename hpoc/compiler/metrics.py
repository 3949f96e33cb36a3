"""Metric names a trainer reports, read from its source without importing it.

Compiling must not import user code (torch, on a login node), but an objective metric the
trainer never reports is a silent misconfiguration: every trial ends without a result. A
trainer reports what it puts in a dict (`{"loss": ...}` for itwinai's
`checkpoint_and_report`, hpoc's `report({...})`), so the string keys of the dicts in its
module (written out, or set by subscript or keyword) are a good, cheap answer. A module
that is not a file under the study's directory (an installed package) gives no answer.
"""

from __future__ import annotations

import ast
from typing import Any

from hpoc.compiler.pysource import called, target_tree


# `(own, reported)`: what the trainer's loop of its own hands Tune (None: hpoc's default
# loop reports), and the keys it may report (None: its source is not readable).
Reports = tuple[set[str] | None, set[str] | None]


def study_reports(out: dict[str, Any], workdir: str | None) -> Reports:
    """`Reports` of the study's trainer: `own` from `reported_by_loop`; `reported` is `own`,
    else its module's dict keys. Walks the module: `cross_check` asks once, for every rule."""
    target = trainer_target(out)
    own = reported_by_loop(target, workdir)
    return own, own if own is not None else trainer_metrics(target, workdir)


def trainer_target(out: dict[str, Any]) -> str:
    """The study's trainer (`pkg.mod:Class`), or "" when it has none."""
    return ((out.get("pipeline") or {}).get("trainer") or {}).get("target") or ""


def trainer_metrics(target: str, workdir: str | None) -> set[str] | None:
    """String keys of the dicts in the module of `target` (`pkg.mod:Class`): those written
    out, set by subscript (`metrics["f1"] = f1`) or by keyword (`dict(m, f1=f1)`,
    `m.update(f1=f1)`); None if the module is not a readable Python file under `workdir`."""
    tree = _module_tree(target, workdir)
    if tree is None:
        return None
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            keys.add(node.slice.value)
        elif isinstance(node, ast.Call) and _dict_by_keywords(node.func):
            keys.update(k.arg for k in node.keywords if k.arg)
    return keys


def _dict_by_keywords(func: ast.AST) -> bool:
    return (isinstance(func, ast.Name) and func.id == "dict") or \
        (isinstance(func, ast.Attribute) and func.attr == "update")


def reported_by_loop(target: str, workdir: str | None) -> set[str] | None:
    """What an itwinai-style trainer reports to Tune: its own `train` loop hands Tune only
    the dicts it passes to `checkpoint_and_report` (what it `self.log`s or checkpoints is
    not reported), so hpoc's default loop metrics do not apply. None when the module has no
    such call, or one whose dict is not written out in the function that makes the call."""
    tree = _module_tree(target, workdir)
    if tree is None:
        return None
    keys: set[str] = set()
    found = False
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigned: dict[str, set[str] | None] | None = None  # only for a function that reports
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "checkpoint_and_report"):
                continue
            arg = next((k.value for k in node.keywords if k.arg == "tuning_metrics"),
                       node.args[1] if len(node.args) > 1 else None)
            written = None
            if isinstance(arg, ast.Dict):
                written = _dict_keys(arg)
            elif isinstance(arg, ast.Name):
                assigned = _written_dicts(fn) if assigned is None else assigned
                written = assigned.get(arg.id)
            if written is None:
                return None
            keys |= written
            found = True
    return keys | {"epoch", "training_iteration"} if found else None


def _written_dicts(fn: ast.AST) -> dict[str, set[str] | None]:
    """Each name `fn` binds to a dict: the string keys it can hold, or None where they are
    not all written out (`m = {}` then `m[name] = x`, `m.update(...)`, `m = f()`)."""
    out: dict[str, set[str] | None] = {}

    def add(name: str, keys: set[str] | None) -> None:
        old = out.get(name, set())
        out[name] = None if old is None or keys is None else old | keys

    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            value = node.value
            if value is None:  # `m: dict` declares, binds nothing
                continue
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    whole = isinstance(value, ast.Dict) and not isinstance(node, ast.AugAssign)
                    add(t.id, _dict_keys(value) if whole else None)  # type: ignore[arg-type]
                elif isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                    key = t.slice
                    add(t.value.id, {key.value} if isinstance(key, ast.Constant)
                        and isinstance(key.value, str) else None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.attr in ("update", "setdefault"):
            add(node.func.value.id, None)
    return out


def _dict_keys(node: ast.Dict) -> set[str] | None:
    """String keys of a dict display; None if one is computed or `**`-spread."""
    out = set()
    for k in node.keys:
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            return None
        out.add(k.value)
    return out


def _module_tree(target: str, workdir: str | None) -> ast.Module | None:
    found = target_tree(target, workdir)
    return found[1] if found else None


_CONFIG_ATTRS = ("config", "training_config")


def config_keys_read(target: str, workdir: str | None) -> dict[str, int] | None:
    """Keys the trainer's module reads from the trial config by subscript (`config["epochs"]`
    for a `config` parameter, `self.config[...]`, `self.training_config[...]`), each with the
    line of its first read. None when the module is not readable or may fill the config
    itself (`.update`, a merged dict); keys it assigns are left out. A key missing from the
    space fails every trial with a KeyError."""
    tree = _module_tree(target, workdir)
    if tree is None:
        return None
    reads: dict[str, int] = {}
    written: set[str] = set()
    calls: dict[str | None, list[ast.Call]] = {}  # by the name called: one walk, not one per function
    for call in ast.walk(tree):
        if isinstance(call, ast.Call):
            calls.setdefault(called(call), []).append(call)
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
        local = "config" in params and not any(
            isinstance(n, ast.Name) and n.id == "config" and not isinstance(n.ctx, ast.Load) for n in ast.walk(fn)) \
            and _given_whole(calls.get(fn.name, []), fn)
        for node in ast.walk(fn):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if _is_config(t, False) and not (isinstance(node.value, ast.Name) and node.value.id in params):
                        return None  # `self.training_config = {**defaults, **config}`: keys unknown
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and _is_config(node.func.value, local):
                if node.func.attr in ("update", "setdefault"):
                    return None
            if not (isinstance(node, ast.Subscript) and _is_config(node.value, local)):
                continue
            key = node.slice.value if isinstance(node.slice, ast.Constant) else None
            if not isinstance(key, str):
                continue
            if isinstance(node.ctx, ast.Load):
                reads.setdefault(key, node.lineno)
            else:
                written.add(key)
    return {k: line for k, line in reads.items() if k not in written}


def _given_whole(calls: list[ast.Call], fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the module's `calls` of `fn` (by its name) give its `config` the trial config
    (`config`, `self.config`), not a part of it (`build(params, config["optimizer"])`, whose
    `config["lr"]` reads the group)."""
    args = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    at = args.index("config") if "config" in args else None
    for call in calls:
        given = next((k.value for k in call.keywords if k.arg == "config"), None)
        if given is None and at is not None:
            shift = 1 if isinstance(call.func, ast.Attribute) and args[:1] in (["self"], ["cls"]) else 0
            before = call.args[: at - shift + 1]
            if at - shift < len(call.args) and not any(isinstance(a, ast.Starred) for a in before):
                given = call.args[at - shift]
        if given is not None and not (isinstance(given, ast.Name) and given.id == "config"
                                      or config_attribute(given)):
            return False
    return True


def config_used_whole(target: str, workdir: str | None) -> bool | None:
    """Whether the trainer's module hands the trial config on as a whole (`Net(**config)`,
    `build(cfg)` in a hook whatever its argument's name, a loop over its items, the trainer
    itself to a helper: `build(self)`), so that any key may be read; None when its source
    is not read. Reading it by key (`config["k"]`, `.get("k")`, `"k" in config`), logging it
    (`hyperparams=`) and binding it to `self.training_config` are not; nor is `__init__`'s
    `config`, itwinai's study config."""
    tree = _module_tree(target, workdir)
    if tree is None:
        return None
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if any(_hands_on_self(node) for node in ast.walk(fn)):
            return True  # `build(self)`, `Helper(self)`: it may read `trainer.config[...]`
        if fn.name == "__init__":
            continue
        args = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]
        # a hook's config argument whatever its name (`create_model(self, cfg)`, itwinai's
        # `train(self, hparams, data)`): hpoc passes it by position
        at = _CONFIG_ARG.get(fn.name, 0)
        names = {"config"} & set(args) | ({args[at]} if 0 < at < len(args) else set())
        for node in ast.walk(fn):
            if not (isinstance(getattr(node, "ctx", None), ast.Load)
                    and (_is_config(node, False) or isinstance(node, ast.Name) and node.id in names)):
                continue
            parent = parents.get(id(node))
            call = parents.get(id(parent)) if isinstance(parent, ast.Attribute) else None
            if (isinstance(parent, ast.Subscript) and parent.value is node and _named(parent.slice)) \
                    or (isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(call, ast.Call)
                        and bool(call.args) and _named(call.args[0])) \
                    or (isinstance(parent, ast.Compare) and node is not parent.left) \
                    or (isinstance(parent, ast.keyword) and parent.arg == "hyperparams") \
                    or (isinstance(parent, ast.Assign) and all(_is_config(t, False) for t in parent.targets)):
                continue
            return True
    return False


# The position of the trial config among a hook's arguments (`self` first): hpoc's hooks
# (trainer_hooks.HOOKS) and `train`, an itwinai loop's `train(self, config, ...)`.
_CONFIG_ARG = {"create_model": 1, "create_loss": 1, "create_model_loss_optimizer": 1,
               "create_optimizer": 2, "create_lr_scheduler": 2, "train": 1}
# Calls that take `self` without reading its config.
_SELF_CALLS = frozenset({"super", "isinstance", "type", "getattr", "hasattr", "setattr", "id", "print",
                         "repr", "str", "callable"})


def _hands_on_self(node: ast.AST) -> bool:
    """A call that gets `self` as an argument (`build(self)`, `Helper(trainer=self)`)."""
    if not isinstance(node, ast.Call) or (isinstance(node.func, ast.Name) and node.func.id in _SELF_CALLS):
        return False
    given = [*node.args, *(k.value for k in node.keywords)]
    if isinstance(node.func, ast.Attribute) and node.args and isinstance(node.args[0], ast.Name) \
            and node.args[0].id == "self":
        given = given[1:]  # `nn.Module.__init__(self)`: a method of its class, called on itself
    return any(isinstance(a, ast.Name) and a.id == "self" for a in given)


def _named(key: ast.AST) -> bool:
    """A key written out (`config["lr"]`), not computed (`config[f"layer_{i}"]`: any may be read)."""
    return isinstance(key, ast.Constant) and isinstance(key.value, str)


def config_keys_guarded(target: str, workdir: str | None) -> set[str]:
    """Keys the trainer's module asks the trial config about (`"k" in config`,
    `config.get("k")`) anywhere: it knows a trial may lack them."""
    tree = _module_tree(target, workdir)
    out: set[str] = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            out.add(node.left.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant):
            out.add(node.args[0].value)
    return {k for k in out if isinstance(k, str)}


def _is_config(node: ast.AST, local: bool) -> bool:
    """`config` (a parameter of the function, when `local`), `self.config`, `self.training_config`."""
    if isinstance(node, ast.Name):
        return local and node.id == "config"
    return config_attribute(node)


def config_attribute(node: ast.AST) -> bool:
    """`self.config`, or an itwinai trainer's `self.training_config`: the trial config."""
    return isinstance(node, ast.Attribute) and node.attr in _CONFIG_ATTRS and \
        isinstance(node.value, ast.Name) and node.value.id == "self"
