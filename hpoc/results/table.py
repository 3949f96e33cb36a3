"""Plain-text views: the ranked table and the best trial's configuration."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from hpoc import unranked
from hpoc.dsl.format import format_setting
from hpoc.errors import cells, shown
from hpoc.results.model import Results, Trial
from hpoc.results.rank import (Ranking, error_groups, label_counts, lines_differ, outcomes, param_names,
                               pareto_front, status_label)
from hpoc.counts import counted


# The errors block's lines when the table is cut to its best rows (--all: every one).
ERROR_LINES = 10


def fmt(value: Any) -> str:
    """Short cell text: 4 significant digits for floats, JSON-ish for the rest."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def shown_metrics(results: Results, ranking: Ranking) -> list[str]:
    names = [ranking.metric] if ranking.metric else []
    names += [m.name for m in results.metrics if m.name not in names]
    available = set(results.metric_names())
    return [n for n in names if n in available]


def epochs_cell(results: Results, trial: Trial) -> str:
    return f"{trial.epochs}/{results.max_epochs}" if results.max_epochs else str(trial.epochs)


def rows(results: Results, ranking: Ranking,
         limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    metrics = shown_metrics(results, ranking)
    params = param_names(results)
    header = ["#", "trial"] + (["shard"] if results.sharded else []) + ["status", "epochs"]
    header += [f"{m} ({ranking.scope})" if ranking.scope == "best" else m for m in metrics]
    header += params
    body = []
    for i, trial in enumerate(ranking.trials[:limit], 1):
        flat = results.flat(ranking.config(trial))
        row = [str(i), trial.trial_id] + ([str(trial.shard)] if results.sharded else [])
        row += [status_label(trial), epochs_cell(results, trial)]
        row += [_metric_cell(ranking, trial, m) for m in metrics]
        row += [param_cell(flat, p) for p in params]
        body.append(row)
    return header, body


def param_cell(flat: dict[str, Any], name: str) -> str:
    """`-` for a conditional parameter the trial lacks; `null` for a value of `null`."""
    return "null" if name in flat and flat[name] is None else fmt(flat.get(name))


def _metric_cell(ranking: Ranking, trial: Trial, metric: str) -> str:
    """`nan`/`inf` for a diverged trial (not ranked, but shown: "-" is never reported)."""
    value = ranking.value(trial, metric)
    raw = trial.last.get(metric)
    if value is None and isinstance(raw, float):
        return repr(raw)
    return fmt(value)


def render_table(results: Results, ranking: Ranking, limit: int | None = None) -> str:
    header, body = rows(results, ranking, limit)
    if not body:
        return "(no trial to show)"  # a header over no rows read as a broken table
    # Values are the user's (a `choice` of CJK words, a string with an escape): shown as a
    # terminal can print them, and lined up by the columns they take there.
    header, body = [shown(c) for c in header], [[shown(c) for c in r] for r in body]
    widths = [max(cells(r[i]) for r in [header] + body) for i in range(len(header))]
    numeric = [all(is_number(r[i]) for r in body) for i in range(len(header))]

    def line(row: list[str]) -> str:
        gaps = [" " * (w - cells(c)) for c, w in zip(row, widths)]
        out = [g + c if num else c + g for c, g, num in zip(row, gaps, numeric)]
        return "  ".join(out).rstrip()

    lines = [line(header), line(["-" * w for w in widths])] + [line(r) for r in body]
    if len(body) < len(ranking.trials):
        lines.append(f"… {len(ranking.trials) - len(body)} more trials not shown (--top N shows "
                     "N, --all every one; --csv or --json for all of them as data)")
    return "\n".join(lines)


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-$|^null$")


def is_number(text: str) -> bool:
    """A number cell (or "-" for none, "null" for a `null` value); not Python's float() rules
    ("13412_00007" parses)."""
    return bool(_NUMBER.match(text)) or text in ("inf", "-inf", "nan")


def extended_said(results: Results, target: str | None = None) -> str | None:
    """What `hpoc results` and the report say of a study whose plan added trials since it ran
    (`hpoc status` says `extended`): what is shown is not the whole study yet."""
    if not results.extended:
        return None
    how = f"`hpoc status {shlex.quote(target)}`" if target else "`hpoc status`"
    return (f"the study is extended ({results.extended}): its added trials have not run yet "
            f"({how} says how to run them)")


def render_summary(results: Results, ranking: Ranking) -> str:
    parts = [counted(n, label) for label, n in label_counts(results.trials)]
    head = f"study `{results.study}`: {counted(len(results.trials), 'trial')} ({', '.join(parts)})"
    if results.shards_said:
        head += f" across {results.shards_said}"
    for shard in results.shards:
        if shard.run is not None:
            head += (f"\nrunning now{f' (shard {shard.index})' if results.sharded else ''}: "
                     f"{shard.run.describe()}")
    if ranking.metric:
        order = "smaller" if ranking.mode == "min" else "larger"
        head += f"\nranked by {ranking.metric} ({ranking.scope} reported value, {order} is better)"
    if len(ranking.trials) < ranking.total:
        head += f"; showing {len(ranking.trials)} of {ranking.total}"
    return head


def render_errors(ranking: Ranking, ids_shown: int = 3, limit: int | None = None) -> str:
    """One line per distinct error, the most frequent first: a bug that failed 64 trials is
    one line, not 64; past `limit` lines, the rest counted."""
    groups = error_groups(ranking.trials)
    if not groups:
        return ""
    lines = ["errors:"]
    for group in groups[:limit]:
        ids = [t.trial_id for t in group]
        error = shown(group[0].error or "failed (no message kept)")
        if len(ids) == 1:
            lines.append(f"  {ids[0]}: {error}")
            continue
        more = ", …" if len(ids) > ids_shown else ""
        alike = ", alike but for numbers or ids" if lines_differ(group) else ""
        lines.append(f"  {len(ids)} trials ({', '.join(ids[:ids_shown])}{more}){alike}: {error}")
    left = groups[limit:] if limit is not None else []
    if left:
        lines.append(f"  … {len(left)} more errors (of {sum(map(len, left))} trials): --all lists them, "
                     "--json and --csv hold each trial's")
    return "\n".join(lines)


def render_best(results: Results, ranking: Ranking) -> str:
    best = ranking.best
    if best is None:
        if ranking.metric is None:
            return ""
        return "no best trial: " + unranked.why(ranking.metric, outcomes(results, ranking.metric),
                                                "the errors say why", over=results.over,
                                                budget_s=results.budget_s, words=results.words)
    where = f" (shard {best.shard})" if results.sharded else ""
    value = fmt(ranking.value(best))
    lines = [f"best trial: {best.trial_id}{where}  {ranking.metric} = {value}  "
             f"epochs {epochs_cell(results, best)}  [{status_label(best)}]"]
    if best.path:
        lines.append(f"  directory: {best.path}")
    config = ranking.config(best)
    lines += schedule_lines(results, ranking, best)
    lines += ["", "config (JSON):", json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False), "",
              "config (key = value):"]
    # .hpo syntax, not JSON: a dict value pastes as `{ a = 1 }` (JSON's `{"a": 1}` does not parse)
    lines += [f"  {_setting(k, v)}" for k, v in sorted(results.flat(config).items())]
    return "\n".join(lines)


