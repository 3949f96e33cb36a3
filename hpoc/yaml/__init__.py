"""The YAML front end: itwinai HPO configs compile to the same plan as a .hpo file.

    text ─ nodes.load ─▶ YNode tree (spans) ─ itwinai.translate ─▶ Study AST ─ compiler ─▶ plan

The AST is exactly what the .hpo parser would build for the equivalent study (so
`hpoc convert` only has to format it), with spans pointing into the YAML: every error,
the checker's included, is reported at the YAML line and column.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from hpoc.dsl import ast as A
from hpoc.errors import Diagnostic, SpecCheckError, SpecError, SpecSyntaxError, with_sources
from hpoc.plan.words import respell

SUFFIXES = (".yaml", ".yml")

# The pipeline to compile from a file holding several (`--pipe-key`, as itwinai's
# `exec-pipeline` takes it); None: the file's one HPO pipeline.
PIPE_KEY: ContextVar[str | None] = ContextVar("hpoc_pipe_key", default=None)


def is_yaml(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(SUFFIXES)


@dataclass
class Translation:
    """A translated config: the Study, the front end's warnings, comments for `convert`."""

    study: A.Study
    warnings: list[Diagnostic] = field(default_factory=list)
    comments: dict[str, list[str]] = field(default_factory=dict)
    names: list[tuple[A.Span, str, str]] = field(default_factory=list)  # Builder.names


def translate(text: str, file: str, workdir: str | None = None) -> Translation:
    """Study AST of an itwinai config; raises SpecError (syntax or translation errors)."""
    from hpoc.yaml.build import Builder
    from hpoc.yaml.itwinai import translate as build_study
    from hpoc.yaml.interpolate import resolve
    from hpoc.yaml.nodes import load

    doc, unknown = resolve(load(text, file), text)
    b = Builder(file, workdir)
    study = build_study(b, doc, text)
    # needed where the pipeline read refers to it (itwinai resolves only what it reads): not
    # by the file's other pipelines, nor by a top-level value the pipeline does not use
    needed = {d.message: d for top, d in reversed(unknown) if b.pipeline in (None, top)}  # one per variable
    if needed:
        raise SpecSyntaxError(sorted(needed.values(), key=lambda d: (d.line or 0, d.col or 0)))
    diags = _sorted(with_sources(b.diagnostics, text))
    if not b.ok:
        raise SpecCheckError(diags)
    return Translation(study, diags, b.comments, b.names)


