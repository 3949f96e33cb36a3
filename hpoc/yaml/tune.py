"""`tune_config` and `run_config` → objective, trials, search, scheduler, checkpoint,
failure and storage sections.

Names and options are Ray Tune's (and itwinai's spellings of them: `bayes`, `hepo`,
`n_random_steps`). Where the config asks for something that cannot run as written, the
translation does what the user would want and says so in a WARNING - itwinai falls back
silently (e.g. to random search) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpoc.compiler import tables as T
from hpoc.compiler.check import SEARCHER
from hpoc.dsl import ast as A
from hpoc.errors import did_you_mean, one_of
from hpoc.yaml.build import (
    DEFAULTED,
    DUPLICATE,
    IGNORED,
    MISSING,
    SUBSTITUTED,
    TYPE,
    UNKNOWN,
    VALUE,
    Builder,
    block,
)
from hpoc.yaml.classes import class_args, class_key
from hpoc.yaml.nodes import YMap, YNode, YScalar, YSeq, describe
from hpoc.yaml.sampler import is_sampler_object, read_sampler
from hpoc.yaml.space import Param, hydra_domain, mutation_value

SEARCH_NAMES = {
    "random": "random", "basic": "random", "basic_variant": "random", "basicvariant": "random",
    "variant_generator": "random", "grid": "grid", "optuna": "optuna", "hyperopt": "hyperopt",
    "bayes": "bayesopt", "bayesopt": "bayesopt", "hebo": "hebo", "hepo": "hebo",
    "nevergrad": "nevergrad", "ax": "ax", "bohb": "bohb", "tunebohb": "bohb",
}
UNSUPPORTED_SEARCH = {"zoo", "zoopt", "skopt", "dragonfly", "sigopt", "flaml", "blendsearch", "cfo"}
SCHEDULER_NAMES = {
    "fifo": "fifo", "asha": "asha", "async_hyperband": "asha", "asynchyperband": "asha",
    "hyperband": "hyperband", "bohb": "bohb", "hyperbandforbohb": "bohb", "pbt": "pbt",
    "pb2": "pb2", "median": "median", "median_stopping_rule": "median",
    "medianstoppingrule": "median", "medianstopping": "median", "hb_bohb": "bohb",  # Ray's create_scheduler names
}
# Ray's schedulers hpoc lacks, by their create_scheduler names and classes.
UNSUPPORTED_SCHEDULERS = {"pbt_replay", "populationbasedtrainingreplay", "resource_changing",
                          "resourcechangingscheduler"}
# Ray's classes, as hydra's `_target_` (or jsonargparse's `class_path`) names them.
SEARCH_CLASSES = {
    "BasicVariantGenerator": "random", "OptunaSearch": "optuna", "HyperOptSearch": "hyperopt",
    "BayesOptSearch": "bayesopt", "HEBOSearch": "hebo", "NevergradSearch": "nevergrad", "AxSearch": "ax",
    "TuneBOHB": "bohb", "ZOOptSearch": "zoopt", "SkOptSearch": "skopt", "DragonflySearch": "dragonfly",
    "SigOptSearch": "sigopt", "BlendSearch": "blendsearch", "CFO": "cfo", "ConcurrencyLimiter": "ConcurrencyLimiter",
}
SCHEDULER_CLASSES = {
    "FIFOScheduler": "fifo", "ASHAScheduler": "asha", "AsyncHyperBandScheduler": "asha",
    "HyperBandScheduler": "hyperband", "HyperBandForBOHB": "bohb", "PopulationBasedTraining": "pbt",
    "PB2": "pb2", "MedianStoppingRule": "median",
}
# Ray's argument names that hpoc spells differently, per searcher.
_SEED_NAMES = ("seed", "random_state", "random_state_seed")
_RANDOM_STEPS = {"bayesopt": "random_search_steps", "optuna": "n_startup_trials",
                 "hyperopt": "n_initial_points"}
# Whole-run knobs of Ray's RunConfig that hpoc sets itself.
_RUN_IGNORED = ("verbose", "log_to_file", "progress_reporter", "callbacks", "sync_config")
_TUNE_IGNORED = ("trial_name_creator", "trial_dirname_creator")
_SCALING_HOME = dict.fromkeys(("num_workers", "use_gpu", "resources_per_worker"), "scaling_config")
# Older itwinai defaults put these in `run_config` (Ray refuses them there).
_CHECKPOINT_HOME = {"checkpoint_freq": "config",  # the trainer's, where itwinai reads it
                    **dict.fromkeys(("checkpoint_frequency", "checkpoint_at_end", "num_to_keep",
                                     "checkpoint_score_attribute", "checkpoint_score_order"), "checkpoint_config")}
_RUN_KEYS = ("storage_path", "name", "stop", "checkpoint_config", "failure_config", *_RUN_IGNORED)
# Keys users write for a setting Ray names otherwise (`local_dir`: Ray before 2.7).
_MEANT = {"time_limit": "a trial's time limit is `stop: {{time_total_s: {value}}}` in `run_config`; the whole "
                        "study's, `time_budget_s: {value}` in `tune_config`",
          "local_dir": "`local_dir` is Ray's older name of `storage_path`, in `run_config`"}
_TUNE_KEYS = ("num_samples", "metric", "mode", "scheduler", "search_alg", "max_concurrent_trials", "time_budget_s",
              "reuse_actors", *_TUNE_IGNORED)


@dataclass
class Tune:
    """Sections read from tune_config/run_config, in .hpo order."""

    objective: A.Objective | None = None
    trials: list[A.Setting] = field(default_factory=list)
    trials_span: A.Span | None = None
    search: A.Block | None = None
    scheduler: A.Block | None = None
    checkpoint: A.Block | None = None
    failure: A.Block | None = None
    storage: list[A.Item] = field(default_factory=list)
    storage_span: A.Span | None = None
    run_name: str | None = None
    run_name_span: A.Span | None = None
    reuse: A.Setting | None = None  # `reuse_actors` → resources.reuse_workers


def read_tune(b: Builder, config: YMap, params: list[Param]) -> Tune:
    out = Tune()
    tune = b.mapping(config.get("tune_config"), "`tune_config`")
    run = b.mapping(config.get("run_config"), "`run_config`")
    search = sched = None
    if tune is not None:
        b.check_keys(tune, _TUNE_KEYS,
                     "`tune_config`", ray_class="TuneConfig",
                     homes={**dict.fromkeys(_RUN_KEYS, "run_config"), **_SCALING_HOME}, hints=_MEANT)
        for key in _TUNE_IGNORED:
            if key in tune.index:
                b.warn(IGNORED, f"`{key}` is ignored: hpoc manages trial processes and names itself",
                       tune.key_span(key), help=f"remove `{key}`")
        reuse = b.given(tune.get("reuse_actors"))
        if reuse is not None:  # Ray reuses trial actors; hpoc keeps worker groups warm
            out.reuse = b.setting("reuse_workers", b.value(reuse), tune.key_span("reuse_actors"))
        search = _named(b, tune.get("search_alg"), "search_alg")
        sched = _named(b, tune.get("scheduler"), "scheduler")
        out.trials_span = tune.span
        for key, hpo_key in (("num_samples", "num_samples"), ("max_concurrent_trials", "max_concurrent"),
                             ("time_budget_s", "time_budget")):
            node = b.given(tune.get(key))
            if key == "num_samples" and isinstance(node, YScalar) and type(node.value) is int and node.value == -1:
                # Ray: sample until `time_budget_s` or forever; hpoc runs a planned number of trials.
                b.error(VALUE, "`num_samples: -1` (sample without end) is not supported", node.span,
                        help="give the number of trials, e.g. `num_samples: 50` (with `time_budget_s` "
                             "to stop starting new ones after a while)")
                continue
            if node is not None:
                value = _no_limit(b, node) if key == "max_concurrent_trials" else b.value(node)
                out.trials.append(b.setting(hpo_key, value, tune.key_span(key)))
    # unset: said at `tune_config:`, or without one at the trainer's `config:` mapping
    out.objective = _objective(b, tune, search, sched, config.key_span("tune_config") or config.span)
    sched_name = _scheduler(b, out, sched)
    _search(b, out, search, params, sched_name)
    if run is not None:
        _run_config(b, out, run)
    return out


def _no_limit(b: Builder, node: YNode) -> A.Value:
    """Ray reads `max_concurrent_trials: 0` as no limit; hpoc spells that `null`."""
    if isinstance(node, YScalar) and type(node.value) in (int, float) and node.value == 0:
        b.warn(SUBSTITUTED, "`max_concurrent_trials: 0` means no limit in Ray: as many trials at once as "
               "resources allow", node.span, help="write `max_concurrent_trials: null` (or leave it out)")
        return A.Null(span=node.span)
    return b.value(node)


@dataclass
class _Named:
    """`search_alg` or `scheduler`: its name, options (flat or under `options`), metric/mode."""

    name: str | None
    name_span: A.Span | None
    span: A.Span
    options: list[tuple[str, A.Span, YNode]]
    metric: YNode | None = None
    mode: YNode | None = None


def _named(b: Builder, node: YNode | None, what: str) -> _Named | None:
    if node is None or (isinstance(node, YScalar) and node.value is None):
        return None
    if isinstance(node, YScalar) and isinstance(node.value, str):  # `scheduler: asha`
        return _Named(node.value, node.span, node.span, [])
    m = b.mapping(node, f"`{what}`")
    if m is None:
        return None
    m = _class_style(b, m, what)
    if m is None:
        return None
    name_node = m.get("name")
    name = b.word(name_node, f"`name` of `{what}`")
    if name_node is None:
        b.error(VALUE, f"`{what}` needs a `name`", m.span,
                help="e.g. `name: optuna`" if what == "search_alg" else "e.g. `name: asha`")
    options = [(k, ks, v) for k, ks, v in m.entries
               if k not in ("name", "metric", "mode", "options") and b.given(v) is not None]
    for k, ks, _ in options:  # indented one level too deep: said here, whatever becomes of `what`
        if k in _TUNE_KEYS:
            b.error(UNKNOWN, f"unknown key `{k}` in `{what}`", ks, help=f"`{k}` belongs in `tune_config`")
    options = [o for o in options if o[0] not in _TUNE_KEYS]
    nested = b.mapping(m.get("options"), f"`options` of `{what}`")
    if nested is not None:
        flat = {k for k, _, _ in options}
        for k, ks, v in nested.entries:
            if k in flat:
                b.error(VALUE, f"`{k}` is set both in `{what}` and in its `options`", ks,
                        help="keep one of them")
            elif k in ("metric", "mode"):
                b.error(VALUE, f"`{k}` belongs directly in `{what}`, not in its `options`", ks)
            elif b.given(v) is not None:
                options.append((k, ks, v))
    return _Named(name, name_node.span if name_node else None, m.span, options, m.get("metric"), m.get("mode"))


def _class_style(b: Builder, m: YMap, what: str) -> YMap | None:
    """`{_target_: ray.tune.schedulers.ASHAScheduler, max_t: 20}` (hydra, newer itwinai) or
    `{class_path: ..., init_args: {...}}` (jsonargparse) as `{name: asha, max_t: 20}`."""
    key = class_key(m)
    if key is None:
        return m
    classes = SEARCH_CLASSES if what == "search_alg" else SCHEDULER_CLASSES
    target = m.get(key)
    cls = b.ray_target(target, classes, f"`{what}`")  # type: ignore[arg-type]
    if "name" in m.index:
        b.error(DUPLICATE, f"`{what}` has both `name` and `{key}`", m.key_span("name"), help="keep one of them")
    entries = class_args(b, m, f"`{what}`", besides=("name",)) or []
    if cls is None or classes[cls] == "ConcurrencyLimiter":
        if cls is not None:
            b.error(VALUE, "`ConcurrencyLimiter` wraps a searcher, which a config cannot build", target.span,  # type: ignore[union-attr]
                    help="name the searcher itself and limit trials with `max_concurrent_trials` in `tune_config`")
        return None
    entries.insert(0, ("name", m.key_span(key), YScalar(classes[cls], classes[cls], target.span)))  # type: ignore[union-attr,arg-type]
    return YMap(tuple(entries), m.span, {k: i for i, (k, _, _) in enumerate(entries)})


# ------------------------------------------------------------------------- objective


def _objective(b: Builder, tune: YMap | None, search: _Named | None, sched: _Named | None,
               tune_key: A.Span | None = None) -> A.Objective:
    """`metric`/`mode` of `search_alg`, `scheduler` and `tune_config`, which must agree. A
    searcher may list several (`metric: [loss, accuracy]`, `mode: [min, max]`, as Ray's
    OptunaSearch takes them); a single metric elsewhere is then the first, which drives
    schedulers as in Ray."""
    found: list[tuple[str, YNode | None, YNode | None]] = []
    if search is not None:
        found.append(("search_alg", search.metric, search.mode))
    if sched is not None:
        found.append(("scheduler", sched.metric, sched.mode))
    if tune is not None:
        found.append(("tune_config", tune.get("metric"), tune.get("mode")))
    chosen: dict[str, list[tuple[str, A.Span]]] = {}  # kind -> (value, span) of each, first setting
    first: dict[str, tuple[str, YNode]] = {}  # kind -> (section, node) that set it
    bad = set()  # a value that is an error already: no "is not set" besides it
    for where, m, md in found:
        for node, kind in ((m, "metric"), (md, "mode")):
            if b.given(node) is None:  # Ray's default: unset
                continue
            values = _words(b, node, f"`{kind}` in `{where}`", several=where == "search_alg")
            if values is None or (kind == "mode" and not _modes(b, values)):
                bad.add(kind)
                continue
            current = chosen.get(kind)
            names, have = [v for v, _ in values], [v for v, _ in current or ()]
            if current is None:
                chosen[kind], first[kind] = values, (where, node)
            elif names != have and not (len(names) == 1 and names[0] == have[0]) \
                    and not (len(have) == 1 and have[0] == names[0]):
                section, at = first[kind]
                b.error(VALUE, f"`{kind}` `{_shown(names)}` contradicts `{_shown(have)}` (`{section}`, line "
                        f"{at.span.line})", node.span,
                        help=f"Ray optimises one {kind}: use `{_shown(have)}` everywhere" if len(have) == 1
                        else f"give the first of `{_shown(have)}` elsewhere, or the same list")
            elif len(names) > len(have):
                chosen[kind], first[kind] = values, (where, node)
    metrics, modes = chosen.get("metric"), chosen.get("mode")
    span = first["metric"][1].span if metrics else first["mode"][1].span if modes else \
        (tune_key or (tune.span if tune else None))  # unset: at the `tune_config:` key
    if metrics is None and "metric" not in bad:
        b.warn(DEFAULTED, "no `metric` is set: optimising `loss` (itwinai's default)", span,
               help="add `metric: loss` and `mode: min` to " + ("`search_alg` (or `tune_config`)" if search
                                                                 else "`tune_config`"))
    metrics = metrics or [("loss", span)]
    if modes is None:
        modes = [("min", span)] * len(metrics)
        if not bad:
            names = ", ".join(f"`{m}`" for m, _ in metrics)
            b.warn(DEFAULTED, f"no `mode` is set for {names}: minimising {'it' if len(metrics) == 1 else 'them'} "
                   "(itwinai's default)", span, help="add `mode: min` or `mode: max`")
    elif len(modes) != len(metrics):
        b.error(VALUE, f"`mode` gives {len(modes)} direction(s) for {len(metrics)} metric(s)", first["mode"][1].span,
                help="give one `mode` per `metric`, in the same order")
        modes = [modes[0]] * len(metrics)
    goals = tuple(A.Goal(md, m, span=sp) for (m, sp), (md, _) in zip(metrics, modes))
    return A.Objective(goals, span=goals[0].span)


def _shown(names: list[str]) -> str:
    return names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"


def _words(b: Builder, node: YNode, where: str, several: bool) -> list[tuple[str, A.Span]] | None:
    """A name, or (where `several`) a list of names, each with its span; None after an error."""
    if several and isinstance(node, YSeq) and node.items:
        names = [b.word(i, where) for i in node.items]
        return None if None in names else [(n, i.span) for n, i in zip(names, node.items)]  # type: ignore[misc]
    name = b.word(node, where)
    return None if name is None else [(name, node.span)]


def _modes(b: Builder, values: list[tuple[str, A.Span]]) -> bool:
    ok = True
    for value, span in values:
        if value not in ("min", "max"):
            word = value.lower()[:3]  # `minimize`, as .hpo spells it: far from `min` by edits
            b.error(VALUE, f"`mode` must be `min` or `max`, not `{value}`", span,
                    help=f"did you mean `{word}`?" if word in ("min", "max") else did_you_mean(value, ["min", "max"]))
            ok = False
    return ok


# ------------------------------------------------------------------------- scheduler


def _scheduler(b: Builder, out: Tune, sched: _Named | None) -> str | None:
    if sched is None or sched.name is None:
        return None
    written = sched.name.strip()
    name = SCHEDULER_NAMES.get(written.lower()) or SCHEDULER_CLASSES.get(written.rsplit(".", 1)[-1])
    if name is None:
        lacked = written.rsplit(".", 1)[-1].lower() in UNSUPPORTED_SCHEDULERS
        b.error(UNKNOWN, f"the `{sched.name}` scheduler is not supported" if lacked else
                f"unknown scheduler `{sched.name}`", sched.name_span,
                help=f"hpoc supports {one_of(T.SCHEDULERS)}" if lacked else
                did_you_mean(sched.name.lower(), SCHEDULER_NAMES) or f"schedulers: {one_of(T.SCHEDULERS)}")
        return None
    body: list[A.Item] = []
    for key, kspan, value in sched.options:
        if key in ("hyperparam_mutations", "hyperparam_bounds") and isinstance(value, YMap):
            pairs: list[A.Pair] = []
            _mutations(b, key, value, "", pairs)
            body.append(b.setting(key, A.Map(tuple(pairs), span=value.span), kspan))
        else:
            body.append(b.setting(key, b.value(value), kspan))
    label = A.Ref(name, span=sched.name_span)
    out.scheduler = block("scheduler", body or None, sched.name_span or sched.span, label)
    return name


def _mutations(b: Builder, key: str, node: YMap, prefix: str, pairs: list[A.Pair]) -> None:
    """`hyperparam_mutations` / `hyperparam_bounds` entries; a mapping without `type` nests
    them as Ray's do (`optimizer: {lr: [...]}` for a nested `train_loop_config`): its
    entries are the dotted names the space gives those parameters (`optimizer.lr`)."""
    for k, ks, v in node.entries:
        name = prefix + k
        v = hydra_domain(v)
        if isinstance(v, YMap) and "type" not in v.index and v.entries:
            _mutations(b, key, v, name + ".", pairs)
            continue
        val = mutation_value(b, v, name) if key == "hyperparam_mutations" else b.value(v)
        pairs.append(A.Pair(name, val, key_span=ks, span=ks))


# ---------------------------------------------------------------------------- search


def _search(b: Builder, out: Tune, search: _Named | None, params: list[Param], sched: str | None) -> None:
    if sched == "bohb" and (search is None or SEARCH_NAMES.get((search.name or "").lower()) != "bohb"):
        if search is not None and search.name is not None:
            b.warn(SUBSTITUTED, f"the `bohb` scheduler needs the BOHB searcher: searching with `bohb`, "
                   f"not `{search.name}`", search.name_span,
                   help="write `name: bohb` in `search_alg` (itwinai switches silently too)")
        span = search.name_span if search else out.scheduler.span if out.scheduler else None
        out.search = block("search", None, span, A.Ref("bohb", span=span))
        return
    if search is None or search.name is None:
        return
    raw = search.name.strip().lower()
    cls = SEARCH_CLASSES.get(search.name.strip().rsplit(".", 1)[-1])  # `name: OptunaSearch`
    if raw not in SEARCH_NAMES and cls is not None:
        raw = cls.lower()
    name = SEARCH_NAMES.get(raw)
    if name is None:
        help = did_you_mean(raw, SEARCH_NAMES) or f"search algorithms: {one_of(T.SEARCHERS)}"
        if raw in UNSUPPORTED_SEARCH:
            help = "hpoc supports " + one_of(T.SEARCHERS) + "; Optuna's TPE (`name: optuna`) is a good default"
        b.error(UNKNOWN, f"unknown search algorithm `{search.name}`", search.name_span, help=help)
        return
    if sched in T.POPULATION and name not in ("random", "grid"):
        b.warn(SUBSTITUTED, f"`{sched}` explores the space itself: `search_alg` `{search.name}` is not used; "
               "trials start from random configurations", search.name_span,
               help="remove `search_alg` (itwinai drops it silently too)")
        b.note_in_output("scheduler", f"`search_alg: {search.name}` dropped: {sched} explores the space itself.")
        return
    options = _options(b, search, name)
    discrete = [p for p in params if p.domain in T.CATEGORICAL or p.domain in T.INTEGER]
    grids = [p for p in params if p.domain == "grid"]
    if name == "bayesopt" and grids:  # nor can TPE, which stands in for it: say so of what was written
        for p in grids:
            b.error(SEARCHER, f"`{search.name}` (BayesOpt) cannot search `grid_search` values (`{p.name}`)",
                    p.span, help="write `search_alg: {name: random}` to enumerate the grid, or `type: choice` "
                                 "to let a searcher pick")
        return
    if name == "bayesopt" and discrete:
        options = _bayes_to_optuna(b, search, options, discrete)
        name = "optuna"
    body = [b.setting(k, v, ks) for k, ks, v in options]
    if name == "optuna" and raw in ("bayes", "bayesopt"):
        body.insert(0, b.setting("sampler", A.Ref("tpe", span=search.name_span), search.name_span))
    out.search = block("search", body or None, search.name_span, A.Ref(name, span=search.name_span))


def _options(b: Builder, search: _Named, name: str) -> list[tuple[str, A.Span, A.Value]]:
    out: list[tuple[str, A.Span, A.Value]] = []
    for key, kspan, value in search.options:
        hpo = key
        if key == "sampler" and name == "optuna" and is_sampler_object(value):
            beside = {"seed" if k in _SEED_NAMES else k for k, _, _ in search.options if k != "sampler"}
            for option in read_sampler(b, value, _SEED_NAMES):
                if option[0] in beside:
                    b.error(DUPLICATE, f"`{option[0]}` is given twice: in `search_alg` and its `sampler`",
                            option[1], help="keep one of them")
                    continue
                out.append(option)
            continue
        if key == "max_concurrent":  # an argument of Ray's older searchers (and BasicVariantGenerator)
            b.error(UNKNOWN, f"unknown key `{key}` in `search_alg: {{name: {search.name}}}`", kspan,
                    help="limit the trials run at once with `max_concurrent_trials` in `tune_config`")
            continue
        if key in _SEED_NAMES:
            hpo = "seed"
        elif key == "n_random_steps" and name in _RANDOM_STEPS:
            hpo = _RANDOM_STEPS[name]
        elif key in ("space", "evaluated_rewards", "sampler") and not (key == "sampler" and name == "optuna"):
            b.error(VALUE, f"`{key}` of `search_alg` cannot be set in a config", kspan,
                    help="the space comes from `train_loop_config`" if key == "space" else f"remove `{key}`")
            continue
        out.append((hpo, kspan, b.value(value, words=_WORDS.get(hpo, ()))))
    return out


_WORDS = {"sampler": ("tpe", "gp", "cmaes", "nsga2", "random")}


def _bayes_to_optuna(b: Builder, search: _Named, options: list[tuple[str, A.Span, A.Value]],
                     discrete: list[Param]) -> list[tuple[str, A.Span, A.Value]]:
    """BayesOpt models continuous parameters only: search with Optuna's TPE instead."""
    kept: list[tuple[str, A.Span, A.Value]] = []
    dropped: list[str] = []
    for key, kspan, value in options:
        if key == "random_search_steps":
            kept.append(("n_startup_trials", kspan, value))
        elif key in ("seed", "points_to_evaluate"):
            kept.append((key, kspan, value))
        elif key in T.SEARCHERS["bayesopt"]:
            dropped.append(key)
        else:  # not BayesOpt's either: a typo or a key that belongs elsewhere, not a drop
            valid = [k for k in T.SEARCHERS["bayesopt"] if k != "random_search_steps"] + ["n_random_steps"]
            b.error(UNKNOWN, f"unknown key `{key}` in `search_alg: {{name: {search.name}}}`", kspan,
                    help=did_you_mean(key, valid) or f"valid keys: {one_of(valid)}")
    names = ", ".join(f"`{p.name}` ({p.domain})" for p in discrete)
    notes = ["BayesOpt fits a Gaussian process over continuous parameters only"]
    if any(k == "n_startup_trials" for k, _, _ in kept):
        notes.append("its random warm-up (`n_random_steps`) becomes Optuna's `n_startup_trials`")
    if dropped:
        notes.append(f"BayesOpt-only options dropped: {', '.join(f'`{d}`' for d in dropped)}")
    b.warn(SUBSTITUTED, f"`{search.name}` (BayesOpt) cannot search {names}: using Optuna's TPE sampler "
           "instead, which handles mixed spaces", search.name_span, notes=notes,
           help="write `name: optuna` in `search_alg` to choose this yourself, or make every "
                "searched parameter continuous (`uniform`, `loguniform`) to keep BayesOpt")
    b.note_in_output("search", f"itwinai `{search.name}` (BayesOpt) cannot search {names};")
    b.note_in_output("search", "Optuna's TPE sampler handles mixed spaces.")
    return kept


