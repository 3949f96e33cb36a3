"""Top-level sections of a study read into plan-shaped values (one function per section)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any

from hpoc.compiler import kinds as K
from hpoc.compiler import tables as T
from hpoc.compiler.check import (
    DUPLICATE,
    MISPLACED,
    MISSING,
    OBJECTIVE,
    SLURM_TIME,
    TYPE,
    UNKNOWN,
    VALUE,
    WARN_ENV,
    WARN_RESOURCES,
    WARN_WALLTIME,
    Checker,
)
from hpoc.compiler.space import read_domain, read_space
from hpoc.dsl.transform import duration_seconds
from hpoc.dsl import ast as A
from hpoc.errors import closest, did_you_mean, one_of
from hpoc.sizes import slurm_mem

Found = dict[str, list[Any]]  # section kind -> blocks (or Objective statements)

_TARGET = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?", re.ASCII)


def collect(ch: Checker, study: A.Study) -> Found:
    found: Found = {}
    for item in study.items:
        if isinstance(item, A.Objective):
            kind = "objective"
        elif isinstance(item, A.Block):
            kind = item.kind
            if kind in ("minimize", "maximize") and "objective" in found:  # `objective minimize a, maximize b`
                ch.error(UNKNOWN, f"unknown section `{kind}`", item.kind_span,
                         help=_goals_block(*found["objective"], A.Objective((A.Goal(kind[:3], item.label_text or ""),))))
                continue
            if kind in T.LOGGERS:  # `logger mlflow, tensorboard`: the second kind begins an item
                ch.error(UNKNOWN, f"unknown section `{kind}`", item.kind_span,
                         help=f"write `logger {kind}` on a line of its own")
                continue
            if kind not in T.TOP_LEVEL:
                meant = closest(kind, T.TOP_LEVEL)
                ch.misnamed.add(meant or kind)
                ch.error(UNKNOWN, f"unknown section `{kind}`", item.kind_span,
                         help=f"did you mean `{meant}`?" if meant else f"sections: {one_of(T.TOP_LEVEL)}")  # fmt: skip
                continue
        elif isinstance(item, A.Setting):
            home = T.key_home(item.key)
            if item.key in ("name", "study"):
                ch.misnamed.add("study")
                home_help = f'write `study "{K.literal(item.value) if isinstance(item.value, A.String) else "name"}"`'
            elif item.key in T.TOP_LEVEL:  # `trials = { ... }`, `search = optuna`
                ch.misnamed.add(item.key)
                home_help = _section_written_as_setting(item)
            elif item.key == "seed":
                home_help = f"`seed` belongs in {T.SEED_HOMES}"
            elif home:
                home_help = f"`{item.key}` belongs in `{home} {{ ... }}`"
            else:
                home_help = "settings live inside sections such as `trials { ... }`"
            ch.error(MISPLACED, f"setting `{item.key}` outside of a section", item.key_span, help=home_help)
            continue
        else:
            ch.error(MISPLACED, "`if` blocks are only allowed in `space`", item.span)
            continue
        if kind in found and kind not in T.REPEATABLE:
            prev = found[kind][0]
            ch.error(
                DUPLICATE, f"section `{kind}` appears twice", _head(item),
                notes=(f"first at {ch.at(prev.span)}",),
                help=_goals_block(prev, item) if kind == "objective" else "merge them into one",
            )  # fmt: skip
            _repeated_keys(ch, kind, item)
            continue
        found.setdefault(kind, []).append(item)
    return found


def _repeated_keys(ch: Checker, kind: str, block: Any) -> None:
    """The unknown keys of a section written twice, said now rather than once it is merged."""
    fields = T.SECTIONS.get(kind)
    for item in (getattr(block, "body", None) or ()) if fields is not None else ():
        key = item.key if isinstance(item, A.Setting) else item.kind if isinstance(item, A.Block) else None
        if key is not None and key not in fields:
            ch.unknown_key(key, item.key_span if isinstance(item, A.Setting) else item.kind_span, fields, f"`{kind}`")


def _goals_block(*objectives: A.Objective) -> str:
    """The one `objective { ... }` block that several objective lines mean."""
    goals = [g for o in objectives for g in o.goals]
    bare = re.compile(r"[A-Za-z_][\w.]*", re.ASCII)
    words = [f"{g.mode}imize {g.metric if bare.fullmatch(g.metric) else json.dumps(g.metric)}" for g in goals]
    return f"for several metrics write one block: `objective {{ {'; '.join(words)} }}`"


def _section_written_as_setting(item: A.Setting) -> str:
    labelled = {"search": "<algorithm>", "scheduler": "<name>", "logger": "<kind>"}
    words = [_word(v) for v in (item.value.items if isinstance(item.value, A.List) else (item.value,))]
    if item.key in labelled and words and all(words):
        if len(words) > 1:  # `logger = [mlflow, tensorboard]`
            return f"one `{item.key}` per line: " + ", ".join(f"`{item.key} {w}`" for w in words)
        return f"write `{item.key} {words[0]}`"
    return f"write `{item.key} {labelled.get(item.key, '')}{' ' if item.key in labelled else ''}{{ ... }}`: " \
        "a section takes no `=`"


def _word(value: A.Value) -> str | None:
    """`optuna` of `optuna` or "optuna": a bare word a section's label could be."""
    word = value.path if isinstance(value, A.Ref) else getattr(value, "value", None)
    return word if isinstance(word, str) and re.fullmatch(r"[A-Za-z_]\w*", word) else None


