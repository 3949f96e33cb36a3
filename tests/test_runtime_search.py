"""Searchers and schedulers by name, with their options, as Ray Tune objects."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from ray.tune import schedulers as S
from ray.tune.search.optuna import OptunaSearch

from hpoc.runtime import search
from hpoc.runtime import space as sp
from runtime_plans import make_plan, param

ROOT = Path("/nonexistent-study")


def plan(**sections):
    return make_plan(ROOT, ROOT / "results", **sections)


def test_random_and_grid_use_our_condition_aware_sampler():
    searcher, space, n = search.make_searcher(plan(trials={"num_samples": 3}))
    assert type(searcher).__name__ == "SpaceSampler" and space == {} and n == 3
    grid = plan(search={"algorithm": "grid", "options": {}, "_replace": True},
                trials={"num_samples": 2})
    searcher, space, n = search.make_searcher(grid)
    assert n == 4  # `hidden` has two choices, enumerated, times two samples
    configs = [searcher.suggest(str(i)) for i in range(5)]
    assert [c["hidden"] for c in configs[:4]] == [8, 16, 8, 16]
    assert configs[4] == "FINISHED"


def test_shards_split_the_studys_trials(tmp_path):
    sharded = plan(trials={"num_samples": 5}, shards={"count": 2, "parallel": 2})
    assert [search.make_searcher(sharded, k)[2] for k in (0, 1)] == [3, 2]
    optuna_plan = make_plan(ROOT, tmp_path, trials={"num_samples": 5},  # the journal goes here
                            shards={"count": 2, "parallel": 2},
                            search={"algorithm": "optuna", "options": {"sampler": "tpe"}, "_replace": True})
    # Optuna shards share one study and one global budget (hpoc.runtime.shards): each
    # shard may run up to all of it, the shared journal stops them at 5 in total.
    assert [search.make_searcher(optuna_plan, k)[2] for k in (0, 1)] == [5, 5]


@pytest.mark.parametrize("name, cls", [("tpe", optuna.samplers.TPESampler),
                                       ("random", optuna.samplers.RandomSampler),
                                       ("nsga2", optuna.samplers.NSGAIISampler),
                                       ("gp", optuna.samplers.GPSampler)])
def test_optuna_samplers_by_name_with_seed_and_options(name, cls):
    # the compiler writes unset options as null: they must not reach the sampler
    options = {"sampler": name, "seed": 3, "n_startup_trials": None, "population_size": None,
               "points_to_evaluate": None}
    if name == "tpe":
        options["n_startup_trials"] = 4
    searcher, space, n = search.make_searcher(
        plan(search={"algorithm": "optuna", "options": options, "_replace": True}))
    assert isinstance(searcher, OptunaSearch) and space == {}
    assert isinstance(searcher._sampler, cls)
    if name == "tpe":
        assert searcher._sampler._n_startup_trials == 4
    assert searcher.metric == "val_accuracy" and searcher.mode == "max"


def test_shard_seeds_stay_valid_32_bit_seeds(tmp_path):
    # The compiler allows seeds up to 2**32 - 1; a later shard's seed must not overflow.
    p = make_plan(ROOT, tmp_path, shards={"count": 2, "parallel": 2},
                  search={"algorithm": "optuna", "options": {"sampler": "tpe", "seed": 2**32 - 1},
                          "_replace": True})
    searcher, _, _ = search.make_searcher(p, 1)
    assert isinstance(searcher._sampler, optuna.samplers.TPESampler)
    assert search._shard_seed(2**32 - 1, 1) == 7918


def test_optuna_handles_several_objectives():
    p = plan(objective={"metrics": [{"name": "val_loss", "mode": "min"},
                                    {"name": "params_m", "mode": "min"}]},
             search={"algorithm": "optuna", "options": {}, "_replace": True})
    searcher, _, _ = search.make_searcher(p)
    assert searcher.metric == ["val_loss", "params_m"] and searcher.mode == ["min", "min"]
    assert isinstance(searcher._sampler, optuna.samplers.NSGAIISampler)
    with pytest.raises(search.SearchError, match="use `optuna` for several objectives"):
        search.make_searcher(dict(p, search={"algorithm": "hyperopt", "options": {}}))


def test_random_and_grid_run_with_several_objectives():
    # the compiler accepts them (they optimise nothing); the first metric ranks
    p = plan(objective={"metrics": [{"name": "val_loss", "mode": "min"},
                                    {"name": "val_accuracy", "mode": "max"}]},
             search={"algorithm": "random", "options": {"seed": 0}, "_replace": True})
    searcher, _, total = search.make_searcher(p)
    assert (searcher.metric, searcher.mode, total) == ("val_loss", "min", p["trials"]["num_samples"])


def test_unknown_option_lists_the_valid_ones():
    p = plan(search={"algorithm": "optuna", "options": {"sampler": "tpe", "n_startup": 3},
                     "_replace": True})
    with pytest.raises(search.SearchError, match=r"unknown option\(s\) `n_startup`.*`n_startup_trials`"):
        search.make_searcher(p)
    with pytest.raises(search.SearchError, match="valid options are `seed`"):
        search.make_searcher(plan(search={"algorithm": "random", "options": {"bogus": 1}, "_replace": True}))


@pytest.mark.parametrize("algorithm, package", [
    ("hyperopt", "hyperopt"), ("bayesopt", "bayesian-optimization"), ("hebo", "HEBO"),
    ("nevergrad", "nevergrad"), ("ax", "ax-platform"), ("bohb", "hpbandster"),
])
def test_searchers_without_their_library_name_the_pip_package(algorithm, package):
    module = search.SEARCH_LIBRARIES[algorithm][0][0]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    p = plan(search={"algorithm": algorithm, "options": {}, "_replace": True})
    with pytest.raises(search.SearchError) as err:
        search.make_searcher(p)
    assert f"pip install {package}" in str(err.value)
    assert f"`{algorithm}`" in str(err.value)


def test_one_library_check_serves_searchers_and_loggers(monkeypatch):
    """A searcher needs all its modules; a logger any one of its own (tensorboardX serves
    `logger tensorboard`). Both name the pip packages to install, once each."""
    from hpoc.runtime import tracking

    gone = {"hpbandster", "ConfigSpace", "tensorboard", "mlflow"}
    faked = gone | {"tensorboardX"}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        (None if name in gone else object()) if name in faked else real(name, *a)))
    with pytest.raises(search.SearchError) as err:
        search.require_libraries("bohb")
    assert str(err.value).startswith(
        "search algorithm `bohb` needs the Python packages hpbandster, ConfigSpace, not installed")
    assert "help: pip install hpbandster ConfigSpace (on the compute nodes' environment too)" in str(err.value)
    gone.discard("ConfigSpace")
    with pytest.raises(search.SearchError, match=r"(?s)the Python package hpbandster, .*pip install hpbandster \("):
        search.require_libraries("bohb")
    loggers = [{"kind": "tensorboard"}, {"kind": "mlflow"}, {"kind": "mlflow"}]
    assert tracking.missing_libraries({"loggers": loggers}) == (
        "`logger mlflow` needs the Python package mlflow-skinny, not installed in this environment\n"
        "  help: pip install mlflow-skinny (on the compute nodes' environment too), "
        "or remove the logger block")
    gone.discard("mlflow")
    assert tracking.missing_libraries({"loggers": loggers}) is None


def test_optuna_cmaes_without_cmaes_names_the_package():
    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("cmaes is installed here")
    p = plan(search={"algorithm": "optuna", "options": {"sampler": "cmaes"}, "_replace": True})
    with pytest.raises(search.SearchError, match="pip install cmaes"):
        search.make_searcher(p)


@pytest.mark.parametrize("cls", [S.HyperBandScheduler, S.HyperBandForBOHB])
def test_the_compiler_fills_hyperband_brackets_as_ray_does(cls, caplog):
    """HP805's count of the trials HyperBand can stop rests on Ray's bracket filling."""
    from hpoc.compiler.early_stop import brackets

    caplog.set_level("WARNING")  # Ray logs each bracket it skips as too small
    for max_t in (1, 2, 4, 6, 10, 27, 81):
        for eta in (2, 2.5, 3, 4):
            for n in (1, 3, 5, 8, 13, 40):
                hb = cls(metric="m", mode="max", max_t=max_t, reduction_factor=eta)
                for _ in range(n):
                    hb.on_trial_add(None, object())
                ray_brackets = [(b._halves, b._r0, b._n0, len(b._live_trials))
                                for band in hb._hyperbands for b in band if b is not None]
                assert brackets(max_t, eta, n, cls is S.HyperBandForBOHB) == ray_brackets, (max_t, eta, n)


def test_the_compiler_reads_asha_brackets_rungs_as_ray_builds_them():
    """HP805's share of the trials ASHA's brackets cannot stop rests on Ray's rungs."""
    from hpoc.compiler.early_stop import asha_rungs

    for grace in (1, 2, 3):
        for max_t in (3, 4, 8, 10, 16, 81, 100):
            for eta in (2, 2.5, 3, 4):
                for brackets in (1, 2, 3, 5):
                    opts = {"grace_period": grace, "max_t": max_t, "reduction_factor": eta, "brackets": brackets}
                    asha = S.AsyncHyperBandScheduler(**opts)
                    assert asha_rungs(opts) == [sorted(m for m, _ in b._rungs) for b in asha._brackets], opts