# ------------------------------------------------------------------------ run_config


def _run_config(b: Builder, out: Tune, run: YMap) -> None:
    b.check_keys(run, _RUN_KEYS, "`run_config`", homes={**dict.fromkeys(_TUNE_KEYS, "tune_config"), **_SCALING_HOME,
                                                         **_CHECKPOINT_HOME}, ray_class="RunConfig", hints=_MEANT)
    for key in _RUN_IGNORED:
        if key in run.index:
            b.warn(IGNORED, f"`{key}` is ignored: hpoc reports progress and logs itself", run.key_span(key),
                   help=f"remove `{key}`")
    storage: list[A.Item] = []
    path = b.given(run.get("storage_path"))
    if path is not None:
        storage.append(b.setting("path", b.value(path), run.key_span("storage_path")))
    name = b.given(run.get("name"))
    if name is not None:
        out.run_name, out.run_name_span = b.word(name, "`name` of `run_config`"), name.span
    stop = b.given(run.get("stop"))
    if stop is not None and not isinstance(stop, YMap):
        # Ray also takes a function or a Stopper object: Python code, which a config cannot hold.
        b.error(TYPE, f"`stop` must be a mapping of result keys to limits, not {describe(stop)}", stop.span,
                help="write e.g. `stop: {training_iteration: 10}` (a stopper class as `{_target_: ...}` with its "
                     "arguments); a stopper function needs Python code")
    elif stop is not None:
        _stop(b, out, run, stop)
    out.storage, out.storage_span = storage, run.key_span("storage_path") or run.span
    _checkpoint_config(b, out, run)
    _failure_config(b, out, run)