def _head(item: Any) -> A.Span | None:
    return getattr(item, "kind_span", None) or item.span


def _one(found: Found, kind: str) -> Any:
    return found.get(kind, [None])[0]


def _label(ch: Checker, block: A.Block | None, what: str) -> str | None:
    if block is None:
        return None
    if block.label is None:
        inside = [item.value for item in block.body or () if isinstance(item, A.Setting)
                  and item.key in ("name", "algorithm", "kind", "type")]  # `search { algorithm = optuna }`
        word = inside[0].path if inside and isinstance(inside[0], A.Ref) else getattr(inside[0], "value", None) \
            if inside else None
        label = word if isinstance(word, str) and re.fullmatch(r"[A-Za-z_]\w*", word) else f"<{what.split()[-1]}>"
        ch.error(MISSING, f"`{block.kind}` needs {what}", block.kind_span,
                 help='write `study "my-study"`' if block.kind == "study"  # it takes no `{ ... }`
                 else f"write `{block.kind} {label} {{ ... }}`")  # fmt: skip
        return None
    return block.label_text


def _no_label(ch: Checker, block: A.Block | None) -> None:
    if block is not None and block.label is not None:
        ch.error(MISPLACED, f"section `{block.kind}` takes no label", block.label.span,
                 help=f"write `{block.kind} {{ ... }}`")  # fmt: skip


def read_all(ch: Checker, found: Found, study: A.Study) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["study"] = _study(ch, _one(found, "study"), study)
    name = out["study"]["name"] or "study"
    for kind in T.SECTIONS:
        block = _one(found, kind)
        _no_label(ch, block)
        if block is not None and block.body is None:
            ch.error(TYPE, f"section `{kind}` needs a body", block.span, help=f"write `{kind} {{ ... }}`")
            block = None
        if kind == "trials" and block is not None:
            block = _stop_in_seconds(block)
        out[kind] = ch.read_record(block, T.SECTIONS[kind], f"`{kind}`", kind, _Special(ch))
    _no_label(ch, _one(found, "space"))
    out["space_model"] = read_space(ch, _one(found, "space"))
    out["objective"] = _objective(ch, found.get("objective", []))
    out["search"] = _named(ch, _one(found, "search"), T.SEARCHERS, "search", "an algorithm", "random")
    sched = _named(ch, _one(found, "scheduler"), T.SCHEDULERS, "scheduler", "a scheduler name", "fifo", with_time_attr=True)
    out["scheduler"] = sched
    out["loggers"] = _loggers(ch, found.get("logger", []), name)
    return out


