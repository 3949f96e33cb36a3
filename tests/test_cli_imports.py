"""What each command imports: on a login node every module is file-system lookups on a
shared, slow file system, so a command loads what it uses and nothing more (no timing
here: benchmarks/cli_latency.py measures; docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = str(ROOT / "examples/fashion_mnist/study.hpo")
ITWINAI = str(ROOT / "examples/itwinai/config.yaml")
NEVER = {"torch", "ray", "deepspeed", "optuna", "numpy", "hpoc.runtime.trainer", "hpoc.runtime.tuner"}

_RUN = """
import json, sys
from hpoc.cli import main
out, argv = sys.argv[1], sys.argv[2:]
try:
    rc = main(argv)
except SystemExit as exc:  # --help
    rc = exc.code
with open(out, "w") as fh:
    json.dump({"rc": rc, "modules": sorted(sys.modules)}, fh)
"""


def _imports(tmp_path: Path, *argv: str) -> set[str]:
    """The modules loaded by one `hpoc` command in a fresh interpreter (with its own cache)."""
    out = tmp_path / "modules.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", _RUN, str(out), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got["rc"] == 0, proc.stderr
    return set(got["modules"])


def _loaded(modules: set[str], *names: str) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_check_of_a_spec_loads_no_renderer_schema_yaml_or_other_commands(tmp_path: Path) -> None:
    mods = _imports(tmp_path, "check", FASHION)
    assert _loaded(mods, *NEVER, "jinja2", "jsonschema", "yaml") == []
    assert _loaded(mods, "hpoc.commands") == ["hpoc.commands", "hpoc.commands.check"]


def test_check_of_a_yaml_config_loads_no_parser_for_the_language(tmp_path: Path) -> None:
    mods = _imports(tmp_path, "check", ITWINAI)
    assert _loaded(mods, *NEVER, "jinja2", "jsonschema", "lark") == []


def test_help_loads_no_compiler(tmp_path: Path) -> None:
    mods = _imports(tmp_path, "--help")
    assert _loaded(mods, *NEVER, "jinja2", "jsonschema", "yaml", "lark", "hpoc.compiler", "hpoc.dsl") == []


def test_compile_loads_the_renderer_but_not_the_schema(tmp_path: Path) -> None:
    mods = _imports(tmp_path, "compile", FASHION, "-o", str(tmp_path / "build"))
    assert "jinja2" in mods
    assert _loaded(mods, *NEVER, "jsonschema", "yaml") == []


def test_status_loads_the_schema_only_for_a_plan_not_yet_seen_valid(tmp_path: Path) -> None:
    build = str(tmp_path / "build")
    _imports(tmp_path, "compile", FASHION, "-o", build)
    assert "jsonschema" in _imports(tmp_path, "status", build)
    for again in (["status", build], ["status", build, "--json"]):
        mods = _imports(tmp_path, *again)
        assert _loaded(mods, *NEVER, "jsonschema", "jinja2", "lark") == []
        assert "hpoc.dsl.parse" not in mods  # the spec is compared by its digest, not parsed


def test_a_plan_seen_valid_and_then_edited_is_validated_again(tmp_path: Path, monkeypatch) -> None:
    from hpoc import plan as plan_mod
    from hpoc.compiler import compile_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "plan.json"
    plan = plan_mod.hashed(compile_file(FASHION))
    path.write_text(plan_mod.canonical(plan))
    assert plan_mod.load(path) == plan
    assert plan_mod.load(path) == plan  # noted valid: not validated again
    plan["trials"]["num_samples"] = "eight"
    path.write_text(plan_mod.canonical(plan))
    with pytest.raises(plan_mod.PlanError, match="num_samples"):
        plan_mod.load(path)


def test_a_plan_that_is_not_json_is_refused_by_the_schema(tmp_path: Path, monkeypatch) -> None:
    from hpoc.compiler import compile_file
    from hpoc.plan import PlanError, hashed
    from hpoc.plan.validate import validate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plan = hashed(compile_file(FASHION))
    plan["trials"]["num_samples"] = {8}  # what a plan built in memory may hold
    with pytest.raises(PlanError, match="num_samples"):
        validate(plan)
