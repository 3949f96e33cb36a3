"""The compiler driver: the one place that chains the stages
text → AST (`hpoc.dsl.parse`) → checked study (`check`) → plan dict (`plan`).

Never imports torch, ray or deepspeed: `hpoc check` must be instant on a login node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hpoc.errors import Diagnostic, SpecCheckError, SpecError, with_sources

__all__ = ["Result", "compile_file", "compile_source", "compile_study", "parse_file", "SpecError"]


@dataclass
class Result:
    """A compiled study: the plan (without content_hash), warnings, and the AST."""

    plan: dict[str, Any]
    warnings: list[Diagnostic] = field(default_factory=list)
    study: Any = None


def compile_study(study: Any, *, text: str = "", file: str, sha256: str, workdir: str, fmt: str = "hpo",
                  words: dict[str, str] | None = None, pipe_key: str | None = None) -> Result:
    """Check an AST and build its plan; raise SpecCheckError with all errors. `words`: the
    .hpo names a front end's format spells otherwise (the plan's `source.words`); `pipe_key`:
    the pipeline of a YAML config it was compiled from (`source.pipe_key`)."""
    from hpoc.compiler.check import check
    from hpoc.compiler.plan import build_plan

    checked = check(study, workdir=os.path.abspath(workdir))
    diags = with_sources(checked.diagnostics, text) if text else checked.diagnostics
    if not checked.ok:
        raise SpecCheckError(diags)
    plan = build_plan(checked, file=file, fmt=fmt, sha256=sha256, workdir=workdir, words=words,
                      pipe_key=pipe_key)
    return Result(plan, [d for d in diags if d.severity == "warning"], study)


def compile_text(text: str, filename: str, workdir: str, sha256: str | None = None, *,
                 source: str | None = None) -> Result:
    """`source`: the spec's file as the plan names it in `workdir`, when not `filename`."""
    from hpoc.dsl.digest import spec_digest
    from hpoc.dsl.parse import parse

    study = parse(text, filename)
    digest = sha256 or spec_digest(text.encode("utf-8"))  # as read from a file
    return compile_study(study, text=text, file=source or filename, sha256=digest, workdir=workdir)


def spec_file(path: str | os.PathLike[str]) -> str:
    """The spec's real file, through symlinks: its directory is the study's (modules,
    relative paths, where jobs run), as Python puts a linked script's own directory on
    `sys.path`, so the trainer beside a shared study is found from a link to it. A spec
    that is no link keeps its path as given: a directory link on the way (a home or a
    scratch that is one) would move the study's storage of runs compiled before."""
    return os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)


def compile_path(path: str | os.PathLike[str]) -> Result:
    """Full result (plan, warnings, AST) for a spec file (.hpo, or an itwinai .yaml/.yml)."""
    from hpoc.dsl.parse import read_spec
    from hpoc.yaml import PIPE_KEY, compile_yaml, is_yaml

    utf8_path(path)
    real = spec_file(path)
    if is_yaml(path):
        result = compile_yaml(path)
    elif PIPE_KEY.get() is not None:
        from hpoc.errors import HpocError

        raise HpocError(f"--pipe-key picks a pipeline of a YAML config; {path} is a .hpo study, which has one")
    else:
        text, digest = read_spec(path)
        result = compile_text(text, str(path), os.path.dirname(real), digest, source=os.path.basename(real))
    if os.path.islink(path):  # "beside the spec" is beside the file the link names
        from dataclasses import replace

        where = f"{path} links to {real}: its modules are looked for beside that"
        result.warnings = [replace(w, notes=(*w.notes, where)) if w.code == "HP803" else w for w in result.warnings]
    return result


def utf8_path(path: str | os.PathLike[str]) -> None:
    """Fail when `path` is not UTF-8 (a Latin-1 name from an old share): the plan and the
    job scripts, UTF-8 text, could not name it."""
    from hpoc.errors import Diagnostic, fail

    full = os.path.abspath(path)
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # printable, JSON too
        fail(Diagnostic("the file's path is not valid UTF-8", "HP001", shown,
                        help="rename the file or its directory: the plan and the job scripts name it in UTF-8"))


def compile_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Plan dict for a .hpo file (no content_hash; `hpoc.plan.dumps` adds it).

    Raises `hpoc.errors.SpecError` whose `str()` is the full report.
    """
    return compile_path(path).plan


def compile_source(text: str, filename: str = "study.hpo", workdir: str = ".") -> dict[str, Any]:
    """Plan dict for .hpo text, as if it were the file `filename` in `workdir`."""
    return compile_text(text, filename, workdir).plan


def parse_file(path: str | os.PathLike[str]) -> Any:
    """The AST of a spec file (raises SpecSyntaxError)."""
    from hpoc.dsl.parse import parse, read_spec
    from hpoc.yaml import is_yaml, read, translate

    if is_yaml(path):
        text, _ = read(path)
        return translate(text, str(path), os.path.dirname(spec_file(path))).study

    text, _ = read_spec(path)
    return parse(text, str(path))