@pytest.mark.ray
def test_hyperband_under_a_max_concurrent_that_splits_its_halving_bracket_stops_no_trial(tmp_path):
    """What HP805 says of `max_concurrent = 3`: trial 3 reached the bracket's milestone alone,
    as trials 4 and 5 are made only once trial 1 or 2 ends, and was halved alone."""
    import time

    import ray
    from ray import tune

    from hpo_util import BASE, warnings

    def _epochs_by_kind(config):  # here, not at module level: Ray's workers cannot import tests
        # trials 1 and 2 (kinds 1, 2) land in the bracket that halves none, and train long
        for _ in range(3):
            time.sleep(3 if config["kind"] <= 2 else 0.1)
            tune.report({"score": float(config["kind"])})

    (w,) = warnings(BASE + "space { epochs = 3 }\nobjective maximize val_accuracy\n"
                    "trials { num_samples = 6, max_concurrent = 3 }\nscheduler hyperband { max_t = 3 }\n")
    assert w.message == "`scheduler hyperband` stops no trial early under `max_concurrent = 3`"
    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False)  # a slot for every trial
    try:
        tuner = tune.Tuner(_epochs_by_kind, param_space={"kind": tune.grid_search([1, 2, 3, 4, 5, 6])},
                           tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=3,
                                                       scheduler=S.HyperBandScheduler(max_t=3, reduction_factor=3)),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        epochs = sorted((r.config["kind"], r.metrics["training_iteration"]) for r in tuner.fit())
    finally:
        ray.shutdown()
    assert epochs == [(k, 3) for k in range(1, 7)]


