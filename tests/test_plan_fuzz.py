"""Hand-edited plan.json files: the runtime refuses broken ones with a readable PlanError.

Plans compiled from the corpus and the examples are edited the ways people (and scripts)
break them: a key dropped, a value of another type, a key added, another `plan_version`,
list entries dropped or repeated, the JSON text itself cut or corrupted. Then:

* `hpoc.plan.load` raises PlanError with a short message naming the plan file and the
  JSON path of each problem, or - for an edit the schema allows (a value of another type
  that is still valid) - the plan loads and the runtime's own reading of it (search
  algorithm, scheduler, space, SLURM scripts) fails only with its own clean errors;
* every dropped key and every added key of a section is refused (the contract in
  docs/plan.md: every key is always present, nothing else is);
* `python -m hpoc.runtime PLAN` and `hpoc run PLAN` exit 2 with `error: ...` and no
  traceback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_harness import CI_CASES, CORPUS, ROOT, STRESS_CASES, note_event, run_cli, time_limit

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))
PLAN_CI_CASES = max(1, CI_CASES // 2)
# Maps whose keys are the user's (trainer arguments, constants, environment, ...) or the
# algorithm's: adding or dropping one of their keys is not a schema matter.
FREE_FORM = {("pipeline", "*", "args"), ("space", "constants"), ("search", "options"),
             ("scheduler", "options"), ("slurm", "env"), ("trials", "stop"), ("spans",)}
# Keys a plan may lack (plans written before the key existed; docs/plan.md gives the default).
OPTIONAL = {("resources", "reuse_workers"), ("resources", "find_unused_parameters"), ("slurm", "gpu_type"),
            ("slurm", "gpu_request"), ("failure", "fail_fast"), ("source", "words"), ("source", "pipe_key"),
            ("trials", "time_limit_s")}
OTHER_TYPES = [None, "x", "", 0, -1, 7, 1.5, True, False, [], [1], {}, {"k": 1}, 10**30]


def _base_plans() -> list[dict[str, Any]]:
    from hpoc.compiler import compile_text
    from hpoc.plan import content_hash

    specs = sorted(CORPUS.glob("*.hpo")) + [ROOT / "examples/digits/study.hpo"]
    plans = []
    for spec in specs:
        plan = compile_text(spec.read_text(encoding="utf-8"), spec.name, "/tmp/hpoc-plan-fuzz").plan
        plan["content_hash"] = content_hash(plan)
        plans.append(plan)
    return plans


ALL_PLANS = BASES = _base_plans()  # with and without an objective


def _free(path: tuple) -> bool:
    """Whether `path` lies inside a free-form map (below it, not the map itself)."""
    for pattern in FREE_FORM:
        n = len(pattern)
        if len(path) > n and all(p == "*" or p == q for p, q in zip(pattern, path[:n])):
            return True
    return False


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def edited(draw: st.DrawFn) -> tuple[str, str, tuple, str | bytes]:
    """(kind, description, path, plan text) of one edit of one base plan."""
    plan = copy.deepcopy(draw(st.sampled_from(BASES)))
    kind = draw(st.sampled_from(["drop", "retype", "extra", "version", "list", "text"]))
    paths = [p for p in _paths(plan) if not _free(p)]
    if kind == "drop":
        path = draw(st.sampled_from([p for p in paths if isinstance(p[-1], str)]))
        del _get(plan, path[:-1])[path[-1]]
    elif kind == "retype":
        path = draw(st.sampled_from(paths))
        old = _get(plan, path)
        new = draw(st.sampled_from([v for v in OTHER_TYPES if type(v) is not type(old)]))
        _get(plan, path[:-1])[path[-1]] = new
    elif kind == "extra":
        dicts = [()] + [p for p in paths if isinstance(_get(plan, p), dict) and not _free(p + ("x",))]
        path = draw(st.sampled_from(dicts))
        key = draw(st.sampled_from(["bogus", "Nodes", "plan_version ", "gpus_per_nodes", "__proto__"]))
        _get(plan, path)[key] = draw(st.sampled_from(OTHER_TYPES))
        path = path + (key,)
    elif kind == "version":
        path = ("plan_version",)
        plan["plan_version"] = draw(st.sampled_from([0, 2, -1, "1", None, 1.5, True, [1], 10**12]))
    elif kind == "list":
        lists = [p for p in paths if isinstance(_get(plan, p), list) and _get(plan, p)]
        if not lists:
            return "none", "no list", (), json.dumps(plan)
        path = draw(st.sampled_from(lists))
        items = _get(plan, path)
        i = draw(st.integers(0, len(items) - 1))
        if draw(st.booleans()):
            del items[i]
        else:
            items.insert(i, copy.deepcopy(items[i]))
        kind = "list-edit"
    else:
        text = json.dumps(plan, indent=2).encode()
        cut = draw(st.integers(0, len(text) - 1))
        how = draw(st.sampled_from(["truncate", "byte", "top"]))
        data = (text[:cut] if how == "truncate" else
                text[:cut] + bytes([draw(st.sampled_from([0xFF, 0x00, 0x7B, 0x22, 0x5D]))]) + text[cut + 1:]
                if how == "byte" else draw(st.sampled_from([b"[]", b"1", b"null", b'"plan"', b""])))
        return "text", how, (), data
    return kind, ".".join(map(str, path)), path, json.dumps(plan, indent=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-plan")


def readable(message: str, plan_path: Path) -> None:
    lines = message.splitlines()
    assert lines and lines[0].startswith(str(plan_path)), message
    assert len(lines) <= 25 and all(len(ln) <= 240 for ln in lines), message
    assert "Traceback" not in message, message


def runtime_reads_cleanly(plan: dict[str, Any], workdir: Path) -> None:
    """What the runtime derives from a plan before Ray starts must fail only cleanly."""
    from hpoc.compiler.render import RenderError, render_all
    from hpoc.runtime import search, space

    try:
        search.require_libraries(plan["search"]["algorithm"])
        search.make_scheduler(plan)
        search.make_searcher(plan, 0)
    except (search.SearchError, space.SpaceError):
        pass
    try:
        render_all(plan, plan_path=str(workdir / "plan.json"))
    except RenderError:
        pass


def check_edit(workdir: Path, case: tuple) -> None:
    from hpoc.plan import PlanError, load

    kind, what, path, text = case
    plan_path = workdir / "plan.json"
    if isinstance(text, bytes):
        plan_path.write_bytes(text)
    else:
        plan_path.write_text(text, encoding="utf-8")
    with time_limit():
        try:
            plan = load(plan_path)
        except PlanError as exc:
            note_event(f"{kind}: refused")
            readable(str(exc), plan_path)
            if kind in ("drop", "extra", "retype") and path:
                named = ".".join(map(str, path[:-1])) or "(root)"
                assert named in str(exc) or ".".join(map(str, path)) in str(exc), (what, str(exc))
            if kind == "version":
                assert "plan_version" in str(exc), str(exc)
            return
        note_event(f"{kind}: loaded")
        # Dropping or adding a key of a section is wrong (but for the few optional keys);
        # another value, or a byte changed in the text, may leave a valid plan.
        assert kind not in ("drop", "extra") or (kind == "drop" and path in OPTIONAL), \
            f"{kind} {what} was accepted"
        if kind == "version":
            assert plan["plan_version"] == 1, plan["plan_version"]
        runtime_reads_cleanly(plan, workdir)


# CI checks the same cases every run (a failure is never luck); `make stress` explores
@settings(max_examples=PLAN_CI_CASES, derandomize=True, **SETTINGS)
@given(case=edited())
def test_edited_plans_are_refused_readably(workdir: Path, case: tuple) -> None:
    check_edit(workdir, case)


@pytest.mark.stress
@settings(max_examples=STRESS_CASES, **SETTINGS)
@given(case=edited())
def test_edited_plans_are_refused_readably_stress(workdir: Path, case: tuple) -> None:
    check_edit(workdir, case)


def test_every_section_key_is_required_and_nothing_else_allowed(workdir: Path) -> None:
    """Exhaustively over the digits plan: each key of a section dropped, and an unknown key
    added to each section, is a PlanError that names the place."""
    from hpoc.plan import PlanError, load

    base = BASES[-1]
    paths = [p for p in _paths(base) if isinstance(p[-1], str) and not _free(p) and p not in OPTIONAL]
    assert len(paths) > 80
    plan_path = workdir / "plan.json"
    for path in paths:
        plan = copy.deepcopy(base)
        del _get(plan, path[:-1])[path[-1]]
        plan_path.write_text(json.dumps(plan))
        expected = "plan_version None is not supported" if path == ("plan_version",) else \
            f"{'.'.join(map(str, path[:-1])) or '(root)'}: '{path[-1]}' is a required property"
        with pytest.raises(PlanError, match=re.escape(expected)):
            load(plan_path)
    dicts = [()] + [p for p in _paths(base) if isinstance(_get(base, p), dict) and not _free(p + ("x",))]
    for path in dicts:
        plan = copy.deepcopy(base)
        _get(plan, path)["bogus"] = 1
        plan_path.write_text(json.dumps(plan))
        with pytest.raises(PlanError, match="'bogus' was unexpected"):
            load(plan_path)


BROKEN = {
    "version-2": lambda p: p.update(plan_version=2),
    "no-version": lambda p: p.pop("plan_version"),
    "dropped-trials": lambda p: p.pop("trials"),
    "string-samples": lambda p: p["trials"].update(num_samples="8"),
    "extra-key": lambda p: p["resources"].update(gpu=1),
    "bad-slurm": lambda p: p.update(slurm={"nodes": 0}),
    "seed-text": lambda p: p["search"]["options"].update(seed="zero"),
}


def _write_broken(tmp_path: Path, name: str) -> Path:
    plan = copy.deepcopy(BASES[-1])
    BROKEN[name](plan)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(plan, indent=2))
    return path


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_hpoc_run_refuses_a_broken_plan_with_exit_2(name: str, tmp_path: Path) -> None:
    path = _write_broken(tmp_path, name)
    code, out, err = run_cli(["run", str(path)])
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err and str(path) in err, err


def test_the_runtime_entry_point_refuses_broken_plans_with_exit_2(tmp_path: Path) -> None:
    """`python -m hpoc.runtime PLAN` (what the job script runs), one process per plan."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    files = [_write_broken(tmp_path, name) for name in sorted(BROKEN)]
    files += [tmp_path / "missing.json", tmp_path / "garbage.json", tmp_path / "list.json"]
    files[-2].write_bytes(b"{\x00\xff")
    files[-1].write_text("[1, 2]")
    for path in files:
        run = subprocess.run([sys.executable, "-m", "hpoc.runtime", str(path), "--shard", "0"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert run.returncode == 2, (path.name, run.stderr)
        assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr, (path.name, run.stderr)
        assert str(path) in run.stderr, run.stderr
        readable(run.stderr[len("error: "):], path)


def test_the_runtime_reads_a_plan_without_objective(tmp_path: Path) -> None:
    plan = next(p for p in ALL_PLANS if not p["objective"]["metrics"])
    from hpoc.runtime import search, summary

    search.make_scheduler(plan)
    search.make_searcher(plan, 0)
    result = summary.build(plan, 0, [], wall_s=1.0, interrupted=False, experiment_dir=tmp_path,
                           plan_hash="sha256:x")
    assert result["metrics"] == [] and result["best"] is None
    assert "no objective" in summary.describe_best(result)
