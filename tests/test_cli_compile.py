"""`hpoc check` and `hpoc compile` as a user runs them: files, exit codes, output."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hpo_util import EXAMPLES, own_trainer
from hpoc import plan as plan_mod
from hpoc.cli import main
from hpoc.compiler import compile_file


def test_check_ok_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES["fashion_mnist"])]) == 0
    out = capsys.readouterr().out
    assert "study `fashion-mnist` is valid" in out
    assert "search: optuna (tpe); scheduler: asha" in out
    assert "slurm: 1 node × (24 CPUs, 4 GPUs), time 02:00:00" in out


def test_check_reports_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.hpo"
    spec.write_text('study "x"\npipeline { trainer = t:T }\ntrials { num_samples = 0 }\n')
    (tmp_path / "t.py").write_text(own_trainer())
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:3:24: error: `num_samples` must be at least 1 (got 0) [HP204]\n")
    assert " 3 | trials { num_samples = 0 }" in err


@pytest.mark.parametrize("name", ["missing.hpo", "."])
def test_unreadable_specs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main(["check", str(tmp_path / name)]) == 2
    assert main(["compile", str(tmp_path / name), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "[HP001]" in err and "Traceback" not in err


def test_internal_error_is_exit_1_without_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import hpoc.compiler

    def boom(path: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(hpoc.compiler, "compile_path", boom)
    monkeypatch.delenv("HPOC_DEBUG", raising=False)
    assert main(["check", str(EXAMPLES["digits"])]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaput" in err and "Traceback" not in err


def test_compile_writes_plan_and_rendered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    calls = []

    def render_all(plan: dict, *, plan_path: str, preflight_only: bool) -> dict[str, str]:
        calls.append((plan["study"]["name"], plan_path, preflight_only))
        return {"job.sbatch": "#!/bin/bash\n", "sub/notes.txt": "hello\n"}

    fake = types.ModuleType("hpoc.compiler.render")
    fake.render_all = render_all  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hpoc.compiler.render", fake)
    out = tmp_path / "build"
    out.mkdir()
    (out / "preflight.sbatch").write_text("from an earlier compile")  # would run the new plan
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out), "--preflight-only"]) == 0
    assert not (out / "preflight.sbatch").exists()
    plan_path = out / "plan.json"
    assert calls == [("digits", str(plan_path.resolve()), True)]
    assert plan_path.read_text() == plan_mod.dumps(compile_file(EXAMPLES["digits"]))
    assert (out / "job.sbatch").read_text() == "#!/bin/bash\n"
    assert (out / "job.sbatch").stat().st_mode & 0o111
    assert (out / "sub/notes.txt").read_text() == "hello\n"
    stdout = capsys.readouterr().out
    assert f"compiled study `digits` into {out}/" in stdout
    assert "wrote: plan.json, job.sbatch, sub/notes.txt" in stdout
    assert plan_mod.load(plan_path)["study"]["name"] == "digits"


def test_a_compile_that_fails_to_render_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "build"
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    assert "(unhashed)" not in before["job.sbatch"]
    assert json.loads(before["plan.json"])["content_hash"] in before["job.sbatch"]  # the plan it was made for

    def render_all(plan: dict, **_: object) -> dict[str, str]:
        raise ValueError("a rule the checker missed")

    fake = types.ModuleType("hpoc.compiler.render")
    fake.render_all = render_all  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hpoc.compiler.render", fake)
    spec = tmp_path / "study.hpo"
    spec.write_text(EXAMPLES["fashion_mnist"].read_text().replace('study "fashion-mnist"', 'study "other"'))
    assert main(["compile", str(spec), "-o", str(out)]) == 1
    assert {p.name: p.read_text() for p in out.iterdir()} == before


def test_an_empty_output_directory_is_refused_not_read_as_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`hpoc compile study.hpo -o "$BUILD"` with BUILD unset wrote build/<study> in the
    current directory without a word; the `sbatch "$BUILD/job.sbatch"` after it found nothing."""
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(EXAMPLES["digits"]), "-o", ""]) == 2
    assert "hpoc: error: -o is empty (an unset shell variable?): give the output directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_compile_without_renderer_writes_only_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hpoc.compiler.render", None)  # import fails like a missing module
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_emit_plan_and_ast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(EXAMPLES["digits"]), "--emit", "plan"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["study"]["name"] == "digits"
    assert out == plan_mod.dumps(compile_file(EXAMPLES["digits"]))
    assert main(["compile", str(EXAMPLES["digits"]), "--emit", "ast"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Study\n") and "Call\n" in out and "func='loguniform'" in out


def test_compile_is_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "a"
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
    first = {f.name: f.read_bytes() for f in out.iterdir()}
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
    assert {f.name: f.read_bytes() for f in out.iterdir()} == first
    # the plan does not depend on where it is written (scripts name their plan's path)
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "plan.json").read_bytes() == first["plan.json"]


@pytest.mark.parametrize("line_end", ["\r\n", "\r"])
@pytest.mark.parametrize("bom", ["", "\ufeff"])
@pytest.mark.parametrize("example", [EXAMPLES["digits"], EXAMPLES["digits"].parents[1] / "itwinai/config.yaml"],
                         ids=["hpo", "yaml"])
def test_the_plan_does_not_depend_on_line_endings_or_a_bom(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           line_end: str, bom: str, example: Path) -> None:
    # A spec saved on Windows (or by an old Mac editor) is the same study, and its jobs
    # must not see another plan: the bytes of plan.json are the same.
    spec = tmp_path / example.name
    text = example.read_text(encoding="utf-8")
    spec.write_text(text, encoding="utf-8")
    assert main(["compile", str(spec), "--emit", "plan"]) == 0
    unix = capsys.readouterr().out
    spec.write_bytes((bom + text.replace("\n", line_end)).encode())
    assert main(["compile", str(spec), "--emit", "plan"]) == 0
    assert capsys.readouterr().out == unix


def test_a_spec_compiled_from_memory_has_the_digest_of_its_file(tmp_path: Path) -> None:
    # `source.sha256` is of the text as read: a CRLF text handed to the compiler (an
    # editor's buffer, a test) names the same spec as the file it came from.
    from hpoc.compiler import compile_path, compile_text

    text = EXAMPLES["digits"].read_text(encoding="utf-8").replace("\n", "\r\n")
    spec = tmp_path / "study.hpo"
    spec.write_bytes(text.encode())
    from_file = compile_path(spec).plan["source"]["sha256"]
    assert compile_text(text, str(spec), str(tmp_path)).plan["source"]["sha256"] == from_file


def test_compiling_over_another_studys_build_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "build"
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 0
    assert "held the build of" not in capsys.readouterr().err
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"hpoc: note: {out} held the build of study `digits`, now replaced by that of `fashion-mnist`" in err
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
    assert "held the build of" not in capsys.readouterr().err
    (out / "plan.json").write_text("{ not json")  # a broken plan names no study: nothing to say
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 0
    assert "held the build of" not in capsys.readouterr().err


def test_scripts_name_the_plans_content_hash(tmp_path: Path) -> None:
    out = tmp_path / "build"
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 0
    digest = json.loads((out / "plan.json").read_text())["content_hash"]
    assert digest.startswith("sha256:")
    for script in ("job.sbatch", "preflight.sbatch"):
        head = (out / script).read_text().splitlines()[:6]
        assert f"# Edit the spec and recompile rather than this file. Plan: {out.resolve()}/plan.json ({digest})" in head


def test_scripts_rendered_from_templates_compiled_earlier_are_the_same(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import jinja2.bccache

    from hpoc.compiler import render

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kept = tmp_path / "cache/hpoc/templates"
    templates = Path(render.__file__).parents[1] / render.TEMPLATE_DIR
    scripts = []
    try:
        for damage in (None, b"", jinja2.bccache.bc_magic + b"cut short"):  # as compiled, then damaged
            if damage is not None:
                for f in kept.iterdir():
                    f.write_bytes(damage)
            render.environment.cache_clear()  # a new process
            out = tmp_path / f"build{len(scripts)}"
            assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(out)]) == 0
            scripts.append({f: (out / f).read_text().replace(str(out), "OUT")
                            for f in ("job.sbatch", "preflight.sbatch")})
            assert len(list(kept.iterdir())) == len(list(templates.iterdir()))  # each one kept compiled
    finally:
        render.environment.cache_clear()
    assert scripts[0] == scripts[1] == scripts[2]


