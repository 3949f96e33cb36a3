"""A trainer's hooks read from its source at `hpoc check`, never imported.

The driver refuses a trainer that makes no model, or whose hook hpoc cannot call, before
Ray starts (hpoc/runtime/hooks.py) - but on a cluster that is after the job waited in the
queue. A hook that returns nothing (`create_model` without its `return`) failed only in
the trials. The module's syntax tree tells all three when the trainer's classes, up to
`hpoc.Trainer`, are in that module; anything it cannot tell for certain (a base from
another module, a decorator, a method bound by assignment) is not reported.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from typing import Any

from hpoc.compiler.metrics import config_attribute
from hpoc.compiler.pysource import find_module, module_source, parse_module, source_tree, target_tree
from hpoc.compiler.targets import Problem, bindings

_MODEL = ("train", "setup", "_create_model", "create_model_loss_optimizer")
# hook -> (the arguments hpoc passes, the methods whose override means hpoc no longer calls
# it, what hpoc does with what it returns: None when it needs nothing). The first two are
# hpoc/runtime/hooks.py's HOOKS (a test keeps them equal: the compiler imports no runtime).
HOOKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "create_model": (("config",), _MODEL, "hpoc trains the model it returns"),
    "create_loss": (("config",), _MODEL, "hpoc trains with the loss it returns"),
    "create_optimizer": (("model", "config"), _MODEL, "hpoc steps the optimizer it returns"),
    "create_lr_scheduler": (("optimizer", "config"), _MODEL, None),
    "train_step": (("batch",), ("train", "train_epoch"), "hpoc trains on the loss it returns"),
    "validation_step": (("batch",), ("train", "validation_epoch"), "hpoc validates with the loss it returns"),
    "prepare_inputs": (("x",), ("train", "setup", "create_dataloaders", "batches"),
                       "the model gets the inputs it returns"),
    "checkpoint_state": ((), ("save_checkpoint",), None),
    "load_checkpoint_state": (("state",), ("restore",), None),
}


_Found = tuple[str, ast.Module, ast.ClassDef, dict[str, ast.AST]]


def _trainer(target: str, workdir: str | None, compat: bool = False) -> _Found | None:
    """(the module's path as shown, its tree, the class, its methods) of the trainer
    `target` (`module:Class`), when its source says them for certain; with `compat`, an
    itwinai trainer's too (`hpoc.compat.itwinai.RayTorchTrainer`, whose hooks differ)."""
    qual = target.partition(":")[2]
    found = target_tree(target, workdir) if qual and "." not in qual else None
    if found is None:
        return None
    names = bindings(found[1])
    cls = names.get(qual) if names else None
    methods = _methods(cls, names or {}, compat=compat)
    if methods is None or not isinstance(cls, ast.ClassDef):
        return None
    return os.path.relpath(found[0], workdir), found[1], cls, methods


def hook_problems(target: str, workdir: str | None) -> list[Problem]:
    """Errors in the trainer class `target` (`module:Class`) that would fail every trial."""
    trainer = _trainer(target, workdir)
    if trainer is None:
        return []
    shown, _, cls, methods = trainer
    qual = cls.name
    if not any(m in methods for m in ("create_model", *_MODEL)):
        close = difflib.get_close_matches("create_model", list(methods), n=1, cutoff=0.85)
        typo = methods[close[0]] if close else None
        return [Problem(f"`{qual}` ({shown}:{cls.lineno}) defines no model: implement "
                        "`create_model(self, config)` (or `create_model_loss_optimizer`)",
                        f"`{close[0]}` ({shown}:{getattr(typo, 'lineno', 0)}) is not a hook hpoc calls: "
                        "name it `create_model`" if close else
                        "docs/trainer.md (Hooks) lists the hooks with their arguments")]
    out = []
    for name, (args, callers, needs) in HOOKS.items():
        fn = methods.get(name)
        if not isinstance(fn, ast.FunctionDef) or fn.decorator_list or any(c in methods for c in callers):
            continue  # not defined, unknown, or called by the trainer's own code
        if not _callable_with(fn.args, 1 + len(args)):
            shown_args = ast.unparse(fn.args)
            out.append(Problem(f"`{name}({shown_args})` ({shown}:{fn.lineno}) must be "
                               f"`{name}({', '.join(('self', *args))})`: hpoc calls it so",
                               "docs/trainer.md (Hooks) lists the hooks with their arguments"))
        elif needs and _returns_nothing(fn):
            out.append(Problem(f"`{name}` ({shown}:{fn.lineno}) returns nothing: {needs}",
                               "end it with a `return`"))
    return out


def not_a_trainer(target: str, workdir: str | None) -> Problem | None:
    """A trainer class that subclasses nothing (`class T:`), itself or through the module's
    own bases: the driver refuses it after the job waited in the queue, as it "does not
    subclass hpoc.Trainer". A base from elsewhere (itwinai's, a package's) is not judged."""
    qual = target.partition(":")[2]
    found = target_tree(target, workdir) if qual and "." not in qual else None
    names = bindings(found[1]) if found else None
    cls = names.get(qual) if names else None
    seen = 0
    while isinstance(cls, ast.ClassDef) and not cls.decorator_list and not cls.keywords and seen < 8:
        bases = [b for b in cls.bases if not (isinstance(b, ast.Name) and b.id == "object")]
        if not bases:
            shown = os.path.relpath(found[0], workdir)  # type: ignore[index]
            via = "" if cls.name == qual else f" (its base `{cls.name}`, {shown}:{cls.lineno}, has none)"
            return Problem(f"`{qual}` is a class that does not subclass `hpoc.Trainer`{via}: hpoc "
                           "drives every trial through its methods",
                           f"write `class {qual}(hpoc.Trainer):` (with `import hpoc`; docs/trainer.md)"
                           if cls.name == qual else
                           f"write `class {cls.name}(hpoc.Trainer):` (with `import hpoc`; docs/trainer.md)")
        if len(bases) != 1 or not isinstance(bases[0], ast.Name):
            return None
        cls, seen = names.get(bases[0].id), seen + 1  # type: ignore[union-attr]
    return None


def loader_workers(target: str, workdir: str | None) -> tuple[str, int, str, int] | None:
    """(module as shown, line, keyword, count) of the most DataLoader worker processes the
    trainer's module asks for as a number (`DataLoader(..., num_workers=8)`, itwinai's
    `create_dataloaders(num_workers_dataloader=8)`), or None."""
    found = target_tree(target, workdir)
    if found is None:
        return None
    asked = [(k.value.value, node.lineno, k.arg) for node in ast.walk(found[1]) if isinstance(node, ast.Call)
             for k in node.keywords if k.arg in ("num_workers", "num_workers_dataloader")
             and isinstance(k.value, ast.Constant) and type(k.value.value) is int]
    if not asked:
        return None
    count, line, keyword = max(asked)
    return os.path.relpath(found[0], workdir), line, keyword, count


def _methods(cls: Any, names: dict[str, ast.AST], depth: int = 0,
             compat: bool = False) -> dict[str, ast.AST] | None:
    """Each method name of `cls` and the statement that defines it, nearest class first,
    down to `hpoc.Trainer`; None unless every class between is in this module as written."""
    if not isinstance(cls, ast.ClassDef) or cls.decorator_list or cls.keywords or len(cls.bases) != 1 \
            or depth > 8:
        return None
    if any(isinstance(item, (ast.If, ast.Try, ast.With, ast.For, ast.While)) for item in cls.body):
        return None  # methods defined conditionally
    base = cls.bases[0]
    if _is_hpoc_trainer(base, names) or (compat and _is_compat_trainer(base, names)):
        inherited: dict[str, ast.AST] | None = {}
    elif isinstance(base, ast.Name):
        inherited = _methods(names.get(base.id), names, depth + 1, compat)
    else:
        inherited = None
    if inherited is None:
        return None
    own: dict[str, ast.AST] = {}
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            own[item.name] = item
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            for t in item.targets if isinstance(item, ast.Assign) else [item.target]:
                if isinstance(t, ast.Name):
                    own[t.id] = item  # `create_model = build`: defined, signature unknown
    return {**inherited, **own}


def _is_hpoc_trainer(base: ast.expr, names: dict[str, ast.AST]) -> bool:
    """`hpoc.Trainer`, or `Trainer` imported from hpoc."""
    if isinstance(base, ast.Attribute):
        return base.attr == "Trainer" and isinstance(base.value, ast.Name) and base.value.id == "hpoc" \
            and isinstance(names.get("hpoc"), ast.Import)
    if isinstance(base, ast.Name):
        bound = names.get(base.id)
        return isinstance(bound, ast.ImportFrom) and bound.module in ("hpoc", "hpoc.runtime.trainer") \
            and any(a.name == "Trainer" and (a.asname or a.name) == base.id for a in bound.names)
    return False


def _is_compat_trainer(base: ast.expr, names: dict[str, ast.AST]) -> bool:
    """`RayTorchTrainer` imported from hpoc's itwinai compatibility module."""
    bound = names.get(base.id) if isinstance(base, ast.Name) else None
    return isinstance(bound, ast.ImportFrom) and bound.module == "hpoc.compat.itwinai" \
        and any(a.name == "RayTorchTrainer" and (a.asname or a.name) == base.id for a in bound.names)


def _callable_with(a: ast.arguments, n: int) -> bool:
    """Whether a function of parameters `a` takes `n` positional arguments (self included)."""
    positional = len(a.posonlyargs) + len(a.args)
    required = positional - len(a.defaults)
    kw_required = any(d is None for d in a.kw_defaults)
    return required <= n and (positional >= n or a.vararg is not None) and not kw_required


def _returns_nothing(fn: ast.FunctionDef) -> bool:
    """No `return value` nor `yield` in `fn`'s own body, and it does not end raising (a
    stub that raises says what it means)."""
    if fn.body and isinstance(fn.body[-1], ast.Raise):
        return False
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return False
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return False
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))
    return True