def _setting(key: str, value: Any) -> str:
    try:
        return format_setting(key, value)
    except (ValueError, TypeError):  # NaN, infinity: the spec language has no literal for them
        return f"{key} = {json.dumps(value)}  # not expressible in a .hpo file"


def schedule_lines(results: Results, ranking: Ranking, trial: Trial) -> list[str]:
    """For a trial whose config changed while it ran (PBT, PB2): which config trained which
    epochs. Only the keys that changed are listed; the config printed is the ranked report's."""
    spans = trial.config_schedule()
    if not spans:
        return []
    flats = [results.flat(c) for _, _, c in spans]
    keys = sorted({k for f in flats for k in f if len({json.dumps(g.get(k)) for g in flats}) > 1})
    index = trial.report_index(ranking.metric, ranking.scope, ranking.mode)
    epoch = trial.history[index].get("training_iteration") if index is not None else None
    lines = ["", f"  its config changed during the run (the scheduler moved it onto other trials' "
             f"checkpoints); the config below is the one epoch {epoch} was trained with:"]
    for (first, last, _), flat in zip(spans, flats):
        epochs = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        changed = ", ".join(f"{k}={json.dumps(flat.get(k), ensure_ascii=False)}" for k in keys)
        lines.append(f"    {epochs}: {changed}")
    lines.append("  (retraining from scratch with one fixed config is not what produced this result)")
    return lines


def render_pareto(results: Results, ranking: Ranking, limit: int | None = None) -> str:
    """Several objectives: the trade-offs found, since the best trial is only the first
    metric's pick among them (the first `limit` by the first metric)."""
    front = pareto_front(results, ranking.scope)
    if not front:
        return ""
    names = ", ".join(f"{m.name} ({m.mode})" for m in results.metrics)
    first, sign = results.metrics[0], 1 if results.metrics[0].mode == "min" else -1
    front.sort(key=lambda t: sign * t.value(first.name, ranking.scope, first.mode))
    lines = [f"Pareto front of {names}: {len(front)} trial(s) that no other trial beats on every "
             "objective:"]
    for trial in front[:limit]:
        where = f" (shard {trial.shard})" if results.sharded else ""
        values = "  ".join(f"{m.name} = {fmt(trial.value(m.name, ranking.scope, m.mode))}"
                           for m in results.metrics)
        lines.append(f"  {trial.trial_id}{where}  {values}")
    if limit is not None and len(front) > limit:
        lines.append(f"  … {len(front) - limit} more (--all lists them; --json has `pareto_front`)")
    return "\n".join(lines)


def render(results: Results, ranking: Ranking, show_best: bool = True,
           limit: int | None = None) -> str:
    """The summary, table (its first `limit` rows), errors, Pareto front and best trial."""
    parts = [render_summary(results, ranking), "", render_table(results, ranking, limit)]
    errors = render_errors(ranking, limit=None if limit is None else ERROR_LINES)
    if errors:
        parts += ["", errors]
    pareto = render_pareto(results, ranking, limit)
    if pareto:
        parts += ["", pareto]
    if show_best:
        best = render_best(results, ranking)
        if best:
            parts += ["", best]
    return "\n".join(parts) + "\n"
