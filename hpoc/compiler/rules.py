"""Rules that span sections: searcher vs space, scheduler settings, objective needs,
resources, checkpoints, storage; the `slurm` block's are in slurm.py. Also fills defaults
that depend on other sections (strategy, checkpoint score)."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import urllib.parse
from typing import Any, Iterator

from hpoc import loader_cpus
from hpoc.compiler import early_stop
from hpoc.compiler import tables as T
from hpoc.compiler.check import (
    MISSING,
    OBJECTIVE,
    RESOURCES,
    SCHEDULER,
    SEARCHER,
    TYPE,
    UNKNOWN,
    VALUE,
    WARN_CONFIG,
    WARN_DIRECTION,
    WARN_FILE,
    WARN_FIRST_METRIC,
    WARN_METRIC,
    WARN_REPEATS,
    WARN_RESOURCES,
    WARN_SCHEDULE,
    WARN_SEARCH,
    WARN_SECONDS,
    WARN_SHAPE,
    WARN_UNREAD,
    Checker,
)
from hpoc.compiler.deepspeed_file import check_file
from hpoc.compiler.map_reads import reads_as_map
from hpoc.compiler.metrics import (Reports, config_keys_guarded, config_keys_read, config_used_whole,
                                   study_reports, trainer_target)
from hpoc.compiler.points import check_points
from hpoc.compiler.pysource import find_module, target_tree
from hpoc.compiler.targets import check_step, function_step, without_execute
from hpoc.compiler.trainer_hooks import (OPTIMIZER_READS, TRAINER_ARGS, cuda_lines, defines,
                                         hook_problems, itwinai_strategy_calls, keeps_default, loader_workers,
                                         model_config_reads, module_names, not_a_trainer, scored_task, several_gpus,
                                         silent_loop, unread_optimizer_keys, unread_trainer_args, unrestored_loop)
from hpoc.compiler.slurm import check_slurm
from hpoc.compiler.space import COUNTS, Param, Space, as_count, domain_maps, is_count, low_end
from hpoc.compiler.values import expand_path, item_spans, setting_value
from hpoc.dsl import ast as A
from hpoc.errors import closest, did_you_mean, one_of
from hpoc.plan import dsjson
from hpoc.plan.space import count_grid, distinct_configs, grid_bound, total_trials


def cross_check(ch: Checker, out: dict[str, Any], found: dict[str, list[Any]], workdir: str | None) -> None:
    space: Space = out.pop("space_model")
    out["space"] = {"params": [p.plan() for p in space.params], "constants": space.constants}
    for i, p in enumerate(space.params):
        if p.span:
            ch.spans[f"space.params.{i}"] = p.span
    for name, span in space.constant_spans.items():
        if span:
            ch.spans[f"space.constants.{name}"] = span
    trainer = trainer_target(out)
    domain_maps(ch, space, lambda path, node: reads_as_map(trainer, workdir, path, node))
    search_block = found.get("search", [None])[0]
    sched_block = found.get("scheduler", [None])[0]
    reports = study_reports(out, workdir)
    # An itwinai config's trainer has a loop of its own, not hpoc's default one: its module
    # not read (not found, installed elsewhere, not parsed), what it reports is unknown.
    unread = ch.file.endswith((".yaml", ".yml")) and reports[1] is None
    _objective(ch, out, search_block, sched_block, found.get("objective", [None])[0], reports, unread)
    _regression_accuracy(ch, out, reports, workdir)
    _stop_on_objective(ch, out)
    _objective_direction(ch, out)
    early_stop.stop_keys(ch, out, reports, unread)
    early_stop.stop_short(ch, out, early_stop.epochs_of(space, out))
    if not out["search"].pop("_invalid", False):
        _searcher(ch, out, space, search_block)
    sched_ok = not out["scheduler"].pop("_invalid", False)
    if sched_ok:
        _scheduler(ch, out, space, sched_block, search_block)
    _pipeline(ch, out, found.get("pipeline", [None])[0], workdir)
    if sched_ok and out["scheduler"]["name"] in T.POPULATION:
        _shape_mutations(ch, out, space, sched_block, workdir)
        _epoch_mutations(ch, out, space, sched_block)
    _bare_seconds(ch, found.get("trials", [None])[0])
    _resources(ch, out, workdir)
    _checkpoint(ch, out, reports)
    _resume_storage(ch, out)
    check_slurm(ch, out, found.get("slurm", [None])[0], workdir)
    if sched_ok:  # each shard's scheduler: its trials
        early_stop.check(ch, out, early_stop.epochs_of(space, out), _label_span(sched_block), reports)
    _no_epochs(ch, out, found.get("pipeline", [None])[0], workdir)  # last: rules above skip after an error
    _no_data(ch, out, found.get("pipeline", [None])[0], workdir)


def _bare_seconds(ch: Checker, block: A.Block | None) -> None:
    """`time_budget = 10`, meant as minutes or hours, is 10 s: the study ends before Ray has
    started a trial. A bare number under a minute is said with its unit (not in YAML, whose
    `time_budget_s` names its unit)."""
    if ch.file.endswith((".yaml", ".yml")):
        return
    for key in ("time_budget", "time_limit"):
        value = setting_value(block, key)
        if not isinstance(value, A.Number) or isinstance(value.value, bool) or not 0 < value.value < 60 \
                or f"trials.{key}" in ch.invalid:
            continue
        n = value.text or f"{value.value:g}"
        ch.warn(WARN_SECONDS, f"`{key} = {n}` is {n} seconds: a bare number is seconds", value.span,
                help=f"write the unit: `{n}m` or `{n}h` (or `{n}s`, to keep it)")


def _label_span(block: A.Block | None) -> A.Span | None:
    if block is None:
        return None
    return block.label.span if block.label is not None else block.kind_span


# ----------------------------------------------------------------------- objective


def _objective(ch: Checker, out: dict[str, Any], search: Any, sched: Any, objective: Any,
               reports: Reports, unread: bool = False) -> None:
    """`unread`: an itwinai trainer's module was not read: what it reports is unknown."""
    metrics = out["objective"]["metrics"]
    alg, sname = out["search"]["algorithm"], out["scheduler"]["name"]
    if not metrics:
        if objective is not None:  # written, but with no valid metric: its own error says so
            return
        if alg in T.NEEDS_OBJECTIVE and not out["search"].get("_invalid"):
            ch.error(OBJECTIVE, f"`search {alg}` needs an objective to optimise", _label_span(search),
                     help="add `objective minimize val_loss` (or `maximize ...`)")  # fmt: skip
        if sname != "fifo" and not out["scheduler"].get("_invalid"):
            ch.error(OBJECTIVE, f"`scheduler {sname}` needs an objective to compare trials", _label_span(sched),
                     help="add `objective minimize val_loss` (or `maximize ...`)")  # fmt: skip
        return
    if len(metrics) > 1:
        if alg not in T.CAN_MULTI_OBJECTIVE:
            ch.error(SEARCHER, f"`search {alg}` optimises a single metric, but the objective has {len(metrics)}",
                     objective.span if objective else None,
                     help="use `search optuna { sampler = nsga2 }` for several metrics, or keep one")  # fmt: skip
        elif alg == "optuna" and out["search"]["options"].get("sampler") == "cmaes":
            ch.error(SEARCHER, "optuna's `cmaes` sampler optimises a single metric", _label_span(search),
                     help="use `sampler = nsga2` or `tpe` for several metrics")  # fmt: skip
    own, reported = reports
    if own is not None:  # an itwinai-style loop of its own: only what it hands Tune counts
        for i, m in enumerate(metrics):
            if m["name"] not in own:
                ch.warn(WARN_METRIC, f"metric `{m['name']}` is not reported to Tune by the trainer",
                        ch.spans.get(f"objective.metrics.{i}"),
                        notes=(f"its loop reports {', '.join(f'`{n}`' for n in sorted(own))} with "
                               "`checkpoint_and_report` (what it `self.log`s goes to the loggers only)",),
                        help=did_you_mean(m["name"], sorted(own))
                        or f"add `{m['name']}` to the metrics the trainer passes to `checkpoint_and_report`")
        return
    if unread:
        return
    # not hpoc's default metrics: a trainer of the user's own may report it, its source says
    unknown = [(i, m) for i, m in enumerate(metrics)
               if m["name"] not in T.DEFAULT_METRICS and m["name"] not in (reported or ())]
    for i, m in unknown:
        notes = [f"the default loop reports {', '.join(f'`{n}`' for n in T.DEFAULT_METRICS)}"]
        if reported is not None:
            notes.append("and the trainer's module has no dict with that key")
        ch.warn(
            WARN_METRIC, f"metric `{m['name']}` is not reported by hpoc's default train loop",
            ch.spans.get(f"objective.metrics.{i}"), notes=tuple(notes),
            help=did_you_mean(m["name"], (*T.DEFAULT_METRICS, *(reported or ())))
            or f"make sure the trainer reports `{m['name']}` every epoch",
        )  # fmt: skip


