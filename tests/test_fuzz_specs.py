"""Fuzzing .hpo specs: mutations of the examples and of tests/corpus/*.hpo.

For every input, in this process and under a time limit per case:
* `hpoc check` exits 0, or exits 2 with errors located as FILE:LINE:COL (no traceback,
  no internal error, no hang);
* a spec that checks clean compiles to a plan that passes the plan schema and renders its
  SLURM scripts;
* `hpoc fmt` never crashes; on a clean spec its output is stable under a second `fmt` and
  checks to the same plan (only the text's hash and the spans differ).

tests/test_dsl_fuzz.py covers the parser alone (arbitrary bytes, pathological nesting,
random well-formed ASTs); this file adds the corpus, token-level and splice mutations,
locations, the formatter round trip and the per-case time limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_harness import (note_event, CI_CASES, CORPUS, HPO_SEEDS, ROOT, STRESS_CASES, assert_located,
                          assert_no_crash, hpo_tokens, mutated_bytes, plan_core, run_cli, time_limit)

TOKENS = hpo_tokens()
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))
SPECS = sorted(CORPUS.glob("*.hpo")) + [ROOT / "examples/digits/study.hpo",
                                         ROOT / "examples/fashion_mnist/study.hpo"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-hpo")


def clean_plan(path: Path) -> dict:
    """The plan of a spec that checked clean; it must satisfy the schema and render."""
    from hpoc.compiler import compile_path
    from hpoc.compiler.render import render_all
    from hpoc.plan import content_hash
    from hpoc.plan.validate import validate

    plan = compile_path(path).plan
    plan["content_hash"] = content_hash(plan)
    validate(plan, path)  # raises PlanError: the compiler emitted a plan the runtime refuses
    render_all(plan, plan_path=str(path.parent / "build" / "plan.json"))
    return plan


def fmt_round_trip(path: Path, plan: dict, case: object) -> None:
    code, formatted, err = run_cli(["fmt", str(path)])
    assert code == 0 and not err.strip(), f"fmt failed on a clean spec {case!r}:\n{err}"
    path.write_text(formatted, encoding="utf-8")
    code, out, err = run_cli(["check", "-q", "--no-warnings", str(path)])
    assert code == 0, f"the formatted spec no longer checks ({case!r}):\n{formatted}\n{err}"
    assert plan_core(clean_plan(path)) == plan_core(plan), f"fmt changed the plan of {case!r}:\n{formatted}"
    code, again, _ = run_cli(["fmt", str(path)])
    assert code == 0 and again == formatted, f"fmt is not idempotent on {case!r}"


def check_case(workdir: Path, data: bytes) -> None:
    path = workdir / "study.hpo"
    path.write_bytes(data)
    with time_limit():
        code, out, err = run_cli(["check", str(path)])
        assert_no_crash(code, out + err, data)
        note_event(f"check exit {code}")
        if code == 2:
            assert_located(str(path), code, out + err, data)
            fcode, _, ferr = run_cli(["fmt", str(path)])
            note_event(f"fmt of a failing spec: exit {fcode}")
            assert_no_crash(fcode, ferr, data)
            if fcode == 2:  # only a syntax error stops fmt, and it is located too
                assert_located(str(path), fcode, ferr, data)
            return
        fmt_round_trip(path, clean_plan(path), data)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_seed_specs_check_clean_and_survive_fmt(spec: Path, tmp_path: Path) -> None:
    path = tmp_path / "study.hpo"
    path.write_bytes(spec.read_bytes())
    code, out, err = run_cli(["check", str(path)])
    assert code == 0, err
    fmt_round_trip(path, clean_plan(path), spec.name)


def test_the_corpus_is_varied(tmp_path: Path) -> None:
    """The seeds cover every search algorithm and scheduler, conditions and site blocks."""
    from hpoc.compiler import compile_text

    # An empty spec directory: a stray /tmp/trainer.py was read as the study's trainer.
    plans = [compile_text(t, "s.hpo", str(tmp_path)).plan for t in HPO_SEEDS]
    assert {p["search"]["algorithm"] for p in plans} >= {
        "random", "grid", "optuna", "hyperopt", "bayesopt", "hebo", "nevergrad", "ax", "bohb"}
    assert {p["scheduler"]["name"] for p in plans} >= {"fifo", "asha", "hyperband", "median", "pbt", "pb2", "bohb"}
    assert any(q["condition"] for p in plans for q in p["space"]["params"])
    assert any(p["slurm"] and p["slurm"]["container"] for p in plans)
    assert any(p["shards"]["count"] > 1 for p in plans)
    assert any(p["resources"]["strategy"] == "deepspeed" for p in plans)


# CI checks the same cases every run (a failure is never luck); `make stress` explores
@settings(max_examples=CI_CASES, derandomize=True, **SETTINGS)
@given(data=mutated_bytes(HPO_SEEDS, TOKENS))
def test_mutated_specs_succeed_or_fail_located(workdir: Path, data: bytes) -> None:
    check_case(workdir, data)


@pytest.mark.stress
@settings(max_examples=STRESS_CASES, **SETTINGS)
@given(data=mutated_bytes(HPO_SEEDS, TOKENS))
def test_mutated_specs_succeed_or_fail_located_stress(workdir: Path, data: bytes) -> None:
    check_case(workdir, data)


def test_a_hang_is_reported_not_waited_for() -> None:
    """The per-case limit really interrupts a case (so a hang fails the test quickly)."""
    import time

    from fuzz_harness import CaseTimeout

    start = time.monotonic()
    with pytest.raises(CaseTimeout):
        with time_limit(0.2):
            while True:
                pass
    assert time.monotonic() - start < 5
