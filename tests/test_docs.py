"""What README.md and docs/*.md name must exist: the tests they cite, the diagnostic codes (the
YAML front end's warnings in the migration guide's table), the `hpoc` command-line flags, the
plan keys of docs/plan.md; their `.hpo` examples parse, and the `mlflow ui` they give opens a
file store."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from hpoc.dsl.parse import parse

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_lines(doc: str) -> list[str]:
    """Inline code spans, lines of fenced blocks and of indented blocks: where commands are."""
    spans = re.findall(r"`([^`\n]+)`", doc)
    fenced = [line for block in re.findall(r"```[a-z]*\n(.*?)```", doc, re.S) for line in block.splitlines()]
    indented = [line[4:] for line in doc.splitlines() if line.startswith("    ")]
    return spans + fenced + indented


def cited_tests(doc: str) -> set[tuple[str | None, str]]:
    """(file or None, test name) for every test a doc names: `tests/f.py::test_x`, `test_x`, or
    `::test_x` after a `tests/f.py` in the same paragraph or table row (a test of that file)."""
    cited = set()
    for part in re.split(r"\n\s*\n|\n(?=\|)", doc):
        file = None
        for path, name, after in re.findall(r"(tests/\w+\.py)(?:::(test_\w+))?|(?<![\w/])::(test_\w+)", part):
            file = path or file
            if name or after:
                cited.add((file, name or after))
    named = {name for _, name in cited}
    # a bare `test_x` (also in a list after a `file::` one); `test_dataset=` is an argument
    cited |= {(None, name) for name in re.findall(r"`(test_\w+)(?:\[\w+\])?`", doc) if name not in named}
    return cited


def test_every_test_the_docs_cite_exists():
    defined = {p.name: set(re.findall(r"^def (test_\w+)", text(p), re.M)) for p in (ROOT / "tests").glob("test_*.py")}
    everywhere = set().union(*defined.values())
    missing = []
    for doc in DOCS:
        for file, name in cited_tests(text(doc)):
            found = everywhere if file is None else defined.get(Path(file).name, set())
            if name.removesuffix("_stress") not in found and name not in found:
                missing.append(f"{doc.name}: {file or ''}::{name}")
    assert len({n for d in DOCS for _, n in cited_tests(text(d))}) > 20
    assert missing == []


def test_every_file_the_docs_cite_exists():
    """A file cited alone (`tests/test_storage_full.py`, `benchmarks/state_upload.py`) was
    checked nowhere: only a `::test_x` after it was."""
    path = r"(?<![\w/.-])((?:tests|benchmarks|scripts|hpoc|examples)/[\w/.-]*\w\.(?:py|sh|hpo|yaml|j2|json))\b"
    cited = {(doc.name, p) for doc in DOCS for p in re.findall(path, text(doc))}
    assert len(cited) > 50
    assert sorted((d, p) for d, p in cited if not (ROOT / p).exists()) == []


def test_every_diagnostic_code_the_docs_cite_exists():
    # The other direction (every code in the source is in docs/language.md's table) is
    # test_check_errors.py::test_every_diagnostic_code_is_documented.
    used = {m for p in (ROOT / "hpoc").rglob("*.py") for m in re.findall(r"[\"'](HP\d{3})[\"']", text(p))}
    cited = {(doc.name, code) for doc in DOCS for code in re.findall(r"\bHP\d{3}\b", text(doc))}
    assert len(cited) > 30
    assert sorted((d, c) for d, c in cited if c not in used) == []


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def test_every_hpoc_command_and_flag_the_docs_show_exists():
    from hpoc.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    wrong, checked = [], 0
    for doc in DOCS:
        for line in code_lines(text(doc)):
            for command, rest in re.findall(r"\bhpoc ([a-z]+)\b([^#]*)", line):
                if command not in commands.choices:
                    wrong.append(f"{doc.name}: unknown command `hpoc {command}` in `{line}`")
                    continue
                for flag in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", rest):
                    checked += 1
                    if flag not in _options(commands.choices[command]):
                        wrong.append(f"{doc.name}: `hpoc {command}` has no `{flag}` (in `{line}`)")
    assert checked > 20
    assert wrong == []


def _closed_objects(schema: dict):
    """The object schemas (with their alternatives) that list every key they allow."""
    for alternative in [schema, *schema.get("anyOf", [])]:
        if "properties" in alternative and alternative.get("additionalProperties") is False:
            yield alternative


def test_the_plan_example_in_plan_md_has_exactly_the_schemas_keys():
    block = re.search(r"```jsonc\n(.*?)```", text(ROOT / "docs" / "plan.md"), re.S).group(1)
    example = json.loads(re.sub(r"//[^\n]*", "", block))
    schema = json.loads(text(ROOT / "hpoc" / "plan" / "schema.json"))
    differences, compared = [], []

    def compare(value, node: dict, path: str) -> None:
        if isinstance(value, list) and "items" in node:
            for item in value:
                compare(item, node["items"], path + "[]")
        if not isinstance(value, dict):
            return
        for closed in _closed_objects(node):
            compared.append(path)
            keys = set(closed["properties"])
            if set(value) != keys:
                differences.append((path, sorted(set(value) - keys), sorted(keys - set(value))))
            for key in set(value) & keys:
                compare(value[key], closed["properties"][key], f"{path}.{key}")

    compare(example, schema, "plan")
    assert len(compared) > 15
    assert differences == []  # (where, keys only in plan.md, keys only in the schema)


@pytest.mark.parametrize("doc", ["language.md", "performance.md"])
def test_the_hpo_examples_parse(doc):
    blocks = re.findall(r"```hpo\n(.*?)```", text(ROOT / "docs" / doc), re.S)
    assert blocks
    for block in blocks:
        parse(block, doc)  # raises SpecSyntaxError with the location


def test_the_summary_json_example_in_trainer_md_has_the_keys_summary_writes(tmp_path, monkeypatch):
    """docs/trainer.md's example lacked `stopped` (top level and per trial) and `retry_cut`."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # a job's `slurm_job` keys: said apart
    from types import SimpleNamespace

    from hpoc.runtime import summary, timelimit

    doc = text(ROOT / "docs" / "trainer.md")
    example = re.search(r'```json\n(\{"study".*?)```', doc, re.S).group(1)
    shown = json.loads(example.replace("{…}", "{}"))
    plan = {"study": {"name": "s"}, "space": {"params": [], "constants": {}},
            "objective": {"metrics": [{"name": "loss", "mode": "min"}]}}
    trial = SimpleNamespace(trial_id="t1", status="TERMINATED", config={}, last_result={"loss": 0.5},
                            path=None, local_path=None, error_file=None, error_msg=None)
    built = summary.build(plan, 0, [trial], wall_s=1.0, interrupted=True, experiment_dir=tmp_path,
                          plan_hash="sha256:0", cut_short={"t1": "RuntimeError: x"}, budget_reached=True)
    assert set(shown) == set(built)
    assert set(shown["best"]) == set(built["best"])
    assert {k for t in shown["trials"] for k in t} == set(built["trials"][0])  # retry_cut included
    assert {t["stopped"] for t in shown["trials"]} <= {None, summary.BUDGET, timelimit.REASON}


