"""`${oc.env:VAR}` and `${oc.env:VAR,default}` in itwinai configs (OmegaConf's resolver, as
users on JUWELS or LUMI write `${oc.env:SCRATCH}/data`): refused (HP113) until hpoc read
them. hpoc reads the variable when it compiles, on the machine it compiles on, and the
plan holds the value (docs/migrating-from-itwinai.md says why)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpoc.compiler import compile_path
from hpoc.errors import SpecError
from yaml_configs import EXAMPLE, write

SEED = (EXAMPLE / "config.yaml").read_text(encoding="utf-8")


def compiled(tmp_path: Path, old: str, new: str) -> dict:
    assert old in SEED, old
    write(tmp_path, SEED.replace(old, new, 1))
    return compile_path(tmp_path / "config.yaml").plan


def refused(tmp_path: Path, old: str, new: str) -> list:
    write(tmp_path, SEED.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    return [d for d in info.value.diagnostics if d.code == "HP113"]


def test_a_variable_is_read_into_paths_arguments_and_values(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HPOC_TEST_SCRATCH", str(tmp_path / "scratch"))
    plan = compiled(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${oc.env:HPOC_TEST_SCRATCH}/hpo")
    assert plan["storage"]["path"] == str(tmp_path / "scratch" / "hpo")
    plan = compiled(tmp_path, "- class_path: data.FashionMNISTGetter",
                    "- class_path: data.FashionMNISTGetter\n        init_args:\n"
                    '          root: "${oc.env:HPOC_TEST_SCRATCH}/fmnist"')
    assert plan["pipeline"]["getter"]["args"] == {"root": f"{tmp_path}/scratch/fmnist"}
    # a value that is the variable alone is its text, as OmegaConf gives it (a string)
    monkeypatch.setenv("HPOC_TEST_TAG", "run-${x}")  # not a reference: the variable's text as it is
    plan = compiled(tmp_path, "epochs: 20", "epochs: 20\n              tag: ${oc.env:HPOC_TEST_TAG}")
    assert plan["space"]["constants"]["tag"] == "run-${x}"


def test_a_default_after_the_comma_is_used_when_the_variable_is_unset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    for written, value in (("${oc.env:HPOC_TEST_UNSET,/tmp/x}/data", "/tmp/x/data"),
                           ("${oc.env:HPOC_TEST_UNSET, /tmp/y}", "/tmp/y"),  # OmegaConf strips spaces
                           ("\"${oc.env:HPOC_TEST_UNSET,'a,b'}\"", "a,b"),  # a quoted default keeps its comma
                           ("${oc.env:HPOC_TEST_UNSET,null}", None),
                           ("${oc.env:HPOC_TEST_UNSET,8}", "8")):  # OmegaConf's default is a string too
        plan = compiled(tmp_path, "epochs: 20", f"epochs: 20\n              where: {written}")
        assert plan["space"]["constants"]["where"] == value, written
    monkeypatch.setenv("HPOC_TEST_UNSET", "/set")  # a set variable wins over its default
    plan = compiled(tmp_path, "epochs: 20", "epochs: 20\n              where: ${oc.env:HPOC_TEST_UNSET,/tmp/x}")
    assert plan["space"]["constants"]["where"] == "/set"


def test_an_unset_variable_without_a_default_is_an_error_where_it_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${oc.env:HPOC_TEST_UNSET}/hpo")
    assert (d.line, d.col) == (42, 29)
    assert d.message == "environment variable `HPOC_TEST_UNSET` is not set (`${oc.env:HPOC_TEST_UNSET}`)"
    assert d.help == ("hpoc reads it when it compiles, here: export it before `hpoc check`/`submit`, or "
                      "give a default, `${oc.env:HPOC_TEST_UNSET,/a/path}`")


def test_a_jobs_own_variable_is_refused_as_the_compile_cannot_know_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "123")  # compiled inside an allocation: still not the job's
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${oc.env:SLURM_JOB_ID,0}/hpo")
    assert d.message == ("`${oc.env:SLURM_JOB_ID,0}` is the job's own variable: hpoc reads `${oc.env:...}` "
                         "when it compiles, before the job exists")
    assert d.help == 'read it where it is used, as the trial runs (`os.environ["SLURM_JOB_ID"]`)'


def test_other_resolvers_stay_refused_with_what_is_supported(tmp_path: Path) -> None:
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${now:%Y-%m-%d}/hpo")
    assert d.message == "resolver `${now:%Y-%m-%d}` is not supported"
    assert d.help == ("hpoc reads `${oc.env:VAR}` (or `${oc.env:VAR,default}`) and references to the file's own "
                      "keys (`${a.b}`); write the value itself")
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${oc.env:}/hpo")
    assert d.message == "`${oc.env:}` names no variable"
    assert d.help == "write `${oc.env:VAR}`, or `${oc.env:VAR,default}`"



def test_a_default_that_is_itself_an_interpolation_is_resolved(tmp_path: Path, monkeypatch) -> None:
    # OmegaConf resolves `${...}` inside a resolver's arguments: the value, never the text
    # `${oc.env:A,val}` left half-read
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    monkeypatch.setenv("HPOC_TEST_SET", "/set")
    for written, value in (("${oc.env:HPOC_TEST_UNSET,${oc.env:HPOC_TEST_SET}}", "/set"),
                           ("${oc.env:HPOC_TEST_UNSET,${ray_training_pipeline.class_path}}/x",  # a key of the file
                            "itwinai.pipeline.Pipeline/x"),
                           ("${oc.env:HPOC_TEST_UNSET,'${oc.env:HPOC_TEST_SET}/a,b'}", "/set/a,b"),
                           ("${oc.env:HPOC_TEST_SET,${oc.env:HPOC_TEST_UNSET,x}}", "/set"),
                           ("${oc.env:HPOC_TEST_UNSET,NULL}", None),  # OmegaConf's null in any case
                           ("${oc.env:'HPOC_TEST_SET'}", "/set"),  # a quoted name
                           ("${oc.env:HPOC_TEST_UNSET,a\\,b}", "a,b"),  # an escaped comma
                           # an unquoted number or bool as OmegaConf writes it back: str(1e-3), str(True)
                           ("${oc.env:HPOC_TEST_UNSET,1e-3}", "0.001"), ("${oc.env:HPOC_TEST_UNSET,1_000}", "1000"),
                           ("${oc.env:HPOC_TEST_UNSET,true}", "True"), ("${oc.env:HPOC_TEST_UNSET,007}", "007"),
                           ("${oc.env:HPOC_TEST_UNSET,'1e-3'}", "1e-3")):
        plan = compiled(tmp_path, "epochs: 20", f"epochs: 20\n              where: \"{written}\"".replace("\\", "\\\\"))
        assert plan["space"]["constants"]["where"] == value, written


def test_a_default_in_the_default_that_is_unset_is_an_error_as_in_omegaconf(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    monkeypatch.setenv("HPOC_TEST_SET", "/set")
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints",
                   "storage_path: ${oc.env:HPOC_TEST_SET,${oc.env:HPOC_TEST_UNSET}}")
    assert d.message == "environment variable `HPOC_TEST_UNSET` is not set (`${oc.env:HPOC_TEST_UNSET}`)"
    (d,) = refused(tmp_path, "storage_path: ray_checkpoints", "storage_path: ${oc.env:HPOC_TEST_UNSET,a b,c}")
    assert d.message == "`${oc.env:HPOC_TEST_UNSET,a b,c}` has more than a variable and a default"
    assert d.help == "quote a default that holds a comma: `${oc.env:HPOC_TEST_UNSET,'a b,c'}`"


def test_defaults_nested_past_any_need_are_refused_not_a_crash(tmp_path: Path) -> None:
    deep = "${oc.env:HPOC_TEST_UNSET," * 400 + "x" + "}" * 400
    write(tmp_path, SEED.replace("storage_path: ray_checkpoints", f'storage_path: "{deep}"', 1))
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    (d,) = info.value.diagnostics
    assert (d.code, d.message) == ("HP111", "`${...}` nested more than 16 deep")


def test_a_number_read_from_a_variable_is_a_string_and_the_error_says_why(tmp_path: Path, monkeypatch) -> None:
    # OmegaConf gives `${oc.env:N,4}` as the string "4": refused where a number is due, with
    # a help that names the resolver (not "write the reference alone", as the user did)
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    for old, new in (("num_samples: 2", "num_samples: ${oc.env:HPOC_TEST_UNSET,4}"),
                     ("epochs: 20", "epochs: ${oc.env:HPOC_TEST_UNSET,4}")):
        write(tmp_path, SEED.replace(old, new, 1))
        with pytest.raises(SpecError) as info:
            compile_path(tmp_path / "config.yaml")
        (d,) = [d for d in info.value.diagnostics if d.code == "HP203"]
        assert d.help == "`${oc.env:...}` gives a string, as in OmegaConf: write the number itself", new


OTHER_PIPELINE = """
training_pipeline:
  class_path: itwinai.pipeline.Pipeline
  init_args:
    steps:
      - class_path: data.FashionMNISTGetter
        init_args:
          root: {root}
