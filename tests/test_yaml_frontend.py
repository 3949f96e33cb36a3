"""The YAML front end: itwinai HPO configs (the seed's `ray_training_pipeline`) → plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.compiler import compile_path
from hpoc.errors import SpecError
from yaml_configs import EXAMPLE, comparable, config, seed, trainer_args, write


def compiled(tmp_path: Path, doc, **kw):
    return compile_path(write(tmp_path, doc, **kw))


def errors_of(tmp_path: Path, doc, **kw):
    with pytest.raises(SpecError) as info:
        compiled(tmp_path, doc, **kw)
    return info.value.errors


def one_error(tmp_path: Path, doc, **kw):
    errs = errors_of(tmp_path, doc, **kw)
    assert len(errs) == 1, [e.render() for e in errs]
    return errs[0]


def resources(plan) -> dict:
    """The resources keys the YAML sets (the compiler may add others)."""
    keys = ("workers", "cpus_per_worker", "gpus_per_worker", "strategy", "deepspeed")
    return {k: plan["resources"][k] for k in keys}


def codes(result) -> list[str]:
    return [w.code for w in result.warnings]


# --------------------------------------------------------------------- the seed's config


def test_seed_config_compiles_to_the_tutorials_study() -> None:
    result = compile_path(EXAMPLE / "config.yaml")
    plan = result.plan
    assert plan["source"]["format"] == "yaml"
    assert plan["source"]["file"] == "config.yaml"
    assert plan["source"]["workdir"] == str(EXAMPLE)
    assert plan["study"]["name"] == "Virgo-HPO-Experiment"
    assert plan["pipeline"] == {
        "getter": {"target": "data:FashionMNISTGetter", "args": {}},
        "splitter": {"target": "data:FashionMNISTSplitter",
                     "args": {"train_proportion": 0.9, "validation_proportion": 0.1}},
        "trainer": {"target": "trainer:MyRayTorchTrainer", "args": {}},
    }
    assert plan["space"] == {
        "params": [
            {"name": "batch_size", "domain": "choice", "args": {"categories": [32, 64, 128]}, "condition": None},
            {"name": "learning_rate", "domain": "uniform", "args": {"lower": 1e-5, "upper": 1e-3},
             "condition": None},
        ],
        "constants": {"epochs": 20},
    }
    assert plan["objective"] == {"metrics": [{"name": "loss", "mode": "min"}]}
    assert plan["trials"]["num_samples"] == 2
    assert plan["search"]["algorithm"] == "optuna"
    assert plan["search"]["options"]["sampler"] == "tpe"
    assert plan["search"]["options"]["n_startup_trials"] == 5
    assert plan["scheduler"]["name"] == "asha"
    assert {k: plan["scheduler"]["options"][k] for k in ("max_t", "grace_period", "reduction_factor", "brackets")} \
        == {"max_t": 20, "grace_period": 10, "reduction_factor": 4, "brackets": 1}
    assert resources(plan) == {"workers": 4, "cpus_per_worker": 5, "gpus_per_worker": 1,
                               "strategy": "ddp", "deepspeed": None}
    assert plan["storage"] == {"path": str(EXAMPLE / "ray_checkpoints"), "name": "Virgo-HPO-Experiment"}
    assert plan["loggers"] == [{"kind": "mlflow", "experiment_name": "MNIST HPO Experiment",
                                "log_freq": "batch", "tracking_uri": None}]
    assert plan["checkpoint"]["score_attribute"] == "loss"
    assert plan["spans"]["space.params.1"] == "config.yaml:23:15"


def test_seed_config_warns_once_about_bayes_and_not_about_loss() -> None:
    warnings = compile_path(EXAMPLE / "config.yaml").warnings
    assert [w.code for w in warnings] == ["HP820", "HP802"]  # HP802: its 2 trials, 5 random steps
    w = warnings[0]
    assert (w.line, w.col) == (37, 23)
    assert "`bayes` (BayesOpt) cannot search `batch_size` (choice)" in w.message
    assert "Optuna's TPE" in w.message
    assert "name: optuna" in w.help
    assert any("n_startup_trials" in n for n in w.notes)
    assert w.source_line.strip() == "name: bayes"


def test_loss_warning_appears_when_the_trainer_does_not_report_it(tmp_path: Path) -> None:
    path = write(tmp_path, seed(), with_code=False)
    (tmp_path / "trainer.py").write_text("from hpoc.compat.itwinai import RayTorchTrainer\n\n\nclass MyRayTorchTrainer(RayTorchTrainer):\n    pass\n")
    warnings = compile_path(path).warnings
    assert "HP801" in [w.code for w in warnings]
    (tmp_path / "trainer.py").write_text("from hpoc.compat.itwinai import RayTorchTrainer\n\n\nclass MyRayTorchTrainer(RayTorchTrainer):\n    pass\n\n\ndef f(v):\n    return {'loss': v}\n")
    assert "HP801" not in [w.code for w in compile_path(path).warnings]


def test_cli_compiles_the_seed_config_as_is(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(EXAMPLE / "config.yaml"), "-o", "build/s"]) == 0
    plan = json.loads((tmp_path / "build/s/plan.json").read_text())
    assert plan["study"]["name"] == "Virgo-HPO-Experiment"
    assert plan["content_hash"].startswith("sha256:")
    err = capsys.readouterr().err
    assert "HP820" in err and "Traceback" not in err
    assert main(["check", str(EXAMPLE / "config.yaml")]) == 0


def test_seed_as_printed_in_the_tutorial_is_reported_at_its_line(tmp_path: Path, capsys) -> None:
    # The rst extraction lost the indentation under `ray_training_pipeline:`.
    broken = ("ray_training_pipeline:\nclass_path: itwinai.pipeline.Pipeline\ninit_args:\n    steps:\n"
              "    - class_path: data.FashionMNISTGetter\n    - class_path: data.FashionMNISTSplitter\n"
              "        init_args: \n        train_proportion: 0.9\n")
    path = write(tmp_path, broken)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:18: error: invalid YAML: mapping values are not allowed here [HP110]" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------ search space

RAY_DOMAINS = [
    ({"type": "uniform", "lower": 0.1, "upper": 0.9}, "uniform", {"lower": 0.1, "upper": 0.9}),
    ({"type": "quniform", "lower": 0, "upper": 1, "q": 0.25}, "quniform", {"lower": 0, "upper": 1, "q": 0.25}),
    ({"type": "loguniform", "lower": 1e-5, "upper": 1e-2}, "loguniform",
     {"lower": 1e-5, "upper": 1e-2, "base": 10}),
    ({"type": "loguniform", "lower": 1, "upper": 64, "base": 2}, "loguniform", {"lower": 1, "upper": 64, "base": 2}),
    ({"type": "qloguniform", "lower": 1e-4, "upper": 1, "q": 1e-4}, "qloguniform",
     {"lower": 1e-4, "upper": 1, "q": 1e-4, "base": 10}),
    ({"type": "randn", "mean": 0.5, "sd": 0.2}, "randn", {"mean": 0.5, "sd": 0.2}),
    ({"type": "randn"}, "randn", {"mean": 0.0, "sd": 1.0}),
    ({"type": "qrandn", "mean": 1, "sd": 2, "q": 0.5}, "qrandn", {"mean": 1, "sd": 2, "q": 0.5}),
    ({"type": "randint", "lower": 1, "upper": 10}, "randint", {"lower": 1, "upper": 10}),
    ({"type": "qrandint", "lower": 0, "upper": 100, "q": 5}, "qrandint", {"lower": 0, "upper": 100, "q": 5}),
    ({"type": "lograndint", "lower": 1, "upper": 1024}, "lograndint", {"lower": 1, "upper": 1024, "base": 10}),
    ({"type": "qlograndint", "lower": 1, "upper": 1024, "q": 2, "base": 2}, "qlograndint",
     {"lower": 1, "upper": 1024, "q": 2, "base": 2}),
    ({"type": "choice", "categories": ["adam", "sgd"]}, "choice", {"categories": ["adam", "sgd"]}),
    ({"type": "grid", "values": [1, 2]}, "grid", {"values": [1, 2]}),
]
ITWINAI_DOMAINS = [
    ({"type": "choice", "options": [1, 2]}, "choice", {"categories": [1, 2]}),
    ({"type": "uniform", "min": -1, "max": 1}, "uniform", {"lower": -1, "upper": 1}),
    ({"type": "loguniform", "min": 1e-4, "max": 1e-1}, "loguniform", {"lower": 1e-4, "upper": 1e-1, "base": 10}),
    ({"type": "randint", "min": 2, "max": 9}, "randint", {"lower": 2, "upper": 9}),
    ({"type": "qrandint", "min": 2, "max": 10, "q": 2}, "qrandint", {"lower": 2, "upper": 10, "q": 2}),
    ({"type": "randn", "mean": 1, "stddev": 3}, "randn", {"mean": 1, "sd": 3}),
    ({"type": "qrandn", "mean": 0, "stddev": 1, "q": 0.1}, "qrandn", {"mean": 0, "sd": 1, "q": 0.1}),
    ({"type": "grid_search", "options": ["a", "b"]}, "grid", {"values": ["a", "b"]}),
    ({"type": "Choice", "values": [True, False]}, "choice", {"categories": [True, False]}),
]


@pytest.mark.parametrize("spec,domain,args", RAY_DOMAINS + ITWINAI_DOMAINS,
                         ids=[f"{d[1]}-{i}" for i, d in enumerate(RAY_DOMAINS + ITWINAI_DOMAINS)])
def test_every_ray_domain_in_ray_and_itwinai_spelling(tmp_path: Path, spec, domain, args) -> None:
    doc = seed()
    config(doc)["train_loop_config"] = {"x": spec, "epochs": 2}
    config(doc)["tune_config"]["search_alg"] = {"name": "random", "metric": "loss", "mode": "min"}
    plan = compiled(tmp_path, doc).plan
    assert plan["space"]["params"] == [{"name": "x", "domain": domain, "args": args, "condition": None}]
    assert plan["space"]["constants"] == {"epochs": 2}


def test_rays_own_grid_search_mapping_is_a_grid(tmp_path: Path) -> None:
    # what `tune.grid_search([...])` is in a saved param_space: Ray enumerates it; as a
    # constant every trial would get the dict itself as its batch size
    doc = seed()
    config(doc)["train_loop_config"] = {"batch_size": {"grid_search": [32, 64]},
                                        "model": {"depth": {"grid_search": [18, 34]}}, "epochs": 2}
    config(doc)["tune_config"]["search_alg"] = {"name": "random", "metric": "loss", "mode": "min"}
    plan = compiled(tmp_path, doc).plan
    assert [(p["name"], p["domain"], p["args"]) for p in plan["space"]["params"]] == [
        ("batch_size", "grid", {"values": [32, 64]}), ("model.depth", "grid", {"values": [18, 34]})]
    assert plan["space"]["constants"] == {"epochs": 2}


def test_rays_grid_search_mapping_needs_a_list(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["train_loop_config"] = {"batch_size": {"grid_search": 32}, "epochs": 2}
    err = one_error(tmp_path, doc)
    assert "values of `batch_size` must be a list" in err.message


def test_numbers_written_like_1e_5_are_numbers(tmp_path: Path) -> None:
    text = (EXAMPLE / "config.yaml").read_text().replace("min: 1e-5", 'min: "1e-5"').replace(
        "epochs: 20", "epochs: 20\n              weight_decay: 5E-4\n              tag: '1e-3'")
    plan = compiled(tmp_path, text).plan
    assert plan["space"]["params"][1]["args"] == {"lower": 1e-5, "upper": 1e-3}
    assert plan["space"]["constants"] == {"epochs": 20, "weight_decay": 5e-4, "tag": "1e-3"}


def test_nested_mappings_with_domains_become_groups(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["train_loop_config"] = {
        "optimizer": {"name": "adam", "lr": {"type": "loguniform", "min": 1e-4, "max": 1e-2}},
        "model": {"depth": 18, "widths": [64, 128]},
        "epochs": 3,
    }
    plan = compiled(tmp_path, doc).plan
    assert [p["name"] for p in plan["space"]["params"]] == ["optimizer.lr"]
    assert plan["space"]["constants"] == {"optimizer.name": "adam", "model": {"depth": 18, "widths": [64, 128]},
                                          "epochs": 3}


# ----------------------------------------------------------------- tune and run config


def test_scheduler_and_search_options_flat_or_under_options(tmp_path: Path) -> None:
    flat = compiled(tmp_path / "a", seed()).plan
    doc = seed()
    tune = config(doc)["tune_config"]
    tune["scheduler"] = {"name": "asha", "options": {"max_t": 20, "grace_period": 10, "reduction_factor": 4,
                                                     "brackets": 1}}
    tune["search_alg"] = {"name": "bayes", "metric": "loss", "mode": "min", "options": {"n_random_steps": 5}}
    nested = compiled(tmp_path / "b", doc).plan
    assert nested["scheduler"] == flat["scheduler"] and nested["search"] == flat["search"]


def test_bayes_stays_bayesopt_on_a_continuous_space(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["train_loop_config"]["batch_size"] = 64
    config(doc)["tune_config"]["search_alg"]["random_state"] = 3
    result = compiled(tmp_path, doc)
    assert result.plan["search"]["algorithm"] == "bayesopt"
    assert result.plan["search"]["options"]["random_search_steps"] == 5
    assert result.plan["search"]["options"]["seed"] == 3
    assert "HP820" not in codes(result)


@pytest.mark.parametrize("name,algorithm", [("optuna", "optuna"), ("hyperopt", "hyperopt"), ("hepo", "hebo"),
                                            ("HyperOpt", "hyperopt"), ("random", "random"), ("ax", "ax")])
def test_search_algorithm_names(tmp_path: Path, name: str, algorithm: str) -> None:
    doc = seed()
    doc_search = config(doc)["tune_config"]["search_alg"]
    doc_search["name"] = name
    del doc_search["n_random_steps"]
    if algorithm == "hebo":
        config(doc)["train_loop_config"]["batch_size"] = 64
    assert compiled(tmp_path, doc).plan["search"]["algorithm"] == algorithm


def test_pbt_drops_the_searcher_with_a_warning(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["tune_config"]["scheduler"] = {
        "name": "pbt", "perturbation_interval": 2,
        "hyperparam_mutations": {"learning_rate": {"type": "loguniform", "min": 1e-5, "max": 1e-3},
                                 "batch_size": [32, 64]},
    }
    result = compiled(tmp_path, doc)
    assert result.plan["search"]["algorithm"] == "random"
    assert result.plan["scheduler"]["options"]["hyperparam_mutations"] == {
        "learning_rate": {"domain": "loguniform", "args": {"lower": 1e-5, "upper": 1e-3, "base": 10}},
        "batch_size": [32, 64],
    }
    w = [w for w in result.warnings if w.code == "HP820"]
    assert len(w) == 1 and "`pbt` explores the space itself" in w[0].message


def test_nested_mutations_and_bounds_name_the_nested_parameters(tmp_path: Path) -> None:
    """Ray nests `hyperparam_mutations` (and PB2's bounds) as the config is nested: the YAML's
    nested mapping is the space's dotted names (it was refused: "names `optim`, which is not
    in `train_loop_config`", "must be a non-empty list or a search domain, not a map")."""
    doc = seed()
    tune = config(doc)["tune_config"]
    del tune["search_alg"]
    tune["metric"], tune["mode"] = "loss", "min"
    config(doc)["train_loop_config"]["optim"] = {"wd": {"type": "uniform", "min": 0.0, "max": 0.1},
                                                 "beta": {"type": "uniform", "min": 0.8, "max": 0.99}}
    tune["scheduler"] = {"name": "pbt", "hyperparam_mutations": {
        "learning_rate": {"type": "loguniform", "min": 1e-5, "max": 1e-3},
        "optim": {"wd": [0.0, 0.01], "beta": {"type": "uniform", "min": 0.8, "max": 0.9}}}}
    plan = compiled(tmp_path, doc).plan
    assert plan["scheduler"]["options"]["hyperparam_mutations"] == {
        "learning_rate": {"domain": "loguniform", "args": {"lower": 1e-5, "upper": 1e-3, "base": 10}},
        "optim.wd": [0.0, 0.01],
        "optim.beta": {"domain": "uniform", "args": {"lower": 0.8, "upper": 0.9}},
    }
    tune["scheduler"] = {"name": "pb2", "hyperparam_bounds": {"optim": {"wd": [0.0, 0.1]}}}
    assert compiled(tmp_path, doc).plan["scheduler"]["options"]["hyperparam_bounds"] == {"optim.wd": [0.0, 0.1]}
    tune["scheduler"] = {"name": "pbt", "hyperparam_mutations": {"optim": {"decay": [0.1]}}}
    (err,) = errors_of(tmp_path, doc)  # a misspelt nested name is found at its own key
    assert "`optim.decay`" in err.message and err.code == "HP201", err.render()


@pytest.mark.parametrize("name", ["pbt", "pb2"])
def test_num_to_keep_under_pbt_keeps_the_latest_without_saying_otherwise(tmp_path: Path, name: str) -> None:
    """Ray keeps the most recent checkpoints, and so does hpoc under PBT/PB2: no HP820
    claiming the best are kept (it contradicted HP805 on the same key)."""
    doc = seed()
    tune = config(doc)["tune_config"]
    del tune["search_alg"]
    tune["metric"], tune["mode"] = "loss", "min"
    tune["scheduler"] = {"name": name, "perturbation_interval": 2}
    config(doc)["run_config"]["checkpoint_config"] = {"num_to_keep": 2}
    result = compiled(tmp_path, doc)
    assert result.plan["checkpoint"]["keep"] == 2 and result.plan["checkpoint"]["score_attribute"] is None
    assert [w.code for w in result.warnings if "num_to_keep" in w.message] == ["HP805"], \
        [w.render() for w in result.warnings]


def test_bohb_scheduler_brings_its_searcher(tmp_path: Path) -> None:
    doc = seed()
    tune = config(doc)["tune_config"]
    tune["scheduler"] = {"name": "bohb", "max_t": 20}
    del tune["search_alg"]
    tune["metric"], tune["mode"] = "loss", "min"
    result = compiled(tmp_path, doc)
    assert (result.plan["search"]["algorithm"], result.plan["scheduler"]["name"]) == ("bohb", "bohb")
    assert "HP820" not in codes(result)


def test_metric_and_mode_default_to_itwinais_with_a_warning(tmp_path: Path) -> None:
    doc = seed()
    del config(doc)["tune_config"]["search_alg"]
    result = compiled(tmp_path, doc)
    assert result.plan["objective"]["metrics"] == [{"name": "loss", "mode": "min"}]
    assert [w.message for w in result.warnings if w.code == "HP822"] == [
        "no `metric` is set: optimising `loss` (itwinai's default)",
        "no `mode` is set for `loss`: minimising it (itwinai's default)",
    ]
    del config(doc)["tune_config"]  # said where the trainer's config is, not nowhere in the file
    lines = [w.line for w in compiled(tmp_path / "b", doc).warnings if w.code == "HP822" and "`m" in w.message]
    assert len(lines) == 2 and all(line is not None and line > 1 for line in lines)


def test_run_config_sections(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["tune_config"]["max_concurrent_trials"] = 2
    config(doc)["tune_config"]["time_budget_s"] = 3600
    config(doc)["run_config"].update({
        "name": "my run", "stop": {"training_iteration": 5},
        "checkpoint_config": {"num_to_keep": 3, "checkpoint_score_attribute": "loss",
                              "checkpoint_score_order": "min", "checkpoint_frequency": 2},
        "failure_config": {"max_failures": 4},
    })
    result = compiled(tmp_path, doc)
    plan = result.plan
    assert plan["study"]["name"] == plan["storage"]["name"] == "my-run"
    assert plan["trials"] == {"num_samples": 2, "max_concurrent": 2, "time_budget_s": 3600, "time_limit_s": None,
                              "stop": {"training_iteration": 5}}
    assert plan["checkpoint"] == {"every": 2, "keep": 3, "score_attribute": "loss", "score_order": "min"}
    assert plan["failure"] == {"max_retries": 4, "fail_fast": 3}
    assert any(w.code == "HP820" and 'run name "my run" is used as "my-run"' in w.message for w in result.warnings)


def test_the_final_report_names_a_yaml_configs_time_limit_and_budget_as_it_writes_them(tmp_path: Path) -> None:
    """A hung first epoch stopped by `run_config.stop: {time_total_s: 10}` ended the run with
    "... reached their time limit (`trials.time_limit`)", a key the config does not have."""
    from hpoc.runtime import summary

    doc = seed()
    config(doc)["run_config"]["stop"] = {"time_total_s": 10}
    plan = compiled(tmp_path, doc).plan
    hung = {"trial_id": "t1", "status": "TERMINATED", "metrics": {}, "stopped": "time limit"}
    said = summary.describe_best({"study": "s", "num_trials": 1, "status_counts": {"TERMINATED": 1},
                                  "wall_s": 1.0, "metrics": [{"name": "loss", "mode": "min"}],
                                  "best": None, "trials": [hung]}, words=plan["source"]["words"])
    assert said.splitlines()[-1] == ("no trial reported the objective metric `loss`: 1 trial(s) reached their "
                                     "time limit (`run_config.stop.time_total_s`) before their first report")
    said = summary.describe_best({"study": "s", "num_trials": 1, "status_counts": {"TERMINATED": 1},
                                  "wall_s": 1.0, "metrics": [{"name": "loss", "mode": "min"}],
                                  "best": None, "trials": [dict(hung, stopped=None)]}, budget_s=60,
                                 words=plan["source"]["words"])
    assert "(`time_budget_s`, 60 s)" in said


def test_a_stop_on_time_total_s_is_the_trials_time_limit(tmp_path: Path) -> None:
    """The YAML had no way to the per-trial `time_limit` of .hpo: Ray's `stop: {time_total_s: N}`
    is that limit, which hpoc enforces inside an epoch too."""
    doc = seed()
    config(doc)["run_config"]["stop"] = {"time_total_s": 600, "training_iteration": 5}
    trials = compiled(tmp_path, doc).plan["trials"]
    assert (trials["time_limit_s"], trials["stop"]) == (600, {"training_iteration": 5})
    config(doc)["run_config"]["stop"] = {"time_total_s": 90.5}
    trials = compiled(tmp_path, doc).plan["trials"]
    assert (trials["time_limit_s"], trials["stop"]) == (90.5, {})


@pytest.mark.parametrize("stop, trials", [
    ({"_target_": "ray.tune.stopper.TimeoutStopper", "timeout": 3600}, {"time_budget_s": 3600, "stop": {}}),
    ({"class_path": "ray.tune.stopper.MaximumIterationStopper", "init_args": {"max_iter": 4}},
     {"time_budget_s": None, "stop": {"training_iteration": 4}}),
])
def test_a_ray_stopper_with_a_plan_meaning_is_translated(tmp_path: Path, stop, trials) -> None:
    """`stop` as a Ray stopper class was read as result keys (`_target_` "must be a number")."""
    doc = seed()
    config(doc)["run_config"]["stop"] = stop
    plan = compiled(tmp_path, doc).plan
    assert {k: plan["trials"][k] for k in trials} == trials


def test_a_ray_stopper_without_a_plan_meaning_is_refused(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["run_config"]["stop"] = {"_target_": "ray.tune.stopper.TrialPlateauStopper", "metric": "loss"}
    d = one_error(tmp_path, doc)
    assert (d.code, d.message) == ("HP204", "`stop` cannot be a `TrialPlateauStopper`: hpoc stops trials on result "
                                            "limits (a mapping) and on `time_budget_s`, not with Ray's stopper objects")
    assert "scheduler: {name: asha}" in d.help
    config(doc)["run_config"]["stop"] = {"_target_": "ray.tune.stopper.TimeoutStopper", "timeout": 60}
    config(doc)["tune_config"]["time_budget_s"] = 3600
    d = one_error(tmp_path, doc)
    assert (d.code, d.message) == ("HP202", "`TimeoutStopper` and `time_budget_s` both bound the study's time")
    config(doc)["run_config"]["stop"] = {"time_total_s": "1h"}
    d = one_error(tmp_path, doc)  # a config has no durations: Ray's `*_s` keys are seconds
    assert (d.code, d.message, d.help) == (
        "HP203", '`time_total_s` must be a number of seconds, not the string "1h"', "write it in seconds: 3600")


def test_stop_messages_write_the_stop_as_the_config_does(tmp_path: Path) -> None:
    """The warning quoted .hpo's map, `stop: { training_iteration = 0 }`, and an error in a
    stopper's `max_iter` named `training_iteration`, which the config does not hold."""
    doc = seed()
    config(doc)["run_config"]["stop"] = {"training_iteration": 0}
    (w,) = [w for w in compiled(tmp_path, doc).warnings if w.code == "HP805"]
    assert w.message.startswith("`stop: {training_iteration: 0}` ends every trial at its first report")
    config(doc)["run_config"]["stop"] = {"_target_": "ray.tune.stopper.MaximumIterationStopper", "max_iter": "x"}
    assert one_error(tmp_path, doc).message == '`max_iter` in `stop` must be a number, not the string "x"'


@pytest.mark.parametrize("section, key", [
    ("run_config", "name"), ("run_config", "storage_path"), ("run_config", "stop"),
    ("tune_config", "num_samples"), ("tune_config", "max_concurrent_trials"), ("tune_config", "reuse_actors"),
    ("scaling_config", "num_workers"), ("scaling_config", "use_gpu"), (("scaling_config", "resources_per_worker"), "CPU"),
    (("tune_config", "scheduler"), "max_t"), (("tune_config", "search_alg"), "n_random_steps"),
    (("run_config", "checkpoint_config"), "checkpoint_frequency"), (("run_config", "failure_config"), "max_failures"),
    ((), "checkpoint_freq"),
])
def test_a_null_setting_is_unset_as_if_left_out(tmp_path: Path, section, key) -> None:
    """As in Ray (and as `metric: null` always was): `key: null` takes the default;
    `run_config: {name: null}` was an error ("must be a name, not null")."""
    def at(doc):
        out = config(doc)
        for part in (section,) if isinstance(section, str) else section:
            out = out.setdefault(part, {})
        return out

    absent, null = seed(), seed()
    at(absent).pop(key, None)
    at(null)[key] = None
    left_out = compile_path(write(tmp_path, absent))
    nulled = compile_path(write(tmp_path, null))  # the same file: the same default name
    assert comparable(nulled.plan) == comparable(left_out.plan)
    assert [w.message for w in nulled.warnings] == [w.message for w in left_out.warnings]


def test_num_to_keep_null_keeps_every_checkpoint_as_in_ray(tmp_path: Path) -> None:
    """Ray's own meaning of `num_to_keep: None`, which hpoc's `keep = null` shares."""
    doc = seed()
    config(doc)["run_config"]["checkpoint_config"] = {"num_to_keep": None}
    assert compile_path(write(tmp_path, doc)).plan["checkpoint"]["keep"] is None
    del config(doc)["run_config"]["checkpoint_config"]
    assert compile_path(write(tmp_path, doc)).plan["checkpoint"]["keep"] == 2


def test_max_concurrent_trials_0_means_no_limit_as_in_ray(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["tune_config"]["max_concurrent_trials"] = 0
    result = compiled(tmp_path, doc)
    assert result.plan["trials"]["max_concurrent"] is None
    (w,) = [w for w in result.warnings if "max_concurrent_trials" in w.message]
    assert w.code == "HP820"
    assert w.message == "`max_concurrent_trials: 0` means no limit in Ray: as many trials at once as resources allow"


# ------------------------------------------------------------------ resources, loggers


def test_use_gpu_alone_reserves_one_gpu_per_worker(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["scaling_config"] = {"num_workers": 2, "use_gpu": True}
    assert resources(compiled(tmp_path, doc).plan) == {
        "workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 1, "strategy": "ddp", "deepspeed": None}


@pytest.mark.parametrize("use_gpu,gpu,message", [
    (True, 0, "`use_gpu` is true but `resources_per_worker` gives workers no GPU"),
    (False, 1, "`use_gpu` is false but `resources_per_worker` asks for 1 GPU"),
])
def test_use_gpu_contradicting_resources_is_an_error(tmp_path: Path, use_gpu, gpu, message) -> None:
    doc = seed()
    config(doc)["scaling_config"] = {"num_workers": 2, "use_gpu": use_gpu, "resources_per_worker": {"GPU": gpu}}
    assert one_error(tmp_path, doc).message == message


def test_deepspeed_strategy_and_cpu_workers(tmp_path: Path) -> None:
    doc = seed()
    trainer_args(doc)["strategy"] = "deepspeed"
    config(doc)["scaling_config"] = {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 2}}
    result = compiled(tmp_path, doc)
    assert result.plan["resources"]["strategy"] == "deepspeed"
    assert result.plan["resources"]["deepspeed"]["zero_stage"] == 2
    assert result.plan["resources"]["gpus_per_worker"] == 0
    assert result.plan["resources"]["cpus_per_worker"] == 2


def test_itwinai_s_random_seed_seeds_the_study(tmp_path: Path) -> None:
    """itwinai's trainers take `random_seed`: it was refused as the trainer's unknown argument,
    or (for a trainer declaring it) passed and unused, the trials seeded otherwise."""
    doc = seed()
    trainer_args(doc)["random_seed"] = 7
    plan = compiled(tmp_path, doc).plan
    assert plan["training"]["seed"] == 7
    assert "random_seed" not in json.dumps(plan["pipeline"])  # hpoc seeds the trials itself
    trainer_args(doc)["random_seed"] = -1
    assert "seed" in one_error(tmp_path, doc).message


def test_horovod_is_refused_with_a_fix(tmp_path: Path) -> None:
    doc = seed()
    trainer_args(doc)["strategy"] = "horovod"
    d = one_error(tmp_path, doc)
    assert d.message == "the `horovod` strategy is not supported" and "strategy: ddp" in d.help


def test_loggers(tmp_path: Path) -> None:
    doc = seed()
    loggers = trainer_args(doc)["logger"]["init_args"]["loggers"]
    loggers[0]["init_args"]["log_freq"] = 10
    loggers.append({"class_path": "itwinai.loggers.TensorBoardLogger", "init_args": {"log_freq": "epoch"}})
    loggers.append({"class_path": "itwinai.loggers.ConsoleLogger"})
    result = compiled(tmp_path, doc)
    assert result.plan["loggers"] == [
        {"kind": "mlflow", "experiment_name": "MNIST HPO Experiment", "log_freq": "batch", "tracking_uri": None},
        {"kind": "tensorboard", "experiment_name": None, "log_freq": "epoch", "tracking_uri": None},
    ]
    msgs = [w.message for w in result.warnings]
    assert any("`log_freq: 10` logs every 10 batches in itwinai" in m for m in msgs)
    assert "logger `ConsoleLogger` is not supported and is not used" in msgs


def test_a_tensorboard_loggers_savedir_is_where_it_writes(tmp_path: Path) -> None:
    """itwinai's `TensorBoardLogger(savedir=..., framework="pytorch")`: `savedir` was
    ignored and `framework`, one of its arguments, an unknown key."""
    doc = seed()
    loggers = trainer_args(doc)["logger"]["init_args"]["loggers"]
    loggers.append({"class_path": "itwinai.loggers.TensorBoardLogger",
                    "init_args": {"savedir": "tb_logs", "framework": "pytorch"}})
    result = compiled(tmp_path / "a", doc)
    assert result.plan["loggers"][1] == {"kind": "tensorboard", "experiment_name": None, "log_freq": "epoch",
                                         "tracking_uri": "tb_logs"}
    assert not [w for w in result.warnings if "savedir" in w.message or "framework" in w.message]
    loggers[1]["init_args"]["log_on_workers"] = -1
    (w,) = [w for w in compiled(tmp_path / "d", doc).warnings if "log_on_workers" in w.message]
    assert w.message == "`log_on_workers` of `TensorBoardLogger` is ignored: hpoc logs from each trial's first worker"
    del loggers[1]["init_args"]["log_on_workers"]
    loggers[1]["init_args"]["tracking_uri"] = "tb"
    (w,) = [w for w in compiled(tmp_path / "c", doc).warnings if "savedir" in w.message]
    assert w.message == "`savedir` is ignored: `tracking_uri` says where the tensorboard logger writes"
    loggers[1]["init_args"]["framework"] = "tensorflow"
    (e,) = errors_of(tmp_path / "b", doc)
    assert e.message == "`framework` must be `pytorch`: hpoc's trainers are PyTorch's"


def test_hydra_style_targets_give_the_same_plan(tmp_path: Path) -> None:
    classic = compiled(tmp_path / "a", seed()).plan
    doc = seed()
    pipe = doc["ray_training_pipeline"]
    steps = pipe["init_args"]["steps"]
    hydra_steps = []
    for step in steps:
        s = {"_target_": step["class_path"], **step.get("init_args", {})}
        if "logger" in s:
            lg = s["logger"]
            s["logger"] = {"_target_": lg["class_path"], "loggers": [
                {"_target_": x["class_path"], **x["init_args"]} for x in lg["init_args"]["loggers"]]}
        hydra_steps.append(s)
    hydra = compiled(tmp_path / "b", {"hpo_training_pipeline": {"_target_": "itwinai.pipeline.Pipeline",
                                                                 "steps": hydra_steps}}).plan
    for key in ("pipeline", "space", "search", "scheduler", "resources", "loggers", "objective"):
        assert hydra[key] == classic[key], key


def test_class_paths_resolve_beside_the_config(tmp_path: Path, monkeypatch) -> None:
    from hpoc.runtime.pipeline import import_target

    sub = tmp_path / "cfg"
    path = write(sub, seed(), with_code=False)
    (sub / "data.py").write_text("class FashionMNISTGetter:\n    where = __file__\n\n    def execute(self):\n"
                                 "        return None\n\n\nclass FashionMNISTSplitter:\n"
                                 "    def __init__(self, train_proportion, validation_proportion):\n        pass\n\n"
                                 "    def execute(self, data):\n        return data\n")
    monkeypatch.chdir(tmp_path)
    plan = compile_path(Path("cfg") / "config.yaml").plan
    assert plan["source"]["workdir"] == str(sub.resolve())
    getter = import_target(plan["pipeline"]["getter"]["target"], plan["source"]["workdir"], "getter")
    assert Path(getter.where) == sub / "data.py" and path.parent == sub


def test_references_to_top_level_values_are_resolved(tmp_path: Path) -> None:
    text = (
        "batch: 64\nlr_min: 1e-5\nname: run\n"
        "ray_training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n  init_args:\n    steps:\n"
        "      - class_path: trainer.MyRayTorchTrainer\n        init_args:\n          config:\n"
        "            train_loop_config:\n              batch_size: ${batch}\n"
        "              lr: {type: uniform, min: \"${lr_min}\", max: 1e-3}\n"
        "              tag: \"${name}-${batch}\"\n"
        "            tune_config: {metric: loss, mode: min}\n"
        "            run_config: {name: \"${name}\"}\n"
    )
    plan = compiled(tmp_path, text).plan
    assert plan["study"]["name"] == "run"
    assert plan["space"]["constants"] == {"batch_size": 64, "tag": "run-64"}
    assert plan["space"]["params"][0]["args"] == {"lower": 1e-5, "upper": 1e-3}


def test_old_itwinai_checkpoint_freq(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["checkpoint_freq"] = 3
    assert compiled(tmp_path, doc).plan["checkpoint"]["every"] == 3


def test_a_mapping_with_type_is_a_domain(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["train_loop_config"]["model"] = {"type": "resnet", "depth": 18}
    d = one_error(tmp_path, doc)
    assert d.message == "unknown search domain `resnet` for `model`"
    assert d.help.startswith("a mapping with `type` is a search domain")


def test_find_unused_parameters_in_the_trainers_config_reaches_ddp(tmp_path: Path) -> None:
    """itwinai trainers read it from their config for DDP; the YAML had no way to set it."""
    doc = seed()
    config(doc)["find_unused_parameters"] = True
    assert compiled(tmp_path, doc).plan["resources"]["find_unused_parameters"] is True
    config(doc)["find_unused_parameters"] = "yes"
    assert "find_unused_parameters" in one_error(tmp_path, doc).message


def test_reuse_actors_keeps_worker_groups_warm(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["tune_config"]["reuse_actors"] = True
    assert compiled(tmp_path, doc).plan["resources"]["reuse_workers"] is True


def test_ray_classes_named_by_target_or_class_path_give_the_same_plan(tmp_path: Path) -> None:
    """Newer itwinai writes Ray's objects hydra-style (`_target_: ray.tune.TuneConfig`,
    `_target_: ray.tune.schedulers.ASHAScheduler`, `_target_: ray.tune.choice`); jsonargparse
    users write `class_path` + `init_args`."""
    doc = seed()
    cfg = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]
    cfg["tune_config"]["search_alg"] = {"name": "optuna", "metric": "loss", "mode": "min", "seed": 3}
    classic = compiled(tmp_path / "a", doc).plan
    tune = cfg["tune_config"]
    cfg["scaling_config"]["_target_"] = "ray.train.ScalingConfig"
    tune["_target_"] = "ray.tune.TuneConfig"
    cfg["run_config"]["_target_"] = "ray.tune.RunConfig"
    sched = {k: v for k, v in tune["scheduler"].items() if k != "name"}
    tune["scheduler"] = {"_target_": "ray.tune.schedulers.ASHAScheduler", **sched}
    tune["search_alg"] = {"class_path": "ray.tune.search.optuna.OptunaSearch",
                          "init_args": {"metric": "loss", "mode": "min", "seed": 3}}
    cfg["train_loop_config"]["batch_size"] = {"_target_": "ray.tune.choice", "categories": [32, 64, 128]}
    cfg["train_loop_config"]["learning_rate"] = {"_target_": "ray.tune.uniform", "lower": 1e-5, "upper": 1e-3}
    targeted = compiled(tmp_path / "b", doc).plan
    for key in ("space", "search", "scheduler", "resources", "trials", "objective"):
        assert targeted[key] == classic[key], key
    assert targeted["storage"]["name"] == classic["storage"]["name"]


def test_a_target_naming_the_wrong_ray_class_is_an_error(tmp_path: Path) -> None:
    doc = seed()
    tune = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]["tune_config"]
    tune["_target_"] = "ray.tune.RunConfig"
    tune["scheduler"] = {"_target_": "ray.tune.schedulers.ASHAScheduer", "max_t": 20}
    tune["search_alg"] = {"_target_": "ray.tune.search.ConcurrencyLimiter", "metric": "loss", "mode": "min"}
    write(tmp_path, doc)
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    msgs = [(e.code, e.message, e.help) for e in info.value.errors]
    assert msgs == [
        ("HP204", "`_target_` of `scheduler` must be a Ray class (`FIFOScheduler`, `ASHAScheduler`, "
         "`AsyncHyperBandScheduler`, `HyperBandScheduler`, `HyperBandForBOHB`, `PopulationBasedTraining`, `PB2` "
         "or `MedianStoppingRule`), not `ray.tune.schedulers.ASHAScheduer`", "did you mean `ASHAScheduler`?"),
        ("HP204", "`ConcurrencyLimiter` wraps a searcher, which a config cannot build",
         "name the searcher itself and limit trials with `max_concurrent_trials` in `tune_config`"),
        ("HP204", "`_target_` of `tune_config` must be a Ray class (`TuneConfig`), not `ray.tune.RunConfig`",
         "did you mean `TuneConfig`?"),
    ], msgs


@pytest.mark.parametrize("scheduler, message", [
    ({"_target_": "ray.tune.schedulers.ASHAScheduler", "init_args": {"max_t": 20}},
     "`init_args` beside `_target_` in `scheduler`"),
    ({"class_path": "ray.tune.schedulers.ASHAScheduler", "max_t": 20},
     "unknown key `max_t` beside `class_path` in `scheduler`"),
    ({"_target_": "ray.tune.schedulers.ASHAScheduler", "class_path": "ray.tune.schedulers.ASHAScheduler"},
     "`scheduler` names its class twice, with `_target_` and `class_path`"),
])
def test_a_class_object_takes_its_arguments_as_its_style_has_them(tmp_path: Path, scheduler, message) -> None:
    """Hydra's `_target_` with the arguments beside it, jsonargparse's `class_path` with them
    under `init_args`: `class_path` was taken for an ASHA option, `init_args` for a key."""
    doc = seed()
    tune = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]["tune_config"]
    tune["scheduler"] = scheduler
    err = one_error(tmp_path, doc)
    assert err.message.startswith(message), err.message


def test_torch_config_is_accepted_and_what_hpoc_cannot_honour_is_warned_about(tmp_path: Path) -> None:
    doc = seed()  # workers have a GPU: hpoc uses NCCL
    cfg = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]
    cfg["torch_config"] = {"_target_": "ray.train.torch.TorchConfig", "backend": "nccl"}
    before = {(w.code, w.line) for w in compiled(tmp_path / "a", seed()).warnings}
    assert {(w.code, w.line) for w in compiled(tmp_path / "b", doc).warnings} == before
    cfg["torch_config"] = {"backend": "gloo", "timeout_s": 600}
    new = [w for w in compiled(tmp_path / "c", doc).warnings if (w.code, w.line) not in before]
    assert [(w.code, w.message) for w in new] == [
        ("HP820", "`backend: gloo` is not used: hpoc's workers use `nccl` (NCCL with GPUs)"),
        ("HP821", "`timeout_s` is ignored: hpoc sets up the process group itself")]


def test_a_name_may_be_rays_class(tmp_path: Path) -> None:
    doc = seed()
    tune = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]["tune_config"]
    tune["search_alg"] = {"name": "optuna", "metric": "loss", "mode": "min"}
    classic = compiled(tmp_path / "a", doc).plan
    tune["search_alg"]["name"] = "OptunaSearch"
    tune["scheduler"]["name"] = "ray.tune.schedulers.ASHAScheduler"
    named = compiled(tmp_path / "b", doc).plan
    assert (named["search"], named["scheduler"]) == (classic["search"], classic["scheduler"])


@pytest.mark.parametrize("name,scheduler", [("hb_bohb", "bohb"), ("medianstopping", "median"),
                                            ("async_hyperband", "asha")])
def test_rays_create_scheduler_names(tmp_path: Path, name: str, scheduler: str) -> None:
    """Ray's `tune.create_scheduler` names (`hb_bohb` was unknown, "did you mean `bohb`?")."""
    doc = seed()
    config(doc)["tune_config"]["scheduler"] = {"name": name, "max_t": 20}
    config(doc)["tune_config"]["search_alg"] = {"name": "bohb" if scheduler == "bohb" else "random",
                                                "metric": "loss", "mode": "min"}
    config(doc)["train_loop_config"]["batch_size"] = 64
    if scheduler == "median":
        del config(doc)["tune_config"]["scheduler"]["max_t"]
    assert compiled(tmp_path, doc).plan["scheduler"]["name"] == scheduler


@pytest.mark.parametrize("name", ["pbt_replay", "ResourceChangingScheduler"])
def test_rays_schedulers_hpoc_lacks_are_said_to_be_unsupported(tmp_path: Path, name: str) -> None:
    doc = seed()
    config(doc)["tune_config"]["scheduler"] = {"name": name}
    (e,) = errors_of(tmp_path, doc)
    assert (e.code, e.message) == ("HP201", f"the `{name}` scheduler is not supported")
    assert e.help.startswith("hpoc supports `fifo`, `asha`")


def test_checkpoint_freq_is_kept_beside_a_checkpoint_config(tmp_path: Path) -> None:
    doc = seed()
    cfg = doc["ray_training_pipeline"]["init_args"]["steps"][2]["init_args"]["config"]
    cfg["checkpoint_freq"] = 2
    cfg["run_config"]["checkpoint_config"] = {"num_to_keep": 2, "checkpoint_score_attribute": "loss"}
    ck = compiled(tmp_path / "a", doc).plan["checkpoint"]
    assert (ck["every"], ck["keep"]) == (2, 2), ck
    cfg["run_config"]["checkpoint_config"]["checkpoint_frequency"] = 1
    assert [(e.code, e.message) for e in errors_of(tmp_path / "b", doc)] == [
        ("HP202", "`checkpoint_freq` is set both here and as `checkpoint_frequency` in `checkpoint_config`")]


def test_a_metric_the_itwinai_loop_only_logs_is_warned_about(tmp_path: Path) -> None:
    """The tutorial's loop logs `val_loss` but reports only `{"loss": ...}` to Tune."""
    doc = seed()
    assert not [w for w in compiled(tmp_path / "a", doc).warnings if w.code == "HP801"]
    config(doc)["tune_config"]["search_alg"]["metric"] = "val_loss"
    w = [w for w in compiled(tmp_path / "b", doc).warnings if w.code == "HP801"]
    assert [(x.message, x.help) for x in w] == [
        ("metric `val_loss` is not reported to Tune by the trainer", "did you mean `loss`?")]


def test_an_accelerator_type_is_said_to_be_the_slurm_jobs_gpu_type(tmp_path: Path) -> None:
    """Ray's `accelerator_type: A100` asks for a GPU model: "hpoc places workers itself" hid
    where hpoc asks for one."""
    doc = seed()
    config(doc)["scaling_config"]["accelerator_type"] = "A100"
    (w,) = [w for w in compiled(tmp_path, doc).warnings if "accelerator_type" in w.message]
    assert (w.code, w.message) == ("HP821", "`accelerator_type` is ignored: the SLURM job decides which GPUs "
                                            "the workers get")
    assert 'slurm { gpu_type = "..." }' in w.help


def test_a_searchers_max_concurrent_is_named_as_written_and_sent_to_tune_config(tmp_path: Path) -> None:
    """It was reported as "unknown key `max_concurrent_trials`", a key the config did not
    hold, which "belongs in `trials`", a section it has not."""
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {"name": "hyperopt", "metric": "loss", "mode": "min",
                                                "max_concurrent": 4}
    d = one_error(tmp_path, doc)
    assert (d.code, d.message, d.help) == (
        "HP201", "unknown key `max_concurrent` in `search_alg: {name: hyperopt}`",
        "limit the trials run at once with `max_concurrent_trials` in `tune_config`")


def test_a_tune_or_run_config_key_in_the_other_says_where_it_belongs(tmp_path: Path) -> None:
    """`time_budget_s` in `run_config` got the list of run_config's keys, not its home."""
    doc = seed()
    config(doc)["run_config"]["time_budget_s"] = 3600
    d = one_error(tmp_path, doc)
    assert (d.message, d.help) == ("unknown key `time_budget_s` in `run_config`", "`time_budget_s` belongs in `tune_config`")
    doc = seed()
    config(doc)["tune_config"]["checkpoint_config"] = {"num_to_keep": 2}
    assert one_error(tmp_path, doc).help == "`checkpoint_config` belongs in `run_config`"
    doc = seed()
    config(doc)["tune_config"]["num_workers"] = 2  # not "takes `num_samples`, ..."
    assert one_error(tmp_path, doc).help == "`num_workers` belongs in `scaling_config`"


def test_a_searcher_may_list_several_metrics_as_rays_optuna_takes_them(tmp_path: Path) -> None:
    """`metric: [loss, accuracy]`, `mode: [min, max]` (OptunaSearch's multi-objective form)
    was "must be a name, not a list", with "no `metric` is set" warned beside it."""
    doc = seed()
    tune = config(doc)["tune_config"]
    tune["search_alg"] = {"name": "optuna", "metric": ["loss", "accuracy"], "mode": ["min", "max"]}
    tune["metric"], tune["mode"] = "loss", "min"  # the first: what the scheduler ranks by
    result = compiled(tmp_path, doc)
    assert result.plan["objective"]["metrics"] == [{"name": "loss", "mode": "min"}, {"name": "accuracy", "mode": "max"}]
    assert "HP822" not in codes(result)
    tune["mode"] = "max"
    d = one_error(tmp_path, doc)
    assert d.message == "`mode` `max` contradicts `[min, max]` (`search_alg`, line 45)"
    tune["mode"], tune["search_alg"]["mode"] = "min", ["min"]
    assert one_error(tmp_path, doc).message == "`mode` gives 1 direction(s) for 2 metric(s)"
    tune["search_alg"]["mode"] = ["min", "max"]
    tune["metric"] = ["loss", "accuracy"]  # Tune's own metric is one name
    assert one_error(tmp_path, doc).message == "`metric` in `tune_config` must be a name, not a list"


@pytest.mark.parametrize("sampler, options", [
    ({"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 5, "seed": 7},
     {"sampler": "tpe", "n_startup_trials": 5, "seed": 7}),
    ({"class_path": "optuna.samplers.CmaEsSampler", "init_args": {"seed": 3}}, {"sampler": "cmaes", "seed": 3}),
    ({"_target_": "optuna.samplers.NSGAIISampler", "population_size": 8}, {"sampler": "nsga2", "population_size": 8}),
    ({"_target_": "optuna.samplers.RandomSampler"}, {"sampler": "random"}),
    ("optuna.samplers.GPSampler", {"sampler": "gp"}),
])
def test_an_optuna_sampler_written_as_an_object(tmp_path: Path, sampler, options) -> None:
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {"name": "optuna", "metric": "loss", "mode": "min", "sampler": sampler}
    plan = compiled(tmp_path, doc).plan
    given = {k: v for k, v in plan["search"]["options"].items() if v is not None}
    assert plan["search"]["algorithm"] == "optuna" and given == options


@pytest.mark.parametrize("sampler, message, help", [
    ({"_target_": "optuna.samplers.QMCSampler"}, "optuna sampler `optuna.samplers.QMCSampler` is not supported",
     "hpoc's optuna samplers: `TPESampler`, `RandomSampler`, `CmaEsSampler`, `GPSampler` or `NSGAIISampler`"),
    ({"_target_": "optuna.samplers.TPESampler", "multivariate": True},
     "`TPESampler` argument `multivariate` cannot be set in a config",
     "hpoc sets only `TPESampler`'s `seed` and `n_startup_trials`; remove `multivariate`"),
    # One rule for every class object (hpoc/yaml/classes.py): hydra's `_target_` takes its
    # arguments beside it, jsonargparse's `class_path` under `init_args` only; the sampler
    # read both beside either.
    ({"_target_": "optuna.samplers.TPESampler", "seed": 1, "init_args": {"seed": 2}},
     "`init_args` beside `_target_` in `sampler`",
     "beside `_target_` the class's arguments stand on their own (`init_args` goes with `class_path`)"),
    ({"class_path": "optuna.samplers.TPESampler", "seed": 1},
     "unknown key `seed` beside `class_path` in `sampler`", "put the class's arguments under `init_args`"),
    ({"class_path": "optuna.samplers.TPESampler", "_target_": "optuna.samplers.TPESampler"},
     "`sampler` names its class twice, with `_target_` and `class_path`", "keep one of them"),
])
def test_other_optuna_samplers_are_refused_with_the_list(tmp_path: Path, sampler, message, help) -> None:
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {"name": "optuna", "metric": "loss", "mode": "min", "sampler": sampler}
    err = one_error(tmp_path, doc)
    assert err.message.startswith(message), err.message
    assert help is None or err.help == help, err.help


def test_a_sampler_seed_and_the_searchers_seed_are_one(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {"name": "optuna", "seed": 1,
                                                "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 2}}
    err = one_error(tmp_path, doc)
    assert err.message.startswith("`seed` is given twice"), err.message


def test_the_summary_counts_in_words_that_agree(tmp_path: Path) -> None:
    from hpoc.compiler.summary import summarize

    lines = summarize(compiled(tmp_path / "a", seed()).plan)
    assert "trials: 2; each 4 workers × 5 CPUs + 1 GPU, ddp" in lines, lines
    doc = seed()
    config(doc)["scaling_config"] = {"num_workers": 1, "resources_per_worker": {"CPU": 1, "GPU": 2}}
    lines = summarize(compiled(tmp_path / "b", doc).plan)
    assert "trials: 2; each 1 worker × 1 CPU + 2 GPUs, ddp" in lines, lines


def test_a_few_seconds_of_time_budget_in_yaml_are_no_warning(tmp_path: Path) -> None:
    """`time_budget_s: 30` names its unit: HP817's "a bare number is seconds" (and its
    `30m` help, .hpo syntax) is for the .hpo language only."""
    doc = seed()
    config(doc)["tune_config"]["time_budget_s"] = 30
    result = compiled(tmp_path, doc)
    assert result.plan["trials"]["time_budget_s"] == 30
    assert not [w for w in result.warnings if w.code == "HP817"]


def test_itwinai_monitoring_flags_are_said_to_measure_nothing(tmp_path: Path) -> None:
    """`measure_gpu_data: true` reached a trainer that hands it to `RayTorchTrainer`, which took it
    without a word: the researcher waited for GPU data itwinai would have recorded."""
    doc = seed()
    trainer_args(doc).update(measure_gpu_data=True, enable_torch_profiling=True, measure_epoch_time=False)
    write(tmp_path, doc)
    (tmp_path / "trainer.py").write_text((tmp_path / "trainer.py").read_text().replace(
        "        logger: Logger | None = None,\n    ) -> None:\n"
        "        super().__init__(config=config, strategy=strategy, name=name, logger=logger)",
        "        logger: Logger | None = None, **kwargs,\n    ) -> None:\n"
        "        super().__init__(config=config, strategy=strategy, name=name, logger=logger, **kwargs)"))
    ws = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP821"]
    assert [w.message for w in ws] == [
        "`measure_gpu_data` is itwinai's GPU utilisation monitoring, which hpoc does not do: nothing is measured",
        "`enable_torch_profiling` is itwinai's PyTorch profiling, which hpoc does not do: nothing is measured"]
    assert ws[0].line == 56 and ws[0].help.startswith("remove it")  # `measure_epoch_time: false` asks nothing


def _takes_checkpoints_location(tmp_path: Path) -> None:
    """The tutorial's trainer given itwinai's `checkpoints_location` argument."""
    (tmp_path / "trainer.py").write_text((tmp_path / "trainer.py").read_text().replace(
        "        logger: Logger | None = None,\n    ) -> None:\n",
        "        logger: Logger | None = None, checkpoints_location: str = 'checkpoints',\n    ) -> None:\n"))


def test_a_relative_checkpoints_location_is_said_to_be_shared_by_every_trial(tmp_path: Path) -> None:
    """Ray ran each trial in its own directory, so itwinai's `checkpoints_location: checkpoints`
    was per trial; hpoc runs every trial in the config's directory, where they overwrite each
    other's `checkpoints/epoch_0.pt` without a word."""
    doc = seed()
    trainer_args(doc)["checkpoints_location"] = "checkpoints"
    write(tmp_path, doc)
    _takes_checkpoints_location(tmp_path)
    ws = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP827"]
    assert [(w.line, w.message) for w in ws] == [
        (56, "`checkpoints_location: checkpoints` is shared by every trial: they run in the config's "
             "directory, not each in its own as under Ray")]
    assert "self.trial_dir" in ws[0].help
    for absolute in ("/scratch/me/checkpoints", "~/checkpoints"):  # the user's own choice, said nothing
        trainer_args(doc)["checkpoints_location"] = absolute
        write(tmp_path, doc)
        assert "HP827" not in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]


def test_a_checkpoints_location_under_an_unset_variable_is_not_said_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`$SCRATCH/checkpoints`, checked where SCRATCH is not set (a laptop; set in the job):
    it names the user's own place, not a path relative to the config's directory."""
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    doc = seed()
    trainer_args(doc)["checkpoints_location"] = "$HPOC_TEST_UNSET/checkpoints"
    write(tmp_path, doc)
    _takes_checkpoints_location(tmp_path)
    assert "checkpoints_location: str" in (tmp_path / "trainer.py").read_text()
    assert "HP827" not in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]


def test_a_time_limit_or_an_old_local_dir_is_told_rays_key_for_it(tmp_path: Path) -> None:
    """`time_limit: 600` (a trial's or the study's?) and Ray's older `local_dir` got the list of
    keys, none of which looks like what the user meant."""
    for section in ("tune_config", "run_config"):
        doc = seed()
        config(doc)[section]["time_limit"] = 600
        assert one_error(tmp_path, doc).help == (
            "a trial's time limit is `stop: {time_total_s: 600}` in `run_config`; the whole study's, "
            "`time_budget_s: 600` in `tune_config`")
    doc = seed()
    config(doc)["run_config"]["local_dir"] = "ray_results"
    assert one_error(tmp_path, doc).help == "`local_dir` is Ray's older name of `storage_path`, in `run_config`"


def test_rays_memory_resource_is_told_where_hpoc_asks_for_memory(tmp_path: Path) -> None:
    """`memory` is Ray's own resource, not a custom one; the job's memory is SLURM's `mem`."""
    doc = seed()
    config(doc)["scaling_config"]["resources_per_worker"]["memory"] = 8 * 2**30
    d = one_error(tmp_path, doc)
    assert (d.code, d.message) == ("HP201", "`memory` per worker is not supported")
    assert d.help == ("the SLURM job asks for the nodes' memory: `hpoc convert` the config and set "
                      "`slurm { mem = \"64G\" }`")