def test_check_and_compile_do_not_import_heavy_modules(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from hpoc.cli import main\n"
        f"assert main(['check', {str(EXAMPLES['fashion_mnist'])!r}]) == 0\n"
        f"assert main(['compile', {str(EXAMPLES['fashion_mnist'])!r}, '-o', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'ray', 'deepspeed', 'optuna', 'numpy'})\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout


def test_unwritable_output_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(blocker)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpoc: error: {blocker / 'sub'}") and "Traceback" not in err


def test_an_output_directory_the_container_cannot_bind_is_a_user_error(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.hpo"
    spec.write_text('study "s"\npipeline { trainer = t:T }\nslurm { container = { image = "/x.sif" } }\n')
    assert main(["compile", str(spec), "-o", str(tmp_path / "b:1")]) == 2
    err = capsys.readouterr().err
    assert "must not contain `,` or `:`" in err and "bug in hpoc" not in err
    assert not (tmp_path / "b:1").exists()
    assert main(["compile", str(spec), "-o", str(tmp_path / "b1")]) == 0


def test_an_output_directory_with_a_backslash_is_a_user_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """#SBATCH --output names it, and sbatch drops a `\\` there even inside quotes."""
    spec = tmp_path / "s.hpo"
    spec.write_text('study "s"\npipeline { trainer = t:T }\nslurm { nodes = 1 }\n')
    assert main(["compile", str(spec), "-o", str(tmp_path / "b\\1")]) == 2
    err = capsys.readouterr().err
    assert "must not contain `\\`" in err and "bug in hpoc" not in err
    assert "the build directory" in err and "use another build directory" in err
    assert not (tmp_path / "b\\1").exists()


def test_emit_sbatch_without_out_checks_the_default_build_directory(tmp_path: Path, monkeypatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`--emit sbatch` alone renders for ./build/<study>: the same checks, no internal error."""
    here = tmp_path / "a:b"
    here.mkdir()
    spec = tmp_path / "s.hpo"
    spec.write_text('study "s"\npipeline { trainer = t:T }\nslurm { container = { image = "/x.sif" } }\n')
    monkeypatch.chdir(here)
    assert main(["compile", str(spec), "--emit", "sbatch"]) == 2
    err = capsys.readouterr().err
    assert "must not contain `,` or `:`" in err and "bug in hpoc" not in err


def test_a_plan_the_renderer_refuses_is_a_user_error(tmp_path: Path, monkeypatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from hpoc.compiler import render

    def refuse(*args, **kwargs):
        raise render.RenderError(["slurm.partition: refused"])

    monkeypatch.setattr(render, "render_all", refuse)
    spec = tmp_path / "s.hpo"
    spec.write_text('study "s"\npipeline { trainer = t:T }\nslurm { nodes = 1 }\n')
    assert main(["compile", str(spec), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "slurm.partition: refused" in err and "bug in hpoc" not in err


def test_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.hpo"
    spec.write_text('study "x"\npipeline { trainer = t:T }\ntrials { num_samples = 0 }\nobjective minimize score\n')
    (tmp_path / "t.py").write_text(own_trainer())
    assert main(["check", "--json", str(spec)]) == 2
    diags = json.loads(capsys.readouterr().out)
    assert [(d["severity"], d["code"], d["line"], d["col"]) for d in diags] == [
        ("error", "HP204", 3, 24), ("warning", "HP801", 4, 20),
    ]
    assert diags[0]["message"] == "`num_samples` must be at least 1 (got 0)"
    assert diags[0]["source_line"] == "trials { num_samples = 0 }"
    assert main(["check", "--json", str(EXAMPLES["digits"])]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_check_json_reports_a_usage_error_as_one_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--pipe-key", "x", str(EXAMPLES["digits"])]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("hpoc: error: --pipe-key picks a pipeline of a YAML config") and not out.out


def test_compile_refuses_to_replace_a_plan_a_queued_job_will_read(tmp_path, capsys, monkeypatch):
    """A requeued job runs build/plan.json again: recompiling another study there made the
    job resume the new study (and never the one it was submitted for)."""
    from submit_support import fake_squeue

    spec = tmp_path / "s.hpo"
    spec.write_text('study "x"\npipeline { trainer = t:T }\nspace { lr = choice(1, 2) }\n'
                    'objective minimize loss\nslurm { nodes = 1 }\n')
    build = tmp_path / "build"
    assert main(["compile", str(spec), "-o", str(build)]) == 0
    fake_squeue(monkeypatch, tmp_path / "bin", [
        f"682|PENDING|0:00||BeginTime|N/A|{build / 'job.sbatch'}",
        f"690|RUNNING|0:10|node2|None|N/A|{tmp_path / 'other' / 'job.sbatch'}"])
    assert main(["compile", str(spec), "-o", str(build)]) == 0  # the same plan: harmless
    before = (build / "plan.json").read_text()
    spec.write_text(spec.read_text().replace('"x"', '"y"'))
    capsys.readouterr()
    assert main(["compile", str(spec), "-o", str(build)]) == 2
    err = capsys.readouterr().err
    assert "is read by SLURM job(s) 682 (PENDING):" in err and "690" not in err
    assert "help: compile into another directory (-o)" in err
    assert (build / "plan.json").read_text() == before
    assert main(["compile", str(spec), "-o", str(build), "--force"]) == 0
    assert '"y"' in (build / "plan.json").read_text()


def test_compile_warns_when_squeue_cannot_say_whether_a_job_reads_the_plan(tmp_path, capsys, monkeypatch):
    """squeue installed but not answering (a controller down or slow): the compile replaced
    the plan in silence, which a queued job would then run. A warning, not a refusal: a
    login node with a slow controller must still compile."""
    from submit_support import fake_squeue

    spec = tmp_path / "s.hpo"
    spec.write_text('study "x"\npipeline { trainer = t:T }\nspace { lr = choice(1, 2) }\n'
                    'objective minimize loss\nslurm { nodes = 1 }\n')
    build = tmp_path / "build"
    assert main(["compile", str(spec), "-o", str(build)]) == 0
    fake_squeue(monkeypatch, tmp_path / "bin", [], fails="slurm_load_jobs error: Socket timed out")
    capsys.readouterr()
    assert main(["compile", str(spec), "-o", str(build)]) == 0  # the same plan: nothing to ask
    assert "could not ask squeue" not in capsys.readouterr().err
    spec.write_text(spec.read_text().replace('"x"', '"y"'))
    assert main(["compile", str(spec), "-o", str(build)]) == 0
    err = capsys.readouterr().err
    assert (f"warning: could not ask squeue whether a queued job reads {build / 'plan.json'} "
            "(slurm_load_jobs error: Socket timed out)") in err, err
    assert '"y"' in (build / "plan.json").read_text()


def test_a_compile_without_a_slurm_block_says_why_there_is_no_job_script(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The README's next step is `sbatch build/s/job.sbatch`; an itwinai YAML config cannot
    hold a `slurm` block, so its compile writes only plan.json: say so, and what to do."""
    config = Path(__file__).parents[1] / "examples" / "itwinai" / "config.yaml"
    assert main(["compile", str(config), "-o", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "wrote: plan.json\n  no job script: the study has no `slurm` block\n" in out
    assert f"next: hpoc convert {config} -o study.hpo, add `slurm {{ ... }}` to it and compile that" in out
    assert main(["compile", str(EXAMPLES["fashion_mnist"]), "-o", str(tmp_path / "f")]) == 0
    assert "no job script" not in capsys.readouterr().out


def test_compile_enumerates_a_grid_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The shard check, the scheduler's check and the summary each count the trials; a grid
    of 100,000 points was built once for each."""
    from hpoc.plan import space

    calls = []
    real = space.grid_points
    monkeypatch.setattr(space, "grid_points", lambda *a, **k: calls.append(1) or real(*a, **k))
    space._count_grid.cache_clear()
    spec = tmp_path / "s.hpo"
    spec.write_text('study "g"\npipeline { trainer = t:T }\nspace { a = grid(1, 2, 3)\n b = grid(4, 5) }\n'
                    "objective minimize val_loss\nsearch random\nscheduler asha { max_t = 5 }\n"
                    "trials { num_samples = 2 }\nslurm { nodes = 1 }\n")
    (tmp_path / "t.py").write_text(own_trainer())
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 0
    assert "trials: 12 (2 × a grid of 6)" in capsys.readouterr().out
    assert len(calls) == 1


def test_the_next_steps_compile_prints_paste_into_a_shell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "my studies"
    folder.mkdir()
    spec = folder / "it's.hpo"
    spec.write_text('study "s"\npipeline { trainer = t:T }\n')
    assert main(["compile", str(spec), "-o", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"or run it here: hpoc run {shlex.quote(str(spec))} --local" in out
    config = folder / "config.yaml"
    config.write_bytes((Path(__file__).parents[1] / "examples" / "itwinai" / "config.yaml").read_bytes())
    assert main(["compile", str(config), "-o", str(tmp_path / "c")]) == 0
    assert f"next: hpoc convert {shlex.quote(str(config))} -o study.hpo," in capsys.readouterr().out


def test_paths_that_are_not_utf8_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A name in Latin-1 (a share or a zip from an old Windows machine) cannot be written
    into the plan or the job scripts, which are UTF-8: say so rather than crash."""
    spec = tmp_path / os.fsdecode(b"\xe9tude.hpo")
    try:
        spec.write_bytes(EXAMPLES["digits"].read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes UTF-8 names only")
    for command in (["check"], ["compile", "-o", str(tmp_path / "b")]):
        assert main([*command, str(spec)]) == 2
        err = capsys.readouterr().err
        assert "error: the file's path is not valid UTF-8 [HP001]" in err and "internal error" not in err
    out = tmp_path / os.fsdecode(b"build-\xfd")
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "plan_path: must be valid UTF-8" in err and "internal error" not in err


def test_a_plan_saved_again_with_a_bom_still_loads(tmp_path: Path) -> None:
    """A plan.json opened and saved in a Windows editor gets a BOM; JSON it still is."""
    out = tmp_path / "build"
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 0
    plan = out / "plan.json"
    plan.write_bytes(b"\xef\xbb\xbf" + plan.read_bytes().replace(b"\n", b"\r\n"))
    assert plan_mod.load(plan)["study"]["name"] == "digits"


def test_an_out_path_naming_a_file_is_refused_not_made_a_directory(tmp_path, capsys) -> None:
    """`-o build/s/plan.json` wrote build/s/plan.json/plan.json, and `sbatch build/s/job.sbatch`
    then found no script."""
    out = tmp_path / "build" / "s" / "plan.json"
    assert main(["compile", str(EXAMPLES["digits"]), "-o", str(out)]) == 2
    assert f"not a file: `-o {out.parent}`" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()
