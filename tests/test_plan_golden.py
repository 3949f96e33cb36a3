"""Plans: golden files for the examples, determinism, schema validity, defaults."""

from __future__ import annotations

import copy
import difflib
import json
import shutil
from pathlib import Path

import pytest

from hpo_util import BASE, EXAMPLES, ROOT, plan_of
from hpoc import plan as plan_mod
from hpoc.compiler import compile_file
from hpoc.plan.validate import validate

GOLDEN = Path(__file__).parent / "golden" / "plan"
CASES = {**EXAMPLES, "kitchen_sink": GOLDEN / "kitchen_sink.hpo"}


def _normalised(path: Path) -> str:
    """Plan text with the machine-specific directory replaced by `$WORKDIR` (and the
    content hash, which covers that directory, by `$HASH`)."""
    plan = compile_file(path)
    workdir = plan["source"]["workdir"]
    text = plan_mod.dumps(plan)
    text = text.replace(plan_mod.content_hash(plan), "$HASH")
    return text.replace(json.dumps(workdir)[1:-1], "$WORKDIR")


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(case: str, update_golden: bool) -> None:
    got = _normalised(CASES[case])
    golden = GOLDEN / f"{case}.plan.json"
    if update_golden:
        golden.write_text(got, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8") if golden.exists() else ""
    if got != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), str(golden), "compiled"))
        pytest.fail(f"plan of {case} differs from {golden}:\n{diff}\naccept with: pytest tests/test_plan_golden.py --update-golden")


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_validates_against_schema(case: str) -> None:
    plan = json.loads(plan_mod.dumps(compile_file(CASES[case])))
    validate(plan, case)


def test_schema_rejects_broken_plans() -> None:
    good = json.loads(plan_mod.dumps(compile_file(EXAMPLES["digits"])))
    broken = [
        lambda p: p.pop("slurm"),
        lambda p: p["resources"].update(strategy="horovod"),
        lambda p: p["space"]["params"][0].update(domain="uniformm"),
        lambda p: p["space"]["params"][0]["args"].pop("upper"),
        lambda p: p["trials"].update(num_samples=0),
        lambda p: p["storage"].update(path="relative/path"),
        lambda p: p["pipeline"]["trainer"].update(target="no_colon"),
        lambda p: p.update(extra_key=1),
    ]
    for i, breaker in enumerate(broken):
        plan = copy.deepcopy(good)
        breaker(plan)
        with pytest.raises(plan_mod.PlanError):
            validate(plan, f"broken-{i}")


def test_compiling_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    for path in CASES.values():
        assert plan_mod.dumps(compile_file(path)) == plan_mod.dumps(compile_file(path))


def test_plan_depends_on_place_not_on_spelling_of_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "study.hpo"
    shutil.copy(EXAMPLES["digits"], spec)
    monkeypatch.chdir(tmp_path)
    relative = plan_mod.dumps(compile_file("study.hpo"))
    absolute = plan_mod.dumps(compile_file(spec))
    assert relative == absolute
    plan = json.loads(absolute)
    assert plan["source"]["workdir"] == str(tmp_path)
    assert plan["storage"]["path"] == str(tmp_path / "results")
    assert plan["content_hash"] == plan_mod.content_hash(plan)


def test_minimal_plan_has_every_key_with_defaults() -> None:
    plan = plan_of(BASE, workdir="/w")
    assert plan["study"] == {"name": "t"}
    assert plan["search"] == {"algorithm": "random", "options": {"seed": None, "points_to_evaluate": None}}
    assert plan["scheduler"] == {"name": "fifo", "time_attr": "training_iteration", "options": {}}
    assert plan["objective"] == {"metrics": []}
    assert plan["trials"] == {"num_samples": 1, "max_concurrent": None, "time_budget_s": None,
                              "time_limit_s": None, "stop": {}}
    assert plan["resources"] == {
        "workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0, "strategy": "ddp", "deepspeed": None,
        "reuse_workers": False, "find_unused_parameters": None,
    }  # fmt: skip
    assert plan["training"] == {"precision": "auto", "compile": False, "seed": None, "data_on_device": "auto"}
    assert plan["failure"] == {"max_retries": 2, "fail_fast": 3}
    assert plan["checkpoint"] == {"every": 1, "keep": 2, "score_attribute": None, "score_order": None}
    assert plan["resume"] == {"enabled": True, "retry_errored": True, "grace_s": 120}
    assert plan["storage"] == {"path": "/w/results", "name": "t"}
    assert plan["loggers"] == [] and plan["slurm"] is None
    assert plan["shards"] == {"count": 1, "parallel": 1}
    assert set(plan) == set(plan_mod_keys())
    validate(json.loads(plan_mod.dumps(plan)))


def plan_mod_keys() -> list[str]:
    schema = json.loads((ROOT / "hpoc/plan/schema.json").read_text())
    return [k for k in schema["required"] if k != "content_hash"]


def test_spans_map_plan_paths_to_the_spec() -> None:
    plan = compile_file(EXAMPLES["fashion_mnist"])
    lines = EXAMPLES["fashion_mnist"].read_text().splitlines()
    for path, where in [("scheduler.options.max_t", "max_t"), ("space.params.1", "learning_rate"),
                        ("slurm.time", "time"), ("pipeline.trainer", "trainer")]:  # fmt: skip
        file, line, col = plan["spans"][path].rsplit(":", 2)
        assert file == "study.hpo"
        assert lines[int(line) - 1][int(col) - 1 :].startswith(where), path