def _stop(b: Builder, out: Tune, run: YMap, stop: YMap) -> None:
    """Ray's stop conditions. `time_total_s` is the trial's running time, which hpoc's
    `time_limit` bounds as Ray counts it, and better: inside an epoch too, so a hung trial is
    stopped. A stopper class (`_target_`/`class_path`) is read when hpoc has its meaning."""
    if class_key(stop) is not None:
        _stopper(b, out, run, stop)
        return
    limits = [(k, ks, v) for k, ks, v in stop.entries if k != "time_total_s"]
    total = b.given(stop.get("time_total_s"))
    if total is not None:
        out.trials.append(b.setting("time_limit", b.value(total), stop.key_span("time_total_s")))
        b.note_in_output("trials", "`stop: {time_total_s: ...}`: a trial's time limit, inside an epoch too.")
    if limits or total is None:
        value = A.Map(tuple(A.Pair(k, b.value(v), key_span=ks, span=ks) for k, ks, v in limits), span=stop.span)
        out.trials.append(b.setting("stop", value, run.key_span("stop")))


# Ray's stoppers (ray.tune.stopper): those with a meaning in a plan, and the help for the others.
_STOPPERS = {
    "TimeoutStopper": None, "MaximumIterationStopper": None,
    "TrialPlateauStopper": "stop trials that do worse than others early with `scheduler: {name: asha}` "
                           "or `{name: median}`",
    "ExperimentPlateauStopper": "bound the study with `num_samples` and `time_budget_s` in `tune_config`",
    "CombinedStopper": "write the limits as one mapping, `stop: {training_iteration: 10, loss: 0.01}`, and "
                       "the study's time as `time_budget_s` in `tune_config`",
    "FunctionStopper": "write the limits as a mapping, e.g. `stop: {training_iteration: 10}`",
    "NoopStopper": "remove `stop`",
}