def _study(ch: Checker, block: A.Block | None, study: A.Study) -> dict[str, Any]:
    if block is None and "study" in ch.misnamed:
        return {"name": None}  # misspelt or written as a setting: said there
    if block is None:
        ch.error(MISSING, 'the study has no name', A.Span(study.file, 1, 1, 1, 1) if study.items else None,
                 help='start the file with `study "my-study"`')  # fmt: skip
        return {"name": None}
    name = _label(ch, block, "a name")
    if name is not None and not re.fullmatch(T.NAME_RE, name):
        ch.error(VALUE, f'"{name}" is not a valid study name', block.label.span if block.label else None,
                 help=T.NAME_HELP)  # fmt: skip
        name = None
    elif name is not None and len(name) > T.NAME_MAX:
        ch.error(VALUE, f"the study name must be at most {T.NAME_MAX} characters (got {len(name)})",
                 block.label.span if block.label else None,
                 help="it names directories and log files, which may have 255 bytes at most")  # fmt: skip
        name = None
    for item in block.body or ():
        ch.error(UNKNOWN, "`study` takes only a name", item.span, help=f'write `study "{name or "name"}"`')
        break
    if block.span:
        ch.spans["study.name"] = block.span
    return {"name": name}


def _named(
    ch: Checker,
    block: A.Block | None,
    table: dict[str, dict[str, T.F]],
    kind: str,
    what: str,
    default: str,
    with_time_attr: bool = False,
) -> dict[str, Any]:
    key = "name" if kind == "scheduler" else "algorithm"
    result: dict[str, Any] = {key: default}
    if with_time_attr:
        result["time_attr"] = T.TIME_ATTR.default
    name = _label(ch, block, what) if block is not None else default
    if name is None:  # said: its options belong to an algorithm nobody named
        result["options"] = {}
        result["_invalid"] = True
        return result
    if name not in table:
        ch.error(
            UNKNOWN, f"unknown {kind} `{name}`", block.label.span if block and block.label else None,
            help=did_you_mean(name, table) or f"{kind} is one of {one_of(table)}",
        )  # fmt: skip
        result["options"] = {}
        result["_invalid"] = True
        return result
    result[key] = name
    fields = dict(table[name])
    if with_time_attr:
        fields["time_attr"] = T.TIME_ATTR
        if block is not None and block.body:
            block = _timed_in_seconds(ch, block, name)
    options = ch.read_record(block if block and block.body else None, fields, f"`{kind} {name}`", f"{kind}.options", _Special(ch))
    if with_time_attr:
        result["time_attr"] = options.pop("time_attr")
        if "scheduler.options.time_attr" in ch.spans:
            ch.spans["scheduler.time_attr"] = ch.spans.pop("scheduler.options.time_attr")
    result["options"] = options
    if block is not None and block.span:
        ch.spans[f"{kind}.{key}"] = block.span
    return result


# Scheduler options counted in `time_attr` units, and the `time_attr`s that count seconds.
_TIMED = ("max_t", "grace_period", "perturbation_interval", "burn_in_period", "min_time_slice")
_CLOCKS = ("time_total_s", "time_this_iter_s", "time_since_restore")


def _timed_in_seconds(ch: Checker, block: A.Block, name: str) -> A.Block:
    """`block` with its durations (`max_t = 2m`) as seconds where `time_attr` counts seconds;
    elsewhere a duration is an error saying what the option counts."""
    attr = next((s.value for s in block.body or () if isinstance(s, A.Setting) and s.key == "time_attr"), None)
    clock = (attr.path if isinstance(attr, A.Ref) else attr.value if isinstance(attr, A.String) else None) in _CLOCKS
    body: list[A.Item] = []
    for item in block.body or ():
        if isinstance(item, A.Setting) and item.key in _TIMED and item.key in T.SCHEDULERS[name] \
                and isinstance(item.value, (A.Duration, A.Clock)):
            if not clock:
                kind = "an integer" if name in ("asha", "hyperband", "bohb") else "a number"
                ch.error(TYPE, f"`{item.key}` must be {kind}, not {K.describe(item.value)}", item.value.span,
                         help=f"`{item.key}` counts `time_attr` units, epochs under `training_iteration`; "
                              "for seconds, set `time_attr = time_total_s`")
                continue
            try:
                seconds = K.duration(item.value)
            except K.Invalid:
                body.append(item)  # said as the option is read
                continue
            whole = int(seconds) if float(seconds).is_integer() else seconds
            item = replace(item, value=A.Number(whole, str(whole), span=item.value.span))
        body.append(item)
    return replace(block, body=tuple(body))