def test_schedulers_by_name_get_their_options_metric_and_mode():
    asha = search.make_scheduler(plan(scheduler={
        "name": "asha", "time_attr": "training_iteration",
        "options": {"max_t": 9, "grace_period": 3, "reduction_factor": 3, "brackets": 1,
                    "stop_last_trials": None}}))
    assert isinstance(asha, S.AsyncHyperBandScheduler)
    assert asha._max_t == 9 and asha._reduction_factor == 3 and asha.metric == "val_accuracy"
    assert asha._brackets[0]._rungs[-1][0] == 3  # first rung at the grace period
    assert isinstance(search.make_scheduler(plan()), S.FIFOScheduler)
    hb = search.make_scheduler(plan(scheduler={"name": "hyperband", "options": {"max_t": 8}}))
    assert isinstance(hb, S.HyperBandScheduler) and hb._max_t_attr == 8
    median = search.make_scheduler(plan(scheduler={"name": "median", "options": {"grace_period": 2}}))
    assert isinstance(median, S.MedianStoppingRule) and median._grace_period == 2
    bohb = search.make_scheduler(plan(scheduler={"name": "bohb", "options": {"max_t": 8}}))
    assert isinstance(bohb, S.HyperBandForBOHB)


def test_pbt_mutates_the_space_by_default():
    pbt = search.make_scheduler(plan(scheduler={"name": "pbt",
                                                "options": {"perturbation_interval": 2}}))
    assert isinstance(pbt, S.PopulationBasedTraining)
    assert set(pbt._hyperparam_mutations) == {"lr", "hidden"}
    p = plan(scheduler={"name": "pb2", "options": {"perturbation_interval": 2}})
    pb2 = search.make_scheduler(p)
    assert set(pb2._hyperparam_bounds) == {"lr"}
    assert pbt.hpoc_epochs == pb2.hpoc_epochs == 3  # neither exploits at the last epoch


