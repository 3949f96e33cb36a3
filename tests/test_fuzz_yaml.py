"""Fuzzing itwinai YAML configs: mutations of examples/itwinai/config.yaml and of
tests/corpus/*.yaml (indentation, YAML tags, anchors, values, splices).

For every input, in this process and under a time limit per case: `hpoc check` exits 0, or
2 with errors located as FILE:LINE:COL (never a traceback or a hang). A config that checks
clean compiles to a schema-valid plan whose SLURM scripts render, and its translation,
printed as .hpo by the formatter, compiles to the same plan (the YAML front end builds the
AST the .hpo parser would).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_harness import (note_event, CI_CASES, CORPUS, ROOT, STRESS_CASES, YAML_SEEDS, YAML_TOKENS, assert_located,
                          assert_no_crash, mutated_bytes, plan_core, run_cli, time_limit)

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))
CONFIGS = sorted(CORPUS.glob("*.yaml")) + [ROOT / "examples/itwinai/config.yaml"]
# YAML is slower to mutate into something meaningful; half the .hpo count keeps CI short.
YAML_CI_CASES = max(1, CI_CASES // 2)
# Whole-file problems: nothing to point at (a blank file), or no position known (the YAML
# parser's recursion limit).
WHOLE_FILE = ("file is empty", "YAML is nested too deeply")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-yaml")


def same_as_hpo(path: Path, plan: dict, case: object) -> None:
    from hpoc.compiler import compile_text
    from hpoc.dsl.format import format_study
    from hpoc.yaml import read, translate

    text, _ = read(path)
    hpo = format_study(translate(text, str(path), str(path.parent)).study)
    other = compile_text(hpo, str(path.with_suffix(".hpo")), str(path.parent)).plan
    a, b = plan_core(plan), plan_core(other)
    a.pop("source"), b.pop("source")
    assert a == b, f"the .hpo form of {case!r} compiles to another plan:\n{hpo}"


def check_case(workdir: Path, data: bytes) -> None:
    from hpoc.compiler import compile_path
    from hpoc.compiler.render import render_all
    from hpoc.plan import content_hash
    from hpoc.plan.validate import validate

    path = workdir / "config.yaml"
    path.write_bytes(data)
    with time_limit():
        code, out, err = run_cli(["check", str(path)])
        assert_no_crash(code, out + err, data)
        note_event(f"check exit {code}")
        if code == 2:
            assert_located(str(path), code, out + err, data, WHOLE_FILE)
            return
        plan = compile_path(path).plan
        plan["content_hash"] = content_hash(plan)
        validate(plan, path)
        render_all(plan, plan_path=str(workdir / "build" / "plan.json"))
        same_as_hpo(path, plan, data)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_seed_configs_check_clean(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(config.read_bytes())
    check_case(tmp_path, config.read_bytes())
    code, out, err = run_cli(["check", str(path)])
    assert code == 0 and "is valid" in out, err


# CI checks the same cases every run (a failure is never luck); `make stress` explores
@settings(max_examples=YAML_CI_CASES, derandomize=True, **SETTINGS)
@given(data=mutated_bytes(YAML_SEEDS, YAML_TOKENS))
def test_mutated_configs_succeed_or_fail_located(workdir: Path, data: bytes) -> None:
    check_case(workdir, data)


@pytest.mark.stress
@settings(max_examples=STRESS_CASES, **SETTINGS)
@given(data=mutated_bytes(YAML_SEEDS, YAML_TOKENS))
def test_mutated_configs_succeed_or_fail_located_stress(workdir: Path, data: bytes) -> None:
    check_case(workdir, data)


@pytest.mark.parametrize("text", [
    "a: &a [*a]\n",                                        # recursive alias
    "a: &a\n  b: *a\n",
    "x: " + "[" * 5000 + "\n",                             # deep nesting
    "- " * 2000 + "x\n",
    "a: !!python/object/apply:os.system ['touch /tmp/PWNED_yaml']\n",  # code-running tag
    "lol: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(     # billion laughs
        f"l{i}: &a{i} [*{'a' if i == 0 else f'a{i - 1}'}, *{'a' if i == 0 else f'a{i - 1}'}]\n" for i in range(30)),
    "\ufeffray_training_pipeline: 1\n",
    "ray_training_pipeline:\n\tclass_path: x\n",
    "%YAML 1.1\n---\nray_training_pipeline: {}\n...\n---\nsecond: doc\n",
    "",
    "\x00",
], ids=["alias-loop", "alias-self", "deep-flow", "deep-block", "python-tag", "laughs", "bom", "tab",
        "two-docs", "empty", "nul"])
def test_pathological_configs(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with time_limit():
        code, out, err = run_cli(["check", str(path)])
    assert_no_crash(code, out + err, text)
    assert_located(str(path), code, out + err, text, WHOLE_FILE)
    assert not Path("/tmp/PWNED_yaml").exists()