def cuda_lines(target: str, workdir: str | None) -> list[str]:
    """`file:line` of each place the trainer's module puts tensors on CUDA itself
    (`.cuda()`, `.to("cuda")`, `torch.device("cuda:0")`), outside functions that ask
    whether CUDA is there (`torch.cuda.is_available()`)."""
    found = target_tree(target, workdir)
    if found is None:
        return []
    shown = os.path.relpath(found[0], workdir)
    lines: set[int] = set()
    guarded: set[int] = set()
    for fn in ast.walk(found[1]):
        asks = (isinstance(n, ast.Attribute) and n.attr in ("is_available", "device_count") for n in ast.walk(fn))
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(asks):
            guarded.update(id(n) for n in ast.walk(fn))
    for node in ast.walk(found[1]):
        if isinstance(node, ast.Call) and id(node) not in guarded and _on_cuda(node):
            lines.add(node.lineno)
    return [f"{shown}:{n}" for n in sorted(lines)]


# What a module that spreads one process over several GPUs names: torch's DataParallel and
# FSDP, Hugging Face's `device_map`, a loop over `device_count()`, a pipeline or tensor
# parallel split (torch's, fairscale's `Pipe`, accelerate's `dispatch_model`).
_SEVERAL_GPUS = {"DataParallel", "FullyShardedDataParallel", "device_map", "device_count", "get_devices",
                 "Pipe", "pipelining", "PipelineStage", "parallelize_module", "dispatch_model",
                 "infer_auto_device_map"}