"""


def test_a_variable_only_another_pipeline_reads_is_not_needed(tmp_path: Path, monkeypatch) -> None:
    # itwinai (OmegaConf) resolves the pipeline it runs: one for plain training that reads
    # the job's `SLURM_JOB_ID`, or a variable set only where it runs, is no error here
    monkeypatch.delenv("HPOC_TEST_UNSET", raising=False)
    for root in ("${oc.env:HPOC_TEST_UNSET}/data", "/scratch/${oc.env:SLURM_JOB_ID}"):
        write(tmp_path, SEED + OTHER_PIPELINE.format(root=root))
        assert compile_path(tmp_path / "config.yaml").plan["pipeline"]["getter"]["args"] == {}, root
    # nor one in a top-level value the pipeline does not refer to
    write(tmp_path, "scratch: ${oc.env:HPOC_TEST_UNSET}\n" + SEED)
    assert compile_path(tmp_path / "config.yaml").plan["storage"]["path"].endswith("ray_checkpoints")
    # the pipeline hpoc runs still needs what it refers to there
    doc = SEED.replace("storage_path: ray_checkpoints", "storage_path: ${training_pipeline.init_args.steps.0"
                       ".init_args.root}") + OTHER_PIPELINE.format(root="${oc.env:HPOC_TEST_UNSET}/data")
    write(tmp_path, doc)
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    (d,) = info.value.diagnostics
    assert d.message == "environment variable `HPOC_TEST_UNSET` is not set (`${oc.env:HPOC_TEST_UNSET}`)"
    assert d.line == 42  # where the pipeline refers to it
