"""An itwinai HPO config (`ray_training_pipeline`) → the Study AST a .hpo file would give.

    ray_training_pipeline:
      class_path: itwinai.pipeline.Pipeline
      init_args:
        steps:
          - class_path: data.FashionMNISTGetter            -> pipeline.getter
          - class_path: data.FashionMNISTSplitter          -> pipeline.splitter
            init_args: {train_proportion: 0.9, ...}
          - class_path: trainer.MyRayTorchTrainer          -> pipeline.trainer
            init_args:
              config:
                scaling_config: {num_workers, use_gpu, resources_per_worker}  -> resources
                train_loop_config: {...}                   -> space
                tune_config: {num_samples, scheduler, search_alg}  -> trials, scheduler, search, objective
                run_config: {storage_path, name}           -> storage (and the study name)
                find_unused_parameters: true               -> resources.find_unused_parameters
              strategy: ddp                                 -> resources.strategy
              logger: {LoggersCollection of MLFlowLogger}   -> logger mlflow

Steps may also be written in the hydra style of newer itwinai (`_target_:` with the
arguments beside it). Class paths such as `data.FashionMNISTGetter` name modules beside
the config (the plan's workdir is the config's directory).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any

from hpoc.compiler import tables as T
from hpoc.dsl import ast as A
from hpoc.errors import did_you_mean, one_of
from hpoc.yaml.build import (
    DEFAULTED,
    DUPLICATE,
    IGNORED,
    MISSING,
    SHARED,
    SUBSTITUTED,
    TYPE,
    UNKNOWN,
    VALUE,
    Builder,
    block,
)
from hpoc.yaml.classes import class_args, class_key
from hpoc.yaml.nodes import YMap, YNode, YScalar, YSeq, describe
from hpoc.yaml.space import read_space
from hpoc.yaml.tune import read_tune

PIPELINE_KEYS = ("ray_training_pipeline", "hpo_training_pipeline", "training_pipeline")
CONFIG_KEYS = ("scaling_config", "train_loop_config", "tune_config", "run_config", "checkpoint_freq", "torch_config",
               "find_unused_parameters")
_CONFIG_HOMES = {"num_samples": "tune_config", "scheduler": "tune_config", "search_alg": "tune_config",
                 "storage_path": "run_config", "num_workers": "scaling_config"}
HPO_SECTIONS = ("scaling_config", "train_loop_config", "tune_config", "run_config")
TRAINER_OWN = ("config", "strategy", "logger", "random_seed")  # hpoc reads these itself
LOGGERS = {"MLFlowLogger": "mlflow", "TensorBoardLogger": "tensorboard"}
_TARGET = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", re.ASCII)
_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class Step:
    """One pipeline step: its class path and init arguments (with spans)."""

    def __init__(self, target: str, span: A.Span, args: YMap | None, node: YMap):
        self.target, self.span, self.args, self.node = target, span, args, node

    @property
    def class_name(self) -> str:
        return self.target.rsplit(".", 1)[-1]

    def arg(self, key: str) -> YNode | None:
        return self.args.get(key) if self.args is not None else None


def translate(b: Builder, doc: YNode, text: str = "") -> A.Study:
    """The Study for a parsed YAML document; problems go to `b.diagnostics`."""
    study = A.Study((), b.file)
    if not isinstance(doc, YMap):
        b.error(TYPE, f"the config must be a mapping with the pipeline, not {describe(doc)}", doc.span,
                help="start the file with `ray_training_pipeline:`")
        return study
    found = _find_pipeline(b, doc)
    if found is None:
        return study
    key, kspan, pipeline = found
    b.pipeline = key
    _stray_sections(b, doc, text)
    steps = _steps(b, pipeline, key)
    if not steps:
        if b.ok:
            b.error(MISSING, f"`{key}` has no steps", kspan, help="list getter, splitter and trainer under `steps`")
        return study
    roles = _roles(b, steps, key, kspan)
    if "trainer" not in roles:
        return study
    # the file's other pipelines: one may be the HPO one `--pipe-key` should have picked
    others = tuple(k for k, _, v in doc.entries if k != key and isinstance(v, YMap) and _is_pipeline(v))
    return _study(b, roles, kspan, others)


def _stray_sections(b: Builder, doc: YMap, text: str) -> None:
    """`tune_config:` and its like at the top of the file, outside the trainer's `config`:
    neither itwinai nor hpoc reads them there (10 trials ran as 1, with random search).
    One that an alias (`&name`) or a `${...}` reference uses is a variable, not a stray."""
    lines = text.split("\n")
    for key, kspan, _ in doc.entries:
        if key not in CONFIG_KEYS or "${" + key in text:
            continue
        line = lines[kspan.line - 1] if 0 < kspan.line <= len(lines) else ""
        if re.match(rf"\s*['\"]?{re.escape(key)}['\"]?\s*:\s*&", line):
            continue
        b.warn(IGNORED, f"`{key}` at the top of the file is not read: the trainer's `config` holds it",
               kspan, help=f"move `{key}` under the trainer's `init_args: {{config: ...}}`")


def _find_pipeline(b: Builder, doc: YMap) -> tuple[str, A.Span, YMap] | None:
    from hpoc.yaml import PIPE_KEY

    candidates = [(k, ks, v) for k, ks, v in doc.entries if isinstance(v, YMap) and _is_pipeline(v)]
    chosen = PIPE_KEY.get()
    if chosen is not None:
        node = doc.get(chosen)
        names = [c[0] for c in candidates]
        if isinstance(node, YMap) and _is_pipeline(node):
            return chosen, doc.key_span(chosen), node  # type: ignore[return-value]
        b.error(MISSING, f"`--pipe-key {chosen}`: " + (f"`{chosen}` is not a pipeline" if node is not None
                                                        else f"no `{chosen}` in this file"),
                doc.key_span(chosen) or doc.span,
                help=did_you_mean(chosen, names) or (f"its pipelines: {one_of(names)}" if names else None))
        return None
    with_config: list[Any] = []
    if len(candidates) > 1:  # the HPO pipeline is the one whose trainer has a `config`
        configs = {c[0]: [s.arg("config") for s in _steps(Builder(b.file), c[2], c[0]) if s.arg("config") is not None]
                   for c in candidates}
        # with HPO sections: a TorchTrainer's `config` (a TrainingConfiguration) is not a study
        with_config = [c for c in candidates if any(isinstance(n, YMap) and any(k in n.index for k in HPO_SECTIONS)
                                                    for n in configs[c[0]])] \
            or [c for c in candidates if configs[c[0]]]
        candidates = with_config or candidates
    if not candidates:
        keys = doc.keys()
        close = did_you_mean(keys[0], PIPELINE_KEYS) if keys else None
        b.error(MISSING, "no itwinai pipeline in this file", doc.span,
                help=close or "the config needs `ray_training_pipeline:` with `class_path: itwinai.pipeline.Pipeline`"
                " and `init_args: {steps: [...]}`")
        return None
    if len(candidates) > 1:
        kind = "HPO pipelines (with a trainer `config`)" if with_config else "pipelines"
        b.error(VALUE, f"several {kind} in this file: {one_of(c[0] for c in candidates)}", candidates[1][1],
                help=f"pick one with `--pipe-key {candidates[0][0]}` (as itwinai's exec-pipeline does), "
                     "or give each a file of its own")
        return None
    return candidates[0]


def _is_pipeline(node: YMap) -> bool:
    target = node.get("class_path") or node.get("_target_")
    if isinstance(target, YScalar) and isinstance(target.value, str) and target.value.endswith("Pipeline"):
        return True
    args = node.get("init_args")
    return "steps" in node.index or (isinstance(args, YMap) and "steps" in args.index)


def _steps(b: Builder, pipeline: YMap, key: str) -> list[Step]:
    style = "class_path" if "class_path" in pipeline.index else "_target_"
    b.check_keys(pipeline, ("class_path", "init_args") if style == "class_path" else ("_target_", "steps", "name"),
                 f"`{key}`")
    args = b.mapping(pipeline.get("init_args"), "`init_args`") if style == "class_path" else pipeline
    if style == "class_path" and args is not None:  # itwinai's Pipeline takes `steps` and `name`
        b.check_keys(args, ("steps", "name"), f"`init_args` of `{key}`")
    node = args.get("steps") if args is not None else None
    if node is None:
        return []
    items: list[YNode]
    if isinstance(node, YSeq):
        items = list(node.items)
    elif isinstance(node, YMap):  # itwinai accepts named steps too
        items = [v for _, _, v in node.entries]
    else:
        b.error(TYPE, f"`steps` must be a list, not {describe(node)}", node.span)
        return []
    out = []
    for n, item in enumerate(items, 1):
        step = _step(b, item, f"step {n} of `{key}`")
        if step is not None:
            out.append(step)
    return out


def _step(b: Builder, node: YNode, what: str) -> Step | None:
    if not isinstance(node, YMap):
        b.error(TYPE, f"a step must be a mapping with `class_path`, not {describe(node)}", node.span)
        return None
    key = class_key(node)
    if key is None:
        b.error(MISSING, "a step needs `class_path`", node.span,
                help="write `class_path: module.ClassName` (and its arguments under `init_args`)")
        return None
    strays: tuple[str, ...] = ()
    if key == "class_path" and "_target_" not in node.index:  # said as itwinai users read it
        strays = tuple(k for k in node.keys() if k not in ("class_path", "init_args"))
        b.check_keys(node, ("class_path", "init_args"), "a step", homes={k: "init_args" for k in strays})
    entries = class_args(b, node, what, besides=strays)  # None: said; the step stays, for its role
    target_node = node.get(key)
    target = b.word(target_node, f"`{key}`")
    if target is None or target_node is None:
        return None
    if not _TARGET.fullmatch(target):
        b.error(VALUE, f'`{key}` is not a Python class path: "{target}"', target_node.span,
                help="write `module.ClassName`, e.g. `data.FashionMNISTGetter` for data.py beside the config")
        return None
    given = node.get("init_args") if key == "class_path" else node
    args = None
    if given is not None and entries is not None:
        args = YMap(tuple(entries), given.span, {k: i for i, (k, _, _) in enumerate(entries)})
    return Step(target, target_node.span, args, node)


def _data_step(s: Step) -> bool:
    """A getter or splitter by its name or arguments; a trainer that loads its own data may
    have other steps after it (a saver, a `DataPlotter`, a `ModelLoader`, anything in a
    `data.py`), which are not run, as before: a warning, not an error."""
    return (bool(re.search(r"^Get|Get(ter)?$|Split|Download|Fetch", s.class_name))
            or any(a in (s.args.index if s.args else {}) for a in ("train_proportion", "validation_proportion")))


def _roles(b: Builder, steps: list[Step], key: str, kspan: A.Span) -> dict[str, Step]:
    trainers = [i for i, s in enumerate(steps) if s.arg("config") is not None or s.class_name.endswith("Trainer")]
    if not trainers:
        b.error(MISSING, f"`{key}` has no trainer step", kspan,
                help="the last step should be your RayTorchTrainer subclass with `init_args: {config: ...}`")
        return {}
    t = trainers[-1]
    before, after = steps[:t], steps[t + 1:]
    for s in after:
        if not before and _data_step(s):  # listed after the trainer: its trials would get no data
            b.error(VALUE, f"step `{s.target}` comes after the trainer, which would get no data", s.span,
                    help="move the data steps before the trainer: steps run in the order they are listed")
            continue
        b.warn(IGNORED, f"step `{s.target}` after the trainer is not run: hpoc runs getter → splitter → trainer",
               s.span, help="remove it, or run it on the study's results afterwards")
    roles = {"trainer": steps[t]}
    if len(before) > 2:
        for s in before[:-2]:
            b.error(VALUE, f"step `{s.target}`: hpoc pipelines have at most a getter and a splitter "
                    "before the trainer", s.span, help="merge the data steps into the getter")
        before = before[-2:]
    if len(before) == 2:
        roles["getter"], roles["splitter"] = before
    elif len(before) == 1:
        s = before[0]
        is_split = "Split" in s.class_name or any(a in (s.args.index if s.args else {})
                                                   for a in ("train_proportion", "validation_proportion"))
        roles["splitter" if is_split else "getter"] = s
    return roles


def _study(b: Builder, roles: dict[str, Step], kspan: A.Span, others: tuple[str, ...] = ()) -> A.Study:
    trainer = roles["trainer"]
    newer = [k for k in _NEWER_LAYOUT if trainer.args is not None and k in trainer.args.index]
    if newer:
        _newer_layout(b, trainer, newer)
        return A.Study((), b.file)
    if trainer.target.split(".")[0] == "itwinai":  # its base classes: a loop hpoc runs must be the user's
        b.error(VALUE, f"the trainer `{trainer.target}` is itwinai's own class, which hpoc does not run",
                trainer.span, help="subclass `RayTorchTrainer` from `hpoc.compat.itwinai` in a module beside the "
                "config (its `train(self, config, data)` is the training loop) and name that class here, "
                "e.g. `class_path: trainer.MyRayTorchTrainer`")
    config = b.mapping(trainer.arg("config"), "`config` of the trainer")
    if config is None:
        b.error(MISSING, f"trainer `{trainer.target}` has no `config`", trainer.span,
                help="add `config:` with `scaling_config`, `train_loop_config`, `tune_config` and `run_config`")
        return A.Study((), b.file)  # a training pipeline: what HPO would default is noise
    if _training_configuration(config):
        b.error(MISSING, f"the `config` of trainer `{trainer.target}` has no HPO settings: it is a "
                "training configuration", trainer.args.key_span("config"),  # type: ignore[union-attr]
                help=(f"pick the HPO pipeline with `--pipe-key {others[0]}`, or " if others else "")
                + "give this `config` `scaling_config`, `train_loop_config` (its values), `tune_config` "
                "and `run_config`")
        return A.Study((), b.file)
    b.check_keys(config, CONFIG_KEYS, "the trainer's `config`",
                 homes=_CONFIG_HOMES)
    b.trainer = ":".join(trainer.target.rpartition(".")[::2])
    space_settings, params = read_space(b, b.mapping(config.get("train_loop_config"), "`train_loop_config`"))
    tune = read_tune(b, config, params)

    items: list[A.Item] = []
    name, name_span = _study_name(b, tune.run_name, tune.run_name_span, kspan)
    items.append(A.Block("study", A.String(name, span=name_span), None, kind_span=name_span, span=name_span))
    items.append(block("pipeline", _pipeline(b, roles), kspan))
    if space_settings:
        items.append(block("space", space_settings, config.key_span("train_loop_config")))
    if tune.objective is not None:
        items.append(tune.objective)
    if tune.trials:
        items.append(block("trials", tune.trials, tune.trials_span))
    if tune.search is not None:
        items.append(tune.search)
    if tune.scheduler is not None:
        items.append(tune.scheduler)
    resources = _resources(b, config, trainer)
    if tune.reuse is not None:
        resources.append(tune.reuse)
    if resources:
        items.append(block("resources", resources, config.key_span("scaling_config") or trainer.span))
    freq = b.given(config.get("checkpoint_freq"))
    every = b.setting("every", b.value(freq), config.key_span("checkpoint_freq")) if freq is not None else None
    if tune.checkpoint is not None:
        body = list(tune.checkpoint.body or ())
        if every is not None and any(isinstance(i, A.Setting) and i.key == "every" for i in body):
            b.error(DUPLICATE, "`checkpoint_freq` is set both here and as `checkpoint_frequency` in "
                    "`checkpoint_config`", config.key_span("checkpoint_freq"), help="keep one of them")
        elif every is not None:  # both say how to checkpoint: one section holds them
            body.append(every)
        items.append(replace(tune.checkpoint, body=tuple(body)))
    elif every is not None:
        items.append(block("checkpoint", [every], config.key_span("checkpoint_freq")))
    if tune.failure is not None:
        items.append(tune.failure)
    storage = list(tune.storage)
    if tune.run_name is not None and tune.run_name != name:
        storage.append(b.setting("name", A.String(name, span=tune.run_name_span), tune.run_name_span))
    if storage:
        items.append(block("storage", storage, tune.storage_span))
    items.extend(_loggers(b, trainer))
    _monitoring(b, trainer)
    _checkpoints_location(b, trainer)
    # itwinai's trainers take `random_seed`; hpoc seeds each trial from the study's seed
    seed = b.given(trainer.arg("random_seed"))
    if seed is not None and trainer.args is not None:
        kspan = trainer.args.key_span("random_seed")
        items.append(block("training", [b.setting("seed", b.value(seed), kspan)], kspan))
    return A.Study(tuple(items), b.file)


# itwinai's TorchTrainer flags for what it measures itself; `RayTorchTrainer` (hpoc's) takes
# them without a word, so a `true` one is said: nothing is measured.
_MONITORING = {"measure_gpu_data": "GPU utilisation monitoring", "enable_torch_profiling": "PyTorch profiling",
               "store_torch_profiling_traces": "PyTorch profiling traces",
               "measure_epoch_time": "epoch time tracking", "time_ray": "Ray timing"}


def _monitoring(b: Builder, trainer: Step) -> None:
    for key, what in _MONITORING.items():
        node = trainer.arg(key)
        if isinstance(node, YScalar) and node.value is True and trainer.args is not None:
            b.warn(IGNORED, f"`{key}` is itwinai's {what}, which hpoc does not do: nothing is measured",
                   trainer.args.key_span(key), help="remove it (each trial's results hold every epoch's time, "
                   "`time_this_iter_s`)")


def _checkpoints_location(b: Builder, trainer: Step) -> None:
    """Ray ran each trial in a directory of its own, so itwinai's relative `checkpoints_location`
    was per trial; hpoc runs every trial in the config's directory (relative paths read as the
    config writes them), where the trials' files overwrite each other's."""
    node = trainer.arg("checkpoints_location")
    if not (isinstance(node, YScalar) and isinstance(node.value, str) and node.value.strip()) \
            or trainer.args is None:
        return
    path = node.value.strip()
    # `$SCRATCH/...` unset here (set in the job) names the user's own place all the same
    if not path.startswith("$") and not os.path.isabs(os.path.expanduser(path)):
        b.warn(SHARED, f"`checkpoints_location: {node.value}` is shared by every trial: they run in the "
               "config's directory, not each in its own as under Ray", trainer.args.key_span("checkpoints_location"),
               help="save the trainer's own files under `self.trial_dir` (each trial's directory), e.g. "
               "`os.path.join(self.trial_dir, self.checkpoints_location)`; `checkpoint_and_report` already "
               "checkpoints the model and optimizer per trial")


# itwinai >= 0.3's TorchTrainer takes Ray's objects as its own arguments (with `ray_search_space`
# the space); hpoc reads RayTorchTrainer's `config` (the tutorial's, hpoc.compat.itwinai's).
_NEWER_LAYOUT = {"ray_scaling_config": "scaling_config", "ray_tune_config": "tune_config",
                 "ray_run_config": "run_config", "ray_search_space": "train_loop_config",
                 "ray_torch_config": "torch_config"}


def _newer_layout(b: Builder, trainer: Step, keys: list[str]) -> None:
    moves = ", ".join(f"`{k}` as `{_NEWER_LAYOUT[k]}`" for k in keys)
    b.error(VALUE, f"`{keys[0]}` is the layout of itwinai's newer `TorchTrainer`, which hpoc does not run",
            trainer.args.key_span(keys[0]),  # type: ignore[union-attr]
            notes=("hpoc runs trainers written against `RayTorchTrainer` (`train(self, config, data)`), "
                   "imported from `hpoc.compat.itwinai`",),
            help=f"move them under the trainer's `config:`: {moves}; constants such as `epochs` go "
                 "into `train_loop_config` too")


def _training_configuration(config: YMap) -> bool:
    """A TorchTrainer's TrainingConfiguration (`batch_size: 32`, `optim_lr`, or its `class_path`):
    no key of an HPO `config`, misspelt or misplaced (`num_samples`), and no search domain."""
    return bool(config.entries) and not any(
        k in CONFIG_KEYS or k in _CONFIG_HOMES or did_you_mean(k, CONFIG_KEYS)
        or (isinstance(v, YMap) and ("type" in v.index or "grid_search" in v.index)) for k, _, v in config.entries)


def _study_name(b: Builder, run_name: str | None, span: A.Span | None, kspan: A.Span) -> tuple[str, A.Span]:
    """The run name (it names directories and SLURM jobs), made safe for both."""
    if run_name is None:
        import os

        base = os.path.basename(os.path.dirname(os.path.abspath(b.file))) or "study"
        name = _NAME_BAD.sub("-", base).strip("-._") or "study"
        if span is None:  # else the name written is not a string: an error already
            b.warn(DEFAULTED, f'`run_config` has no `name`: the study is called "{name}" '
                   "(after the config's directory)", kspan, help="add `run_config: {name: my-study}`")
        return name, kspan
    name = _NAME_BAD.sub("-", run_name).strip("-._") or "study"
    if not name[0].isalnum():
        name = "s" + name
    if name != run_name:
        b.warn(SUBSTITUTED, f'run name "{run_name}" is used as "{name}"', span,
               help="names directories and jobs: use letters, digits, `.`, `_` and `-`")
    return name, span or kspan


def _pipeline(b: Builder, roles: dict[str, Step]) -> list[A.Item]:
    out: list[A.Item] = []
    for role in ("getter", "splitter", "trainer"):
        step = roles.get(role)
        if step is None:
            continue
        module, _, cls = step.target.rpartition(".")
        func = f"{module}:{cls}"
        args = step.args
        if role == "trainer" and args is not None:
            rest = tuple(e for e in args.entries if e[0] not in TRAINER_OWN)
            args = YMap(rest, args.span, {k: i for i, (k, _, _) in enumerate(rest)})
        kwargs = b.kwargs(args, f"`{step.target}`")
        value: A.Value
        if kwargs:
            value = A.Call(func, (), kwargs, func_span=step.span, span=step.span)
        else:
            value = A.Ref(func, span=step.span)
        out.append(b.setting(role, value, step.span))
    return out


def _resources(b: Builder, config: YMap, trainer: Step) -> list[A.Item]:
    out: list[A.Item] = []
    sc = b.mapping(config.get("scaling_config"), "`scaling_config`")
    if sc is not None:
        ignored = ("trainer_resources", "placement_strategy", "accelerator_type")
        b.check_keys(sc, ("num_workers", "use_gpu", "resources_per_worker", *ignored), "`scaling_config`",
                     ray_class="ScalingConfig")
        for key in ignored:
            if key == "accelerator_type" and key in sc.index:  # a GPU model: the SLURM job asks for it
                b.warn(IGNORED, "`accelerator_type` is ignored: the SLURM job decides which GPUs the "
                       "workers get", sc.key_span(key), help="remove it; to ask for a GPU model, "
                       "`hpoc convert` the config and set `slurm { gpu_type = \"...\" }`")
            elif key in sc.index:
                b.warn(IGNORED, f"`{key}` is ignored: hpoc places workers itself", sc.key_span(key),
                       help=f"remove `{key}`")
        workers = b.given(sc.get("num_workers"))
        if workers is not None:
            out.append(b.setting("workers", b.value(workers), sc.key_span("num_workers")))
        out.extend(_per_worker(b, sc))
    _torch_config(b, config, out)
    # itwinai trainers read it from their config and pass it to DDP (`distributed(...)`'s kwargs)
    unused = b.given(config.get("find_unused_parameters"))
    if unused is not None:
        out.append(b.setting("find_unused_parameters", b.value(unused), config.key_span("find_unused_parameters")))
    strategy = trainer.arg("strategy")
    if strategy is not None:
        word = b.word(strategy, "`strategy`")
        if word is not None:
            kind = word.strip().lower()
            if kind == "horovod":
                b.error(VALUE, "the `horovod` strategy is not supported", strategy.span,
                        help="use `strategy: ddp` (or `deepspeed`); the trainer code stays the same")
            elif kind not in ("ddp", "deepspeed"):
                b.error(VALUE, f"unknown strategy `{word}`", strategy.span,
                        help=did_you_mean(kind, ["ddp", "deepspeed"]) or "use `ddp` or `deepspeed`")
            else:
                out.append(b.setting("strategy", A.Ref(kind, span=strategy.span), trainer.args.key_span("strategy")))  # type: ignore[union-attr]
    return out


def _torch_config(b: Builder, config: YMap, resources: list[A.Item]) -> None:
    """Ray's TorchConfig: hpoc picks the process group backend itself (NCCL with GPUs, Gloo
    without) and uses its own timeouts, so any other setting is a warning naming it."""
    tc = b.mapping(config.get("torch_config"), "`torch_config`")
    if tc is None:
        return
    b.check_keys(tc, ("backend", "init_method", "timeout_s"), "`torch_config`", ray_class="TorchConfig")
    gpus = next((i.value for i in resources if isinstance(i, A.Setting) and i.key == "gpus_per_worker"), None)
    uses = "nccl" if isinstance(gpus, A.Number) and gpus.value > 0 else "gloo"
    node = tc.get("backend")
    if node is not None:
        word = b.word(node, "`backend`")
        if word is not None and word.strip().lower() != uses:
            b.warn(SUBSTITUTED, f"`backend: {word}` is not used: hpoc's workers use `{uses}` "
                   f"({'NCCL with GPUs' if uses == 'nccl' else 'Gloo without GPUs'})", node.span,
                   help="remove `backend` (hpoc picks NCCL when workers have a GPU, Gloo otherwise)")
    for key in ("init_method", "timeout_s"):
        if key in tc.index:
            b.warn(IGNORED, f"`{key}` is ignored: hpoc sets up the process group itself", tc.key_span(key),
                   help=f"remove `{key}`")


def _per_worker(b: Builder, sc: YMap) -> list[A.Item]:
    out: list[A.Item] = []
    use_gpu_node = b.given(sc.get("use_gpu"))
    use_gpu: Any = None
    if use_gpu_node is not None:
        if isinstance(use_gpu_node, YScalar) and isinstance(use_gpu_node.value, bool):
            use_gpu = use_gpu_node.value
        else:
            b.error(TYPE, f"`use_gpu` must be `true` or `false`, not {describe(use_gpu_node)}", use_gpu_node.span)
    rpw = b.mapping(sc.get("resources_per_worker"), "`resources_per_worker`")
    cpu = gpu = None
    if rpw is not None:
        for key, kspan, value in rpw.entries:
            if b.given(value) is None:
                continue  # unset: Ray's default
            if key.upper() == "CPU":
                cpu = (kspan, value)
            elif key.upper() == "GPU":
                gpu = (kspan, value)
            elif key in ("memory", "object_store_memory"):  # Ray's own, in bytes
                b.error(UNKNOWN, f"`{key}` per worker is not supported", kspan,
                        help="the SLURM job asks for the nodes' memory: `hpoc convert` the config and set "
                        "`slurm { mem = \"64G\" }`")
            else:
                b.error(UNKNOWN, f"custom resource `{key}` is not supported", kspan,
                        help="give workers `CPU` and `GPU` only")
    if cpu is not None:
        out.append(b.setting("cpus_per_worker", b.value(cpu[1]), cpu[0]))
    gpu_value = gpu[1].value if gpu is not None and isinstance(gpu[1], YScalar) else None
    if gpu is not None:
        if use_gpu is True and gpu_value == 0:
            b.error(VALUE, "`use_gpu` is true but `resources_per_worker` gives workers no GPU", gpu[0],
                    help="set `GPU: 1` (or `use_gpu: false`)")
        elif use_gpu is False and isinstance(gpu_value, (int, float)) and gpu_value > 0:
            b.error(VALUE, f"`use_gpu` is false but `resources_per_worker` asks for {gpu[1].text} GPU", gpu[0],
                    help="set `use_gpu: true` to train on the GPUs, or remove `GPU`")
        out.append(b.setting("gpus_per_worker", b.value(gpu[1]), gpu[0]))
    elif use_gpu is True and use_gpu_node is not None:
        # Ray: use_gpu alone reserves one GPU per worker.
        out.append(b.setting("gpus_per_worker", A.Number(1, "1", span=use_gpu_node.span), sc.key_span("use_gpu")))
    return out


def _loggers(b: Builder, trainer: Step) -> list[A.Block]:
    node = trainer.arg("logger")
    if node is None or (isinstance(node, YScalar) and node.value is None):
        return []
    loggers = []
    step = _step(b, node, "the trainer's `logger`")
    if step is None:
        return []
    if step.class_name == "LoggersCollection":
        if step.args is not None:
            b.check_keys(step.args, ("loggers",), "`LoggersCollection`")
        inner = step.arg("loggers")
        if inner is None and "loggers" in step.node.index:
            return []  # beside `class_path`: reported as belonging in `init_args`
        if inner is None:
            b.error(MISSING, "`LoggersCollection` has no `loggers`", step.span,
                    help="list them under `init_args: {loggers: [...]}`, or remove the logger")
            return []
        if not isinstance(inner, YSeq):
            b.error(TYPE, f"`loggers` of `LoggersCollection` must be a list, not {describe(inner)}", inner.span)
            return []
        loggers = [s for s in (_step(b, n, f"logger {i} of `LoggersCollection`") for i, n in enumerate(inner.items, 1))
                   if s is not None]
    else:
        loggers = [step]
    out: list[A.Block] = []
    seen: set[str] = set()
    for lg in loggers:
        kind = LOGGERS.get(lg.class_name)
        if kind is None:
            b.warn(IGNORED, f"logger `{lg.class_name}` is not supported and is not used", lg.span,
                   help=f"hpoc logs to {one_of(T.LOGGERS)}; trial progress is printed anyway")
            continue
        if kind in seen:
            b.error(VALUE, f"two `{lg.class_name}` loggers", lg.span, help="keep one")
            continue
        seen.add(kind)
        out.append(block("logger", _logger_options(b, lg, kind), lg.span, A.Ref(kind, span=lg.span)))
    return out


def _logger_options(b: Builder, lg: Step, kind: str) -> list[A.Item] | None:
    body: list[A.Item] = []
    known = ("experiment_name", "log_freq", "tracking_uri", "savedir", "run_description", "run_name",
             "log_on_workers", *(("framework",) if kind == "tensorboard" else ()))
    args = lg.args
    if args is None:
        return None
    b.check_keys(args, known, f"`{lg.class_name}`")
    for key, kspan, value in args.entries:
        if key == "log_freq":
            body.append(b.setting("log_freq", _log_freq(b, value), kspan))
        elif key == "experiment_name" and kind == "mlflow":
            body.append(b.setting(key, b.value(value), kspan))
        elif key == "tracking_uri":
            body.append(b.setting(key, b.value(value), kspan))
        elif key == "savedir" and "tracking_uri" not in args.index:  # the folder itwinai's logger writes under
            body.append(b.setting("tracking_uri", b.value(value), kspan))
        elif key == "framework":
            if b.given(value) is not None and b.word(value, "`framework`") not in (None, "pytorch"):
                b.error(VALUE, "`framework` must be `pytorch`: hpoc's trainers are PyTorch's", value.span,
                        help="write `framework: pytorch`, or remove it")
        elif key in known and key not in ("experiment_name", "savedir"):
            why = "hpoc logs from each trial's first worker" if key == "log_on_workers" else \
                "hpoc names runs after trials"
            b.warn(IGNORED, f"`{key}` of `{lg.class_name}` is ignored: {why}",
                   kspan, help=f"remove `{key}`")
        elif key == "savedir":  # beside `tracking_uri`, which itwinai's loggers write to too
            b.warn(IGNORED, f"`savedir` is ignored: `tracking_uri` says where the {kind} logger writes", kspan,
                   help="remove `savedir`")
        elif key == "experiment_name":
            b.warn(IGNORED, f"`{key}` is ignored for the {kind} logger", kspan, help=f"remove `{key}`")
    return body or None


def _log_freq(b: Builder, node: YNode) -> A.Value:
    if isinstance(node, YScalar) and isinstance(node.value, int) and not isinstance(node.value, bool):
        b.warn(SUBSTITUTED, f"`log_freq: {node.text}` logs every {node.text} batches in itwinai; "
               "hpoc logs every batch or every epoch: logging every batch", node.span,
               help="write `log_freq: batch` or `log_freq: epoch`")
        return A.Ref("batch", span=node.span)
    return b.value(node, words=("batch", "epoch"))
