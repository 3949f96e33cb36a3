"""Search space translation: plan params -> Ray domains, Optuna define-by-run, our sampler."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from ray.tune.search import sample as rs

from hpoc.runtime import space as sp
from runtime_plans import make_plan, param, write_toy

SGD = {"param": "optimizer.name", "values": ["sgd"]}
DIGITS_SPACE = {
    "params": [
        param("lr", "loguniform", lower=1e-4, upper=1e-1, base=10),
        param("batch_size", "choice", categories=[16, 32, 64]),
        param("optimizer.name", "choice", categories=["adam", "sgd"]),
        param("optimizer.momentum", "uniform", condition=SGD, lower=0.5, upper=0.99),
        param("optimizer.nesterov", "choice", condition={"param": "optimizer.momentum", "values": []},
              categories=[True, False]),
    ],
    "constants": {"epochs": 5, "model.depth": 3},
}


def _samples(domain, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return [domain.sample(random_state=rng) for _ in range(n)]


@pytest.mark.parametrize("p, sampler, check", [
    (param("a", "uniform", lower=-2.0, upper=3.0), rs.Float,
     lambda v: -2.0 <= v <= 3.0),
    (param("a", "quniform", lower=0.0, upper=1.0, q=0.25), rs.Float,
     lambda v: 0 <= v <= 1 and abs(v / 0.25 - round(v / 0.25)) < 1e-9),
    (param("a", "loguniform", lower=1e-5, upper=1e-1, base=10), rs.Float,
     lambda v: 1e-5 <= v <= 1e-1),
    (param("a", "qloguniform", lower=1e-3, upper=1.0, q=1e-3, base=2), rs.Float,
     lambda v: 1e-3 - 1e-12 <= v <= 1.0 + 1e-12 and abs(v / 1e-3 - round(v / 1e-3)) < 1e-6),
    (param("a", "randn", mean=3.0, sd=0.5), rs.Float, lambda v: math.isfinite(v)),
    (param("a", "qrandn", mean=0.0, sd=4.0, q=2.0), rs.Float, lambda v: v % 2 == 0),
    (param("a", "randint", lower=2, upper=5), rs.Integer, lambda v: 2 <= v < 5),
    (param("a", "qrandint", lower=0, upper=20, q=5), rs.Integer, lambda v: v in (0, 5, 10, 15, 20)),
    (param("a", "lograndint", lower=1, upper=100, base=10), rs.Integer, lambda v: 1 <= v < 100),
    (param("a", "qlograndint", lower=2, upper=64, q=2, base=2), rs.Integer,
     lambda v: 2 <= v <= 64 and v % 2 == 0),
    (param("a", "choice", categories=["x", 2, [1, 2]]), rs.Categorical,
     lambda v: v in ("x", 2, [1, 2])),
])
def test_every_sampled_domain_translates_with_rays_semantics(p, sampler, check):
    domain = sp.ray_domain(p)
    assert isinstance(domain, sampler)
    values = _samples(domain)
    assert all(check(v) for v in values), [v for v in values if not check(v)][:5]
    if p["domain"] in ("randint", "qrandint"):  # the bounds Ray promises are all reached
        expected = {"randint": {2, 3, 4}, "qrandint": {0, 5, 10, 15, 20}}[p["domain"]]
        assert set(values) == expected


def test_randn_has_the_requested_mean_and_sd():
    values = np.array(_samples(sp.ray_domain(param("a", "randn", mean=3.0, sd=0.5)), n=4000))
    assert abs(values.mean() - 3.0) < 0.05 and abs(values.std() - 0.5) < 0.05


def test_grid_becomes_grid_search_and_unknown_domains_are_refused():
    assert sp.ray_domain(param("g", "grid", values=[1, 2, 3])) == {"grid_search": [1, 2, 3]}
    with pytest.raises(sp.SpaceError, match="unknown domain `beta`"):
        sp.ray_domain(param("b", "beta", lower=0, upper=1))
    with pytest.raises(sp.SpaceError, match="needs argument 'upper'"):
        sp.ray_domain(param("u", "uniform", lower=0))


def test_log_base_does_not_change_the_distribution():
    # log-uniform in base 2 and base 10 are the same distribution on [lower, upper]
    a = _samples(sp.ray_domain(param("a", "loguniform", lower=1e-4, upper=1.0, base=2)), seed=3)
    b = _samples(sp.ray_domain(param("a", "loguniform", lower=1e-4, upper=1.0, base=10)), seed=3)
    assert a == b


def test_trial_config_nests_dotted_names_adds_constants_and_drops_inactive():
    suggested = {"lr": 0.01, "batch_size": 32, "optimizer.name": "adam",
                 "optimizer.momentum": 0.9, "optimizer.momentum~u": 0.3}
    config = sp.trial_config(suggested, DIGITS_SPACE)
    assert config == {"lr": 0.01, "batch_size": 32, "optimizer": {"name": "adam"},
                      "epochs": 5, "model": {"depth": 3}}
    config = sp.trial_config(dict(suggested, **{"optimizer.name": "sgd"}), DIGITS_SPACE)
    assert config["optimizer"] == {"name": "sgd", "momentum": 0.9}


def test_conditions_compare_bools_and_numbers_strictly():
    cond = {"param": "flag", "values": [True]}
    assert sp.is_active({"condition": cond}, {"flag": True})
    assert not sp.is_active({"condition": cond}, {"flag": 1})
    assert sp.is_active({"condition": {"param": "n", "values": [2]}}, {"n": 2.0})


def test_conditions_take_a_searchers_numpy_scalars():
    cond = {"param": "flag", "values": [True]}
    assert sp.is_active({"condition": cond}, {"flag": np.bool_(True)})
    assert not sp.is_active({"condition": {"param": "flag", "values": [1]}}, {"flag": np.bool_(True)})
    assert sp.is_active({"condition": {"param": "n", "values": [2]}}, {"n": np.int64(2)})


def test_random_sampler_samples_conditional_params_only_under_their_condition():
    core = sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=300, seed=1)
    configs = [core.take()[1] for _ in range(300)]
    assert core.take() is None
    sgd = [c for c in configs if c["optimizer.name"] == "sgd"]
    adam = [c for c in configs if c["optimizer.name"] == "adam"]
    assert sgd and adam
    assert all(0.5 <= c["optimizer.momentum"] <= 0.99 for c in sgd)
    assert all("optimizer.momentum" not in c for c in adam)
    # a condition no value satisfies: never sampled
    assert all("optimizer.nesterov" not in c for c in configs)


def test_a_study_of_a_huge_number_of_trials_gets_its_sampler_at_once():
    """`num_samples = 1000000000000` with a `time_budget` (run until the time is up) listed
    every trial index up front: a MemoryError before the first trial."""
    core = sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=10**12, seed=1, shard=1, shards=4)
    assert len(core) == 25 * 10**10
    assert core.take()[0] == 1 and core.take()[0] == 5


def test_a_searcher_that_drops_quantisation_still_gives_the_trainer_multiples_of_q():
    """Ray's HEBO, Nevergrad, Ax and BOHB searchers drop `q` (a warning): `qrandint(32, 256,
    32)` trained with 77 channels, and the results showed 77."""
    space = {"params": [param("width", "qrandint", lower=32, upper=256, q=32),
                        param("ratio", "quniform", lower=0.0, upper=1.0, q=0.1),
                        param("lr", "loguniform", lower=1e-4, upper=1e-1)]}
    assert sp.trial_config({"width": 77.4, "ratio": 0.37, "lr": 0.0123}, space) == \
        {"width": 64, "ratio": 0.4, "lr": 0.0123}
    assert sp.trial_config({"width": 96, "ratio": 0.3, "lr": 1e-4}, space) == {"width": 96, "ratio": 0.3, "lr": 1e-4}


def test_sampler_is_deterministic_and_independent_of_sharding():
    whole = sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=10, seed=7)
    every = [whole.take() for _ in range(10)]
    shards = [sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=10, seed=7, shard=k, shards=3)
              for k in range(3)]
    pieces = [x for s in shards for x in iter(s.take, None)]
    assert sorted(i for i, _ in pieces) == list(range(10))
    assert dict(pieces) == dict(every)
    assert [len(s) for s in shards] == [4, 3, 3]


def test_points_to_evaluate_are_the_first_trials_of_random_search(tmp_path):
    """Within the budget, whichever shard runs them; a parameter a point leaves out is sampled."""
    from hpoc.runtime import search

    points = [{"lr": 0.05, "batch_size": 64, "optimizer": {"name": "sgd", "momentum": 0.6}},
              {"lr": 0.002, "batch_size": 16}]
    whole = sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=5, seed=3, points_to_evaluate=points)
    configs = [whole.config(i) for i in range(5)]
    assert len(whole) == 5
    assert configs[0] == {"lr": 0.05, "batch_size": 64, "optimizer.name": "sgd", "optimizer.momentum": 0.6}
    assert configs[1]["lr"] == 0.002 and configs[1]["batch_size"] == 16 and "optimizer.name" in configs[1]
    shard1 = sp.SpaceSamplerCore(DIGITS_SPACE, num_samples=5, seed=3, shard=1, shards=2, points_to_evaluate=points)
    assert shard1.take() == (1, configs[1])
    plan = make_plan(write_toy(tmp_path / "s"), tmp_path / "r")
    plan["search"] = {"algorithm": "random", "options": {"seed": 1, "points_to_evaluate": [{"lr": 0.01}]}}
    searcher, _, total = search.make_searcher(plan)  # was refused: unknown option
    assert searcher.core.config(0)["lr"] == 0.01


def test_grid_search_enumerates_choices_and_honours_conditions():
    space = {"params": [
        param("opt", "choice", categories=["adam", "sgd"]),
        param("momentum", "grid", condition={"param": "opt", "values": ["sgd"]}, values=[0.5, 0.9]),
        param("lr", "uniform", lower=0.1, upper=0.2),
    ], "constants": {}}
    points = sp.grid_points(space, enumerate_choices=True)
    assert points == [{"opt": "adam"}, {"opt": "sgd", "momentum": 0.5}, {"opt": "sgd", "momentum": 0.9}]
    core = sp.SpaceSamplerCore(space, num_samples=2, enumerate_choices=True, seed=0)
    configs = [c for _, c in iter(core.take, None)]
    assert len(configs) == 6
    assert [(c["opt"], c.get("momentum")) for c in configs] == [
        ("adam", None), ("sgd", 0.5), ("sgd", 0.9)] * 2
    assert all(0.1 <= c["lr"] <= 0.2 for c in configs)


def _optuna_trials(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    define = sp.optuna_space(space)
    out = []
    for _ in range(n):
        trial = study.ask()
        derived = define(trial)
        out.append((trial.params, {**trial.params, **derived}))
        study.tell(trial, 0.0)
    return out


def test_optuna_suggests_conditional_params_only_under_their_condition():
    runs = _optuna_trials(DIGITS_SPACE, 200)
    for suggested, values in runs:
        config = sp.trial_config(values, DIGITS_SPACE)
        if suggested["optimizer.name"] == "sgd":
            assert 0.5 <= suggested["optimizer.momentum"] <= 0.99
            assert config["optimizer"]["momentum"] == suggested["optimizer.momentum"]
        else:  # not merely dropped afterwards: Optuna never sampled it
            assert "optimizer.momentum" not in suggested
            assert "momentum" not in config["optimizer"]
        assert "optimizer.nesterov" not in suggested
    assert {s["optimizer.name"] for s, _ in runs} == {"adam", "sgd"}


def test_optuna_space_covers_every_domain_with_rays_bounds():
    space = {"params": [
        param("u", "uniform", lower=0, upper=1),
        param("qu", "quniform", lower=0, upper=1, q=0.3),   # step does not divide the range
        param("qu2", "quniform", lower=0, upper=1, q=0.25),
        param("lu", "loguniform", lower=1e-4, upper=1e-1),
        param("qlu", "qloguniform", lower=1e-3, upper=1, q=1e-3),
        param("n", "randn", mean=10, sd=2),
        param("qn", "qrandn", mean=0, sd=3, q=1),
        param("ri", "randint", lower=0, upper=3),
        param("qri", "qrandint", lower=0, upper=10, q=5),
        param("lri", "lograndint", lower=1, upper=4),
        param("qlri", "qlograndint", lower=2, upper=16, q=2),
        param("c", "choice", categories=[[1, 2], {"a": 1}, "x"]),
        param("mix", "choice", categories=[True, 1]),
        param("g", "grid", values=[4, 8]),
    ], "constants": {}}
    configs = [sp.trial_config(v, space) for _, v in _optuna_trials(space, 150, seed=3)]
    assert all(0 <= c["u"] <= 1 for c in configs)
    assert all(0 <= c["qu"] <= 1.2 and abs(c["qu"] / 0.3 - round(c["qu"] / 0.3)) < 1e-9 for c in configs)
    assert {c["qu2"] for c in configs} <= {0, 0.25, 0.5, 0.75, 1.0}
    assert all(1e-4 <= c["lu"] <= 1e-1 for c in configs)
    assert all(abs(c["qlu"] / 1e-3 - round(c["qlu"] / 1e-3)) < 1e-6 for c in configs)
    assert abs(np.mean([c["n"] for c in configs]) - 10) < 1.0
    assert all(float(c["qn"]).is_integer() for c in configs)
    assert {c["ri"] for c in configs} == {0, 1, 2}          # upper exclusive, as in Ray
    assert {c["qri"] for c in configs} == {0, 5, 10}        # quantised: upper inclusive
    assert {c["lri"] for c in configs} <= {1, 2, 3}
    assert all(c["qlri"] % 2 == 0 and 2 <= c["qlri"] <= 16 for c in configs)
    assert {str(c["c"]) for c in configs} == {"[1, 2]", "{'a': 1}", "x"}
    assert {repr(c["mix"]) for c in configs} == {"True", "1"}
    assert {c["g"] for c in configs} == {4, 8}


@pytest.mark.parametrize("p, values", [
    (param("a", "qrandint", lower=1, upper=10, q=4), {4, 8}),      # multiples of q, not 1, 5, 9
    (param("a", "qrandint", lower=-7, upper=10, q=5), {-5, 0, 5, 10}),
    (param("a", "qrandint", lower=1, upper=4, q=1), {1, 2, 3, 4}),  # upper inclusive with q = 1 too
    (param("a", "qlograndint", lower=1, upper=4, q=1), {1, 2, 3, 4}),
])
def test_random_and_optuna_sample_the_same_quantised_integers(p, values):
    space = {"params": [p], "constants": {}}
    drawn = {sp.sample_config(space, {}, np.random.default_rng([0, i]))["a"] for i in range(300)}
    suggested = {sp.trial_config(v, space)["a"] for _, v in _optuna_trials(space, 300)}
    assert drawn == suggested == values
    assert all(type(v) is int for v in drawn | suggested)


def test_quantised_floats_are_the_multiples_of_q_as_written():
    """0.3, not 0.30000000000000004 (what Ray and Optuna compute): the trainer, the results
    and the pasted best config see the value a person would write; floats stay floats."""
    space = {"params": [param("a", "quniform", lower=0, upper=1, q=0.1),
                        param("b", "qloguniform", lower=5e-5, upper=1e-2, q=5e-5),
                        param("c", "qrandn", mean=0, sd=2, q=1),
                        param("d", "quniform", lower=0, upper=10, q=2)], "constants": {}}
    drawn = [sp.sample_config(space, {}, np.random.default_rng([0, i])) for i in range(300)]
    suggested = [sp.trial_config(v, space) for _, v in _optuna_trials(space, 300)]
    for config in drawn + suggested:
        assert all(type(v) is float for v in config.values())
        assert len(repr(config["a"])) <= 3 and repr(config["c"]) != "-0.0"
        assert config["b"] == float(f"{config['b']:.6g}") and config["d"] in (0, 2, 4, 6, 8, 10)
    assert {c["a"] for c in drawn} == {c["a"] for c in suggested} == {round(0.1 * k, 1) for k in range(11)}


def test_optuna_space_survives_pickling():
    import pickle

    define = pickle.loads(pickle.dumps(sp.optuna_space(DIGITS_SPACE)))
    study = optuna.create_study()
    trial = study.ask()
    define(trial)
    assert "lr" in trial.params


def test_a_point_names_its_own_category_where_python_equality_would_merge_two():
    """The compiler keeps `[1]` and `[true]` apart (two categories); the point `c = [true]`
    was enqueued as the index of `[1]` (Python's `[True] == [1]`)."""
    space = {"params": [param("c", "choice", categories=[[1], [True]])], "constants": {}}
    assert sp.optuna_point({"c": [True]}, space) == {"c~index": 1}
    assert sp.optuna_point({"c": [1]}, space) == {"c~index": 0}
