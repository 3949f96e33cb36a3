"""The search space of a plan, in the shapes the searchers need.

A plan lists parameters with dotted names (`optimizer.lr`), Ray Tune's domain names and
arguments, and optional conditions. Searchers see a *flat* space keyed by those dotted names;
a trial's config is rebuilt from whatever a searcher suggested by `trial_config`, which keeps
only active parameters, adds the constants and nests dotted names into dicts. So every
searcher, including ones that cannot express conditions, yields configs with the documented
shape: a conditional parameter exists only when its condition holds.

Three renderings:
- `ray_domains(space)`: `{name: ray.tune Domain}` for Ray's own searchers and schedulers;
- `optuna_space(space)`: a define-by-run function for `OptunaSearch(space=...)` that suggests a
  conditional parameter only under its condition;
- `SpaceSampler`: our random/grid searcher that does the same (Ray's BasicVariantGenerator
  cannot leave a key out of a config).
"""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any, Sequence

from hpoc.plan.space import (INT_DOMAINS, SpaceError, count_grid, flatten, grid_points, is_active, multiples,
                              nest, on_grid, same_category)

DOMAINS = (
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn",
    "randint", "qrandint", "lograndint", "qlograndint", "choice", "grid",
)
DISCRETE = ("choice", "grid")
# Optuna's CategoricalDistribution only holds these; other categories go by index.
_OPTUNA_PRIMITIVES = (type(None), bool, int, float, str)