def test_pb2_without_scikit_learn_names_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    p = plan(scheduler={"name": "pb2", "options": {"perturbation_interval": 2}})
    with pytest.raises(search.SearchError, match="(?s)needs the Python package scikit-learn.*pip install scikit-learn"):
        search.make_scheduler(p)


def test_scheduler_with_a_wrong_option_says_which():
    with pytest.raises(search.SearchError, match="scheduler `asha`: unknown option"):
        search.make_scheduler(plan(scheduler={"name": "asha", "options": {"max_epochs": 3}}))
    bad = plan()
    bad["scheduler"]["name"] = "fancy"  # the schema refuses it; the runtime still says so
    with pytest.raises(search.SearchError, match="unknown scheduler `fancy`"):
        search.make_scheduler(bad)


def test_pbt_moves_categorical_parameters_between_their_values_and_keeps_conditions():
    """A choice is mutated within its categories (as a Ray domain, PBT multiplied it:
    batch_size 64 became 77, a string raised TypeError), and a conditional parameter that is
    inactive in a trial still has a value PBT can perturb (None * 1.2 raised TypeError)."""
    from ray.tune.schedulers.pbt import _explore

    space = {"params": [
        param("lr", "loguniform", lower=1e-3, upper=3e-2, base=10),
        param("batch_size", "choice", categories=[32, 64]),
        param("optimizer", "choice", categories=["adam", "sgd"]),
        param("momentum", "uniform", {"param": "optimizer", "values": ["sgd"]},
              lower=0.5, upper=0.95),
        param("width", "grid", values=[8, 16]),
    ], "constants": {"epochs": 4}}
    p = plan(space=space, scheduler={"name": "pbt", "options": {"perturbation_interval": 2}},
             trials={"num_samples": 8})
    pbt = search.make_scheduler(p)
    assert pbt._hyperparam_mutations["batch_size"] == [32, 64]
    assert pbt._hyperparam_mutations["optimizer"] == ["adam", "sgd"]
    _, param_space, n = search.make_searcher(p)
    configs = [{k: v.func(SimpleNamespace(config={sp.TRIAL_KEY: i}))
                for k, v in param_space.items() if k != sp.TRIAL_KEY} for i in range(n)]
    assert {c["optimizer"] for c in configs} == {"adam", "sgd"}
    assert all(isinstance(c["momentum"], float) for c in configs)
    for config in configs * 10:
        new, _ = _explore(config, pbt._hyperparam_mutations, 0.25, (1.2, 0.8), None)
        assert new["batch_size"] in (32, 64) and new["optimizer"] in ("adam", "sgd")
        assert new["width"] in (8, 16) and isinstance(new["momentum"], float)
        trainer_sees = sp.trial_config(new, space)
        assert ("momentum" in trainer_sees) == (new["optimizer"] == "sgd")


def test_pbt_trials_keep_max_concurrent():
    """Tune ignores `max_concurrent_trials` for PBT's BasicVariantGenerator (it caps Searchers
    only): multi-worker trials all started at once and waited for their workers' resources."""
    p = plan(scheduler={"name": "pbt", "options": {"perturbation_interval": 2}},
             trials={"num_samples": 6, "max_concurrent": 2})
    generator, _, n = search.make_searcher(p)
    assert n == 6 and generator.max_concurrent == 2


def test_a_missing_optuna_sampler_package_is_found_before_ray(monkeypatch):
    """`hpoc check --preflight` said `optuna` is installed and the run failed only once Ray
    was up (after `--fresh` had moved the old run aside) when the sampler's package was
    missing."""
    from hpoc.runtime.login_preflight import check_search

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cmaes" else real(name, *a))
    p = plan(search={"algorithm": "optuna", "options": {"sampler": "cmaes"}, "_replace": True})
    with pytest.raises(search.SearchError, match="pip install cmaes"):
        search.require_search(p)
    [finding] = check_search(p)
    assert not finding.ok and "pip install cmaes" in finding.message
    tpe = plan(search={"algorithm": "optuna", "options": {"sampler": "tpe"}, "_replace": True})
    assert check_search(tpe)[0].ok and search.require_search(tpe) == "optuna (tpe)"