def _stopper(b: Builder, out: Tune, run: YMap, stop: YMap) -> None:
    """`stop: {_target_: ray.tune.stopper.TimeoutStopper, timeout: 3600}` is the study's time
    budget (Ray makes that stopper of `time_budget_s`); `MaximumIterationStopper(max_iter)`
    a `training_iteration` limit. Any other stopper is refused, with what comes nearest."""
    target = stop.get(class_key(stop))  # type: ignore[arg-type]
    cls = b.ray_target(target, _STOPPERS, "`stop`")  # type: ignore[arg-type]
    entries = class_args(b, stop, "`stop`")
    if entries is None or cls is None:  # (said: their arguments are unknown)
        return
    if _STOPPERS[cls] is not None:
        b.error(VALUE, f"`stop` cannot be a `{cls}`: hpoc stops trials on result limits (a mapping) "
                "and on `time_budget_s`, not with Ray's stopper objects",
                target.span, help=_STOPPERS[cls])  # type: ignore[union-attr]
        return
    arg = "timeout" if cls == "TimeoutStopper" else "max_iter"
    for k, ks, _ in entries:
        if k != arg:
            b.error(UNKNOWN, f"unknown key `{k}` in `{cls}`", ks, help=f"`{cls}` takes `{arg}`")
    value = b.given(dict((k, v) for k, _, v in entries).get(arg))
    if value is None:
        b.error(MISSING, f"`{cls}` needs `{arg}`", target.span,  # type: ignore[union-attr]
                help="the study's time in seconds, e.g. `timeout: 3600`" if arg == "timeout"
                else "the reports a trial makes, e.g. `max_iter: 10`")
        return
    span = next(ks for k, ks, _ in entries if k == arg)
    if cls == "MaximumIterationStopper":
        pair = A.Pair("training_iteration", b.value(value), key_span=span, span=span)
        b.names.append((value.span, "training_iteration", "max_iter"))  # its type errors, said of `max_iter`
        out.trials.append(b.setting("stop", A.Map((pair,), span=stop.span), run.key_span("stop")))
    elif any(s.key == "time_budget" for s in out.trials):
        b.error(DUPLICATE, "`TimeoutStopper` and `time_budget_s` both bound the study's time", span,
                help="keep one of them")
    else:
        out.trials.append(b.setting("time_budget", b.value(value), span))