def _stop_in_seconds(block: A.Block) -> A.Block:
    """`trials` with a duration on a clock in `stop` (`time_total_s = 1h`) as its seconds, as
    `max_t = 1h` is under such a `time_attr`; on another key a duration stays an error."""
    def seconds(pair: A.Pair | A.Setting) -> Any:
        if pair.key not in _CLOCKS or not isinstance(pair.value, (A.Duration, A.Clock)):
            return pair
        try:
            n = K.duration(pair.value)
        except K.Invalid:
            return pair  # said as the value is read
        n = int(n) if float(n).is_integer() else n
        return replace(pair, value=A.Number(n, str(n), span=pair.value.span))

    body: list[A.Item] = []
    for item in block.body or ():
        if isinstance(item, A.Setting) and item.key == "stop" and isinstance(item.value, A.Map):
            item = replace(item, value=replace(item.value, entries=tuple(seconds(p) for p in item.value.entries)))
        elif isinstance(item, A.Block) and item.kind == "stop" and item.body:
            item = replace(item, body=tuple(seconds(i) if isinstance(i, A.Setting) else i for i in item.body))
        body.append(item)
    return replace(block, body=tuple(body))


def _objective(ch: Checker, stmts: list[A.Objective]) -> dict[str, Any]:
    metrics: list[dict[str, str]] = []
    seen: dict[str, A.Span | None] = {}
    for stmt in stmts[:1]:
        for i, goal in enumerate(stmt.goals):
            if goal.metric in seen:
                ch.error(DUPLICATE, f"metric `{goal.metric}` appears twice in `objective`", goal.span,
                         notes=(f"first at {ch.at(seen[goal.metric])}",))  # fmt: skip
                continue
            if not goal.metric or _CONTROL.search(goal.metric):
                ch.error(VALUE, "metric names must be non-empty and on one line", goal.span)
                continue
            seen[goal.metric] = goal.span
            if goal.span:
                ch.spans[f"objective.metrics.{len(metrics)}"] = goal.metric_span or goal.span
            metrics.append({"name": goal.metric, "mode": goal.mode})
        if not stmt.goals:
            ch.error(OBJECTIVE, "`objective` lists no metric", stmt.span, help="write `objective minimize val_loss`")
    return {"metrics": metrics}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _loggers(ch: Checker, blocks: list[A.Block], study_name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: dict[str, A.Span | None] = {}
    for block in blocks:
        kind = _label(ch, block, "a kind")
        if kind is None:
            continue
        if kind not in T.LOGGERS:
            ch.error(UNKNOWN, f"unknown logger `{kind}`", block.label.span if block.label else None,
                     help=did_you_mean(kind, T.LOGGERS) or f"loggers: {one_of(T.LOGGERS)}")  # fmt: skip
            continue
        if kind in seen:
            ch.error(DUPLICATE, f"logger `{kind}` is configured twice", block.label.span if block.label else None,
                     notes=(f"first at {ch.at(seen[kind])}",), help="merge the two blocks")  # fmt: skip
            continue
        seen[kind] = block.span
        path = f"loggers.{len(out)}"
        opts = ch.read_record(block if block.body else None, T.LOGGERS[kind], f"`logger {kind}`", path)
        entry = {"kind": kind, "experiment_name": None, "log_freq": opts["log_freq"],
                 "tracking_uri": _folder_uri(ch, opts["tracking_uri"], f"{path}.tracking_uri", kind)}
        if kind == "mlflow":
            entry["experiment_name"] = opts["experiment_name"] or study_name
        if block.span:
            ch.spans[path] = block.span
        out.append(entry)
    return out


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_FILE_SCHEME = re.compile(r"file:(?://(?:localhost)?)?", re.IGNORECASE)


def _folder_uri(ch: Checker, uri: str | None, where: str, kind: str) -> str | None:
    """A logger's folder (a path, a `file:` URI) with `~` and `$VARS` expanded as in
    `storage.path`: left as written, `$SCRATCH` was a directory of that name beside the spec.
    MLflow's server or database URI is used as given; TensorBoard takes none (the runtime
    made `http://h` a folder `http:/h`)."""
    if not uri or (_SCHEME.match(uri) and not _FILE_SCHEME.match(uri)):
        if uri and kind == "tensorboard":
            ch.error(VALUE, f'`tracking_uri` of `logger tensorboard` is a URI ("{uri}"): TensorBoard '
                            "writes its event files to a folder", ch.spans.get(where),
                     help='give a folder on a filesystem every node shares, e.g. "$SCRATCH/tb" or '
                          '"tb_logs" (beside the spec)')  # fmt: skip
        return uri
    from hpoc.compiler.values import expand_path

    head = _FILE_SCHEME.match(uri)
    head = head.group(0) if head else ""
    path = expand_path(ch, uri[len(head):], where)
    return uri if path is None else head + path


# ---------------------------------------------------------------- special value kinds


class _Special:
    """Readers for values whose meaning depends on more than one node type."""

    def __init__(self, ch: Checker):
        self.ch = ch

    def __call__(self, kind: str, key: str, value: A.Value, path: str) -> Any:
        return getattr(self, kind)(key, value, path)

    def target(self, key: str, value: A.Value, path: str) -> dict[str, Any] | None:
        ch = self.ch
        if isinstance(value, A.Null):
            return None
        if isinstance(value, A.Call):
            path_text, span, kwargs = value.func, value.func_span or value.span, value.kwargs
            if value.args:
                ch.error(TYPE, f"`{key}` takes keyword arguments only", value.args[0].span,
                         help="write `name = value` for each argument")  # fmt: skip
        elif isinstance(value, A.Ref):
            path_text, span, kwargs = value.path, value.span, ()
        elif isinstance(value, A.String):
            path_text, span, kwargs = value.value, value.span, ()
        else:
            ch.error(TYPE, f"`{key}` must be a Python class such as `module:Class`, not {K.describe(value)}",
                     value.span)  # fmt: skip
            return None
        if not _TARGET.fullmatch(path_text):
            ch.error(VALUE, f'`{key}` is not a Python import path: "{path_text}"', span,
                     help="write `package.module:Class` or `package.module.Class`")  # fmt: skip
            return None
        if ":" not in path_text:
            if "." not in path_text:
                ch.error(VALUE, f"`{key}` needs a module: `{path_text}` alone cannot be imported", span,
                         help=f"write `module:{path_text}` (the module file beside the study)")  # fmt: skip
                return None
            module, _, attr = path_text.rpartition(".")
            path_text = f"{module}:{attr}"
        args: dict[str, Any] = {}
        for kw in kwargs:
            if kw.key in args:
                ch.error(DUPLICATE, f"argument `{kw.key}` is given twice to `{key}`", kw.key_span)
                continue
            try:
                args[kw.key] = K.literal(kw.value)
            except K.Invalid as exc:
                ch.error(TYPE, f"argument `{kw.key}` of `{key}` {exc.msg}", (exc.node or kw.value).span,
                         help=exc.help)  # fmt: skip
        return {"target": path_text, "args": args}

    def mem(self, key: str, value: A.Value, path: str) -> str | None:
        if isinstance(value, A.Null):
            return None
        written = value.text if isinstance(value, A.Size) else value.value if isinstance(value, A.String) else None
        read = slurm_mem(written) if isinstance(written, str) else None  # `64gb`: one spelling, `64G`
        if read is None and isinstance(value, A.Number) and isinstance(value.value, int) and value.value >= 0:
            read = slurm_mem(f"{value.value}M")
        if read is not None:
            text, mib = read
            if mib > MAX_MEM_MB:
                self.ch.error(VALUE, f"`mem` must be at most 1024T per node (got {text})", value.span,
                              help="`mem` is the memory of one node")  # fmt: skip
                return None
            if 0 < mib < MIN_MEM_MB:  # `mem = 256` for 256 GB
                bare = isinstance(value, A.Number) or text[-1].isdigit()
                shown = written if written is not None else value.value
                unit = " (a bare number is megabytes, as sbatch reads it)" if bare else ""
                self.ch.warn(WARN_RESOURCES, f"`mem = {shown}` gives each node {mib} MB{unit}: "
                                             "Ray's own processes need more than that", value.span,
                             help=f"write `{text.rstrip('M')}G` for gigabytes" if bare else
                             "raise `mem` to 2G or more, or leave it out for the partition's default")  # fmt: skip
            return text
        help = "a whole number with K, M, G or T (`512M`, `64G`); without one, megabytes"
        if isinstance(value, A.Duration) and re.fullmatch(r"\d+m", value.text):  # `500m`: minutes to the lexer
            help = f"write `{value.text[:-1]}M` for megabytes: a size's unit is a capital letter " \
                   f"(`{value.text}` is {value.text[:-1]} minutes)"
        self.ch.error(TYPE, f"`mem` must be a memory size such as `64G`, not {K.describe(value)}", value.span,
                      help=help)  # fmt: skip
        return None

    def time(self, key: str, value: A.Value, path: str) -> dict[str, Any] | None:
        if isinstance(value, A.Null):
            return None
        if isinstance(value, (A.Clock, A.String)):
            text = value.text if isinstance(value, A.Clock) else value.value
            seconds, problem = slurm_time(text)
            if problem is not None:  # `00:90:00`: say which field, and what it would be
                self.ch.error(SLURM_TIME, f'`time` "{text}": {problem}', value.span,
                              help=f"write `{format_slurm_time(seconds)}` for the same walltime")  # fmt: skip
                return None
            if seconds is None:
                quoted = isinstance(value, A.String) and duration_seconds(text) is not None
                self.ch.error(
                    SLURM_TIME, f'`time` is not a SLURM time: "{text}"', value.span,
                    help=f"remove the quotes: {text}" if quoted else  # a duration, as elsewhere
                    "SLURM accepts MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM and D-HH:MM:SS (e.g. 02:00:00)",
                )  # fmt: skip
                return None
        elif isinstance(value, A.Duration):
            seconds = value.seconds
        elif isinstance(value, A.Number) and isinstance(value.value, int):
            seconds = value.value * 60  # SLURM reads a bare number as minutes
        else:
            self.ch.error(TYPE, f"`time` must be a walltime such as `02:00:00` or `2h`, not {K.describe(value)}",
                          value.span)  # fmt: skip
            return None
        if seconds <= 0:
            self.ch.error(SLURM_TIME, "`time` must be longer than zero", value.span)
            return None
        if seconds > K.MAX_DURATION_S:
            self.ch.error(SLURM_TIME, f"`time` must be at most 365 days (got {format_slurm_time(int(seconds))})",
                          value.span)  # fmt: skip
            return None
        if seconds % 60:  # SLURM rounds a walltime up to whole minutes: the plan says what the job gets
            written = value.text if isinstance(value, (A.Duration, A.Clock)) else value.value
            seconds = math.ceil(seconds / 60) * 60
            self.ch.warn(WARN_WALLTIME, f"SLURM counts walltime in whole minutes: `time` {written} gives the job "
                                        f"{format_slurm_time(seconds)}", value.span,
                         help=_clock_help(written, seconds))  # fmt: skip
        return {"time": format_slurm_time(int(seconds)), "time_s": int(seconds)}

    def env(self, key: str, value: A.Value, path: str) -> str | None:
        if isinstance(value, A.String):
            if any(c in value.value for c in "\n\r\x00"):  # what render.py refuses too
                self.ch.error(VALUE, f"environment variable `{key}` must be one line", value.span)
                return None
            # Quoted as written (docs/slurm.md): a shell's expansions stay literal
            if shell := _SHELL_WORD.search(value.value):
                self.ch.warn(WARN_ENV, f"`env` exports `{key}` as written: `{shell[1]}` in its value is not expanded",
                             value.span, help=f'to expand it on the nodes, export it in `setup`: '
                                              f'"export {key}={value.value}"')  # fmt: skip
            return value.value
        # Exported as written: `true` stays "true" (not Python's 1), `1.50` stays "1.50".
        if isinstance(value, A.Bool):
            return "true" if value.value else "false"
        if isinstance(value, A.Number):
            return value.text or str(value.value)
        help = None
        if isinstance(value, A.Ref):
            python = value.path in ("True", "False", "None")  # Python's, or a string?
            if not python and K.bare_word(value.path):  # a bare word is its string
                return value.path
            help = (f"write `{value.path.lower()}`, or " if python and value.path != "None" else "") + \
                f'quote it: "{value.path}"'
        if isinstance(value, A.Null):
            help = f"leave `{key}` out: the job exports the variables `env` lists and unsets none"
        self.ch.error(TYPE, f"environment variable `{key}` must be a string, number or boolean, not {K.describe(value)}",
                      value.span, help=help)  # fmt: skip
        return None

    def mutation(self, key: str, value: A.Value, path: str) -> Any:
        if isinstance(value, A.Call):
            domain = read_domain(self.ch, value, f"mutation `{key}`")
            if domain and domain[0] == "grid":
                self.ch.error(TYPE, "`grid` cannot be a PBT mutation", value.span, help="use `choice(...)`")
                return None
            return {"domain": domain[0], "args": domain[1]} if domain else None
        if isinstance(value, A.List) and value.items:
            try:
                return K.space_value(value)
            except K.Invalid as exc:
                self.ch.error(TYPE, f"mutation `{key}` {exc.msg}", (exc.node or value).span, help=exc.help)
                return None
        self.ch.error(TYPE, f"mutation `{key}` must be a non-empty list or a search domain, not {K.describe(value)}",
                      value.span, help="write `lr = loguniform(1e-4, 1e-1)` or `batch_size = [32, 64]`")  # fmt: skip
        return None

    def bounds(self, key: str, value: A.Value, path: str) -> Any:
        if (
            isinstance(value, A.List)
            and len(value.items) == 2
            and all(isinstance(i, A.Number) for i in value.items)
        ):
            lo, hi = (i.value for i in value.items)  # type: ignore[union-attr]
            if lo < hi:
                return [lo, hi]
            self.ch.error(VALUE, f"bounds of `{key}` must be increasing (got {lo} and {hi})", value.span)
            return None
        what = K.describe(value)
        if isinstance(value, A.List):
            n = len(value.items)
            what = f"a list of {n} value{'' if n == 1 else 's'}" if n != 2 else "a list with a non-number"
        self.ch.error(TYPE, f"bounds of `{key}` must be `[lower, upper]`, not {what}", value.span)
        return None


_SLURM_TIME = re.compile(
    r"(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?)"
    r"|(?:(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)",
    re.ASCII,
)


def slurm_seconds(text: str) -> int | None:
    """Seconds of a SLURM time string (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    seconds, problem = slurm_time(text)
    return None if problem else seconds


def slurm_time(text: str) -> tuple[int | None, str | None]:
    """(seconds, None) of a SLURM time string; (None, None) when it is not one; and
    (seconds it would mean, what is wrong) when a field is out of range (`00:90:00`:
    "minutes must be below 60"), which SLURM refuses too."""
    m = _SLURM_TIME.fullmatch(text.strip())
    if not m:
        return None, None
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "d" in g:
        d, h, mi, s = g["d"], g["dh"], g.get("dm", 0), g.get("ds", 0)
    elif "c" in g:  # HH:MM:SS
        d, h, mi, s = 0, g["a"], g["b"], g["c"]
    elif "b" in g:  # MM:SS (the minutes may be any number)
        d, h, mi, s = 0, 0, g["a"], g["b"]
    else:  # MM
        d, h, mi, s = 0, 0, g["a"], 0
    seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    limits = [("hours", h, 24, "d" in g), ("minutes", mi, 60, "c" in g or "dm" in g), ("seconds", s, 60, True)]
    for unit, value, limit, bounded in limits:
        if bounded and value >= limit:
            return seconds, f"{unit} must be below {limit} (got {value})"
    return seconds, None


def _clock_help(written: str, seconds: int) -> str:
    """The help of a walltime SLURM rounds up; `4:30` (four and a half hours to PBS or LSF
    users) is minutes:seconds to SLURM."""
    rounded = f"write `{format_slurm_time(seconds)}` to say so"
    if not re.fullmatch(r"\d{1,2}:\d\d", written):
        return rounded
    hours, minutes = (int(x) for x in written.split(":"))
    meant = " ".join(f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min")) if n)
    return f"SLURM reads `{written}` as minutes:seconds; {rounded}, or `{written.zfill(5)}:00` for {meant}"


# What a shell would expand in an `env` value: `$PATH`, `${HOME}`, `$(cmd)`, a leading `~/`
_SHELL_WORD = re.compile(r"(\$(?:\w+|\{[^}]*\}|\()|(?:^|(?<=:))~(?=/|:|$))", re.ASCII)


MAX_MEM_MB = 1024 * 1024**2  # 1024T: more than any node has
MIN_MEM_MB = 1024  # below: Ray's raylet, GCS and object store alone do not fit (`mem = 256` for 256 GB)


def format_slurm_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}" if days else f"{h:02d}:{m:02d}:{s:02d}"