def test_pbt_configs_resolve_without_ray_s_deprecated_spec_fallback(caplog):
    """Ray calls a sample_from function with the config first; `_Pick` took a spec only, so
    every parameter of every trial went through Ray's fallback and its deprecation warning."""
    from ray.tune.search.sample import Function

    p = plan(scheduler={"name": "pbt", "options": {"perturbation_interval": 2}},
             trials={"num_samples": 3})
    _, param_space, n = search.make_searcher(p)
    picks = {k: v for k, v in param_space.items() if k != sp.TRIAL_KEY}
    assert picks and all(isinstance(v, Function) for v in picks.values())
    with caplog.at_level("WARNING"):
        got = [{k: v.sample(config={sp.TRIAL_KEY: i}) for k, v in picks.items()} for i in range(n)]
    assert "deprecated" not in caplog.text, caplog.text
    assert got == [{k: v.func(SimpleNamespace(config={sp.TRIAL_KEY: i})) for k, v in picks.items()}
                   for i in range(n)]  # the spec form gives the same values


def test_the_runtime_and_the_compiler_name_the_same_population_schedulers():
    from hpoc.compiler import tables

    assert search.POPULATION_SCHEDULERS == tables.POPULATION


def test_optuna_runs_points_to_evaluate_as_written(tmp_path):
    """Points are nested trainer configs; Optuna fixes parameters by its own names (dotted,
    or a helper such as `extra~index` for a choice of maps): each value must reach the trial."""
    from hpoc.compiler import compile_source

    point = {"optimizer": {"lr": 0.001}, "width": 64, "extra": [1, 2], "flag": 1,
             "ratio": 0.005, "opt": "sgd", "momentum": 0.7}
    spec = """study "pts"
pipeline { trainer = t:T }
space {
  optimizer.lr = loguniform(1e-4, 1e-1)
  width = qrandint(32, 256, 32)
  extra = choice({ a = 1 }, [1, 2], "s")
  flag = choice(true, 1)
  ratio = qloguniform(1e-3, 1, 1e-3)
  opt = choice("adam", "sgd")
  momentum = uniform(0.5, 0.9) if opt == "sgd"
}
objective maximize val_accuracy
search optuna { seed = 0, points_to_evaluate = [
  { optimizer = { lr = 0.001 }, width = 64, extra = [1, 2], flag = 1, ratio = 0.005, opt = "sgd", momentum = 0.7 }] }
"""
    plan = compile_source(spec, "pts.hpo", str(tmp_path))
    searcher, param_space, _ = search.make_searcher(plan)
    searcher.set_search_properties(None, None, param_space)
    first = sp.trial_config(searcher.suggest("t0"), plan["space"])
    assert first == point and type(first["flag"]) is int
    assert sp.trial_config(searcher.suggest("t1"), plan["space"]) != point


def test_sharded_optuna_runs_each_point_once(tmp_path):
    """The shards share one Optuna study: every shard enqueuing the points ran each K times
    (and shard 0 again whenever it resumed)."""
    from hpoc.compiler import compile_source

    spec = f"""study "pts"
pipeline {{ trainer = t:T }}
space {{ lr = loguniform(1e-4, 1e-1) }}
objective maximize val_accuracy
trials {{ num_samples = 8 }}
search optuna {{ seed = 0, points_to_evaluate = [{{ lr = 0.001 }}] }}
storage {{ path = "{tmp_path}" }}
slurm {{ array {{ shards = 3 }} }}
"""
    plan = compile_source(spec, "pts.hpo", str(tmp_path))
    configs = []
    for shard in (0, 1, 2, 0):  # the last: shard 0 resumed
        searcher, param_space, _ = search.make_searcher(plan, shard)
        searcher.set_search_properties(None, None, param_space)
        for i in range(2):
            configs.append(searcher.suggest(f"s{len(configs)}"))
            searcher.on_trial_complete(f"s{len(configs) - 1}", {"val_accuracy": 0.5})
    assert [c["lr"] for c in configs].count(0.001) == 1


