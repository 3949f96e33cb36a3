"""Semantic checks: Study AST → `Checked` (plain values per plan section), with every
problem collected as a diagnostic before anything fails (pydantic-style).

Sections and keys come from `tables.py`; the search space lives in `space.py`;
cross-section rules (searcher vs space, resources, ...) in `rules.py`, the `slurm` block
against the resources in `slurm.py`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from hpoc.compiler import kinds as K
from hpoc.compiler import tables as T
from hpoc.dsl import ast as A
from hpoc.errors import SYNONYMS, Diagnostic, did_you_mean, one_of

# Error codes (docs/language.md lists them).
UNKNOWN, DUPLICATE, TYPE, VALUE, MISSING, MISPLACED = "HP201", "HP202", "HP203", "HP204", "HP205", "HP206"
SPACE, BOUNDS, CONDITION, SEARCHER = "HP301", "HP302", "HP303", "HP304"
SCHEDULER, OBJECTIVE = "HP401", "HP402"
RESOURCES, SLURM_TIME, SHARDS, SLURM = "HP501", "HP502", "HP503", "HP504"
MAX_DIAGNOSTICS = 50
WARN_METRIC, WARN_SEARCH, WARN_FILE, WARN_RESOURCES = "HP801", "HP802", "HP803", "HP804"
# Settings of a training loop that a new user writes in `training` or `trials`: the trainer
# reads them from the trial config, which `space` makes.
TRAINER_VALUES = ("epochs", "max_epochs", "num_epochs", "lr", "learning_rate", "batch_size", "weight_decay",
                  "momentum", "optimizer", "dropout")
WARN_SCHEDULE, WARN_ARRAY, WARN_TIME, WARN_WALLTIME = "HP805", "HP806", "HP807", "HP808"
WARN_DIRECTION, WARN_ONE_VALUE, WARN_CONFIG, WARN_ALWAYS = "HP809", "HP810", "HP811", "HP812"
WARN_FIRST_METRIC, WARN_SHAPE, WARN_REPEATS, WARN_UNREAD = "HP813", "HP814", "HP815", "HP816"
WARN_SECONDS, WARN_ENV, WARN_NODE_LOCAL, WARN_PATH = "HP817", "HP818", "HP819", "HP823"
WARN_SETUP = "HP824"
WARN_DOWNLOAD = "HP825"
WARN_DATA_DOMAIN = "HP826"


@dataclass
class Checked:
    """Normalised sections of a study (plan-shaped), plus plan path → span."""

    sections: dict[str, Any] = field(default_factory=dict)
    spans: dict[str, A.Span] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


class Checker:
    """Collects diagnostics; `read_record` reads one section against its table."""

    def __init__(self, file: str):
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.spans: dict[str, A.Span] = {}
        self.invalid: set[str] = set()  # paths whose value was an error (the default stands in)
        # sections written, but misspelt or as a setting (reported there, not again as missing)
        self.misnamed: set[str] = set()

    # -- reporting
    def report(
        self,
        severity: str,
        code: str,
        msg: str,
        span: A.Span | None,
        help: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        if span is None:  # a whole-file problem (a missing section): point at the file's start
            span = A.Span(self.file, 1, 1, 1, 1)
        d = Diagnostic(
            msg, code, self.file, span.line, span.col, span.end_line, span.end_col,
            severity=severity, help=help, notes=notes,
        )  # fmt: skip
        self.diagnostics.append(d)

    def error(self, code: str, msg: str, span: A.Span | None, help: str | None = None, notes: tuple[str, ...] = ()) -> None:
        self.report("error", code, msg, span, help, notes)

    def warn(self, code: str, msg: str, span: A.Span | None, help: str | None = None, notes: tuple[str, ...] = ()) -> None:
        self.report("warning", code, msg, span, help, notes)

    def at(self, span: A.Span | None) -> str:
        return f"line {span.line}" if span else "elsewhere"

    # -- entries of a block or map: (key, key_span, value-or-block, span)
    def entries(self, node: A.Block | A.Map | None, where: str) -> Iterator[tuple[str, Any, Any, Any]]:
        if node is None:
            return
        if isinstance(node, A.Map):
            for p in node.entries:
                yield p.key, p.key_span or p.span, p.value, p.span
            return
        for item in node.body or ():
            if isinstance(item, A.Setting):
                if item.condition is not None:
                    self.error(
                        MISPLACED,
                        f"conditions are only allowed in `space`, not in {where}",
                        item.condition.span,
                        help="remove the `if` clause",
                    )
                yield item.key, item.key_span or item.span, item.value, item.span
            elif isinstance(item, A.Block):
                if item.label is not None:
                    self.error(
                        MISPLACED,
                        f"`{item.kind}` inside {where} takes no label",
                        item.label.span,
                        help=f"write `{item.kind} {{ ... }}`",
                    )
                yield item.kind, item.kind_span or item.span, item, item.span
            elif isinstance(item, A.IfBlock):
                self.error(MISPLACED, f"`if` blocks are only allowed in `space`, not in {where}", item.span)
            elif isinstance(item, A.Objective):
                self.error(
                    MISPLACED, f"`objective` belongs at the top level, not in {where}", item.span,
                    help="move it out of the block",
                )  # fmt: skip

    def read_record(
        self,
        node: A.Block | A.Map | None,
        fields: dict[str, T.F],
        where: str,
        path: str,
        special: Any = None,
    ) -> dict[str, Any]:
        """Values of all `fields` (defaults filled in) read from `node`; errors recorded."""
        out = {k: copy.deepcopy(f.default) for k, f in fields.items()}
        seen: dict[str, A.Span | None] = {}
        for key, kspan, value, span in self.entries(node, where):
            if key in seen:
                self.error(
                    DUPLICATE, f"`{key}` is set twice in {where}", kspan,
                    notes=(f"first set at {self.at(seen[key])}",), help="remove one of them",
                )  # fmt: skip
                continue
            seen[key] = span
            f = fields.get(key)
            if f is None:
                self.unknown_key(key, kspan, fields, where, value)
                continue
            out[key] = self.read_value(key, value, f, where, f"{path}.{key}", special)
            if span is not None:
                self.spans[f"{path}.{key}"] = span
        for key, f in fields.items():
            if f.required and key not in seen:
                hdr = node.kind_span if isinstance(node, A.Block) else node.span if node else None
                if node is None and path in self.misnamed:
                    continue  # misspelt or misplaced: said where it is written
                if node is None:  # the whole block is missing
                    self.error(MISSING, f"the study has no {where} block (with `{key}`)", hdr,
                               help=f"add `{path} {{ {key} = ... }}`")
                else:
                    self.error(MISSING, f"{where} needs `{key}`", hdr, help=f"add `{key} = ...`")
        return out

    def read_value(self, key: str, value: Any, f: T.F, where: str, path: str, special: Any) -> Any:
        if isinstance(f.kind, T.Rec):
            if isinstance(value, A.Null):
                return None
            if not isinstance(value, (A.Block, A.Map)):
                self.error(
                    TYPE, f"`{key}` must be a `{{ ... }}` block, not {K.describe(value)}", value.span,
                    help=f"write `{key} {{ ... }}`",
                )  # fmt: skip
                return copy.deepcopy(f.default)
            if f.kind.open is not None:
                return self.read_open(key, value, f.kind, path, special)
            return self.read_record(value, f.kind.fields, f"`{key}`", path, special)
        if isinstance(value, A.Block):
            self.error(
                TYPE, f"`{key}` is a setting, not a block", value.kind_span,
                help=f"write `{key} = ...`",
            )  # fmt: skip
            return copy.deepcopy(f.default)
        if isinstance(f.kind, str):  # handled by the section's own reader
            return special(f.kind, key, value, path) if special else None
        try:
            return f.kind(value)
        except K.Invalid as exc:
            self.invalid.add(path)
            node = exc.node or value
            help = exc.help
            if help is None and isinstance(value, A.Null):  # `null` is not "the default" here
                d = str(f.default).lower() if isinstance(f.default, bool) else f.default
                shown = f", `{d}`" if isinstance(d, (int, float, str)) else ""
                help = f"leave `{key}` out for its default{shown}"
            self.error(TYPE if "must be" in exc.msg and " not " in exc.msg else VALUE,
                       f"`{key}` {exc.msg}", node.span or value.span, help=help)  # fmt: skip
            return copy.deepcopy(f.default)

    def read_open(self, key: str, value: Any, rec: T.Rec, path: str, special: Any) -> dict[str, Any]:
        """A free-form map (`env`, `stop`, ...): any keys, values of one kind."""
        out: dict[str, Any] = {}
        for k, kspan, v, span in self.entries(value, f"`{key}`"):
            if k in out:
                self.error(DUPLICATE, f"`{k}` is set twice in `{key}`", kspan, help="remove one of them")
                continue
            if rec.key_pattern and not re.fullmatch(rec.key_pattern, k):
                self.error(VALUE, f"`{k}` is not a valid {rec.key_what}", kspan)
                continue
            if isinstance(v, A.Block):
                self.error(TYPE, f"`{k}` in `{key}` must be a value, not a block", v.kind_span)
                continue
            if k in rec.taken:
                self.warn(WARN_ENV, f"hpoc's job sets `{k}` itself: the value in `{key}` is not used", kspan,
                          help=f"leave `{k}` out; {rec.taken[k]}")
            if isinstance(rec.open, str):
                out[k] = special(rec.open, k, v, f"{path}.{k}") if special else None
            else:
                try:
                    out[k] = rec.open(v)
                except K.Invalid as exc:
                    self.error(TYPE, f"`{k}` in `{key}` {exc.msg}", (exc.node or v).span, help=exc.help)
                    continue
            if span is not None:
                self.spans[f"{path}.{k}"] = span
        return out

    def unknown_key(self, key: str, span: A.Span | None, fields: dict[str, Any], where: str,
                    value: Any = None) -> None:
        help = did_you_mean(key, fields)
        other = SYNONYMS.get(key)
        home = T.key_home(other) if other and other not in fields else None
        if home and home not in where:  # Ray's word for a key of another section (`n_trials`)
            help = f"write `{other}` in `{home}`"
        elif help is None and key in TRAINER_VALUES and where != "`space`":
            help = f"values the trainer reads are constants in `space`: `space {{ {key} = ... }}`"
        if key in ("metric", "mode") and where.startswith(("`scheduler", "`search")):
            # Ray's own argument names: here the study's objective says both, once for all.
            help = ("the search and the scheduler use the study's objective (its first metric): "
                    "`objective minimize val_loss` or `objective maximize val_accuracy`")
        if key in ("resources_per_worker", "resources_per_trial", "use_gpu") and where == "`resources`":
            help = "write `cpus_per_worker = ...` and `gpus_per_worker = ...` (a trial's workers: `workers = ...`)"
        if key == "pruner" and where.startswith("`search"):  # Optuna's early stopping
            help = ("Ray Tune, not Optuna, stops trials early: `scheduler median` (Optuna's "
                    "MedianPruner) or `scheduler asha` (its SuccessiveHalvingPruner)")
        kind, _, name = where.strip("`").partition(" ")
        algorithms = {"search": T.SEARCHERS, "scheduler": T.SCHEDULERS}.get(kind, {})
        others = [f"{kind} {n}" for n, opts in algorithms.items() if key in opts and n != name]
        if help is None and others:
            # another algorithm's option, not the section of the same name (`training.seed`
            # makes trials deterministic; it does not seed nevergrad's search)
            help = f"{where} takes no `{key}`; it is an option of {one_of(others)}"
        if help is None:
            home = T.key_home(key)
            if key == "seed" and not where.startswith(("`training", "`search")):
                help = f"`seed` belongs in {T.SEED_HOMES}"
            elif home and home not in where:
                help = f"`{key}` belongs in `{home}`"
            elif fields:
                help = f"valid keys: {one_of(fields)}"
            else:
                help = f"{where} takes no options"
        if where == "`slurm`" and (said := _borrowed_key(key, value)):  # `exclusive = true`: sbatch's word
            help = said
        self.error(UNKNOWN, f"unknown key `{key}` in {where}", span, help=help)


def _borrowed_key(key: str, value: Any) -> str | None:
    """What to write for a `slurm` key borrowed from sbatch (`exclusive = true`) or from a job
    template (`venv`, `walltime`), or None."""
    text = {A.String: lambda v: v.value, A.Size: lambda v: v.text, A.Duration: lambda v: v.text,
            A.Number: lambda v: v.text or str(v.value), A.Ref: lambda v: v.path}.get(type(value))
    written = text(value) if text is not None else "..."
    if key in ("mem_per_node", "memory"):
        return f"the memory of each node is `mem` (`mem = {written}`)"
    if key in ("time_limit", "walltime", "timelimit"):
        return f"the job's walltime is `time` (`time = {written}`); `trials.time_limit` stops each trial"
    if key in ("venv", "virtualenv", "conda_env"):
        env = written.rstrip("/")
        return (f'activate it in `setup` ("source {env}/bin/activate"), or set `python = "{env}/bin/python"`'
                if key != "conda_env" else f'activate it in `setup` (`setup = ["eval \\"$(conda shell.bash hook)\\"", '
                                       f'"conda activate {env}"]`)')
    flag = "--" + key.replace("_", "-")
    if flag in T.OWNED_SBATCH or flag in T.RESUME_SBATCH:
        why, fix = T.OWNED_SBATCH.get(flag) or T.RESUME_SBATCH[flag]
        return f"sbatch's `{flag}`, {why}; {fix}"
    if flag in T.MANAGED_SBATCH:
        return f"hpoc writes `{flag}` from `{T.MANAGED_SBATCH[flag]}`" + (
            ": one task per node, its Ray node" if flag in T.TASK_SBATCH else "")
    if flag not in T.SBATCH_OPTIONS:
        return None
    written = flag if isinstance(value, A.Bool) or text is None else f"{flag}={written}"
    return f'an sbatch option without a setting of its own: write it in `extra`: `extra = ["{written}"]`'


def check(study: A.Study, workdir: str | None = None) -> Checked:
    """Check a Study; the result carries every diagnostic (see `Checked.ok`)."""
    from hpoc.compiler import rules, sections

    checker = Checker(study.file)
    found = sections.collect(checker, study)
    out = sections.read_all(checker, found, study)
    rules.cross_check(checker, out, found, workdir)
    diags = sorted(
        checker.diagnostics,
        key=lambda d: (d.line is not None, d.line or 0, d.col or 0, d.severity != "error"),
    )
    if len(diags) > MAX_DIAGNOSTICS:  # a garbage file should not print megabytes
        rest = len(diags) - MAX_DIAGNOSTICS
        diags = diags[:MAX_DIAGNOSTICS]
        if not any(d.severity == "error" for d in diags):
            diags.append(next(d for d in checker.diagnostics if d.severity == "error"))
        diags.append(Diagnostic(f"{rest} more problems not shown", "HP200", study.file, severity="error"))
    return Checked(out, checker.spans, diags)