_MODULES_READ = 32  # the study's own modules followed from the trainer's (a bound on a big tree)
_BYTES_READ = 1 << 20  # and their source: `hpoc check` stays instant on a big installed package


def several_gpus(target: str, workdir: str | None) -> tuple[bool | None, str]:
    """(whether, "") the trainer's module, or a module of its own that it imports (the
    model's, often: beside the spec, or of its installed package), may use several GPUs
    in one process; (None, why) when its module cannot be read (installed compiled, in a
    zip, only on the cluster): what it does is not known."""
    if not target:  # no trainer: HP205 says so; no module to name
        return False, ""
    first, path, tree, why = source_tree(target, workdir)
    if path is None or tree is None:
        return None, f"the trainer's module `{first}` ({why})"
    own = first.partition(".")[0]
    todo, seen, read, size, unread = [(first, path, tree)], {first}, 0, 0, False
    while todo:
        name, path, tree = todo.pop()
        package = name if os.path.basename(path) == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if _names_gpus(node):
                return True, ""
            for module in _imported(node, package):
                if module in seen:
                    continue
                seen.add(module)  # looked up once, found or not
                # the study's modules beside the spec, and the trainer's own package where installed
                found = module_source(module, workdir)[0] if module.partition(".")[0] == own \
                    else find_module(workdir, module) if workdir else None
                if found and (read >= _MODULES_READ or size + _size(found) > _BYTES_READ):  # the rest not known
                    unread = True
                    continue
                read, size = read + bool(found), size + (_size(found) if found else 0)
                sub = parse_module(found) if found else None
                if isinstance(sub, ast.Module):
                    todo.append((module, found, sub))
    return (None, f"all the modules the trainer imports (more than {_MODULES_READ}, or {_BYTES_READ >> 20} MiB)") \
        if unread else (False, "")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _names_gpus(node: ast.AST) -> bool:
    """A name of `_SEVERAL_GPUS`, or a GPU past the first by its number: `"cuda:1"`,
    `torch.device("cuda", 1)`, `.cuda(1)`, `.to(1)` (not by a variable: `f"cuda:{rank}"`
    is DDP's one GPU of a process)."""
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else \
        node.arg if isinstance(node, ast.keyword) else None
    if name in _SEVERAL_GPUS:
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.fullmatch(r"cuda:[1-9]\d*", node.value) is not None
    if not isinstance(node, ast.Call):
        return False
    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
    args = [*node.args, *(k.value for k in node.keywords if k.arg in ("index", "device"))]
    return func in ("cuda", "to", "device", "set_device") and any(
        isinstance(a, ast.Constant) and type(a.value) is int and a.value >= 1 for a in args)