QUANTISED = [
    param("ratio", "quniform", lower=0.1, upper=0.9, q=0.1),
    param("wd", "qloguniform", lower=1e-4, upper=1e-2, q=1e-4, base=10),
    param("width", "qrandint", lower=32, upper=256, q=32),
    param("steps", "qlograndint", lower=10, upper=1000, q=10, base=10),
    param("depth", "qrandint", lower=1, upper=4, q=1),  # q = 1: `upper` included
    param("layers", "randint", lower=2, upper=8),  # `upper` left out
    param("dropout", "uniform", lower=0.0, upper=0.5),
    param("lr", "loguniform", lower=1e-3, upper=3e-2, base=10),
    param("shift", "qrandn", mean=0.0, sd=1.0, q=0.25),
]


def _on_the_declared_grid(config):
    """Every value where its domain puts it: in bounds, a multiple of q with q's decimals, an
    int for an integer domain."""
    assert isinstance(config["ratio"], float) and 0.1 <= config["ratio"] <= 0.9, config
    assert config["ratio"] == round(config["ratio"], 1), config  # 0.36000000000000004: no
    assert isinstance(config["wd"], float) and 1e-4 <= config["wd"] <= 1e-2, config
    assert config["wd"] == round(config["wd"], 4), config
    assert type(config["width"]) is int and config["width"] in range(32, 257, 32), config
    assert type(config["steps"]) is int and config["steps"] in range(10, 1001, 10), config
    assert type(config["depth"]) is int and config["depth"] in range(1, 5), config
    assert type(config["layers"]) is int and config["layers"] in range(2, 8), config
    assert isinstance(config["dropout"], float) and 0.0 <= config["dropout"] <= 0.5, config
    assert isinstance(config["lr"], float) and 1e-3 <= config["lr"] <= 3e-2, config
    assert config["shift"] == round(config["shift"] * 4) / 4, config


@pytest.mark.parametrize("mutations", [None, "given"])
def test_pbt_keeps_every_mutation_on_the_declared_grid_and_bounds(mutations):
    """Ray's explore step multiplies a value by 1.2 or 0.8 (quniform's 0.3 became
    0.36000000000000004, qrandint's 32 became 38, a bound was crossed) and resamples from
    Ray's domain (0.30000000000000004): each value PBT hands a trial must be one the space
    declares."""
    import random

    options = {"perturbation_interval": 2, "resample_probability": 0.5}
    if mutations:  # a `hyperparam_mutations` table of domains, as the plan writes it
        options["hyperparam_mutations"] = {p["name"]: {"domain": p["domain"], "args": p["args"]}
                                           for p in QUANTISED}
    p = plan(space={"params": QUANTISED, "constants": {"epochs": 4}},
             scheduler={"name": "pbt", "options": options}, trials={"num_samples": 4})
    pbt = search.make_scheduler(p)
    _, param_space, n = search.make_searcher(p)
    configs = [{k: v.func(SimpleNamespace(config={sp.TRIAL_KEY: i}))
                for k, v in param_space.items() if k != sp.TRIAL_KEY} for i in range(n)]
    random.seed(0)
    for _ in range(50):
        nxt = []
        for config in configs:
            _on_the_declared_grid(config)
            new, _ = pbt._get_new_config(SimpleNamespace(config=config), SimpleNamespace(config=config))
            nxt.append(new)
        configs = nxt  # mutations of mutations: values walk to the bounds and past them
    for config in configs:
        _on_the_declared_grid(config)


