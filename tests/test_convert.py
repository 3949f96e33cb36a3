"""`hpoc convert`: an itwinai config as a .hpo study in `hpoc fmt`'s layout that compiles to
the same plan as the YAML (modulo the fields naming the source file)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpoc.cli import main
from hpoc.compiler import compile_path
from hpoc.dsl.format import format_study
from hpoc.dsl.parse import parse
from hpoc.yaml import convert
from yaml_configs import EXAMPLE, comparable, config, seed, trainer_args, write


def roundtrip(tmp_path: Path, doc) -> tuple[str, dict, dict]:
    """(converted text, YAML plan, plan of the converted .hpo beside it)."""
    path = write(tmp_path, doc)
    text, _ = convert(path)
    hpo = tmp_path / "study.hpo"
    hpo.write_text(text, encoding="utf-8")
    return text, compile_path(path).plan, compile_path(hpo).plan


def assert_same_study(tmp_path: Path, doc) -> str:
    text, from_yaml, from_hpo = roundtrip(tmp_path, doc)
    assert comparable(from_hpo) == comparable(from_yaml)
    assert (from_yaml["source"]["format"], from_hpo["source"]["format"]) == ("yaml", "hpo")
    assert format_study(parse(text, "study.hpo")) == text  # exactly `hpoc fmt`'s layout
    return text


def test_seed_config_converts_to_the_same_plan(tmp_path: Path) -> None:
    text = assert_same_study(tmp_path, (EXAMPLE / "config.yaml").read_text(encoding="utf-8"))
    assert "search optuna {\n  sampler          = tpe\n  n_startup_trials = 5\n}" in text
    assert "  learning_rate = uniform(1e-5, 1e-3)\n" in text  # numbers keep their spelling
    assert "# itwinai `bayes` (BayesOpt) cannot search `batch_size` (choice);" in text
    assert text.startswith("# Converted from config.yaml by `hpoc convert`")
    # The seed trainer reports `loss`: the converted study says nothing about it, like the YAML.
    # bayes; and 2 trials, all within the 5 random start-up steps (HP802) in both
    assert [w.code for w in compile_path(tmp_path / "config.yaml").warnings] == ["HP820", "HP802"]
    assert [w.code for w in compile_path(tmp_path / "study.hpo").warnings] == ["HP802"]  # HP820 is a comment now


def _variants() -> dict[str, dict]:
    out = {}
    doc = seed()
    trainer_args(doc)["strategy"] = "deepspeed"
    config(doc)["scaling_config"] = {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.5}}
    config(doc)["tune_config"]["reuse_actors"] = True
    out["deepspeed"] = doc
    doc = seed()
    config(doc)["train_loop_config"] = {
        "lr": {"type": "qloguniform", "lower": 1e-4, "upper": 1, "q": 1e-4, "base": 2},
        "noise": {"type": "randn", "stddev": 0.5},
        "layers": {"type": "qrandint", "min": 1, "max": 8, "q": 1},
        "width": {"type": "lograndint", "lower": 8, "upper": 512},
        "act": {"type": "choice", "categories": ["relu", "gelu", None]},
        "optimizer": {"name": "adam", "betas": [0.9, 0.999], "eps": {"type": "loguniform", "min": 1e-9, "max": 1e-6}},
        "if": {"in": True, "": "x"},
        "epochs": 2,
    }
    config(doc)["tune_config"]["search_alg"] = {"name": "random", "metric": "val_acc", "mode": "max", "seed": 7}
    config(doc)["tune_config"]["scheduler"] = {"name": "median", "grace_period": 2, "time_attr": "training_iteration"}
    out["domains"] = doc
    doc = seed()
    config(doc)["tune_config"]["scheduler"] = {
        "name": "pbt", "perturbation_interval": 2,
        "hyperparam_mutations": {"learning_rate": {"type": "uniform", "min": 1e-5, "max": 1e-3},
                                 "batch_size": [32, 64]}}
    config(doc)["run_config"].update({"stop": {"training_iteration": 4},
                                      "checkpoint_config": {"num_to_keep": 1},
                                      "failure_config": {"max_failures": 0}})
    out["pbt"] = doc
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {"name": "optuna", "metric": "loss", "mode": "min",
                                                "sampler": "cmaes", "n_startup_trials": 3}
    del config(doc)["run_config"]
    trainer_args(doc)["name"] = "seed trainer"
    del trainer_args(doc)["logger"]
    out["optuna, no run_config"] = doc
    doc = seed()
    config(doc)["train_loop_config"]["batch_size"] = {"type": "grid_search", "options": [32, 64]}
    config(doc)["tune_config"]["search_alg"] = {"name": "random", "metric": "loss", "mode": "min"}
    out["grid"] = doc
    doc = seed()
    config(doc)["tune_config"]["search_alg"] = {
        "name": "optuna", "metric": "loss", "mode": "min",
        "sampler": {"class_path": "optuna.samplers.NSGAIISampler", "init_args": {"seed": 5, "population_size": 4}}}
    out["optuna sampler object"] = doc
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_convert_to_the_same_plan(tmp_path: Path, name: str) -> None:
    assert_same_study(tmp_path, VARIANTS[name])


def test_find_unused_parameters_converts_to_resources(tmp_path: Path) -> None:
    doc = seed()
    config(doc)["find_unused_parameters"] = True
    text = assert_same_study(tmp_path, doc)
    assert "find_unused_parameters = true" in text
    assert compile_path(tmp_path / "study.hpo").plan["resources"]["find_unused_parameters"] is True


_key = st.text(string.ascii_letters + string.digits + "_- é\"\\", min_size=1, max_size=8).filter(
    lambda k: "." not in k and k.strip() == k and k != "type")
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
)
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_key, inner, max_size=3)), max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constants=st.dictionaries(_key, _value, min_size=1, max_size=4))
def test_any_constants_survive_conversion(tmp_path: Path, constants: dict) -> None:
    doc = seed()
    loop = config(doc)["train_loop_config"]
    loop.update({k: v for k, v in constants.items() if k not in loop})
    sub = tmp_path / str(abs(hash(repr(constants))))
    assert_same_study(sub, doc)


def test_cli_convert_to_stdout_and_to_a_file(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, seed())
    assert main(["convert", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("# Converted from config.yaml") and "HP820" in out.err
    assert main(["convert", str(path), "-o", str(tmp_path / "study.hpo")]) == 0
    assert (tmp_path / "study.hpo").read_text() == out.out
    assert main(["fmt", "--check", str(tmp_path / "study.hpo")]) == 0
    assert main(["check", "-q", str(tmp_path / "study.hpo")]) == 0


def test_cli_convert_elsewhere_notes_where_paths_resolve(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "cfg", seed())
    assert main(["convert", str(path), "-o", str(tmp_path / "study.hpo")]) == 0
    assert "relative paths (storage, modules) will resolve against" in capsys.readouterr().err


def test_cli_convert_refuses_errors_and_non_yaml(tmp_path: Path, capsys) -> None:
    doc = seed()
    config(doc)["tune_config"]["num_sample"] = 3
    path = write(tmp_path, doc)
    assert main(["convert", str(path), "-o", str(tmp_path / "out.hpo")]) == 2
    assert not (tmp_path / "out.hpo").exists()
    assert "unknown key `num_sample` in `tune_config`" in capsys.readouterr().err
    assert main(["convert", str(EXAMPLE.parent / "fashion_mnist" / "study.hpo")]) == 2
    assert "not a YAML config" in capsys.readouterr().err


def test_cli_convert_of_a_directory_names_the_config_in_it(capsys) -> None:
    """`hpoc convert examples/itwinai` said ".hpo files need no converting"."""
    assert main(["convert", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "is a directory; pass the itwinai config" in err and str(EXAMPLE / "config.yaml") in err
    assert "need no converting" not in err


def test_cli_convert_refuses_to_overwrite_its_input(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, seed())
    before = path.read_text()
    (tmp_path / "link.yaml").symlink_to(path)
    for out in (path, tmp_path / "." / path.name, tmp_path / "link.yaml"):
        assert main(["convert", str(path), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "is the config being converted; refusing to overwrite it" in err, err
        assert "-o config.hpo" in err
    assert path.read_text() == before


def test_cli_convert_into_a_missing_directory_names_the_file_asked_for(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, seed())
    assert main(["convert", str(path), "-o", str(tmp_path / "no" / "study.hpo")]) == 2
    err = capsys.readouterr().err
    assert f"hpoc: error: {tmp_path / 'no' / 'study.hpo'}: No such file or directory" in err, err
    assert ".tmp" not in err  # the temporary file beside it is hpoc's business


def test_example_config_and_its_conversion_agree(tmp_path: Path) -> None:
    text, _ = convert(EXAMPLE / "config.yaml")
    hpo = EXAMPLE / ".converted-test.hpo"
    try:
        hpo.write_text(text, encoding="utf-8")
        assert comparable(compile_path(hpo).plan) == comparable(compile_path(EXAMPLE / "config.yaml").plan)
    finally:
        hpo.unlink()


def test_cli_convert_keeps_a_study_edited_since_it_was_converted(tmp_path: Path, capsys) -> None:
    """Converting again (after editing the YAML) replaced the study's added `slurm` block
    without a word."""
    path = write(tmp_path, seed())
    study = tmp_path / "study.hpo"
    assert main(["convert", str(path), "-o", str(study)]) == 0
    assert main(["convert", str(path), "-o", str(study)]) == 0  # the same conversion: nothing to keep
    assert "is up to date" in capsys.readouterr().err
    edited = study.read_text() + "\nslurm { nodes = 2 }\n"
    study.write_text(edited)
    assert main(["convert", str(path), "-o", str(study)]) == 2
    assert "exists and differs from this conversion" in capsys.readouterr().err
    assert study.read_text() == edited
    assert main(["convert", str(path), "-o", str(study), "--force"]) == 0
    assert "slurm" not in study.read_text()