# ---------------------------------------------------------------- configs


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def active_values(suggested: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The flat `{name: value}` of the parameters active under `suggested` (source order).

    Searchers suggest flat configs keyed by dotted names (the space we give them is flat);
    keys that are not parameters (Optuna's helper variables) are ignored."""
    flat = suggested
    values: dict[str, Any] = {}
    for param in space["params"]:
        name = param["name"]
        if name in flat and is_active(param, values):
            values[name] = _plain(flat[name])
            if grid_step(param) is not None:  # Ray's HEBO, Nevergrad, Ax, BOHB drop `q`
                values[name] = snap(param, values[name])
    return values


def trial_config(suggested: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The nested config a trainer sees: active parameters plus constants."""
    values = dict(space.get("constants") or {})
    values.update(active_values(suggested, space))
    return nest(values)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so configs are JSON and compare equal to plan values."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return item()
    return value


# ---------------------------------------------------------------- Ray domains


def ray_domain(param: dict[str, Any]):
    """The ray.tune domain of one plan parameter (a grid becomes `tune.grid_search`)."""
    from ray import tune

    d, a = param["domain"], param["args"]
    try:
        if d == "uniform":
            return tune.uniform(a["lower"], a["upper"])
        if d == "quniform":
            return tune.quniform(a["lower"], a["upper"], a["q"])
        # `base` does not change a log-uniform distribution (log_b x is uniform iff ln x is);
        # Ray 2.60 deprecates the argument, so it is accepted in plans and not passed on.
        if d == "loguniform":
            return tune.loguniform(a["lower"], a["upper"])
        if d == "qloguniform":
            return tune.qloguniform(a["lower"], a["upper"], a["q"])
        if d == "randn":
            return tune.randn(a.get("mean", 0.0), a.get("sd", 1.0))
        if d == "qrandn":
            return tune.qrandn(a.get("mean", 0.0), a.get("sd", 1.0), a["q"])
        if d == "randint":
            return tune.randint(a["lower"], a["upper"])
        # Quantised integer domains include `upper` (docs/language.md); Ray 2.60 leaves it
        # out when q == 1, so that case is asked for with `upper + 1`.
        if d == "qrandint":
            q = a.get("q", 1)
            return tune.qrandint(a["lower"], a["upper"] + (q == 1), q)
        if d == "lograndint":
            return tune.lograndint(a["lower"], a["upper"])
        if d == "qlograndint":
            return tune.qlograndint(a["lower"], a["upper"] + (a["q"] == 1), a["q"])
        if d == "choice":
            return tune.choice(list(a["categories"]))
        if d == "grid":
            return tune.grid_search(list(a["values"]))
    except KeyError as exc:
        raise SpaceError(f"parameter `{param['name']}`: domain `{d}` needs argument {exc}") from None
    raise SpaceError(f"parameter `{param['name']}`: unknown domain `{d}` (one of {', '.join(DOMAINS)})")


def ray_domains(space: dict[str, Any], *, grid_as_choice: bool = False) -> dict[str, Any]:
    """Flat `{name: domain}` for every parameter, conditional ones included (searchers that
    cannot express conditions sample them always; `trial_config` drops inactive ones)."""
    from ray import tune

    out = {}
    for p in space["params"]:
        if grid_as_choice and p["domain"] == "grid":
            out[p["name"]] = tune.choice(list(p["args"]["values"]))
        else:
            out[p["name"]] = ray_domain(p)
    return out


def numeric_bounds(space: dict[str, Any]) -> dict[str, list[float]]:
    """`{name: [lower, upper]}` of the bounded numeric parameters (PB2 wants these)."""
    return {p["name"]: [p["args"]["lower"], p["args"]["upper"]]
            for p in space["params"] if "lower" in p["args"] and "upper" in p["args"]}


# ---------------------------------------------------------------- Optuna


def optuna_space(space: dict[str, Any]) -> "OptunaSpace":
    """A define-by-run function for `OptunaSearch(space=...)` (see `OptunaSpace`)."""
    return OptunaSpace(space["params"])


class OptunaSpace:
    """Define-by-run space: suggests parameters in source order and skips a conditional one
    unless its condition holds, so Optuna never samples (nor models) an inactive parameter.

    Values Optuna cannot represent directly (normal distributions, non-primitive categories,
    quantised log scales) are suggested through a helper variable `<name>~...` and returned
    by name. A class, not a closure: Tune pickles the searcher into the experiment state."""

    def __init__(self, params: list[dict[str, Any]]) -> None:
        self.params = copy.deepcopy(list(params))

    def __call__(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        derived: dict[str, Any] = {}
        for p in self.params:
            if not is_active(p, values):
                continue
            value, is_derived = _suggest(trial, p)
            values[p["name"]] = value
            if is_derived:
                derived[p["name"]] = value
        return derived


def _suggest(trial: Any, p: dict[str, Any]) -> tuple[Any, bool]:
    """(value, whether it was derived from a helper variable)."""
    name, d, a = p["name"], p["domain"], p["args"]
    if d in ("uniform", "quniform"):
        q = a.get("q")
        if q and on_grid(a["upper"] - a["lower"], q):
            value = trial.suggest_float(name, a["lower"], a["upper"], step=q)
            return _quantize(value, q), _quantize(value, q) != value
        if q:  # Optuna refuses a step that does not divide the range: quantise like Ray
            u = trial.suggest_float(name + "~u", a["lower"], a["upper"])
            return _quantize(u, q), True
        return trial.suggest_float(name, a["lower"], a["upper"]), False
    if d in ("loguniform", "qloguniform"):
        if a.get("q"):
            u = trial.suggest_float(name + "~log", a["lower"], a["upper"], log=True)
            return _quantize(u, a["q"]), True
        return trial.suggest_float(name, a["lower"], a["upper"], log=True), False
    if d in ("randn", "qrandn"):
        # Optuna has no normal prior: search the normal's quantile instead.
        from statistics import NormalDist

        u = trial.suggest_float(name + "~cdf", 1e-6, 1 - 1e-6)
        value = NormalDist(a.get("mean", 0.0), a.get("sd", 1.0)).inv_cdf(u)
        return (_quantize(value, a["q"]) if a.get("q") else value), True
    if d in ("randint", "qrandint", "lograndint", "qlograndint"):
        # The multiples of q within the bounds, as Ray samples them (Optuna would step from
        # `lower`: qrandint(1, 10, 4) gave 1, 5, 9 instead of 4, 8).
        lower, upper, q = multiples(d, a)
        log = "log" in d
        if log and q != 1:
            v = trial.suggest_int(name + "~log", a["lower"], a["upper"], log=True)
            return snap(p, v), True
        return trial.suggest_int(name, lower, upper, step=q, log=log), False
    if d in DISCRETE:
        options = list(a["categories"] if d == "choice" else a["values"])
        if all(isinstance(o, _OPTUNA_PRIMITIVES) for o in options) and _distinct_types_ok(options):
            return trial.suggest_categorical(name, options), False
        index = trial.suggest_categorical(name + "~index", list(range(len(options))))
        return copy.deepcopy(options[index]), True
    raise SpaceError(f"parameter `{name}`: unknown domain `{d}`")


def optuna_point(point: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """A nested `points_to_evaluate` config as the Optuna parameters `OptunaSpace` suggests
    (dotted names, helper variables): `enqueue_trial` fixes parameters by those names, so a
    point given as the trainer sees it left `optimizer.lr`, a map choice's `~index` and the
    like to be sampled."""
    given, values, out = _given(point, space), {}, {}
    for p in space["params"]:
        if p["name"] in given and is_active(p, values):
            values[p["name"]] = given[p["name"]]
            out.update(_optuna_fixed(p, given[p["name"]]))
    return out


def _optuna_fixed(p: dict[str, Any], value: Any) -> dict[str, Any]:
    """{optuna name: value} that makes `_suggest(trial, p)` return `value` (mirrors it)."""
    name, d, a = p["name"], p["domain"], p["args"]
    if d in ("uniform", "quniform") and a.get("q") and not on_grid(a["upper"] - a["lower"], a["q"]):
        return {name + "~u": value}
    if d == "qloguniform" or (d == "qlograndint" and a["q"] != 1):
        return {name + "~log": value}
    if d in ("randn", "qrandn"):
        from statistics import NormalDist

        u = NormalDist(a.get("mean", 0.0), a.get("sd", 1.0)).cdf(value)
        return {name + "~cdf": min(max(u, 1e-6), 1 - 1e-6)}
    if d in DISCRETE:
        options = list(a["categories"] if d == "choice" else a["values"])
        if not (all(isinstance(o, _OPTUNA_PRIMITIVES) for o in options) and _distinct_types_ok(options)):
            index = next(i for i, o in enumerate(options) if same_category(o, value))
            return {name + "~index": index}
    return {name: value}


def _distinct_types_ok(options: list[Any]) -> bool:
    # [1, True] would collapse in Optuna's storage (1 == True); go by index then.
    return not (any(isinstance(o, bool) for o in options) and any(_number(o) for o in options))


def snap(param: dict[str, Any], value: Any) -> Any:
    """`value` made one of `param`'s values: inside its bounds, on its `q` grid with `q`'s
    decimals, an int for an integer domain. PBT's explore step multiplies values by its
    perturbation factors and PB2 picks any point within bounds; neither knows the grid."""
    d, a = param["domain"], param["args"]
    if d in DISCRETE or not _number(value):
        return value
    if d in INT_DOMAINS:
        lower, upper, q = multiples(d, a)
        return int(min(max(round(value / q) * q, lower), upper))
    q = a.get("q")
    if "lower" in a:
        lower, upper = multiples(d, a)[:2] if q else (a["lower"], a["upper"])
        value = min(max(value, lower), upper)
    return _quantize(value, q) if q else float(value)


def grid_step(param: dict[str, Any]) -> Any:
    """The distance between neighbouring values of a quantised or integer domain; None for
    a continuous or categorical one."""
    return (param["args"].get("q") or 1) if param["domain"] in INT_DOMAINS else param["args"].get("q")


def _quantize(value: float, q: float) -> float:
    """The multiple of `q` nearest `value`, with `q`'s decimals: 0.3, not Ray's and Optuna's
    0.30000000000000004 (a float domain's value stays a float, as Ray casts it)."""
    return float(round(round(value / q) * q, _decimals(q))) + 0.0  # + 0.0: no -0.0


def _decimals(q: float) -> int:
    from decimal import Decimal

    exponent = Decimal(repr(float(q))).as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


# ---------------------------------------------------------------- our random/grid searcher


def sample_config(space: dict[str, Any], fixed: dict[str, Any], rng: Any) -> dict[str, Any]:
    """Sample the active parameters in source order; `fixed` holds enumerated values.

    Conditional parameters are sampled only when their condition holds."""
    values: dict[str, Any] = {}
    for p in space["params"]:
        if not is_active(p, values):
            continue
        values[p["name"]] = fixed[p["name"]] if p["name"] in fixed else _draw(p, rng)
    return values


def _draw(param: dict[str, Any], rng: Any) -> Any:
    """One random value of `param` (a grid not enumerated, e.g. under a condition: one of
    its values)."""
    if param["domain"] == "grid":
        options = param["args"]["values"]
        return copy.deepcopy(options[int(rng.integers(len(options)))])
    value = _plain(ray_domain(param).sample(random_state=rng))
    if param["domain"] in ("quniform", "qloguniform", "qrandn"):
        return _quantize(value, param["args"]["q"])
    return value


def _given(point: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The values a nested `point` gives the space's (dotted) parameters; a value may be a
    dict itself (a choice of dicts), so the names lead, not the point's shape."""
    out = {}
    for p in space["params"]:
        node: Any = point
        for part in p["name"].split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            out[p["name"]] = copy.deepcopy(node)
    return out


class SpaceSamplerCore:
    """Deterministic trial -> config for random and grid search (no Ray needed).

    Trial `i` of the whole study (all shards) gets grid point `i % len(points)` and random
    values from a generator seeded by `(seed, i)`, so a config depends neither on the order
    trials are asked for nor on how the study is sharded. Shard `k` of `n` runs the trials
    with `i % n == k`. `points_to_evaluate` (nested configs) are the first trials, within
    the budget; a parameter one leaves out is sampled."""

    def __init__(self, space: dict[str, Any], *, num_samples: int, enumerate_choices: bool = False,
                 seed: int | None = None, shard: int = 0, shards: int = 1,
                 points_to_evaluate: Sequence[dict[str, Any]] = ()) -> None:
        import numpy as np

        self.space = space
        self.first = [_given(point, space) for point in points_to_evaluate]
        self.points = grid_points(space, enumerate_choices=enumerate_choices)
        self.total = num_samples * len(self.points)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.indices = range(shard, self.total, shards)  # lazy: a time-budgeted study may ask for 10**12
        self.next = 0

    def __len__(self) -> int:
        return len(self.indices)

    def config(self, i: int) -> dict[str, Any]:
        import numpy as np

        rng = np.random.default_rng([self.seed, i])
        fixed = self.first[i] if i < len(self.first) else self.points[i % len(self.points)]
        return sample_config(self.space, fixed, rng)

    def full_config(self, i: int) -> dict[str, Any]:
        """`config(i)` plus a value for every inactive parameter (its own generator, so the
        active values stay those of `config(i)`). PBT mutates every parameter of a config and
        may switch a condition on: each needs a value (trial_config drops inactive ones)."""
        import numpy as np

        values = self.config(i)
        rng = np.random.default_rng([self.seed, i, 1])
        for p in self.space["params"]:
            if p["name"] not in values:
                values[p["name"]] = _draw(p, rng)
        return values

    def take(self) -> tuple[int, dict[str, Any]] | None:
        if self.next >= len(self.indices):
            return None
        i = self.indices[self.next]
        self.next += 1
        return i, self.config(i)


def make_space_sampler(space: dict[str, Any], **kwargs: Any):
    """A ray.tune Searcher around `SpaceSamplerCore` (imports Ray only here)."""
    from ray.tune.search import Searcher

    class SpaceSampler(Searcher):
        """Random/grid search that leaves inactive conditional parameters out."""

        def __init__(self) -> None:
            super().__init__(metric=kwargs.pop("metric", None), mode=kwargs.pop("mode", None))
            self.core = SpaceSamplerCore(space, **kwargs)

        @property
        def total_samples(self) -> int:
            return len(self.core)

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            if metric and not self._metric:
                self._metric = metric
            if mode and not self._mode:
                self._mode = mode
            return True

        def suggest(self, trial_id: str):
            taken = self.core.take()
            return Searcher.FINISHED if taken is None else taken[1]

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass

        def save(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "wb") as fh:
                pickle.dump({"seed": self.core.seed, "next": self.core.next}, fh)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "rb") as fh:
                state = pickle.load(fh)
            self.core.seed, self.core.next = state["seed"], state["next"]

    return SpaceSampler()


# The config key that numbers a trial in `fixed_trials` (not a parameter: trial_config drops it).
TRIAL_KEY = "__hpoc_trial"


class _Pick:
    """`tune.sample_from` for one parameter: its value in the trial's precomputed config
    (inactive ones too: trial_config leaves them out)."""

    def __init__(self, configs: list[dict[str, Any]], name: str) -> None:
        self.configs, self.name = configs, name

    def __call__(self, config: Any) -> Any:
        # Ray 2.60 calls it with the trial's config; only when that raises does it retry with
        # a spec (`spec.config`), logging a deprecation warning per parameter and trial.
        config = getattr(config, "config", config)
        return copy.deepcopy(self.configs[config[TRIAL_KEY]].get(self.name))


def fixed_trials(core: SpaceSamplerCore, max_concurrent: int | None = None) -> tuple[Any, dict[str, Any], int]:
    """(search_alg, param_space, num_samples) that run `core`'s configs through Tune's
    BasicVariantGenerator, the only search algorithm PBT and PB2 accept. Each trial gets an
    index (one of `points_to_evaluate`) and every parameter is a top-level key, so PBT can
    mutate it; the configs stay exactly those of our random/grid sampler (plus values for
    inactive parameters, which trial_config drops)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    configs = [core.full_config(i) for i in core.indices]
    names = [p["name"] for p in core.space["params"]]
    param_space: dict[str, Any] = {TRIAL_KEY: tune.randint(0, max(1, len(configs)))}
    param_space.update({name: tune.sample_from(_Pick(configs, name)) for name in names})
    points = [{TRIAL_KEY: i} for i in range(len(configs))]
    # Tune applies `max_concurrent_trials` to a Searcher only (it ignores it for this
    # generator, with a warning): the generator caps the trials itself.
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent or 0)
    return generator, param_space, len(configs)


__all__ = [
    "TRIAL_KEY", "fixed_trials",
    "DOMAINS", "SpaceError", "is_active", "nest", "flatten", "trial_config", "active_values",
    "ray_domain", "ray_domains", "numeric_bounds", "snap", "grid_step", "optuna_space", "grid_points",
    "sample_config", "SpaceSamplerCore", "make_space_sampler", "count_grid",
]