def test_pb2_picks_values_on_the_declared_grid_and_models_those():
    """PB2's model picks any point within the bounds (`quniform`'s 0.7342, a float32 for
    `lr`, `randint`'s excluded upper bound): the trial gets the nearest declared value, and
    PB2 records that value for the trial's next improvement, not the one it picked."""
    import numpy as np
    import pandas as pd

    p = plan(space={"params": QUANTISED, "constants": {"epochs": 4}},
             scheduler={"name": "pb2", "options": {"perturbation_interval": 2}}, trials={"num_samples": 4})
    pb2 = search.make_scheduler(p)
    _, param_space, n = search.make_searcher(p)
    configs = [{k: v.func(SimpleNamespace(config={sp.TRIAL_KEY: i}))
                for k, v in param_space.items() if k != sp.TRIAL_KEY} for i in range(n)]
    trials = [type("Trial", (), {"config": c, "__str__": lambda self, i=i: f"t{i}"})()
              for i, c in enumerate(configs)]
    names = list(pb2._hyperparam_bounds_flat)
    assert "shift" not in names  # unbounded: PB2 leaves it as it is
    # what PB2 records at each report: trial, time, the config's values, reward
    pb2.data = pd.DataFrame([[f"t{i}", t] + [c[k] for k in names] + [float(i * t)]
                             for t in (1, 2, 3) for i, c in enumerate(configs)],
                            columns=["Trial", "Time", *names, "Reward"])
    np.random.seed(0)
    new, _ = pb2._get_new_config(trials[0], trials[3])  # a GP fit: slow, once
    _on_the_declared_grid(new)
    assert pb2.data.iloc[-1][names].tolist() == [new[k] for k in names]
    assert pb2.current[-1].tolist() == [new[k] for k in names]


def test_a_pbt_perturbation_moves_a_grid_value_at_least_one_step():
    """On a grid, 16 * 1.2 and 16 * 0.8 both round back to 16 (q = 8): a perturbation must
    still move the value, one step the factor's way, and stop at a bound."""
    import random

    space = {"params": [param("hidden", "qrandint", lower=8, upper=32, q=8),
                        param("ratio", "quniform", lower=0.1, upper=0.9, q=0.1),
                        param("layers", "randint", lower=1, upper=4)], "constants": {}}
    pbt = search.make_scheduler(plan(space=space, scheduler={"name": "pbt", "options": {
        "perturbation_interval": 2, "resample_probability": 0.0}}))
    random.seed(0)
    seen = {}
    for old in ({"hidden": 16, "ratio": 0.2, "layers": 1}, {"hidden": 32, "ratio": 0.9, "layers": 3}):
        for _ in range(40):
            new, ops = pbt._get_new_config(None, SimpleNamespace(config=old))
            for name in old:
                seen.setdefault((name, old[name], ops[name]), set()).add(new[name])
    assert seen == {
        ("hidden", 16, "* 1.2"): {24}, ("hidden", 16, "* 0.8"): {8},
        ("ratio", 0.2, "* 1.2"): {0.3}, ("ratio", 0.2, "* 0.8"): {0.1},
        ("layers", 1, "* 1.2"): {2}, ("layers", 1, "* 0.8"): {1},  # at its lower bound
        ("hidden", 32, "* 1.2"): {32}, ("hidden", 32, "* 0.8"): {24},  # 25.6: rounds to 24
        ("ratio", 0.9, "* 1.2"): {0.9}, ("ratio", 0.9, "* 0.8"): {0.7},  # 0.72
        ("layers", 3, "* 1.2"): {3}, ("layers", 3, "* 0.8"): {2},  # randint leaves out 4
    }


def test_bayesopt_takes_the_quantised_floats_the_check_lets_through(monkeypatch):
    """`hpoc check` passes `quniform` under `search bayesopt` with a warning (Ray drops `q`,
    hpoc rounds the values); the run then refused it before its first trial."""
    import ray.tune.search.bayesopt as bayesopt

    made = {}
    monkeypatch.setattr(search, "require_libraries", lambda algorithm: None)
    monkeypatch.setattr(bayesopt, "BayesOptSearch", lambda **kwargs: made.update(kwargs) or "searcher")
    spec = plan(search={"algorithm": "bayesopt", "options": {}, "_replace": True},
                space={"params": [param("ratio", "quniform", lower=0.0, upper=1.0, q=0.1),
                                  param("lr", "qloguniform", lower=1e-4, upper=1e-1, q=1e-4, base=10)],
                       "constants": {}, "_replace": True})
    searcher, space, _ = search.make_searcher(spec)
    assert searcher == "searcher" and set(space) == {"ratio", "lr"}