def _imported(node: ast.AST, package: str) -> list[str]:
    """The modules an import statement may load (`from pkg import mod`: `pkg` or its
    submodule `pkg.mod`; a relative one from `package`, that of the module it is in)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".") if package else []
        if node.level - 1 > len(parts):
            return []  # above the study's directory
        base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
    if not base:
        return [a.name for a in node.names]
    return [base, *(f"{base}.{a.name}" for a in node.names if a.name != "*")]


def _on_cuda(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "cuda":
        return True
    if func.attr in ("to", "device"):
        given = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "device")]
        return any(isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("cuda")
                   for v in given)
    return False


def _own_train(trainer: Any) -> tuple[str, ast.Module, dict[str, Any], ast.FunctionDef, str] | None:
    """(file shown, module tree, methods, `train`, the class defining it) of a trainer
    (`_trainer`'s) with a `train()` of its own; None for hpoc's default loop."""
    if trainer is None:
        return None
    shown, tree, cls, methods = trainer
    train = methods.get("train")
    if not isinstance(train, ast.FunctionDef):
        return None
    owner = next((c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and train in c.body),
                 cls.name)
    return shown, tree, methods, train, owner


def silent_loop(target: str, workdir: str | None, workers: int = 1) -> Problem | None:
    """A `train()` of the trainer's own in a module that never calls `report(...)` (nor
    itwinai's `checkpoint_and_report`), or reports to Ray itself (`ray.train.report`,
    `tune.report`, itwinai's newer `self.ray_report`): its trials end with no result,
    each a failure. With several `workers`, one that reports on rank 0 only: they hang."""
    plain = _trainer(target, workdir)
    trainer = plain or _trainer(target, workdir, compat=True)
    own = _own_train(trainer)
    if own is None:
        return None
    shown, tree, methods, train, owner = own
    fix = ("report each epoch's metrics: `self.report({\"val_loss\": ...}, epoch=epoch)` "
           "(docs/trainer.md, A loop of your own)" if plain else
           "report each epoch's metrics with itwinai's `self.checkpoint_and_report(epoch, "
           "tuning_metrics={\"loss\": ...})` (docs/migrating-from-itwinai.md)")
    names = bindings(tree) or {}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    for call in calls:
        to_ray = call.func.attr == "report" and _ray_session(call.func.value, names)  # type: ignore[attr-defined]
        if to_ray or (call.func.attr == "ray_report" and "ray_report" not in methods):  # type: ignore[attr-defined]
            why = ("hpoc's trials report through the trainer, which checkpoints and counts epochs, never "
                   "to Ray directly" if to_ray else
                   "`ray_report` is itwinai's newer `TorchTrainer`'s; `RayTorchTrainer` has none")
            return Problem(f"`{owner}.train()` reports with `{ast.unparse(call.func)}(...)` ({shown}:"
                           f"{call.lineno}): {why}; every trial fails there", fix, warning=True)
    reports = [c for c in calls if c.func.attr in ("report", "checkpoint_and_report")]  # type: ignore[attr-defined]
    guard = _rank_guard(tree, reports) if workers > 1 else None
    if guard is not None:
        return Problem(f"`{owner}.train()` reports on some ranks only (`if {ast.unparse(guard.test)}:`, "
                       f"{shown}:{guard.lineno}): every worker must report each epoch, or the trial "
                       "hangs waiting for the others' report",
                       f"call `self.{'report' if plain else 'checkpoint_and_report'}(...)` on every rank: "
                       "hpoc saves checkpoints and logs from rank 0 only", warning=True)
    if reports:
        return None
    return Problem(f"`{owner}.train()` ({shown}:{train.lineno}) never calls "
                   f"`self.{'report' if plain else 'checkpoint_and_report'}(...)`: its trials "
                   "report nothing, and each fails at its end", fix, warning=True)


_RANKED = re.compile(r"\b(?:\w*rank\w*|is_main\w*|\w*main_(?:worker|process|rank))\b")


def _rank_guard(tree: ast.Module, calls: list[ast.Call]) -> ast.If | None:
    """The `if` on the worker's rank (`global_rank() == 0`, `is_main_worker`) that the first
    of `calls` is inside, when every one is inside such an `if` (one test, and not with a
    report in its `else` too); else None (Ray Train waits for every worker's report)."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    reporting = set(map(id, calls))

    def reports(branch: list[ast.stmt]) -> bool:
        return any(id(n) in reporting for stmt in branch for n in ast.walk(stmt))

    guards = []
    for call in calls:
        node: ast.AST = call
        while node in parents:
            up = parents[node]
            # `if rank == 0: report(.., checkpoint) else: report(..)`: both branches report
            if isinstance(up, ast.If) and _RANKED.search(ast.unparse(up.test)) and not (
                    reports(up.body) and reports(up.orelse)):
                node = up
                break
            node = up
        if not isinstance(node, ast.If):
            return None
        guards.append(node)
    # `if rank == 0: ...` and `if rank != 0: ...`, each reporting: every rank does
    return guards[0] if len({ast.dump(g.test) for g in guards}) == 1 else None


def _ray_session(node: ast.expr, names: dict[str, ast.AST]) -> bool:
    """`ray.train`, `ray.tune`, `ray.air.session`, `train`/`tune`/`session` imported from Ray,
    or newer itwinai's `self.ray_train`/`self.ray_tune`."""
    if ast.unparse(node) in ("self.ray_train", "self.ray_tune"):
        return True
    if isinstance(node, ast.Name):
        bound = names.get(node.id)
        return (isinstance(bound, ast.ImportFrom) and (bound.module or "").split(".")[0] == "ray") or \
            (isinstance(bound, ast.Import) and any(a.name.split(".")[0] == "ray" and a.asname == node.id
                                                   for a in bound.names))
    return isinstance(node, ast.Attribute) and node.attr in ("train", "tune", "session") and \
        (ast.unparse(node.value) in ("ray", "ray.air"))


# itwinai strategy methods that hpoc's strategies lack, and what to do instead (a test keeps
# them absent from hpoc/runtime/strategy.py: the compiler imports no runtime).
ITWINAI_ONLY = {
    "clean_up": "remove it: hpoc ends the process group with the trial",
    "initialize_distributed_strategy": "call `self.strategy.init()`",
    "create_dataloader": "call `self.create_dataloaders(train_dataset=..., batch_size=...)`",
    "allgather_obj": "use `self.strategy.broadcast_object(...)` or `all_reduce(...)` (docs/trainer.md)",
    "gather_obj": "use `self.strategy.broadcast_object(...)` or `all_reduce(...)` (docs/trainer.md)",
    "gather": "use `self.strategy.all_reduce(tensor)` (docs/trainer.md)",
}


def itwinai_strategy_calls(target: str, workdir: str | None) -> list[Problem]:
    """`self.strategy.clean_up()` and the other itwinai strategy methods hpoc's strategies
    lack, in an itwinai trainer's module: an AttributeError in every trial that gets there."""
    trainer = _trainer(target, workdir, compat=True)
    if trainer is None or _trainer(target, workdir) is not None:
        return []
    shown, tree, cls, _ = trainer
    seen: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ITWINAI_ONLY \
                and ast.unparse(node.func.value) == "self.strategy":
            seen.setdefault(node.func.attr, node.lineno)
    return [Problem(f"`self.strategy.{name}()` ({shown}:{line}) is itwinai's; hpoc's strategies have no "
                    f"`{name}`: every trial fails there", ITWINAI_ONLY[name], warning=True)
            for name, line in sorted(seen.items(), key=lambda kv: kv[1])]


# What loads a checkpoint back: hpoc's, the strategy's, Ray's own; itwinai's loop is
# restored by hpoc's compat trainer around `checkpoint_and_report`.
_RESTORES = ("restore", "load_checkpoint", "latest_checkpoint", "get_checkpoint", "checkpoint_and_report")


def unrestored_loop(target: str, workdir: str | None) -> Problem | None:
    """A `train()` of the trainer's own in a module that never loads a checkpoint back: a
    resumed, retried, paused or exploited trial trains again from epoch 0, and says nothing."""
    own = _own_train(_trainer(target, workdir))
    if own is None:
        return None
    shown, tree, _, train, owner = own
    if any(isinstance(n, ast.Attribute) and n.attr in _RESTORES or isinstance(n, ast.Name) and n.id in _RESTORES
           for n in ast.walk(tree)):
        return None
    return Problem(f"`{owner}.train()` ({shown}:{train.lineno}) never calls `self.restore()`: a resumed, "
                   "retried, paused or exploited trial trains again from epoch 0",
                   "start the epochs where the checkpoint left off, after `self.setup()`: "
                   "`for epoch in range(self.restore(), self.epochs)` (docs/trainer.md, A loop of your own)",
                   warning=True)


_BUILDERS = ("create_model", "create_model_loss_optimizer")


def model_config_reads(target: str, workdir: str | None) -> dict[str, str]:
    """Trial-config keys (dotted: `config["model"]["hidden"]` is `model.hidden`) that the
    trainer's model hook reads, each with its `file:line`: in the hook itself, or in a class
    or function of the module that the hook hands the whole config to (`Net(config)`).
    A PBT exploit loads another trial's weights into the model these keys build."""
    trainer = _trainer(target, workdir, compat=True)
    if trainer is None:
        return {}
    shown, tree, _, methods = trainer
    names = bindings(tree) or {}
    out: dict[str, str] = {}
    for hook in _BUILDERS:
        fn = methods.get(hook)
        if not isinstance(fn, ast.FunctionDef):
            continue
        given = {a.arg for a in fn.args.args[1:2]}  # `config`, as hpoc passes it
        for key, line in _reads(fn, given).items():
            out.setdefault(key, f"{shown}:{line}")
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
            callee = _callee(call, names)
            if callee is None:
                continue
            fn2, offset = callee
            params = [a.arg for a in fn2.args.args][offset:]
            passed = {params[i] for i, a in enumerate(call.args) if i < len(params) and _is_config(a, given)}
            passed |= {k.arg for k in call.keywords if k.arg and _is_config(k.value, given)}
            for key, line in _reads(fn2, passed).items():
                out.setdefault(key, f"{shown}:{line}")
    return out


def _callee(call: ast.Call, names: dict[str, ast.AST]) -> tuple[ast.FunctionDef, int] | None:
    """The module's function, or class `__init__` (its `self` skipped), that `call` calls."""
    bound = names.get(call.func.id) if isinstance(call.func, ast.Name) else None
    if isinstance(bound, ast.FunctionDef):
        return bound, 0
    if isinstance(bound, ast.ClassDef):
        init = next((s for s in bound.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
        return (init, 1) if init is not None else None
    return None


def _is_config(node: ast.AST, given: set[str]) -> bool:
    """The trial config: a parameter that holds it, `self.config`, or an itwinai
    trainer's `self.training_config`."""
    return node.id in given if isinstance(node, ast.Name) else config_attribute(node)


def _reads(fn: ast.FunctionDef, given: set[str]) -> dict[str, int]:
    """Keys read from the config in `fn` by subscript or `.get("key")`, chains dotted."""
    out: dict[str, int] = {}

    def path(node: ast.AST) -> list[str] | None:
        if _is_config(node, given):
            return []
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            head = path(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            head = path(node.func.value)
        else:
            return None
        key = node.slice.value if isinstance(node, ast.Subscript) else node.args[0].value  # type: ignore[union-attr]
        return None if head is None else [*head, key]

    for node in ast.walk(fn):
        keys = path(node) if isinstance(node, (ast.Subscript, ast.Call)) else None
        if keys:
            out.setdefault(".".join(keys), node.lineno)
    return out


# What hpoc's default `create_optimizer` reads of the config's `optimizer` group
# (hpoc/runtime/trainer.py), and the methods whose override means it is not used.
OPTIMIZER_READS = ("name", "lr", "learning_rate", "momentum", "weight_decay")
_OWN_OPTIMIZER = ("create_optimizer", *_MODEL)


def unread_optimizer_keys(target: str, workdir: str | None, keys: list[str]) -> tuple[str, list[str]] | None:
    """(the module as shown, the `optimizer.KEY` keys that nothing reads): the trainer keeps
    hpoc's default optimizer, which does not read them, and its module never names them. None
    when the source cannot tell (the trainer's classes are not all in the module)."""
    trainer = _trainer(target, workdir)
    if trainer is None:
        return None
    shown, tree, _, methods = trainer
    if any(m in methods for m in _OWN_OPTIMIZER):
        return shown, []
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    named |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return shown, [k for k in keys if k not in OPTIMIZER_READS and k not in named]


def defines(target: str, workdir: str | None, name: str) -> str | None:
    """The trainer `target`'s class name when its classes (all in its module) define `name`."""
    trainer = _trainer(target, workdir)
    return trainer[2].name if trainer is not None and name in trainer[3] else None


def class_constant(target: str, workdir: str | None, name: str) -> Any:
    """The literal the trainer `target`'s classes (all in its module) set `name` to as a class
    attribute (`task = "regression"`), else None."""
    trainer = _trainer(target, workdir)
    item = trainer[3].get(name) if trainer is not None else None
    if isinstance(item, (ast.Assign, ast.AnnAssign)) and isinstance(item.value, ast.Constant):
        return item.value.value
    return None


def scored_task(target: str, workdir: str | None, args: dict[str, Any]) -> Any:
    """The `task` hpoc's validation scores the trainer `target` by: the spec's argument,
    else its class attribute; None where the source says otherwise or cannot tell: a loop
    or validation of its own, a `self.task = ...`, or an `__init__` of its own that keeps
    the `task` argument instead of handing it to hpoc.Trainer."""
    trainer = _trainer(target, workdir) if target else None
    if trainer is None:
        return args.get("task")
    _, tree, _, methods = trainer
    if "train" in methods or "validation_epoch" in methods:
        return None
    if any(isinstance(n, ast.Attribute) and n.attr == "task" and isinstance(n.ctx, ast.Store)
           and isinstance(n.value, ast.Name) and n.value.id == "self" for n in ast.walk(tree)):
        return None  # set at runtime
    if "task" in args:
        init = methods.get("__init__")
        if isinstance(init, ast.FunctionDef) and "task" in {a.arg for a in (*init.args.args, *init.args.kwonlyargs)} \
                and not any(isinstance(k, ast.keyword) and k.arg == "task" for k in ast.walk(init)):
            return None  # its own argument, never handed on
        return args["task"]
    return class_constant(target, workdir, "task")


def keeps_default(target: str, workdir: str | None, names: tuple[str, ...]) -> bool:
    """Whether the trainer `target` surely keeps hpoc.Trainer's own `names` (defines none of
    them in its classes, all in its module)."""
    trainer = _trainer(target, workdir)
    return trainer is not None and not any(n in trainer[3] for n in names)


def module_names(target: str, workdir: str | None, compat: bool = False) -> tuple[str, set[str]] | None:
    """(the module as shown, every string and attribute name its source holds): what it may
    read from a config. None when the source cannot tell (the trainer's classes are not all
    in the module; with `compat`, but for hpoc.compat.itwinai's)."""
    trainer = _trainer(target, workdir, compat=compat)
    if trainer is None:
        return None
    shown, tree, _, _ = trainer
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return shown, named | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


# The spec's trainer arguments hpoc.Trainer itself reads (hpoc/runtime/trainer.py).
TRAINER_ARGS = ("epochs", "batch_size", "task", "grad_accumulation_steps")


def unread_trainer_args(target: str, workdir: str | None, args: list[str]) -> tuple[str, list[str]] | None:
    """(the module as shown, the arguments nothing reads): hpoc.Trainer keeps every argument
    in `self.args`, so a misspelt one is dropped without a word. [] for a trainer with an
    `__init__` of its own (`hpoc check` matches the arguments to it); None when the source
    cannot tell."""
    trainer = _trainer(target, workdir)
    if trainer is None:
        return None
    shown, tree, _, methods = trainer
    if "__init__" in methods or _args_as_a_whole(tree):
        return shown, []
    named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    named |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return shown, [a for a in args if a not in TRAINER_ARGS and a not in named]


def _args_as_a_whole(tree: ast.Module) -> bool:
    """Whether the module uses `self.args` otherwise than `self.args[...]`/`.get(...)`
    (`Model(**self.args)`, a loop over it): any argument may be read then."""
    keyed = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript):
            keyed.add(id(n.value))
        elif isinstance(n, ast.Attribute) and n.attr == "get":
            keyed.add(id(n.value))
    return any(isinstance(n, ast.Attribute) and n.attr == "args" and id(n) not in keyed for n in ast.walk(tree))
