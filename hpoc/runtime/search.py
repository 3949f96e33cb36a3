"""Search algorithms and trial schedulers by name, as the plan names them.

`make_searcher(plan, shard)` returns `(searcher, param_space, num_samples)`: what goes into
`TuneConfig(search_alg=...)`, `Tuner(param_space=...)` and `TuneConfig(num_samples=...)`.
`make_scheduler(plan)` returns a Tune scheduler. Options in the plan are the classes' own
keyword arguments (plus `seed`, translated to each library's spelling); a wrong option or a
library that is not installed raises `SearchError` with a message that says what to do.
"""

from __future__ import annotations

import inspect
from typing import Any

from hpoc.plan import NEVERGRAD_OPTIMIZER
from hpoc.runtime import packages
from hpoc.runtime import space as sp

# algorithm -> (modules it needs, pip packages to install)
SEARCH_LIBRARIES = {
    "random": ((), ()),
    "grid": ((), ()),
    "optuna": (("optuna",), ("optuna",)),
    "hyperopt": (("hyperopt",), ("hyperopt",)),
    "bayesopt": (("bayes_opt",), ("bayesian-optimization",)),
    "hebo": (("hebo",), ("HEBO",)),
    "nevergrad": (("nevergrad",), ("nevergrad",)),
    "ax": (("ax",), ("ax-platform",)),
    "bohb": (("hpbandster", "ConfigSpace"), ("hpbandster", "ConfigSpace")),
}
SCHEDULERS = ("fifo", "asha", "hyperband", "median", "pbt", "pb2", "bohb")
# Schedulers that choose configurations themselves: Tune allows no search algorithm with them.
POPULATION_SCHEDULERS = ("pbt", "pb2")
OPTUNA_SAMPLERS = {
    "tpe": "TPESampler", "gp": "GPSampler", "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler", "random": "RandomSampler",
}
# optuna samplers' extra dependencies (modules, pip package)
_OPTUNA_SAMPLER_NEEDS = {"cmaes": (("cmaes",), "cmaes"), "gp": (("scipy",), "scipy")}
# Ray searcher class -> its name for the random seed
_SEED_ARG = {
    "hyperopt": "random_state_seed", "bayesopt": "random_state", "hebo": "random_state_seed",
    "bohb": "seed", "optuna": "seed",
}


class SearchError(ValueError):
    """A search algorithm or scheduler that cannot be built from the plan."""


def require_libraries(algorithm: str) -> None:
    if algorithm not in SEARCH_LIBRARIES:
        raise SearchError(f"unknown search algorithm `{algorithm}` "
                          f"(one of {', '.join(SEARCH_LIBRARIES)})")
    modules, pips = SEARCH_LIBRARIES[algorithm]
    missing = packages.missing({mod: ((mod,), pip) for mod, pip in zip(modules, pips)})
    if missing:
        raise SearchError(packages.install_hint(f"search algorithm `{algorithm}`", missing.values()))


def require_search(plan: dict[str, Any]) -> str:
    """`require_libraries` for the plan's search, and its optuna sampler's extra package;
    what is searched with (`optuna (cmaes)`), for messages."""
    algorithm = plan["search"]["algorithm"]
    require_libraries(algorithm)
    if algorithm != "optuna":
        return algorithm
    kind = str((plan["search"].get("options") or {}).get("sampler")
               or ("nsga2" if len(plan["objective"]["metrics"] or ()) > 1 else "tpe"))
    _require_sampler_package(kind)
    return f"optuna ({kind})"


def _require_sampler_package(kind: str) -> None:
    need = _OPTUNA_SAMPLER_NEEDS.get(kind)
    if need and (missing := packages.missing({kind: need})):
        raise SearchError(packages.install_hint(f"optuna sampler `{kind}`", missing.values()))


def _objective(plan: dict[str, Any]) -> tuple[list[str], list[str]]:
    # A study without an objective runs its trials unranked (random/grid search, FIFO).
    metrics = plan["objective"]["metrics"] or [{"name": None, "mode": None}]
    return [m["name"] for m in metrics], [m["mode"] for m in metrics]