def test_nevergrad_without_an_optimizer_uses_the_documented_default(monkeypatch):
    """A plan whose nevergrad options name no optimizer gets `NGOpt`, as docs and compiler say."""
    import importlib.machinery
    import sys
    from types import ModuleType

    ng = ModuleType("nevergrad")
    ng.__spec__ = importlib.machinery.ModuleSpec("nevergrad", None)
    ng.optimizers = SimpleNamespace(NGOpt="NGOpt-class", OnePlusOne="OnePlusOne-class")
    ray_ng = ModuleType("ray.tune.search.nevergrad")
    ray_ng.NevergradSearch = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "nevergrad", ng)
    monkeypatch.setitem(sys.modules, "ray.tune.search.nevergrad", ray_ng)
    p = plan(search={"algorithm": "nevergrad", "options": {"optimizer_kwargs": None}, "_replace": True})
    searcher, _, _ = search.make_searcher(p)
    assert searcher.optimizer == "NGOpt-class"


@pytest.mark.parametrize("mode, value", [("max", float("inf")), ("min", float("-inf")),
                                         ("max", float("nan"))])
def test_optuna_learns_nothing_good_from_a_diverged_trial(mode, value):
    # Told as a value, +inf under `maximize` was Optuna's best trial: TPE sampled around
    # the configuration that diverged. Optuna fails a NaN itself; any non-finite value so.
    from optuna.trial import TrialState

    p = plan(search={"algorithm": "optuna", "options": {"seed": 0}},
             objective={"metrics": [{"name": "val_accuracy", "mode": mode}]})
    searcher, param_space, _ = search.make_searcher(p)
    searcher.set_search_properties(None, None, param_space)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_accuracy": value, "training_iteration": 3})
    (told,) = searcher._ot_study.get_trials()
    assert told.state == TrialState.FAIL
    assert searcher._ot_study.best_trials == []


@pytest.mark.parametrize("algorithm, module, cls", [("hebo", "hebo", "HEBOSearch"),
                                                    ("hyperopt", "hyperopt", "HyperOptSearch")])
def test_shards_of_a_ray_searcher_split_the_points_to_evaluate(monkeypatch, algorithm, module, cls):
    """A job array of 2 shards searching with hebo (hyperopt, ...: a searcher of each shard's
    own) ran every point in each shard: each point twice, and 2 x 3 of a study's 4 trials.
    Shard k runs the points i with i mod K == k, as it runs the study's trials."""
    ray_module = importlib.import_module(f"ray.tune.search.{module}")
    made = []
    monkeypatch.setattr(search, "require_libraries", lambda algorithm: None)
    monkeypatch.setattr(ray_module, cls, lambda **kwargs: made.append(kwargs) or "searcher")
    points = [{"lr": 0.001}, {"lr": 0.002}, {"lr": 0.003}]
    sharded = plan(search={"algorithm": algorithm, "options": {"points_to_evaluate": points}, "_replace": True},
                   trials={"num_samples": 4}, shards={"count": 2, "parallel": 2})
    for shard in (0, 1):
        search.make_searcher(sharded, shard)
    assert [m["points_to_evaluate"] for m in made] == [points[0::2], points[1::2]]
    search.make_searcher(plan(search={"algorithm": algorithm, "options": {"points_to_evaluate": points},
                                      "_replace": True}, trials={"num_samples": 4}))
    assert made[-1]["points_to_evaluate"] == points  # one shard: all of them


def test_hebos_cap_counts_its_shards_points_only():
    """HEBO hands out its points past its cap of 8: a shard's own (17 points over 2 shards:
    9 and 8), not the study's 17 (the concurrent-trials warning reads this)."""
    points = [{"lr": 0.001 * (i + 1)} for i in range(17)]
    sharded = plan(search={"algorithm": "hebo", "options": {"points_to_evaluate": points}, "_replace": True},
                   trials={"num_samples": 40, "max_concurrent": None}, shards={"count": 2, "parallel": 2})
    assert [search.search_cap(sharded, shard=k) for k in (0, 1)] == [9, 8]
    assert search.search_cap(sharded, ended=3, shard=0) == 8  # resumed: 6 of its points left
    assert search.search_cap({**sharded, "trials": {"num_samples": 40, "max_concurrent": 4}}, shard=0) == 4