def _checkpoint_config(b: Builder, out: Tune, run: YMap) -> None:
    ck = b.mapping(run.get("checkpoint_config"), "`checkpoint_config`")
    if ck is None:
        return
    names = {"num_to_keep": "keep", "checkpoint_score_attribute": "score_attribute",
             "checkpoint_score_order": "score_order", "checkpoint_frequency": "every"}
    b.check_keys(ck, (*names, "checkpoint_at_end"), "`checkpoint_config`", ray_class="CheckpointConfig")
    body: list[A.Item] = []
    for key, kspan, value in ck.entries:
        if key in names and key != "num_to_keep" and b.given(value) is None:
            continue  # unset; `num_to_keep: null` is Ray's own "keep every checkpoint"
        if key in names:
            body.append(b.setting(names[key], b.value(value, words=("min", "max")), kspan))
        elif key == "checkpoint_at_end":
            freq = ck.get("checkpoint_frequency")
            if isinstance(value, YScalar) and value.value is True and isinstance(freq, YScalar) \
                    and type(freq.value) is int and freq.value == 0:
                # Ray: only the final checkpoint. hpoc's `every: 0` saves none, the last included.
                b.warn(IGNORED, "`checkpoint_at_end` is ignored: with `checkpoint_frequency: 0` hpoc saves "
                       "no checkpoint at all, not even the last", kspan,
                       help="to checkpoint the last epoch only, set `checkpoint_frequency` to the number "
                            "of epochs (the last epoch is always checkpointed when checkpoints are on)")
            else:
                b.warn(IGNORED, "`checkpoint_at_end` is ignored: hpoc always checkpoints the last epoch",
                       kspan, help="remove it")
    keep = ck.get("num_to_keep")
    population = out.scheduler is not None and isinstance(out.scheduler.label, A.Ref) and \
        out.scheduler.label.path in T.POPULATION  # the latest are kept there, as in Ray
    counts = isinstance(keep, YScalar) and type(keep.value) is int and keep.value >= 1  # else its error
    if counts and "checkpoint_score_attribute" not in ck.index and not population:
        # Ray keeps the most recent ones then; hpoc ranks them by the objective metric.
        b.warn(SUBSTITUTED, f"`num_to_keep: {keep.text if isinstance(keep, YScalar) else '...'}` keeps the best "
               "checkpoints by the objective metric, not the most recent as in Ray", ck.key_span("num_to_keep"),
               help="name the metric to rank by with `checkpoint_score_attribute` (and "
                    "`checkpoint_score_order`) to choose it yourself")
    if body:
        out.checkpoint = block("checkpoint", body, run.key_span("checkpoint_config"))


def _failure_config(b: Builder, out: Tune, run: YMap) -> None:
    fc = b.mapping(run.get("failure_config"), "`failure_config`")
    if fc is None:
        return
    b.check_keys(fc, ("max_failures", "fail_fast"), "`failure_config`", ray_class="FailureConfig")
    node = b.given(fc.get("max_failures"))
    if "fail_fast" in fc.index:
        b.warn(IGNORED, "`fail_fast` is ignored: hpoc finishes the other trials when one fails, and stops "
               "the study only when its first trials all fail the same way (`failure.fail_fast`)",
               fc.key_span("fail_fast"), help="remove it")
    if node is None:
        return
    value: Any = b.value(node)
    if isinstance(node, YScalar) and node.value == -1:
        b.error(VALUE, "`max_failures: -1` (retry forever) is not supported", node.span,
                help="give a number of retries, e.g. `max_failures: 3`")
        return
    out.failure = block("failure", [b.setting("max_retries", value, fc.key_span("max_failures"))],
                        run.key_span("failure_config"))