def _call(what: str, cls: Any, kwargs: dict[str, Any]) -> Any:
    """cls(**kwargs), turning an unknown option into a message listing the valid ones."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            valid = ", ".join(f"`{n}`" for n in params if n not in ("self", "metric", "mode"))
            raise SearchError(f"{what}: unknown option(s) {', '.join(f'`{u}`' for u in unknown)}; "
                              f"valid options are {valid}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise SearchError(f"{what}: {exc}") from None


# ---------------------------------------------------------------- searchers


def trials_in_shard(total: int, shard: int, shards: int) -> int:
    return len(range(shard, total, shards))


def make_searcher(plan: dict[str, Any], shard: int = 0) -> tuple[Any, dict[str, Any], int]:
    """(search_alg, param_space, num_samples) for shard `shard` of the plan's study.

    `trials.num_samples` counts trials of the whole study; shards split them."""
    algorithm = plan["search"]["algorithm"]
    # The compiler lists every known option; unset ones are null.
    options = {k: v for k, v in (plan["search"]["options"] or {}).items() if v is not None}
    names, modes = _objective(plan)
    # random and grid optimise nothing: several metrics are only reported and ranked
    if len(names) > 1 and algorithm not in ("optuna", "random", "grid"):
        raise SearchError(f"search algorithm `{algorithm}` optimises one metric; "
                          "use `optuna` for several objectives")
    require_libraries(algorithm)
    space = plan["space"]
    shards = plan["shards"]["count"]
    num_samples = plan["trials"]["num_samples"]
    seed = options.pop("seed", None)

    if algorithm in ("random", "grid"):
        points = options.pop("points_to_evaluate", None) or ()
        if options:
            raise SearchError(f"search algorithm `{algorithm}`: unknown option(s) "
                              f"{', '.join(f'`{k}`' for k in options)}; valid options are `seed`, "
                              "`points_to_evaluate`")
        sampled = dict(num_samples=num_samples, enumerate_choices=algorithm == "grid", seed=seed,
                       shard=shard, shards=shards, points_to_evaluate=points)
        if plan["scheduler"]["name"] in POPULATION_SCHEDULERS:
            # Tune runs PBT/PB2 only under its BasicVariantGenerator: our sampler's configs
            # (same seed, same shard split) become that generator's fixed points.
            return sp.fixed_trials(sp.SpaceSamplerCore(space, **sampled), plan["trials"]["max_concurrent"])
        searcher = sp.make_space_sampler(space, metric=names[0], mode=modes[0], **sampled)
        return searcher, {}, max(1, searcher.total_samples)

    count = trials_in_shard(num_samples, shard, shards)
    if algorithm == "optuna":
        # Sharded: one global budget in the shared journal (hpoc.runtime.shards); Tune's
        # own count is only an upper bound then.
        total = num_samples if shards > 1 else count
        return _optuna(plan, options, seed, names, modes, shard), {}, total

    # Ray's searchers that convert a Tune param_space themselves. They cannot express
    # conditions: conditional parameters are searched always and dropped from configs
    # where inactive (see space.trial_config).
    param_space = sp.ray_domains(space, grid_as_choice=True)
    if options.get("points_to_evaluate"):  # each shard its share, as of the study's trials
        options["points_to_evaluate"] = shard_points(options["points_to_evaluate"], shard, shards)
    if seed is not None:
        options.setdefault(_SEED_ARG.get(algorithm, "seed"), _shard_seed(seed, shard))
    metric, mode = names[0], modes[0]
    if algorithm == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch as cls
    elif algorithm == "bayesopt":
        from ray.tune.search.bayesopt import BayesOptSearch as cls
        # Ray drops `q` (space.active_values rounds the values) and the log scale (HP802)
        bad = [p["name"] for p in space["params"]
               if p["domain"] not in ("uniform", "loguniform", "quniform", "qloguniform")]
        if bad:
            raise SearchError("search algorithm `bayesopt` only searches continuous "
                              f"uniform/loguniform parameters; not {', '.join(f'`{b}`' for b in bad)}")
    elif algorithm == "hebo":
        from ray.tune.search.hebo import HEBOSearch as cls
    elif algorithm == "nevergrad":
        from ray.tune.search.nevergrad import NevergradSearch as cls
        import nevergrad as ng

        name = options.pop("optimizer", NEVERGRAD_OPTIMIZER)
        opt = getattr(ng.optimizers, str(name), None)
        if opt is None:
            raise SearchError(f"search algorithm `nevergrad`: unknown optimizer `{name}`")
        options["optimizer"] = opt
    elif algorithm == "ax":
        from ray.tune.search.ax import AxSearch as cls
    elif algorithm == "bohb":
        from ray.tune.search.bohb import TuneBOHB as cls
    else:  # pragma: no cover - require_libraries rejected it
        raise SearchError(f"unknown search algorithm `{algorithm}`")
    searcher = _call(f"search algorithm `{algorithm}`", cls, {"metric": metric, "mode": mode, **options})
    return searcher, param_space, count


def shard_points(points: list[Any], shard: int, shards: int) -> list[Any]:
    """The `points_to_evaluate` a searcher of shard `shard`'s own runs: those i with
    i mod `shards` == `shard` (each point once in the study)."""
    return list(points[shard::shards])


def search_cap(plan: dict[str, Any], ended: int = 0, shard: int = 0) -> int | None:
    """The most trials the plan's search lets run at once, None for no limit:
    `trials.max_concurrent` (Tune hands it to the searcher), else a searcher's own default
    (Ray's HEBOSearch: 8). Trials a resumed run restores are held to the former only.
    `ended`: the trials an earlier run of shard `shard` ended, when this one resumes it."""
    cap = plan["trials"]["max_concurrent"]
    if cap or plan["search"]["algorithm"] != "hebo":
        return cap or None
    from ray.tune.search.hebo import HEBOSearch

    own = int(inspect.signature(HEBOSearch).parameters["max_concurrent"].default)
    # HEBOSearch hands out its points_to_evaluate, first, past its own cap; a resumed run
    # has those the earlier run did not end (its others came only after all of them)
    points = (plan["search"].get("options") or {}).get("points_to_evaluate") or []
    return max(own, len(shard_points(points, shard, plan["shards"]["count"])) - ended)


def _shard_seed(seed: Any, shard: int) -> int:
    # Different, reproducible streams per shard; wrapped to stay a valid 32-bit seed.
    return (int(seed) + 7919 * shard) % 2**32


def _optuna(plan: dict[str, Any], options: dict[str, Any], seed: Any, names: list[str],
            modes: list[str], shard: int) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    kind = str(options.pop("sampler", "nsga2" if len(names) > 1 else "tpe"))
    if kind not in OPTUNA_SAMPLERS:
        raise SearchError(f"optuna sampler `{kind}` is not one of {', '.join(OPTUNA_SAMPLERS)}")
    _require_sampler_package(kind)
    sampler_cls = getattr(optuna.samplers, OPTUNA_SAMPLERS[kind])
    searcher_args = {k: options.pop(k) for k in ("points_to_evaluate", "evaluated_rewards")
                     if k in options}
    if "points_to_evaluate" in searcher_args:
        searcher_args["points_to_evaluate"] = [
            sp.optuna_point(point, plan["space"]) for point in searcher_args["points_to_evaluate"]]
    sampler_args = dict(options)
    if seed is not None:
        sampler_args["seed"] = _shard_seed(seed, shard)
    sampler = _call(f"optuna sampler `{kind}`", sampler_cls, sampler_args)
    storage, study_name = None, None
    if plan["shards"]["count"] > 1:
        # Shards are separate Ray clusters; one Optuna study in a journal file on the shared
        # storage lets each shard's sampler learn from all trials (JournalFileBackend is
        # made for NFS, SQLite is not).
        from pathlib import Path

        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        root = Path(plan["storage"]["path"]) / plan["storage"]["name"]
        root.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
        study_name = plan["study"]["name"]
    num_samples = plan["trials"]["num_samples"]
    metric: Any = names if len(names) > 1 else names[0]
    mode: Any = modes if len(modes) > 1 else modes[0]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from hpoc.runtime import shards

    return shards.optuna_search(
        shard=shard, budget=num_samples if storage is not None else None,
        space=sp.optuna_space(plan["space"]), metric=metric, mode=mode,
        sampler=sampler, storage=storage, study_name=study_name, **searcher_args)


# ---------------------------------------------------------------- schedulers


def _pbt_mutation(param: dict[str, Any]) -> Any:
    """What PBT mutates a parameter with. A categorical one (`choice`, `grid`) is its list of
    values: PBT resamples from it or moves to a neighbouring value. As a Ray domain, PBT would
    multiply the value by its perturbation factors (batch_size 64 became 77, a string
    category raised TypeError in the scheduler)."""
    if param["domain"] == "choice":
        return list(param["args"]["categories"])
    if param["domain"] == "grid":
        return list(param["args"]["values"])
    return sp.ray_domain(param)


def make_scheduler(plan: dict[str, Any]) -> Any:
    from ray.tune import schedulers as s

    sched = plan["scheduler"]
    name = sched["name"]
    options = {k: v for k, v in (sched["options"] or {}).items() if v is not None}
    names, modes = _objective(plan)
    common = {"time_attr": sched.get("time_attr") or "training_iteration",
              "metric": names[0], "mode": modes[0]}
    what = f"scheduler `{name}`"
    if name == "fifo":
        if options:
            raise SearchError(f"{what} takes no options")
        return s.FIFOScheduler()
    if name == "asha":
        return _call(what, s.ASHAScheduler, {**common, **options})
    if name == "hyperband":
        return _call(what, s.HyperBandScheduler, {**common, **options})
    if name == "median":
        return _call(what, s.MedianStoppingRule, {**common, **options})
    if name == "bohb":
        return _call(what, s.HyperBandForBOHB, {**common, **options})
    if name in ("pbt", "pb2"):
        from hpoc.runtime.population import PB2, PBT, final_epochs

        params = {p["name"]: p for p in plan["space"]["params"]}
        if name == "pb2":
            options.setdefault("hyperparam_bounds", sp.numeric_bounds(plan["space"]))
            if not options["hyperparam_bounds"]:
                raise SearchError(f"{what} needs numeric parameters with lower/upper bounds")
            # Ray's PB2 models with its GP
            if missing := packages.missing({"pb2": (("sklearn",), "scikit-learn")}):
                raise SearchError(packages.install_hint(what, missing.values()))
            # PB2 picks within its bounds (the space's, or those given): on the space's grid
            domains = {k: {**params[k], "args": {**params[k]["args"], "lower": lo, "upper": hi}}
                       for k, (lo, hi) in options["hyperparam_bounds"].items() if k in params}
        else:
            # The plan writes a domain as {domain, args}; a list of values stays a list.
            mutations = {k: {"name": k, **v} if isinstance(v, dict) and "domain" in v else v
                         for k, v in options.get("hyperparam_mutations", {}).items()} or params
            options["hyperparam_mutations"] = {
                k: _pbt_mutation(v) if isinstance(v, dict) else v for k, v in mutations.items()}
            domains = {k: v for k, v in mutations.items() if isinstance(v, dict)}
        population = _call(what, PBT if name == "pbt" else PB2, {**common, **options})
        population.hpoc_epochs = final_epochs(plan)
        population.hpoc_domains = domains  # a new value lies on its domain (space.snap)
        return population
    raise SearchError(f"unknown scheduler `{name}` (one of {', '.join(SCHEDULERS)})")