def read(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, sha256) of a config file; SpecSyntaxError when unreadable or not UTF-8."""
    from hpoc.dsl.parse import read_spec

    return read_spec(path)


def compile_yaml(path: str | os.PathLike[str]) -> Any:
    """`hpoc.compiler.Result` for an itwinai YAML config."""
    from hpoc.compiler import spec_file

    text, digest = read(path)
    real = spec_file(path)  # through a link, as a .hpo study
    return compile_yaml_text(text, str(path), os.path.dirname(real), digest, source=os.path.basename(real))


def compile_yaml_text(text: str, filename: str, workdir: str, sha256: str | None = None, *,
                      source: str | None = None) -> Any:
    return _compile(translate(text, filename, workdir), text, source or filename, workdir, sha256)


def convert(path: str | os.PathLike[str]) -> tuple[str, list[Diagnostic]]:
    """(.hpo text, warnings) of an itwinai config; the text is `hpoc fmt`'s layout and
    compiles to the same plan (in the config's directory). Raises SpecError."""
    from hpoc.dsl.format import format_study

    from hpoc.compiler import spec_file

    text, digest = read(path)
    workdir = os.path.dirname(spec_file(path))
    tr = translate(text, str(path), workdir)
    result = _compile(tr, text, str(path), workdir, digest)
    name = os.path.basename(str(path))
    key = PIPE_KEY.get()
    source = f"{name} (its `{key}`)" if key else name
    header = [f"# Converted from {source} by `hpoc convert`: it compiles to the same plan.",
              f"# Relative paths and modules resolve against this file's directory, as for {name}."]
    return format_study(with_comments(tr.study, tr.comments, header)), result.warnings


def _compile(tr: Translation, text: str, filename: str, workdir: str, sha256: str | None) -> Any:
    from hpoc.compiler import compile_study
    from hpoc.dsl.digest import spec_digest

    digest = sha256 or spec_digest(text.encode("utf-8"))  # as read from a file
    names = _yaml_names(tr.study, text) + tr.names
    try:
        result = compile_study(tr.study, text=text, file=filename, sha256=digest, workdir=workdir, fmt="yaml",
                               words=WORDS, pipe_key=PIPE_KEY.get())
    except SpecError as exc:
        raise SpecCheckError(_sorted(tr.warnings + _renamed(_own(exc.diagnostics), names, text))) from None
    result.warnings = _sorted(tr.warnings + _renamed(_own(result.warnings), names, text))
    return result


def _own(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The checker's, less its HP826 for a map in `space`: translate() says it in YAML's words."""
    return [d for d in diagnostics if d.code != "HP826"]


# (span, .hpo key, YAML key): where the checker's messages should say what the file says.
_Names = list[tuple[A.Span, str, str]]


def _yaml_names(study: A.Study, text: str) -> _Names:
    """Settings whose YAML key is spelled otherwise (`num_workers` for `workers`), with the
    spans of that key and of its value."""
    lines = text.split("\n")
    out: _Names = []

    def walk(items: Any) -> None:
        for item in items:
            if isinstance(item, A.Block):
                walk(item.body or ())
            elif isinstance(item, A.Setting) and item.key_span and item.key_span.line <= len(lines):
                ks = item.key_span
                line = lines[ks.line - 1]
                written = line[ks.col - 1 : ks.end_col - 1].strip("\"'")
                # Only a mapping key (a step's class path stands for `getter` too: not a key).
                if ks.end_line == ks.line and written != item.key and line[ks.end_col - 1 :].lstrip().startswith(":"):
                    out.extend((sp, item.key, written) for sp in (ks, item.value.span) if sp is not None)

    walk(study.items)
    return out


def _renamed(diags: list[Diagnostic], names: _Names, text: str) -> list[Diagnostic]:
    """The checker's diagnostics naming the YAML key at their position, not the .hpo one."""
    from hpoc.compiler.kinds import DURATION_EXPECTED

    out = []
    lines = text.split("\n")
    for d in diags:
        # the value as written, from the diagnostic's key or value to the line's end
        written = lines[d.line - 1][(d.col or 1) - 1:] if d.line and d.line <= len(lines) else ""
        if d.help and d.help.startswith("remove the quotes") and "${oc.env:" in written:
            # no quotes there: OmegaConf's `oc.env` gives a string, its default too
            d = replace(d, help="`${oc.env:...}` gives a string, as in OmegaConf: write the number itself")
        elif d.help and d.help.startswith("remove the quotes") and "${" in written:
            # no quotes there: `${a}0` is a string, as in OmegaConf
            d = replace(d, help="a `${...}` reference within other text gives a string: write the number, "
                                "or the reference alone (`${...}` to a number is that number)")
        if DURATION_EXPECTED in d.message:  # YAML has no duration: Ray's `time_budget_s`, `time_total_s` are seconds
            quoted = d.help and d.help.startswith("remove the quotes: ")
            seconds = _seconds(d.help[len("remove the quotes: "):]) if quoted else None  # type: ignore[index]
            d = replace(d, message=d.message.replace(DURATION_EXPECTED, "a number of seconds"),
                        help=f"write it in seconds: {seconds:g}" if seconds is not None else d.help)
        at = [(sp, hpo, yml) for sp, hpo, yml in names if d.line is not None and _inside(d.line, d.col or 1, sp)]
        here: list[tuple[str, str]] = []
        if at:
            best = min(at, key=lambda n: (n[0].end_line - n[0].line, n[0].end_col - n[0].col))[0]
            # Every name recorded at that span: a domain's `lower` and `upper` are `min` and `max`.
            here = [(hpo, yml) for sp, hpo, yml in at if sp == best]
            for hpo, yml in here:
                old = re.compile(rf"`(?:\w+\.)?{re.escape(hpo)}`")  # `every` or `checkpoint.every`
                fix = re.compile(rf"`\w+ \{{ {re.escape(hpo)} = ([^`{{}}]*) \}}`")  # `checkpoint { every = 1 }`
                d = replace(d, message=old.sub(f"`{yml}`", d.message),
                            help=d.help and fix.sub(rf"`{yml}: \1`", old.sub(f"`{yml}`", d.help)))

        def words(text: str) -> str:
            return _domain_keys(yaml_words(text), here)

        d = replace(d, message=words(d.message), help=d.help and words(d.help), notes=tuple(words(n) for n in d.notes))
        out.append(d)
    return out


def _domain_keys(text: str, here: list[tuple[str, str]]) -> str:
    """Domain mappings in `text` (`{type: randint, lower: 1, upper: 3}`) with the keys the
    config wrote at the diagnostic's domain (`min`, `max`, `options`)."""
    def keys(m: re.Match[str]) -> str:
        snippet = m.group(0)
        for hpo, yml in here:
            snippet = snippet.replace(f", {hpo}: ", f", {yml}: ")
        return snippet

    return re.sub(r"\{type: \w+(?:, \w+: [^`{}]*)*\}", keys, text) if here else text


# .hpo names the YAML always spells otherwise (hpoc/yaml/itwinai.py, tune.py), named in the
# checker's messages away from their own line (`fractional GPU needs `workers = 1``), and
# `section.key` names in its hints; the plan keeps them for the runtime (`source.words`).
WORDS = {"workers": "num_workers", "cpus_per_worker": "CPU", "gpus_per_worker": "GPU",
         "max_concurrent": "max_concurrent_trials", "time_budget": "time_budget_s",
         "max_retries": "max_failures", "keep": "num_to_keep", "score_attribute": "checkpoint_score_attribute",
         "score_order": "checkpoint_score_order", "reuse_workers": "reuse_actors", "space": "train_loop_config",
         "search": "search_alg",
         "trials.num_samples": "num_samples", "trials.max_concurrent": "max_concurrent_trials",
         "checkpoint.every": "checkpoint_frequency", "checkpoint.keep": "num_to_keep",
         "failure.max_retries": "max_failures", "storage.name": "run_config.name", "storage.path": "storage_path",
         "trials.time_budget": "time_budget_s", "trials.time_limit": "run_config.stop.time_total_s"}
_NESTED = re.compile(r"`(checkpoint|hyperparam_mutations|hyperparam_bounds) \{ (\w+) = ([^`{}]*) \}`")
_STOP = re.compile(r"`stop = \{ (\w+) = ([^`{}]*) \}`")
_CALL = re.compile(r"`(\w+)\(([^()`]*)\)`")
_GOAL = re.compile(r"`(objective )?(minimize|maximize) ([^`\s]+)`")
_DOMAIN = re.compile(r"(\w+)\(([^(),]+), ([^(),]+)\)")  # `loguniform(1e-5, 1e-2)`


def _range(value: str) -> str:
    """`uniform(a, b)` as `{type: uniform, min: a, max: b}`; any other value as it is."""
    domain = _DOMAIN.fullmatch(value)
    if domain and domain.group(1) in ("uniform", "loguniform", "randint", "lograndint"):
        return f"{{type: {domain.group(1)}, min: {domain.group(2)}, max: {domain.group(3)}}}"
    named = re.fullmatch(r"(\w+)\(\.\.\.\)", value)  # `noise = randn(...)`
    if named:
        from hpoc.yaml.space import yaml_type

        return f"{{type: {yaml_type(named.group(1))}, ...}}"
    return value


def yaml_words(text: str) -> str:
    """A checker message with its .hpo snippets in YAML: respell's, and a domain as the
    config writes it (`lr = uniform(a, b)` is `lr: {type: uniform, min: a, max: b}`)."""
    def call(m: re.Match[str]) -> str:  # a bare domain call in a hint: `choice(a, b)`
        from hpoc.compiler import tables as T
        from hpoc.yaml.space import domain_map, yaml_type

        func, inner = m.group(1), m.group(2).strip()
        if func not in T.DOMAINS:
            return m.group(0)
        if inner == "...":  # a domain named, not written out: `qrandint(...)` is `type: qrandint`
            return f"`type: {yaml_type(func)}`"
        args = [a.strip() for a in inner.split(",")] if inner else []
        if func in T.CATEGORICAL:  # .hpo's `choice(a, b)` takes the values, Ray's the list
            args = [f"[{', '.join(args)}]"]
        return f"`{domain_map(func, args)}`"

    def nested(m: re.Match[str]) -> str:  # `checkpoint { every = 1 }`, `hyperparam_mutations { lr = ... }`
        key, inner, value = m.group(1), m.group(2), _range(m.group(3).strip())
        if key == "checkpoint":
            return f"`checkpoint_config: {{{WORDS.get('checkpoint.' + inner, inner)}: {value}}}`"
        return f"`{key}: {{{inner}: {value}}}`"

    text = _STOP.sub(r"`stop: {\1: \2}`", text)  # `stop = { epoch = 0 }`, a map value
    # `objective minimize loss`, `minimize loss` (HP809's fix): the `search_alg`'s metric and mode
    text = _GOAL.sub(lambda m: (f"`metric: {m.group(3)}` with " if m.group(1) else "")
                     + f"`mode: {m.group(2)[:3]}`", text)
    text = text.replace("step's arguments", "step's `init_args`")  # `getter = data:Getter(root = ...)`
    text = respell(_NESTED.sub(nested, text), WORDS, _range).replace("`grid`", "`grid_search`")
    return _CALL.sub(call, text)


def _seconds(text: str) -> float | None:
    """Seconds of a .hpo duration (`1h30m`) or walltime (`02:00:00`) written as a string."""
    from hpoc.compiler.sections import slurm_seconds
    from hpoc.dsl.transform import duration_seconds

    seconds = duration_seconds(text)
    if seconds is None and re.fullmatch(r"[\d:-]+", text):
        seconds = slurm_seconds(text)
    return float(seconds) if seconds is not None else None


def _inside(line: int, col: int, sp: A.Span) -> bool:
    return (sp.line, sp.col) <= (line, col) and ((line, col) < (sp.end_line, sp.end_col) or (line, col) == (sp.line, sp.col))


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