def test_the_results_table_example_names_the_best_trials_directory_as_a_run_does():
    """docs/results.md showed `…/tune/trainable_8b7bc_00007_7_…`, Ray's layout before hpoc
    named trial directories `trial_<N>_<id>` in the experiment directory."""
    from types import SimpleNamespace

    from hpoc.runtime.tuner import trial_dirname

    block = re.search(r"```\n(study `fmnist`.*?)```", text(ROOT / "docs" / "results.md"), re.S).group(1)
    best = re.search(r"^best trial: (\S+)", block, re.M).group(1)
    shown = re.search(r"^  directory: (\S+)$", block, re.M).group(1)
    index = int(best.rsplit("_", 1)[1])  # search random's ids end in the trial's index
    trial = SimpleNamespace(trial_id=best, experiment_tag=f"{index + 1}_x", config={})
    assert shown == f"…/fmnist/{trial_dirname(trial)}"



@pytest.mark.parametrize("slurm, said, words", [
    ('setup = ["#SBATCH --mem=4G"]', "#SBATCH", ("#SBATCH", "setup")),
    ('env = { RAY_ADDRESS = "auto" }', "sets `RAY_ADDRESS` itself", ("RAY_ADDRESS",)),
])
def test_the_code_table_row_names_what_the_check_raises_its_code_for(tmp_path, slurm, said, words):
    """HP504's row spoke of `extra` alone (an `#SBATCH` line in `setup` is HP504 too), and
    HP818's of `$VAR` in `env` values alone (a variable the job sets itself is HP818 too): a
    user looking the code up found nothing about what they wrote."""
    from hpoc.compiler import compile_text
    from hpoc.errors import SpecCheckError

    (tmp_path / "t.py").write_text("import hpoc\n\nclass T(hpoc.Trainer):\n    pass\n")
    spec = ('study "s"\npipeline { trainer = t:T }\nspace { epochs = 1 }\nobjective minimize val_loss\n'
            f"slurm {{ {slurm} }}\n")
    try:
        diagnostics = compile_text(spec, "study.hpo", str(tmp_path)).warnings
    except SpecCheckError as exc:
        diagnostics = exc.diagnostics
    (code,) = {d.code for d in diagnostics if said in d.message}
    row = re.search(rf"^\| {code} \|(.*)$", text(ROOT / "docs" / "language.md"), re.M).group(1)
    assert [w for w in words if w not in row] == []


def test_the_mlflow_ui_commands_users_are_told_open_a_file_store():
    """MLflow 3 (requirements.txt pins it) refuses a file store unless MLFLOW_ALLOW_FILE_STORE
    is true: hpoc sets it for its own runs, but the `mlflow ui --backend-store-uri` that
    results.md and the unreachable-server help give failed on the `mlruns` hpoc wrote."""
    told = [(p.name, line) for p in [*DOCS, *(ROOT / "hpoc").rglob("*.py")]
            for line in re.findall(r"[^`\n]*mlflow ui --backend-store-uri[^`\n]*", text(p))]
    assert len(told) >= 2
    assert [(name, line) for name, line in told if "MLFLOW_ALLOW_FILE_STORE=true mlflow ui" not in line] == []


def test_every_warning_of_the_yaml_front_end_has_a_row_in_the_migration_guide():
    """hpoc/yaml/build.py says docs/migrating-from-itwinai.md lists its warnings; HP826 (a
    domain without its `type`) had none there, so a YAML user found the code in no table."""
    from hpoc.yaml import build

    source = "\n".join(text(p) for p in (ROOT / "hpoc" / "yaml").glob("*.py"))
    warned = {getattr(build, name) for name in re.findall(r"\.warn\(\s*([A-Z_]+)\b", source)}
    rows = set(re.findall(r"^\| (HP\d{3}) \|", text(ROOT / "docs" / "migrating-from-itwinai.md"), re.M))
    assert len(warned) >= 4
    assert sorted(warned - rows) == []