def _regression_accuracy(ch: Checker, out: dict[str, Any], reports: Reports, workdir: str | None) -> None:
    """`maximize val_accuracy` under `task = "regression"`: hpoc's loop scores accuracy for
    classification only, so every trial failed at its first report."""
    own, reported = reports
    if own is not None or "val_accuracy" in (reported or ()):
        return  # a loop of its own, or a module that reports it itself
    args = ((out.get("pipeline") or {}).get("trainer") or {}).get("args") or {}
    task = scored_task(trainer_target(out), workdir, args)
    for i, m in enumerate(out["objective"]["metrics"]):
        if m["name"] == "val_accuracy" and task == "regression":
            ch.warn(WARN_METRIC, "metric `val_accuracy` is not reported for a regression trainer "
                                 '(`task = "regression"`): hpoc\'s loop scores accuracy for classification only',
                    ch.spans.get(f"objective.metrics.{i}"),
                    help="use `objective minimize val_loss`, or report a metric of your own from `validation_step`")


# Words of a metric's name that say which way it is better. A reversed objective runs the
# whole study towards the worst model and ranks it first, without an error anywhere.
_FALLS = {"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "ppl", "wer", "cer"}
_RISES = {"accuracy", "acc", "f1", "auc", "auroc", "precision", "recall", "r2", "bleu", "iou",
          "dice", "map"}
_NEGATED = {"neg", "negative", "minus", "inv", "inverse"}


def _better(name: str) -> str | None:
    """"lower" or "higher": which way a metric's name says it is better; None if it says neither."""
    split = re.split(r"[^a-z0-9]+", name.lower())
    words = set(split)
    # a leading 1 negates (`1-accuracy`); elsewhere it counts (`top_1_accuracy`, `acc@1`)
    if words & _NEGATED or split[0] == "1" or (words & _FALLS and words & _RISES):
        return None
    return "lower" if words & _FALLS else "higher" if words & _RISES else None


def _objective_direction(ch: Checker, out: dict[str, Any]) -> None:
    for i, m in enumerate(out["objective"]["metrics"]):
        better = _better(m["name"])
        if (better, m["mode"]) not in (("lower", "max"), ("higher", "min")):
            continue
        goal = "minimize" if better == "lower" else "maximize"
        ch.warn(WARN_DIRECTION, f"`{m['name']}` is {m['mode']}imised, but its name says {better} is better: "
                f"the study would search for the worst models and rank them first",
                ch.spans.get(f"objective.metrics.{i}"),
                help=f"write `{goal} {m['name']}` (if {m['mode']}imising is really meant, "
                     "this warning can be ignored)")  # fmt: skip


# Counters every report carries, and their least value in a trial's first report: a `stop`
# at or below it ends each trial there (`training_iteration = 0` reads like "no limit").
_COUNTERS = {"training_iteration": 1, "epoch": 1, "time_total_s": 0}


def _stop_on_objective(ch: Checker, out: dict[str, Any]) -> None:
    """Ray ends a trial once a result *reaches* a `stop` value (>=). On a minimised metric
    that is almost always meant the other way round (`stop = { loss = 0.1 }`): trials whose
    loss starts above 0.1 would all end at their first report."""
    stop = out["trials"].get("stop") or {}
    for key, first in _COUNTERS.items():
        limit = stop.get(key)
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and (limit < first or limit <= 0):
            ch.warn(WARN_SCHEDULE, f"`stop = {{ {key} = {limit:g} }}` ends every trial at its first report "
                    f"(Ray stops a trial once `{key}` reaches {limit:g})",
                    ch.spans.get(f"trials.stop.{key}") or ch.spans.get("trials.stop"),
                    help=f"remove `{key}` from `stop` for no limit")  # fmt: skip
    for m in out["objective"]["metrics"]:
        limit = stop.get(m["name"])
        if m["mode"] == "min" and isinstance(limit, (int, float)) and not isinstance(limit, bool):
            ch.warn(WARN_SCHEDULE, f"`stop` ends a trial once `{m['name']}` is {limit:g} or more (Ray's rule), "
                    f"but `{m['name']}` is minimised: trials above it stop at their first report",
                    ch.spans.get(f"trials.stop.{m['name']}") or ch.spans.get("trials.stop"),
                    help=f"stop on a metric that rises (`training_iteration`, an accuracy), or remove "
                         f"`{m['name']}` from `stop`")  # fmt: skip


# ------------------------------------------------------------------------ searcher


def _searcher(ch: Checker, out: dict[str, Any], space: Space, block: Any) -> None:
    alg = out["search"]["algorithm"]
    opts = out["search"]["options"]
    grid = [p for p in space.params if p.domain == "grid"]
    if alg in T.CAN_GRID and grid_bound(out["space"]) > T.MAX_GRID_POINTS:
        ch.error(SEARCHER, f"the grid has {grid_bound(out['space']):,} points; hpoc enumerates at most "
                           f"{T.MAX_GRID_POINTS:,}", grid[0].value_span or grid[0].span,
                 help="list fewer `grid` values, or sample some parameters (`choice`, `uniform`, ...)")  # fmt: skip
    for p in space.params:
        where = p.value_span or p.span
        if p.domain == "grid" and alg not in T.CAN_GRID:
            ch.error(SEARCHER, f"`search {alg}` cannot search `grid` values (`{p.name}`)", where,
                     help=f"use `choice(...)` to let {alg} pick, or `search random` to enumerate the grid")  # fmt: skip
            continue
        if alg == "grid" and p.domain != "grid":
            kind = "continuous" if p.domain not in T.CATEGORICAL + T.INTEGER else "sampled"
            help = ("replace `choice` with `grid` to enumerate it" if p.domain == "choice"
                    else "use `grid(...)` values, or `search random` to sample it alongside the grid")  # fmt: skip
            ch.error(SEARCHER, f"`search grid` only enumerates `grid(...)`; `{p.name}` is {kind} (`{p.domain}`)",
                     where, help=help)  # fmt: skip
            continue
        if p.condition is not None and alg not in T.CAN_CONDITION:
            ch.error(SEARCHER, f"`search {alg}` cannot handle conditional parameters (`{p.name}`)",
                     p.cond.span if p.cond else where,
                     help="use `search optuna`, `search random` or `search grid`, or drop the condition")  # fmt: skip
        if p.domain in T.NORMAL and alg not in T.CAN_NORMAL:
            ch.error(SEARCHER, f"`search {alg}` cannot sample normal distributions (`{p.name} = {p.domain}(...)`)",
                     where, help="use `uniform(...)` bounds, or `search hyperopt`/`search random`")  # fmt: skip
            continue
        if alg == "bayesopt":
            if p.domain in T.CATEGORICAL or p.domain in T.INTEGER:
                ch.error(SEARCHER, f"`search bayesopt` only handles continuous parameters; `{p.name}` is `{p.domain}`",
                         where, help="use `search optuna` (TPE is Bayesian too) or make it `uniform(...)`")  # fmt: skip
                continue
            if p.domain in T.LOG:
                ch.warn(WARN_SEARCH, f"`search bayesopt` samples `{p.name}` uniformly, not on a log scale", where,
                        help="use `search optuna` to keep the log scale")  # fmt: skip
        if alg == "optuna" and opts.get("sampler") == "cmaes" and (p.domain in T.CATEGORICAL or p.condition):
            # optuna's CmaEsSampler leaves these to its independent (random) sampler
            ch.warn(WARN_SEARCH, f"optuna's `cmaes` sampler picks `{p.name}` at random: CMA-ES models only "
                                 "numeric parameters that every trial has", where,
                    help="use `sampler = tpe`, which models choices and conditional parameters too")  # fmt: skip
        elif alg == "optuna" and opts.get("sampler") in ("gp", "nsga2") and p.condition:
            # GPSampler and NSGAIISampler model the parameters every trial has (Optuna's
            # intersection search space); the others go to their random sampler
            ch.warn(WARN_SEARCH, f"optuna's `{opts['sampler']}` sampler picks `{p.name}` at random: it models "
                                 "only parameters that every trial has", where,
                    help="use `sampler = tpe`, which models conditional parameters too")  # fmt: skip
        low_end(ch, p, alg, where)
        if p.domain in T.QUANTIZED and alg in T.DROPS_QUANTIZATION:
            ch.warn(WARN_SEARCH, f"`search {alg}` ignores the quantisation `q` of `{p.name}`", where,
                    notes=("hpoc rounds the values it suggests to multiples of `q`; its model sees a "
                           "continuous range",))  # fmt: skip
    if not space.params and not space.invalid and alg not in ("random", "grid"):
        ch.warn(WARN_SEARCH, f"`search {alg}` has nothing to search: `space` has no parameters",
                 _label_span(block), help="add parameters such as `lr = loguniform(1e-5, 1e-2)`")  # fmt: skip
    _random_start_up(ch, out, block)
    _repeats(ch, out, space)
    points = opts.get("points_to_evaluate")
    if points:
        opts["points_to_evaluate"] = check_points(ch, points, space, setting_value(block, "points_to_evaluate"),
                                                  ch.spans.get("search.options.points_to_evaluate"),
                                                  total_trials(out))
    if alg == "ax" and opts.get("parameter_constraints"):
        _ax_constraints(ch, opts["parameter_constraints"], space, block)
    if opts.get("n_startup_trials") is not None and opts.get("sampler") not in ("tpe", "gp", "cmaes"):
        ch.error(VALUE, f"`n_startup_trials` does not apply to `sampler = {opts.get('sampler')}`",
                 ch.spans.get("search.options.n_startup_trials"), help="it applies to tpe, gp and cmaes")  # fmt: skip
    if opts.get("population_size") is not None and opts.get("sampler") != "nsga2":
        ch.error(VALUE, "`population_size` only applies to `sampler = nsga2`",
                 ch.spans.get("search.options.population_size"))  # fmt: skip


def _repeats(ch: Checker, out: dict[str, Any], space: Space) -> None:
    """More trials than the space has configurations: the searchers draw with replacement
    (Optuna suggests a tried configuration again), so the extra trials train one twice.
    Not under `search grid`, nor for a `grid` alone under `search random`, whose
    repetitions are what `num_samples` means there (each trial has its own seed); nor
    under PBT/PB2, which mutate the configurations they start from. Nor next to an error,
    which may be why a domain is small (`epochs = choice(0, 4)`)."""
    alg = out["search"]["algorithm"]
    if (alg == "grid" or out["scheduler"]["name"] in T.POPULATION or space.invalid
            or any(d.severity == "error" for d in ch.diagnostics)
            or all(p.domain == "grid" for p in space.params)):
        return
    trials, distinct = total_trials(out), distinct_configs(out["space"])
    if distinct is None or trials <= distinct:
        return
    n = out["trials"]["num_samples"]
    grid = count_grid(out["space"]) if alg == "random" else 1
    asked = f"{trials} trials" + (f" ({n} repetitions of the {grid}-point grid)" if grid > 1 else "")
    # under `search random` num_samples counts repetitions of the grid: as many as fit
    sampled = [f"`{p.name}`" for p in space.params if p.domain != "grid"]
    names = sampled[0] if len(sampled) == 1 else ", ".join(sampled[:-1]) + " and " + sampled[-1]
    help = (f"list the values of {names} as `grid(...)` to train each configuration once per `num_samples` "
            f"(`search random` enumerates a grid), or lower `num_samples` to {max(1, distinct // grid)}"
            if alg == "random" else f"lower `num_samples` to {distinct}, or widen the space")
    ch.warn(WARN_REPEATS, f"`num_samples = {n}` asks for {asked}, and the space holds {distinct} distinct "
                          f"configurations: at least {trials - distinct} trials train a configuration another "
                          "trial trains", ch.spans.get("trials.num_samples"), help=help)  # fmt: skip


# The option that sets a model-based searcher's random start-up, and its default (Optuna's
# samplers' and Ray's searchers' own): trials before the model is first asked.
_START_UP = {("optuna", "tpe"): ("n_startup_trials", 10), ("optuna", "gp"): ("n_startup_trials", 10),
             ("optuna", "cmaes"): ("n_startup_trials", 1), ("optuna", "nsga2"): ("population_size", 50),
             ("hyperopt", None): ("n_initial_points", 20), ("bayesopt", None): ("random_search_steps", 10)}


def _random_start_up(ch: Checker, out: dict[str, Any], block: Any) -> None:
    """A study no longer than the searcher's random start-up is a random search: the model
    is never asked (with 6 trials, TPE's default 10 start-up trials take them all)."""
    alg, opts = out["search"]["algorithm"], out["search"]["options"]
    option, default = _START_UP.get((alg, opts.get("sampler") if alg == "optuna" else None), (None, 0))
    start, trials = opts.get(option) if opts.get(option) is not None else default, total_trials(out)
    if option is None or trials < 2 or start < trials or f"search.options.{option}" in ch.invalid:
        return  # (a value in error: its default stands in, not what the spec says)
    who = f"optuna's `{opts['sampler']}` sampler" if alg == "optuna" else f"`search {alg}`"
    least = 2 if option == "population_size" else 1
    ch.warn(WARN_SEARCH, f"{who} never uses its model: the study's {trials} trials are all within its "
                         f"{start} random start-up trials (`{option}`)",
            ch.spans.get(f"search.options.{option}") or _label_span(block),
            help=f"lower `{option}` to {max(least, trials // 2)}, or run more than {start} trials")  # fmt: skip


_NAME = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*")  # a parameter in `lr + wd <= 0.1`; not the e of 1e-3


def _ax_constraints(ch: Checker, constraints: list[str], space: Space, block: Any) -> None:
    """Ax's `parameter_constraints` ("lr + wd <= 0.1") name numeric parameters: another name
    fails the study when Ax builds its search space."""
    spans = item_spans(block, "parameter_constraints") or [ch.spans.get("search.options.parameter_constraints")]
    numeric = [p.name for p in space.params if p.domain not in T.CATEGORICAL]
    for text, span in zip(constraints, spans * len(constraints) if len(spans) == 1 else spans):
        for name in _NAME.findall(text):
            param = space.param(name)
            if param is None:
                ch.error(UNKNOWN, f'`parameter_constraints` "{text}" names `{name}`, which is not searched in `space`',
                         span, help=did_you_mean(name, numeric) or f"constrain {one_of(numeric)}" if numeric else None)  # fmt: skip
            elif param.domain in T.CATEGORICAL:
                ch.error(SEARCHER, f'`parameter_constraints` "{text}" names `{name}`, a `{param.domain}` '
                                   "parameter: Ax constrains numeric parameters only", span)  # fmt: skip


# ----------------------------------------------------------------------- scheduler


def _scheduler(ch: Checker, out: dict[str, Any], space: Space, block: Any, search_block: Any) -> None:
    name, opts = out["scheduler"]["name"], out["scheduler"]["options"]
    alg = out["search"]["algorithm"]
    if name == "asha" and opts["grace_period"] > opts["max_t"]:
        ch.error(SCHEDULER, f"`grace_period` ({opts['grace_period']}) must not exceed `max_t` ({opts['max_t']})",
                 ch.spans.get("scheduler.options.grace_period", _label_span(block)),
                 help="every trial runs at least `grace_period` before it can be stopped")  # fmt: skip
    early_stop.settings(ch, out, early_stop.epochs_of(space, out), _label_span(block))
    metrics = out["objective"]["metrics"]
    if name != "fifo" and len(metrics) > 1:  # Ray's schedulers take one metric: hpoc gives them the first
        ch.warn(WARN_FIRST_METRIC, f"`scheduler {name}` compares trials on `{metrics[0]['name']}` only, "
                                   f"the first of the {len(metrics)} objective metrics", _label_span(block),
                help="list first in `objective` the metric it should judge trials by")
    if name == "bohb" and alg != "bohb":
        ch.error(SCHEDULER, "`scheduler bohb` works only with `search bohb`", _label_span(block),
                 help="add `search bohb`, or use `scheduler hyperband`")  # fmt: skip
    if alg == "bohb" and name != "bohb":
        ch.error(SEARCHER, "`search bohb` needs `scheduler bohb`", _label_span(search_block),
                 help="add `scheduler bohb { max_t = ... }`")  # fmt: skip
    if name in T.POPULATION:
        _population(ch, out, space, block, search_block)


def _population(ch: Checker, out: dict[str, Any], space: Space, block: Any, search_block: Any) -> None:
    """PBT and PB2 mutate the trials' values and clone checkpoints between trials: what they
    mutate, and what keeps them from cloning."""
    name, opts = out["scheduler"]["name"], out["scheduler"]["options"]
    alg = out["search"]["algorithm"]
    _mutations(ch, name, opts, space, block)
    if out["checkpoint"]["every"] == 0:
        ch.error(SCHEDULER, f"`scheduler {name}` copies checkpoints between trials, but `checkpoint.every` is 0",
                 ch.spans.get("checkpoint.every"), help="set `checkpoint { every = 1 }`")  # fmt: skip
    if alg not in ("random", "grid") and alg != "bohb":  # bohb has its own error (_scheduler)
        ch.error(SCHEDULER, f"`scheduler {name}` chooses the trials' hyperparameters itself; "
                 f"Ray Tune runs it with `search random` or `search grid` only, not `search {alg}`",
                 _label_span(search_block), help="use `search random { seed = 0 }`, "
                 "or another scheduler (`asha`) to keep this search algorithm")  # fmt: skip
    res = out["resources"]
    if res["workers"] > 1 and not res.get("reuse_workers"):
        # A Ray Train run keeps its checkpoints to itself (Train V2 reports only their
        # path to Tune): PBT finds nothing to clone and never exploits. Warm worker
        # groups hand theirs to Tune, so they are the default here.
        span = ch.spans.get("resources.reuse_workers")
        if span is None:
            res["reuse_workers"] = True
        else:
            ch.error(SCHEDULER, f"`scheduler {name}` clones checkpoints between trials, but with "
                     f"`reuse_workers = false` a trial of {res['workers']} workers runs as a Ray Train run "
                     "whose checkpoints Tune does not see: no trial would ever exploit another", span,
                     help="remove `reuse_workers = false` (under this scheduler it defaults to true), "
                     "or use `scheduler asha`")  # fmt: skip
    if opts.get("perturbation_factors") is not None and len(opts["perturbation_factors"]) != 2:
        ch.error(VALUE, "`perturbation_factors` must be two numbers `[up, down]`",
                 ch.spans.get("scheduler.options.perturbation_factors"))  # fmt: skip


def _mutations(ch: Checker, name: str, opts: dict[str, Any], space: Space, block: Any) -> None:
    """`hyperparam_mutations` (PBT) or `hyperparam_bounds` (PB2) against the space; none
    given: every searched parameter."""
    key = "hyperparam_mutations" if name == "pbt" else "hyperparam_bounds"
    table = opts.get(key)
    if not table:  # the runtime then mutates every searched parameter
        opts[key] = None  # `{}` too: PB2 given no bounds would refuse to start
        bounded = [p for p in space.params if "lower" in p.args and "upper" in p.args]
        if not (bounded if name == "pb2" else space.params):
            what = "bounded numeric parameters" if name == "pb2" else "searched parameters"
            ch.error(SCHEDULER, f"`scheduler {name}` has nothing to mutate: no `{key}` and no {what}",
                     _label_span(block),
                     help=f"add `{key} {{ lr = {'loguniform(1e-4, 1e-1)' if name == 'pbt' else '[1e-4, 1e-1]'} }}`")  # fmt: skip
    else:
        known = set(space.names())
        for pname in table:
            param = space.param(pname)
            if pname in space.invalid:
                continue  # its domain's error is reported: the name is not unknown
            if pname not in known:
                ch.error(UNKNOWN, f"`{key}` names `{pname}`, which is not in `space`",
                         ch.spans.get(f"scheduler.options.{key}.{pname}"),
                         help=did_you_mean(pname, known) or "add it to `space`")  # fmt: skip
            elif name == "pb2" and param is not None and param.domain in T.CATEGORICAL:
                # the value it picks is no category: `snap` keeps categorical values as they are
                ch.error(SCHEDULER, f"`scheduler pb2` picks numbers between bounds, but `{pname}` is a "
                         f"`{param.domain}` parameter", ch.spans.get(f"scheduler.options.{key}.{pname}"),
                         help=f"give `{pname}` a numeric domain (`qrandint`, `uniform`, ...), "
                              "or let `scheduler pbt` mutate it")  # fmt: skip
            elif name == "pb2" and param is None and type(space.constants.get(pname)) is not float:
                # PB2 keeps a searched integer whole, but a constant has no domain to say so:
                # `epochs = 8` would reach the trainer as 5.37
                value = space.constants.get(pname)
                ch.error(SCHEDULER, f"`scheduler pb2` picks fractional numbers between bounds, but `{pname}` is "
                         f"the constant {json.dumps(value)}", ch.spans.get(f"scheduler.options.{key}.{pname}"),
                         help=f"give `{pname}` a domain in `space` (`qrandint(...)` keeps it whole), "
                              "or let `scheduler pbt` mutate it")  # fmt: skip
        opts[key] = {k: v for k, v in table.items() if v is not None}


# ----------------------------------------------------------------------- pipeline

# Modules the runtime itself imports: a study module of the same name replaces them.
_TAKEN = frozenset(sys.stdlib_module_names) | {"hpoc", "ray", "torch", "numpy"}


def _pipeline(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """The steps against their modules' source, their arguments, and the space."""
    _step_sources(ch, out, block, workdir)
    _step_words(ch, out, block)
    _trainer_counts(ch, out, block)
    _config_keys(ch, out, workdir)
    _unread_params(ch, out, workdir)
    _optimizer_keys(ch, out, workdir)
    _trainer_args(ch, out, block, workdir)
    _settings_in_space(ch, out, workdir)
    _shadowing(ch, out, block, workdir)
    _loader_workers(ch, out, workdir)


def _loader_workers(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """As many DataLoader workers as a trial's CPUs or more: N + 1 processes (the trial's own
    too) on its cores slow it and its neighbours, and torch's own warning counts the node's
    cores, not the trial's."""
    target = ((out.get("pipeline") or {}).get("trainer") or {}).get("target") or ""
    cpus = (out.get("resources") or {}).get("cpus_per_worker")
    asked = loader_workers(target, workdir) if target and isinstance(cpus, int) else None
    if asked is None or not loader_cpus.crowded(asked[3], cpus):
        return
    shown, line, keyword, count = asked
    at = ch.spans.get("resources.cpus_per_worker") or ch.spans.get("pipeline.trainer")
    ch.warn(WARN_RESOURCES, f"the trainer asks for {count} DataLoader workers (`{keyword}={count}`, "
                            f"{shown}:{line}), and a trial has `cpus_per_worker = {cpus}`: "
                            f"{loader_cpus.consequence(count, cpus)}", at,
            help=loader_cpus.fix(count, cpus, keyword))


def _shadowing(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """A study module named like a standard or runtime module (`random.py`, `queue.py`)
    breaks Python itself once the study's directory is first on the path."""
    for role, step in (out.get("pipeline") or {}).items():
        top = (step or {}).get("target", "").split(":", 1)[0].split(".")[0]
        local = find_module(workdir, top) if workdir is not None and top in _TAKEN else None
        if local is None:
            continue
        shown = top + "/" if local.endswith("__init__.py") else top + ".py"
        value = setting_value(block, role)
        span = getattr(value, "func_span", None) or getattr(value, "span", None)
        ch.error(VALUE, f"the study's module `{top}` has the name of Python's `{top}` module",
                 span or ch.spans.get(f"pipeline.{role}"),
                 notes=(f"{local} would replace it for every library the study imports",),
                 help=f"rename {shown} (e.g. to `my_{shown}`) and `{role}` with it")  # fmt: skip


def _config_keys(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """`config["epochs"]` in the trainer with no `epochs` in the space: a KeyError in every
    trial that gets there, found only once the study runs."""
    if any(d.severity == "error" for d in ch.diagnostics):
        return  # a parameter whose domain is an error is missing from the plan, not from the spec
    target = trainer_target(out)
    reads = config_keys_read(target, workdir)
    if not reads:
        return
    space = out["space"]
    have = {p["name"].split(".")[0] for p in space["params"]} | {k.split(".")[0] for k in space["constants"]}
    found = target_tree(target, workdir)  # where the class is defined (a package may re-export it)
    module = os.path.relpath(found[0], workdir) if found and workdir else \
        target.split(":", 1)[0].replace(".", "/") + ".py"
    names = sorted({p["name"] for p in space["params"]} | set(space["constants"]))
    for key, line in reads.items():
        if key not in have:
            close = closest(key, sorted(have))  # the space's name misspelt, more likely than the code's
            # `optimizer.lr` read as `config["lr"]` or `config["optimizer.lr"]`: a group nests it
            grouped = next((n for n in names if "." in n and (n == key or n.endswith("." + key))), None)
            nested = "".join(f'["{part}"]' for part in (grouped or "").split("."))
            ch.warn(WARN_CONFIG, f"the trainer reads `config[\"{key}\"]` ({module}:{line}), which `space` does "
                    "not set: trials that get there fail with a KeyError",
                    ch.spans.get("pipeline.trainer"),
                    help=f"`space` sets `{grouped}`, which a trial gets nested: read `config{nested}`" if grouped
                    else f"`space` sets `{close}`: rename it `{key}`, as the trainer reads it" if close
                    else f"add `{key}` to `space`")
    _conditional_reads(ch, space, reads, target, workdir, module)


def _unread_params(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """A searched key the trainer never reads (`batch-size` for `batch_size` in an itwinai-style
    loop, `act` searched while the hooks read `hidden` alone): every trial trained alike while
    the results ranked them by a value nothing read. Only for a module that reads its config
    by key alone."""
    target = trainer_target(out)
    if not out["space"]["params"] or config_used_whole(target, workdir) is not False:
        return
    found = module_names(target, workdir, compat=True)
    if not found:
        return
    module, named = found
    # what hpoc's runtime reads too: the loop's counts, the default optimizer (a name or a group;
    # `name` only in its group); `task` and `grad_accumulation_steps` are arguments, not config
    known = set(named) | {"epochs", "batch_size", "optimizer"} | set(OPTIMIZER_READS) - {"name"}
    # a condition's parameter decides which others a trial has (`reg` for `dropout`)
    known |= {p["condition"]["param"].split(".")[0] for p in out["space"]["params"] if p.get("condition")}
    reads: list[str] | None = None  # the keys it does read, for the help: read once, if any is warned
    for i, p in enumerate(out["space"]["params"]):
        top = p["name"].split(".")[0]
        if top in known or _REPLICATE.fullmatch(p["name"]):
            continue  # `rep = grid(1, 2, 3)`: repeats each configuration, read or not
        if p["name"] not in T.MODEL_WORDS and T.key_home(p["name"]) in T.RUN_SECTIONS:
            continue  # a setting of another section: _settings_in_space says where it belongs
        if reads is None:
            reads = sorted((config_keys_read(target, workdir) or {}).keys() | {"batch_size", "epochs"})
        repeat = (" (to run each configuration several times, `trials { num_samples = N }` repeats the grid)"
                  if p["domain"] == "grid" else "")
        argument = (f"hpoc.Trainer reads `{top}` as the trainer's argument only, one value for every trial: "
                    f"`trainer = {target}({top} = ...)`") if top in TRAINER_ARGS else None
        ch.warn(WARN_UNREAD, f"the trainer never reads the searched `{top}`: its module ({module}) never names "
                             "it, so every trial trains alike whatever its value", ch.spans.get(f"space.params.{i}"),
                help=argument or did_you_mean(top, reads)
                or f"read it in the trainer (`config[\"{top}\"]`), or remove it{repeat}")


# A searched parameter that only repeats each configuration (`rep = grid(1, 2, 3)`, a searched
# `seed`): each trial has its own seed anyway (`training.seed` and its index), so no trainer
# needs to read it.
_REPLICATE = re.compile(r"(random_)?(seed|rep|repeat|repetition|replicate|replica|replication|run|trial|copy)s?"
                        r"([_-]?(id|idx|index|no|num|number|nr|value))?")


def _optimizer_keys(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """`optimizer.lrr` under hpoc's default optimizer: it reads `lr`, so every trial trained
    alike while the results ranked them by a value nothing read."""
    space = out["space"]
    names = [p["name"] for p in space["params"]] + list(space["constants"])
    keys = [n.split(".", 1)[1] for n in names if n.startswith("optimizer.") and n.count(".") == 1]
    found = unread_optimizer_keys(trainer_target(out), workdir, keys) if keys else None
    if not found:
        return
    module, unread = found
    spans = {p["name"]: ch.spans.get(f"space.params.{i}") for i, p in enumerate(space["params"])}
    for key in unread:
        name = f"optimizer.{key}"
        reads = "`name`, `lr` or `learning_rate`, `momentum` and `weight_decay`"
        close = did_you_mean(key, list(OPTIMIZER_READS))
        ch.warn(WARN_UNREAD, f"hpoc's default optimizer does not read `{name}`, nor does the trainer's module "
                             f"({module}): every trial trains alike whatever its value",
                spans.get(name) or ch.spans.get(f"space.constants.{name}"),
                help=(close.replace("`", "`optimizer.", 1) if close else "override `create_optimizer`, or remove it")
                + f" (the default optimizer reads {reads})")  # fmt: skip


def _settings_in_space(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """`space { num_samples = 8 }`: the space takes any name, so a setting written there
    is valid, and reaches only the trainer; the study ran one trial."""
    space = out["space"]
    spans = {p["name"]: ch.spans.get(f"space.params.{i}") for i, p in enumerate(space["params"])}
    homes = {}
    for name in [p["name"] for p in space["params"]] + list(space["constants"]):
        if name not in space["constants"] and _REPLICATE.fullmatch(name):
            continue  # a searched `seed = grid(1, 2, 3)` repeats runs: `training` takes one number
        home = T.key_home(name) if name not in T.MODEL_WORDS else None
        if home in T.RUN_SECTIONS:
            homes[name] = home
    found = module_names(trainer_target(out), workdir) if homes else None
    if not found:
        return
    module, named = found
    for name, home in homes.items():
        if name in named:
            continue  # the trainer reads it itself
        ch.warn(WARN_UNREAD, f"`{name}` in `space` only reaches the trainer, and its module ({module}) never "
                             f"names it: hpoc reads `{name}` in `{home}`",
                spans.get(name) or ch.spans.get(f"space.constants.{name}"),
                help=f"move it: `{home} {{ {name} = ... }}`")  # fmt: skip


def _trainer_args(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """`trainer:T(batch_sise = 16)`: hpoc.Trainer keeps any argument, so the typo trained at
    the default batch size while the spec said 16."""
    args = list(((out.get("pipeline") or {}).get("trainer") or {}).get("args") or {})
    found = unread_trainer_args(trainer_target(out), workdir, args) if args else None
    if not found:
        return
    module, unread = found
    value = setting_value(block, "trainer")
    spans = {kw.key: kw.key_span or kw.span for kw in getattr(value, "kwargs", ())}
    for arg in unread:
        close = did_you_mean(arg, list(TRAINER_ARGS))
        reads = "`epochs`, `batch_size`, `task` and `grad_accumulation_steps`"
        ch.warn(WARN_UNREAD, f"the trainer never reads its argument `{arg}`: neither hpoc.Trainer nor the "
                             f"trainer's module ({module}) names it", spans.get(arg) or ch.spans.get("pipeline.trainer"),
                help=(close or "remove it, or read it as `self.args[...]`") + f" (hpoc.Trainer reads {reads})")  # fmt: skip


def _conditional_reads(ch: Checker, space: dict[str, Any], reads: dict[str, int], target: str,
                       workdir: str | None, module: str) -> None:
    """`config["dropout"]` of a parameter that only some trials have: the others fail with a
    KeyError (retried first), unless the module asks whether the config has it."""
    guarded = None
    for p in space["params"]:
        cond, key = p.get("condition"), p["name"]
        if not cond or "." in key or key not in reads:
            continue
        guarded = config_keys_guarded(target, workdir) if guarded is None else guarded
        if key in guarded:
            continue
        values = " or ".join(json.dumps(v) for v in cond["values"])
        ch.warn(WARN_CONFIG, f"the trainer reads `config[\"{key}\"]` ({module}:{reads[key]}), which trials "
                f"have only when `{cond['param']}` is {values}: the others fail with a KeyError",
                ch.spans.get("pipeline.trainer"),
                help=f'`config.get("{key}", default)`, or test `"{key}" in config` first')


def _whole(domain: str | None, args: dict[str, Any]) -> bool:
    """Whether a domain holds whole numbers only: a size, a count of layers or heads."""
    values = args.get("categories", args.get("values")) if domain in T.CATEGORICAL else None
    return domain in T.INTEGER or (bool(values) and all(type(v) is int for v in values))


def _shape_mutations(ch: Checker, out: dict[str, Any], space: Space, block: Any, workdir: str | None) -> None:
    """A mutated whole number that the trainer builds its model from (`hidden`, `layers`):
    an exploit loads another trial's weights, which do not fit a model of another shape.
    Floats (`lr`, `momentum`, a dropout rate) shape nothing, and are not reported."""
    name, opts = out["scheduler"]["name"], out["scheduler"]["options"]
    key = "hyperparam_mutations" if name == "pbt" else "hyperparam_bounds"
    table = opts.get(key) or {p.name: None for p in space.params if name == "pbt" or "lower" in p.args}
    reads = model_config_reads(trainer_target(out), workdir) if table else {}
    for pname, mutation in table.items():
        param = space.param(pname)
        whole = (param is not None and _whole(param.domain, param.args)) or (
            isinstance(mutation, list) and _whole("choice", {"categories": mutation})) or (
            isinstance(mutation, dict) and _whole(mutation.get("domain"), mutation.get("args") or {}))
        if not whole or pname not in reads:
            continue
        ch.warn(WARN_SHAPE, f"`scheduler {name}` mutates `{pname}`, which the trainer builds its model from "
                f"({reads[pname]}): an exploit loads another trial's weights, which do not fit a model of "
                "another shape, and the exploiting trial fails",
                ch.spans.get(f"scheduler.options.{key}.{pname}") or _label_span(block),
                help=f"leave `{pname}` out of `{key}` (each exploit then copies its value with the weights); "
                     f"{name.upper()} can tune what the model's shape does not depend on (`lr`, `momentum`, "
                     "a dropout rate)")


def _epoch_mutations(ch: Checker, out: dict[str, Any], space: Space, block: Any) -> None:
    """A mutated `epochs`: an exploit hands a trial another length mid-run (one that has
    trained past its new last epoch ends at once), so the trials' lengths differ by chance."""
    name, opts = out["scheduler"]["name"], out["scheduler"]["options"]
    key = "hyperparam_mutations" if name == "pbt" else "hyperparam_bounds"
    given = opts.get(key)
    param = space.param("epochs")
    if "epochs" not in (given or {}) and (given or param is None or (name == "pb2" and "lower" not in param.args)):
        return  # PBT without mutations mutates every searched parameter; PB2 every bounded one
    ch.warn(WARN_SCHEDULE, f"`scheduler {name}` mutates `epochs`: a trial that exploits another gets another "
                           "number of epochs mid-run (one that has trained more ends at once)",
            ch.spans.get(f"scheduler.options.{key}.epochs") or (param.span if param and not given else None)
            or _label_span(block),
            help=f"leave `epochs` out of `{key}`: {name.upper()} compares trials over the same epochs" if given
            else f"make `epochs` a constant{_longest(param)}: {name.upper()} compares trials over the same epochs")


def _longest(param: Param | None) -> str:
    """" (`epochs = 12`)": a searched `epochs` as a constant, its most epochs, where told."""
    if param is None:
        return ""
    a = param.args
    values = a.get("categories", a.get("values")) if param.domain in T.CATEGORICAL else None
    most = max(values) if values and all(isinstance(v, int) for v in values) else \
        a["upper"] - (param.domain in ("randint", "lograndint")) if isinstance(a.get("upper"), int) else None
    return f" (`epochs = {most}`)" if most else ""


def _step_words(ch: Checker, out: dict[str, Any], block: Any) -> None:
    """A bare word in a step's arguments is its string, but `lr = lr` reads as the
    hyperparameter, which a step never gets (its arguments are fixed; the trainer reads
    the trial's values from its config)."""
    space = out.get("space") or {}
    names = {p["name"] for p in space.get("params") or ()} | set(space.get("constants") or {})
    if not names:
        return

    def words(v: Any) -> Iterator[A.Ref]:
        if isinstance(v, A.Ref):
            yield v
        for item in getattr(v, "items", ()):
            yield from words(item)
        for pair in getattr(v, "entries", ()):
            yield from words(pair.value)

    for role in out.get("pipeline") or {}:
        for kw in getattr(setting_value(block, role), "kwargs", ()):
            for ref in words(kw.value):
                if ref.path in names:
                    ch.error(TYPE, f"argument `{kw.key}` of `{role}` is the word `{ref.path}`, which names a "
                             "parameter of `space`: a step's arguments are fixed, not a trial's values", ref.span,
                             help=f'quote it for the string: "{ref.path}"; the trainer reads the value '
                                  f'from `config["{ref.path.split(".")[0]}"]`')  # fmt: skip


def _no_epochs(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """hpoc's loop with no number of epochs (the space's, the trainer's argument, else
    `stop.training_iteration` or the scheduler's `max_t` in epochs, as the runtime reads
    them): the driver refuses the study as it starts, on a cluster after the queue."""
    space, step = out["space"], out["pipeline"]["trainer"] or {}
    names = [p["name"] for p in space["params"]] + list(space["constants"])
    sched = out["scheduler"]
    if "epochs" in names or "epochs" in (step.get("args") or {}) or "training_iteration" in out["trials"]["stop"] \
            or (sched["options"].get("max_t") is not None and sched["time_attr"] == "training_iteration"):
        return
    target = trainer_target(out)
    if not keeps_default(target, workdir, ("train", "epochs", "setting")):
        return
    grouped = [n for n in names if n.endswith(".epochs")]
    value = setting_value(block, "trainer")
    ch.error(MISSING, f"trainer `{target}` runs hpoc's default loop, and the number of epochs is not set",
             getattr(value, "func_span", None) or getattr(value, "span", None) or ch.spans.get("pipeline.trainer"),
             notes=tuple(f"`{g}` is inside a group: the loop reads `epochs` at the top of the config"
                         for g in grouped[:1]),
             help="add `epochs = ...` to `space` (a constant, or searched as a parameter)")  # fmt: skip


def _no_data(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """hpoc's loop with neither getter nor splitter has nothing to train on: the driver
    refuses the study as it starts (hpoc/runtime/hooks.py `data_missing`), after the queue."""
    steps = out["pipeline"]
    if steps.get("getter") or steps.get("splitter") or not steps.get("trainer"):
        return
    target = trainer_target(out)
    if not keeps_default(target, workdir, ("train", "setup", "create_dataloaders")):
        return
    value = setting_value(block, "trainer")
    ch.error(MISSING, f"trainer `{target}` runs hpoc's default loop, which has no training data: the pipeline has "
                      "no `getter` nor `splitter`",
             getattr(value, "func_span", None) or getattr(value, "span", None) or ch.spans.get("pipeline.trainer"),
             help="add `getter = module:Class` to `pipeline` (docs/trainer.md), or load the data in the trainer's own "
                  "`create_dataloaders`")  # fmt: skip


def _trainer_counts(ch: Checker, out: dict[str, Any], block: Any) -> None:
    """`epochs` and `batch_size` among the trainer's arguments, which the default loop reads
    when the space has none: the rule of the space (`trainer:T(epochs = 2.5)` trained 2
    epochs, `batch_size = 0` failed every trial once Ray ran it)."""
    step = (out.get("pipeline") or {}).get("trainer") or {}
    args, space = step.get("args") or {}, out["space"]
    value = setting_value(block, "trainer")
    spans = {kw.key: kw.value.span for kw in getattr(value, "kwargs", ())}
    for name in COUNTS:
        if name not in args or name in space["constants"] or any(p["name"] == name for p in space["params"]):
            continue
        if is_count(args[name]):
            args[name] = as_count(args[name])
            continue
        ch.error(TYPE, f"argument `{name}` of `trainer` must be a whole number of at least 1, not "
                       f"{args[name]!r}", spans.get(name) or ch.spans.get("pipeline.trainer"),
                 help=f"`{name}` counts, so it takes whole numbers from 1 up")


def _step_sources(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    """A class its module does not define, or arguments its `__init__` does not take, fail
    in every trial: say so now, from the module's source (never imported here)."""
    told: set[str] = set()  # modules at fault, said once for all the steps they hold
    for role, step in (out.get("pipeline") or {}).items():
        if not step or not step.get("target"):
            continue
        value = setting_value(block, role)
        at = getattr(value, "func_span", None) or getattr(value, "span", None) or ch.spans.get(f"pipeline.{role}")
        keys = {p.key: p.key_span or p.span for p in getattr(value, "kwargs", ())}
        # The compat trainer is built without the itwinai `config` (the study holds it).
        supplied = ("config",) if role == "trainer" else ()
        function = function_step(step["target"], role, workdir)
        problems = [function] if function else \
            check_step(step["target"], dict(step.get("args") or {}), workdir, supplied)
        if role != "trainer" and not problems and (no_execute := without_execute(step["target"], workdir)):
            problems = [no_execute]
        if role == "trainer" and not problems:
            bare = not_a_trainer(step["target"], workdir)
            problems = [bare] if bare else hook_problems(step["target"], workdir)
            workers = (out.get("resources") or {}).get("workers") or 1
            silent = None if problems else silent_loop(step["target"], workdir, workers)  # the errors first
            if silent:
                ch.warn(WARN_METRIC, f"trainer: {silent.message}", at, help=silent.help)
            fresh = None if problems or silent or not (out.get("checkpoint") or {}).get("every") \
                else unrestored_loop(step["target"], workdir)  # no checkpoint: nothing to restore
            if fresh:
                ch.warn(WARN_METRIC, f"trainer: {fresh.message}", at, help=fresh.help)
            problems += itwinai_strategy_calls(step["target"], workdir)
        for p in problems:
            where = keys.get(p.arg) if p.arg else None
            if p.module is not None and p.module in told:
                continue
            who = role
            if p.module is not None:
                told.add(p.module)
                who = _roles_of(out, p.module)
            if p.warning:
                ch.warn(WARN_FILE, f"{who}: {p.message}", where or at, help=p.help, notes=p.notes)
            else:
                ch.error(VALUE, f"{who}: {p.message}", where or at, help=p.help, notes=p.notes)


def _roles_of(out: dict[str, Any], module: str) -> str:
    """`getter, splitter`: the steps whose classes come from `module`."""
    return ", ".join(r for r, s in (out.get("pipeline") or {}).items()
                     if s and (s.get("target") or "").split(":", 1)[0] == module)


# ----------------------------------------------------------------------- resources


RAY_RESOURCE_STEP = 0.0001  # the smallest fraction of a resource Ray schedules


def _resources(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    r = out["resources"]
    ds = r["deepspeed"]
    if r["strategy"] is None:
        r["strategy"] = "deepspeed" if ds is not None else "ddp"
    elif r["strategy"] == "ddp" and ds is not None:
        ch.error(RESOURCES, "`deepspeed` settings given, but `strategy` is `ddp`", ch.spans.get("resources.strategy"),
                 help="set `strategy = deepspeed`, or remove the `deepspeed` block")  # fmt: skip
    if r["strategy"] == "deepspeed":
        ds = ds or {"zero_stage": None, "precision": None, "config": None}
        config = ds.pop("config")
        if config is not None:
            expanded = expand_path(ch, config, "resources.deepspeed.config")
            config = expanded or config
            path = config if os.path.isabs(config) or workdir is None else os.path.normpath(os.path.join(workdir, config))
            if expanded is None or workdir is None:
                pass  # an unset $VAR or an empty path: said by expand_path
            elif os.path.isdir(path):
                ch.error(VALUE, f'DeepSpeed config "{config}" is a directory: DeepSpeed reads one JSON file',
                         ch.spans.get("resources.deepspeed.config"), notes=(f"looked for {path}",),
                         help='name the file in it, e.g. "' + os.path.join(config, "ds_config.json") + '"')
            elif not os.path.isfile(path):
                notes, help = (f"looked for {path}",), "it must exist when the study runs"
                here = os.path.abspath(config)  # the folder `hpoc check` runs in: a copied command's path
                if not os.path.isabs(config) and here != path and os.path.isfile(here):
                    notes += (f"there is one in the folder hpoc runs in ({here})",)
                    help = ("a relative `config` is read from the spec's folder: write "
                            f'"{os.path.relpath(here, workdir)}"')
                ch.warn(WARN_FILE, f'DeepSpeed config "{config}" does not exist (yet)',
                        ch.spans.get("resources.deepspeed.config"), notes=notes, help=help)  # fmt: skip
            else:
                _deepspeed_file(ch, out, config, path, workdir)
            ds["config_file"] = path
        else:
            ds["config_file"] = None
            if ds["zero_stage"] is None:
                ds["zero_stage"] = 2
            if ds["precision"] is None:
                ds["precision"] = out["training"]["precision"]
        r["deepspeed"] = ds
        if r["find_unused_parameters"] is not None:
            ch.warn(WARN_RESOURCES, "`find_unused_parameters` is DDP's: DeepSpeed does not use it",
                    ch.spans.get("resources.find_unused_parameters"),
                    help="remove it; ZeRO's `ignore_unused_parameters` (true unless the DeepSpeed "
                         "`config` file's `zero_optimization` says otherwise) covers such models")  # fmt: skip
        if r["gpus_per_worker"] == 0:
            # At what chose DeepSpeed: `strategy`, else the `deepspeed` block that implies it.
            where = ch.spans.get("resources.strategy") or ch.spans.get("resources.deepspeed")
            low = ds["precision"] if ds["precision"] in ("bf16", "fp16") else None
            notes = (f"and in fp32 there: `precision = {low}` is not used",) if low else ()
            ch.warn(WARN_RESOURCES, "DeepSpeed without GPUs (`gpus_per_worker = 0`) runs only with a CPU accelerator",
                    where, notes=notes, help="give workers a GPU, or use `strategy = ddp`")  # fmt: skip
    else:
        r["deepspeed"] = None
    g = r["gpus_per_worker"]
    if g == 0:
        _cuda_without_gpus(ch, out, workdir)
    if g != int(g):
        if r["workers"] > 1:
            ch.error(RESOURCES, f"fractional `gpus_per_worker` ({g}) needs `workers = 1`",
                     ch.spans.get("resources.gpus_per_worker"),
                     help="distributed workers each need whole GPUs; fractions share a GPU between trials")  # fmt: skip
        elif g > 1:
            ch.error(RESOURCES, f"`gpus_per_worker` above 1 must be whole (got {g})",
                     ch.spans.get("resources.gpus_per_worker"))  # fmt: skip
    elif isinstance(g, float):
        r["gpus_per_worker"] = int(g)
    spreads, unread = several_gpus(trainer_target(out), workdir) if g == int(g) and g >= 2 else (True, "")
    if not spreads:
        # a worker is one process on one device (`strategy.device()`): the rest of its GPUs idle,
        # unless the trainer splits its model over them; one it could not read is said so
        total = int(g) * r["workers"]
        leaves = f"may leave {int(g) - 1} of its GPUs idle: hpoc could not read {unread} to see whether it " \
                 "spreads its model over them" if unread else f"leaves {int(g) - 1} of its GPUs idle"
        ch.warn(WARN_RESOURCES, f"each worker trains on one GPU (a process of DDP or DeepSpeed uses one), so "
                                f"`gpus_per_worker = {int(g)}` {leaves}", ch.spans.get("resources.gpus_per_worker"),
                help=f"for one trial on {total} GPUs write `workers = {total}` with `gpus_per_worker = 1` (each "
                     f"worker on one GPU); for {int(g)} trials at once, `gpus_per_worker = 1`"
                     + ("; if the trainer spreads its model over the worker's GPUs itself, ignore this warning"
                        if unread else ""))  # fmt: skip
    for key in ("cpus_per_worker", "gpus_per_worker"):
        if 0 < r[key] < RAY_RESOURCE_STEP:  # Ray refuses the trial's actor: "cannot go beyond 0.0001"
            ch.error(RESOURCES, f"`{key}` must be 0.0001 or more: Ray counts CPUs and GPUs in steps of 0.0001 "
                                f"(got {r[key]:g})", ch.spans.get(f"resources.{key}"))  # fmt: skip
    if isinstance(r["cpus_per_worker"], float) and r["cpus_per_worker"].is_integer():
        r["cpus_per_worker"] = int(r["cpus_per_worker"])


# DeepSpeed config sections that must be objects, with an example of each.
_DS_SECTIONS = {"zero_optimization": '"zero_optimization": {"stage": 2}', "bf16": '"bf16": {"enabled": true}',
                "fp16": '"fp16": {"enabled": true}', "optimizer": '"optimizer": {"type": "AdamW", "params": {"lr": 0.001}}',
                "scheduler": '"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 100}}',
                "activation_checkpointing": '"activation_checkpointing": {"partition_activations": true}'}

# Searched names a DeepSpeed config's own `optimizer` / `scheduler` section overrides.
_OPTIMIZER_KEYS = ("lr", "learning_rate", "momentum", "weight_decay", "betas", "eps")
_LR_KEYS = ("lr", "learning_rate")


def _cuda_without_gpus(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """A trainer that moves tensors to CUDA itself, in trials given no GPU."""
    on_cuda = cuda_lines(trainer_target(out), workdir)
    if on_cuda:
        ch.warn(WARN_RESOURCES, f"the trainer puts tensors on CUDA ({', '.join(on_cuda[:3])}), but its "
                                "trials get no GPU (`gpus_per_worker = 0`): on a node without one every "
                                "trial fails there, and on one with GPUs it takes one Ray did not give it",
                ch.spans.get("pipeline.trainer"),
                help="leave devices to hpoc: batches arrive on the trial's device and the model is moved "
                     "there (in a loop of your own, `self.strategy.device()`); or give the trials GPUs "
                     "in `resources`")


def _deepspeed_file(ch: Checker, out: dict[str, Any], config: str, path: str, workdir: str) -> None:
    """The DeepSpeed config file, read as the runtime reads it."""
    at = ch.spans.get("resources.deepspeed.config")
    twice: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            ds = dsjson.loads(f.read(), object_pairs_hook=functools.partial(_keys_once, twice))
    except OSError:
        return  # read again when the study runs, which says what is wrong
    except ValueError as exc:  # every trial would fail reading it
        yaml = path.lower().endswith((".yaml", ".yml"))
        where = f"{config}:{exc.lineno}:{exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        ch.error(VALUE, f'the DeepSpeed config "{config}" is not JSON: {where}', at,
                 help="DeepSpeed reads JSON, not YAML: write the file as JSON" if yaml else
                 "DeepSpeed reads JSON (comments and trailing commas allowed): mend the file there")  # fmt: skip
        return
    if twice:  # DeepSpeed's loader refuses them; from hpoc it gets the last value only
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets {", ".join(f"`{k}`" for k in twice)} twice '
                "in one section: only the last value is used", at, help="keep one of each")  # fmt: skip
    if not isinstance(ds, dict):
        ch.error(VALUE, f'the DeepSpeed config "{config}" is not a JSON object', at)
        return
    for key in _DS_SECTIONS:
        v = ds.get(key, {})
        # "auto": filled in by hpoc (or refused below); a bare bool: DeepSpeed's old ZeRO switch
        if not isinstance(v, dict) and v != "auto" and not (key == "zero_optimization" and type(v) is bool):
            ch.error(VALUE, f'the DeepSpeed config "{config}" sets `{key}` to {json.dumps(v)}: DeepSpeed reads '
                     "it as a section (an object) and fails every trial on anything else", at,
                     help=f'write it as an object, e.g. {_DS_SECTIONS[key]}')  # fmt: skip
            return
    zero = ds.get("zero_optimization")
    stage = zero.get("stage", "auto") if isinstance(zero, dict) else "auto"
    if stage != "auto" and (type(stage) is not int or not 0 <= stage <= 3):
        # DeepSpeed refuses it in every trial, after Ray and the workers have started
        ch.error(VALUE, f'the DeepSpeed config "{config}" sets `zero_optimization.stage` to {json.dumps(stage)}: '
                 'ZeRO has stages 0 to 3 (or "auto")', at)
        return
    _deepspeed_overridden(ch, out, config, ds)
    check_file(ch, out, config, ds)
    _deepspeed_owns_optimizer(ch, out, config, ds, workdir)
    _deepspeed_overrides_constants(ch, out, config, ds)


def _deepspeed_overrides_constants(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any]) -> None:
    """A constant `lr` (`weight_decay`, ...) of the space beside a file's own `optimizer`
    with another value: every trial trains with the file's, said only in the trials' logs."""
    if not isinstance(ds.get("optimizer"), dict):
        return
    params = ds["optimizer"].get("params")
    params = params if isinstance(params, dict) else {}
    for name, value in out["space"]["constants"].items():
        key = name.rsplit(".", 1)[-1]
        if key not in _OPTIMIZER_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        theirs = params.get("lr" if key in _LR_KEYS else key)
        if theirs == "auto" or theirs == value:
            continue
        used = f"the file's {json.dumps(theirs)}" if theirs is not None else "DeepSpeed's default"
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets its own `optimizer`: the space\'s `{name}` '
                f"({value:g}) never reaches training (the trials use {used})",
                ch.spans.get("resources.deepspeed.config"),
                help=f'write `"{key if key not in _LR_KEYS else "lr"}": "auto"` in its `optimizer.params` (filled in '
                     "from the trainer's optimizer), or remove its `optimizer`")  # fmt: skip


def _deepspeed_owns_optimizer(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any], workdir: str) -> None:
    """A DeepSpeed config with an `optimizer` (or `scheduler`) section trains every trial
    with that file's learning rate: a searched (or PBT-mutated) `lr` never reaches training."""
    searched = [p["name"] for p in out["space"]["params"]]
    owners = []

    def auto(section: str, key: str) -> bool:  # filled in from the trial (docs/language.md)
        params = ds[section].get("params") if isinstance(ds[section], dict) else None
        return isinstance(params, dict) and params.get(key) == "auto"

    if "optimizer" in ds:
        owners.append(("optimizer", [n for n in searched if (k := n.rsplit(".", 1)[-1]) in _OPTIMIZER_KEYS
                                     and not auto("optimizer", "lr" if k in _LR_KEYS else k)]))
    sched = (out.get("scheduler") or {}).get("name")
    # WarmupCosineLR scales the optimizer's own rate (ratios): the trial's `lr` is its peak
    scaled = isinstance(ds.get("scheduler"), dict) and ds["scheduler"].get("type") == "WarmupCosineLR"
    if "scheduler" in ds and not scaled and not auto("scheduler", "warmup_max_lr"):
        owners.append(("scheduler", [n for n in searched if n.rsplit(".", 1)[-1] in _LR_KEYS]))
    elif "scheduler" in ds and sched in T.POPULATION and (lrs := [n for n in searched
                                                               if n.rsplit(".", 1)[-1] in _LR_KEYS]):
        # its peak is each trial's first `lr`, and it sets the rate every step: an exploit's is lost
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets its own `scheduler`, which sets the learning '
                f"rate every step: `{sched}`'s mutations of `{lrs[0]}` never reach training",
                ch.spans.get("resources.deepspeed.config"),
                notes=("it scales each trial's first value" if scaled else
                       'its "auto" `warmup_max_lr` is each trial\'s first value',),
                help="remove `scheduler` from the DeepSpeed config, or stop searching it")  # fmt: skip
    names = list(dict.fromkeys(n for _, ns in owners for n in ns))
    if not names:
        _deepspeed_replaces_create_optimizer(ch, out, config, ds, auto, workdir)
        return
    sections = " and ".join(f"`{k}`" for k, ns in owners if ns)
    listed = ", ".join(f"`{n}`" for n in names)
    them, verb = ("it", "reaches") if len(names) == 1 else ("them", "reach")
    notes = (f"`{sched}` mutates {them}, to no effect: every exploit trains on with the file's values",) \
        if sched in T.POPULATION else ()
    ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets its own {sections}: the searched {listed} '
            f"never {verb} training (every trial uses the file's values)",
            ch.spans.get("resources.deepspeed.config"), notes=notes,
            help=f"remove {sections} from the DeepSpeed config so that the trainer's optimizer, built from the "
                 f"trial's config, is used; or stop searching {them}")  # fmt: skip


def _deepspeed_replaces_create_optimizer(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any],
                                         auto: Any, workdir: str) -> None:
    """A file's own `optimizer` beside a trainer's `create_optimizer`: the trainer's never
    trains (its values are used only where the file leaves them to "auto")."""
    if not isinstance(ds.get("optimizer"), dict) or auto("optimizer", "lr"):
        return
    cls = defines(trainer_target(out), workdir, "create_optimizer")
    if cls is None:
        return
    kind = ds["optimizer"].get("type")
    kind = f" ({kind})" if isinstance(kind, str) else ""
    ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets its own `optimizer`{kind}: the trainer\'s '
            f"`create_optimizer` ({cls}) never trains",
            ch.spans.get("resources.deepspeed.config"),
            help='remove `optimizer` from the DeepSpeed config, or write `"lr": "auto"` (and the other params) in '
                 "it to take the trainer's values")  # fmt: skip


def _keys_once(twice: list[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen and key not in twice:
            twice.append(key)
        seen[key] = value
    return seen


def _deepspeed_overridden(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any]) -> None:
    """`zero_stage`/`precision` beside a config file that sets them: the file wins (the
    runtime fills in only what it leaves out or sets to "auto")."""
    ours = dict(out["resources"]["deepspeed"] or {})
    spans = {k: ch.spans.get(f"resources.deepspeed.{k}") for k in ("zero_stage", "precision")}
    if ours.get("precision") is None and ch.spans.get("training.precision"):
        # the trials' precision when the deepspeed block gives none (docs/trainer.md)
        ours["precision"], spans["precision"] = out["training"]["precision"], ch.spans["training.precision"]
    precision = ours.get("precision")
    # what the spec's value puts in each section (None: decided at run time, `auto`)
    spec = {"zero_optimization": ours.get("zero_stage"),
            "bf16": precision == "bf16" if precision != "auto" else None,
            "fp16": precision == "fp16" if precision != "auto" else None}
    for key, field, sections in (("zero_stage", "stage", ("zero_optimization",)),
                                 ("precision", "enabled", ("bf16", "fp16"))):
        # the section wins unless its own setting is "auto" (without it: DeepSpeed's default);
        # one that says what the spec says overrides nothing
        set_in = [k for k in sections if isinstance(ds.get(k), dict) and ds[k].get(field) != "auto"
                  and ds[k].get(field) != spec[k]]
        if ours.get(key) is not None and set_in and spans[key]:
            ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets `{set_in[0]}`: `{key} = {ours[key]}` '
                    "is not used", spans[key],
                    help=f"remove `{key}`, or `{set_in[0]}` from the DeepSpeed config")  # fmt: skip


def _checkpoint(ch: Checker, out: dict[str, Any], reports: Reports) -> None:
    c = out["checkpoint"]
    metrics = out["objective"]["metrics"]
    population = (out.get("scheduler") or {}).get("name") in T.POPULATION
    if c["score_attribute"] is None:
        if population:
            # Keep the latest `keep` checkpoints: a trial exploits another's latest one, and
            # keeping the best would delete a latest one that scores worse before the
            # exploiting trial, waiting for a CPU, loads it ("does not exist on storage").
            if c["score_order"] is not None:  # an order of nothing: Ray would drop it unsaid
                ch.error(VALUE, f"`score_order` needs `score_attribute`: under `scheduler {out['scheduler']['name']}` "
                                "the latest checkpoints are kept, not ranked", ch.spans.get("checkpoint.score_order"),
                         help="remove `score_order`")  # fmt: skip
        elif metrics:
            first = metrics[0]
            if c["score_order"] not in (None, first["mode"]):  # it would keep the worst checkpoints
                ch.error(VALUE, f"`score_order = {c['score_order']}` ranks checkpoints by `{first['name']}`, the "
                                f"objective metric, which is {first['mode']}imised: the worst ones would be kept",
                         ch.spans.get("checkpoint.score_order"),
                         help="remove `score_order` (checkpoints rank as the objective does), or name the metric "
                              "to rank by in `score_attribute`")  # fmt: skip
            c["score_attribute"] = first["name"]
            c["score_order"] = first["mode"]
        elif c["score_order"] is not None:
            ch.error(VALUE, "`score_order` needs `score_attribute`", ch.spans.get("checkpoint.score_order"))
    elif c["score_order"] is None:
        mode = next((m["mode"] for m in metrics if m["name"] == c["score_attribute"]), None)
        if mode is None:
            typo = did_you_mean(c["score_attribute"], [m["name"] for m in metrics])
            ch.error(VALUE, f"`score_order` is needed: `{c['score_attribute']}` is not an objective metric",
                     ch.spans.get("checkpoint.score_attribute"),
                     help=f"{typo} otherwise add `score_order = min` or `max`" if typo
                     else "add `score_order = min` or `max`")  # fmt: skip
            if typo:
                return
        c["score_order"] = mode
    else:
        _score_order(ch, c, metrics)
    if c["score_attribute"] is not None:
        _score_reported(ch, out, c["score_attribute"], reports)


def _score_order(ch: Checker, c: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    """A `score_order` against its metric's way: `keep` would delete the best checkpoints."""
    attr, order = c["score_attribute"], c["score_order"]
    mode = next((m["mode"] for m in metrics if m["name"] == attr), None)
    span = ch.spans.get("checkpoint.score_order")
    if mode is not None and mode != order:
        ch.error(VALUE, f"`score_order = {order}` ranks checkpoints by `{attr}`, which the objective {mode}imises: "
                        "the worst ones would be kept", span,
                 help="remove `score_order`: it follows the objective's")  # fmt: skip
    elif mode is None and (better := _better(attr)) and (better, order) in (("lower", "max"), ("higher", "min")):
        ch.warn(WARN_DIRECTION, f"checkpoints are ranked by the {'highest' if order == 'max' else 'lowest'} "
                                f"`{attr}`, but its name says {better} is better: the worst ones would be kept", span,
                help=f"write `score_order = {'min' if order == 'max' else 'max'}` (if the "
                     f"{'highest' if order == 'max' else 'lowest'} is really meant, this warning can be ignored)")


def _score_reported(ch: Checker, out: dict[str, Any], attr: str, reports: Reports) -> None:
    """A score nobody reports: Ray logs an error at each checkpoint and scores them all
    -inf, so `keep` keeps arbitrary ones."""
    own, known = early_stop.result_keys(out, reports)  # own: a loop of its own, not hpoc's metrics
    if attr in known:
        return
    note = "Ray scores checkpoints without it lowest of all: `keep` would keep arbitrary ones"
    span = ch.spans.get("checkpoint.score_attribute")
    if own:
        ch.warn(WARN_METRIC, f"`score_attribute` `{attr}` is not reported to Tune by the trainer, nor added by Tune",
                span, notes=(note,), help=did_you_mean(attr, known)
                or f"add `{attr}` to the metrics the trainer passes to `checkpoint_and_report`")  # fmt: skip
        return
    ch.warn(WARN_METRIC, f"`score_attribute` `{attr}` is not reported by hpoc's default train loop "
                         "or by Tune", span, notes=(note,),
            help=did_you_mean(attr, known) or f"make sure the trainer reports `{attr}`")  # fmt: skip


def _resume_storage(ch: Checker, out: dict[str, Any]) -> None:
    res = out["resume"]
    res["grace_s"] = res.pop("grace")
    st = out["storage"]
    if st["name"] is None:
        st["name"] = out["study"]["name"]
    local = _FILE_URI.match(st["path"])
    if local:  # Ray's URI for a path of this filesystem: the path it names
        st["path"] = urllib.parse.unquote(local.group(1))
    elif _URI.match(st["path"]):  # Ray would write there; as a path it would be a local directory
        ch.error(VALUE, f'`path` is a URI ("{st["path"]}"): remote storage is not supported',
                 ch.spans.get("storage.path"),
                 help="give a directory on a filesystem every node shares, e.g. \"$SCRATCH/hpo\"")  # fmt: skip
    st["path"] = expand_path(ch, st["path"], "storage.path") or st["path"]
    t = out["trials"]
    t["time_budget_s"] = t.pop("time_budget")
    t["time_limit_s"] = t.pop("time_limit")


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # s3://, gs://: Ray's storage URIs
_FILE_URI = re.compile(r"file://(?:localhost)?(/.*)", re.IGNORECASE)
