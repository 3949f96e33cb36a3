"""The YAML front end: itwinai HPO configs compile to the same plan as a .hpo file.

    text ─ nodes.load ─▶ YNode tree (spans) ─ itwinai.translate ─▶ Study AST ─ compiler ─▶ plan

The AST is exactly what the .hpo parser would build for the equivalent study (so
`hpoc convert` only has to format it), with spans pointing into the YAML: every error,
the checker's included, is reported at the YAML line and column.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, SpecCheckError, SpecError, with_sources

SUFFIXES = (".yaml", ".yml")


def is_yaml(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(SUFFIXES)


@dataclass
class Translation:
    """A translated config: the Study, the front end's warnings, comments for `convert`."""

    study: A.Study
    warnings: list[Diagnostic] = field(default_factory=list)
    comments: dict[str, list[str]] = field(default_factory=dict)


def translate(text: str, file: str, workdir: str | None = None) -> Translation:
    """Study AST of an itwinai config; raises SpecError (syntax or translation errors)."""
    from hpoc.yaml.build import Builder
    from hpoc.yaml.itwinai import translate as build_study
    from hpoc.yaml.interpolate import resolve
    from hpoc.yaml.nodes import load

    doc = resolve(load(text, file), text)
    b = Builder(file, workdir)
    study = build_study(b, doc)
    diags = _sorted(with_sources(b.diagnostics, text))
    if not b.ok:
        raise SpecCheckError(diags)
    return Translation(study, diags, b.comments)


def read(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, sha256) of a config file; SpecSyntaxError when unreadable or not UTF-8."""
    from hpoc.dsl.parse import read_spec

    return read_spec(path)


def compile_yaml(path: str | os.PathLike[str]) -> Any:
    """`hpoc.compiler.Result` for an itwinai YAML config."""
    text, digest = read(path)
    workdir = os.path.dirname(os.path.abspath(path))
    return compile_yaml_text(text, str(path), workdir, digest)


def compile_yaml_text(text: str, filename: str, workdir: str, sha256: str | None = None) -> Any:
    return _compile(translate(text, filename, workdir), text, filename, workdir, sha256)


def convert(path: str | os.PathLike[str]) -> tuple[str, list[Diagnostic]]:
    """(.hpo text, warnings) of an itwinai config; the text is `hpoc fmt`'s layout and
    compiles to the same plan (in the config's directory). Raises SpecError."""
    from hpoc.dsl.format import format_study

    text, digest = read(path)
    workdir = os.path.dirname(os.path.abspath(path))
    tr = translate(text, str(path), workdir)
    result = _compile(tr, text, str(path), workdir, digest)
    name = os.path.basename(str(path))
    header = [f"# Converted from {name} by `hpoc convert`: it compiles to the same plan.",
              f"# Relative paths and modules resolve against this file's directory, as for {name}."]
    return format_study(with_comments(tr.study, tr.comments, header)), result.warnings


def _compile(tr: Translation, text: str, filename: str, workdir: str, sha256: str | None) -> Any:
    from hpoc.compiler import compile_study

    digest = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        result = compile_study(tr.study, text=text, file=filename, sha256=digest, workdir=workdir, fmt="yaml")
    except SpecError as exc:
        raise SpecCheckError(_sorted(tr.warnings + exc.diagnostics)) from None
    result.warnings = _sorted(tr.warnings + result.warnings)
    return result


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.line is not None, d.line or 0, d.col or 0, d.severity != "error"))


def with_comments(study: A.Study, comments: dict[str, list[str]], header: list[str]) -> A.Study:
    """The study with `header` above its first item and section comments for `convert`."""
    items = []
    for i, item in enumerate(study.items):
        lead = list(header) if i == 0 else []
        kind = getattr(item, "kind", None)
        if kind in comments and not getattr(item, "comments", ()):
            lead += comments[kind]
        if lead and hasattr(item, "comments"):
            item = replace(item, comments=tuple(lead) + tuple(item.comments))
        items.append(item)
    return replace(study, items=tuple(items))
