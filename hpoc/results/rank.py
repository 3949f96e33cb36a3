"""Ranking, filtering and the best trial: shared by the table, the exports and the report."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from hpoc import unranked
from hpoc.results.model import Results, ResultsError, Trial

# --status accepts Ray's statuses plus the table's labels of TERMINATED trials, which say
# why each ended (`stopped`: by the scheduler or a stop criterion; `time-limit`: by hpoc).
LABEL_FILTERS = {"completed": "completed", "stopped": "stopped early", "time-limit": "time limit",
                 "time-budget": "time budget", "no-reports": "no reports"}
STATUS_FILTERS = ("terminated", *LABEL_FILTERS, "error", "running", "pending", "paused")


@dataclass
class Ranking:
    metric: str | None
    mode: str                    # "min" | "max"
    scope: str                   # "last" | "best"
    trials: list[Trial]          # filtered, sorted, cut to --top
    best: Trial | None           # best non-errored trial of the whole study
    total: int                   # trials before filtering
    notes: list[str] = field(default_factory=list)

    def value(self, trial: Trial, metric: str | None = None) -> float | None:
        metric = metric or self.metric
        return None if metric is None else trial.value(metric, self.scope, self.mode)

    def config(self, trial: Trial) -> dict[str, Any]:
        """The config of the report the ranking takes: a population scheduler (PBT, PB2)
        changes a trial's config as it runs, so its best report may have another config than
        its last one."""
        return trial.config_at(trial.report_index(self.metric, self.scope, self.mode))


def rank(results: Results, sort: str | None = None, ascending: bool | None = None,
         scope: str = "last", statuses: list[str] | None = None,
         top: int | None = None) -> Ranking:
    notes: list[str] = []
    metric, mode = _sort_metric(results, sort, ascending, notes)
    if scope not in ("last", "best"):
        raise ResultsError(f"invalid scope `{scope}` (expected `last` or `best`)")

    ordered = sorted(results.trials, key=_order(metric, mode, scope))
    best = best_trial(ordered, metric, mode, scope)
    shown = [t for t in ordered if _keep(t, statuses)] if statuses else ordered
    if top is not None:
        if top < 1:
            raise ResultsError(f"--top must be at least 1 (got {top})")
        shown = shown[:top]
    if statuses and not shown and results.trials:
        from collections import Counter

        there = Counter(status_label(t) for t in results.trials)
        notes.append(f"no trial is {' or '.join(statuses)}; the study's trials are "
                     + ", ".join(f"{label}: {n}" for label, n in sorted(there.items())))
    return Ranking(metric, mode, scope, shown, best, len(results.trials), notes)


def _order(metric: str | None, mode: str, scope: str) -> Callable[[Trial], tuple]:
    def key(trial: Trial) -> tuple:
        value = trial.value(metric, scope, mode) if metric else None
        # Errored trials go after the others: a value they reported before failing does
        # not make them a result to build on. Ties: the earlier shard and trial, as the
        # run's own summary picks (a searcher's trial ids are random).
        number = trial.number
        return (value is None, trial.status == "ERROR",
                0.0 if value is None else (value if mode == "min" else -value),
                trial.shard, number is None, number or 0, trial.trial_id)
    return key


def best_trial(trials: list[Trial], metric: str | None, mode: str, scope: str = "last") -> Trial | None:
    """The best trial that did not fail, by `metric`; None when none reported it. Every
    command that names a best trial (results, export, report, status) takes this one."""
    if metric is None:
        return None
    ranked = [t for t in trials if t.status != "ERROR" and t.value(metric, scope, mode) is not None]
    return min(ranked, key=_order(metric, mode, scope), default=None)


def _sort_metric(results: Results, sort: str | None, ascending: bool | None,
                 notes: list[str]) -> tuple[str | None, str]:
    available = results.metric_names()
    if sort is None:
        primary = results.primary
        if primary is None:
            if available:
                notes.append("the study names no objective; rows are in trial order "
                             f"(sort with --sort METRIC, e.g. --sort {available[0]})")
            return None, "min"
        if primary.name not in available or not _any_finite(results, primary.name):
            # Before the first report (or a trainer that never reports it, or reports only
            # NaN): the table still shows where the trials stand; only an explicit --sort
            # of a metric never reported is an error.
            why = unranked.why(primary.name, outcomes(results, primary.name), "`errors:` says why",
                               over=results.over, budget_s=results.budget_s, words=results.words)
            notes.append(f"{why}; rows are in trial order" + (
                "" if primary.name in available else
                f" (reported metrics: {', '.join(available) or 'none'})"))
            return primary.name, primary.mode
        sort = primary.name
    if sort not in available:
        hint = difflib.get_close_matches(sort, available, n=1)
        raise ResultsError(
            f"no trial reported a metric `{sort}`"
            + (f"; did you mean `{hint[0]}`?" if hint else "")
            + f"\n  reported metrics: {', '.join(available) or '(none)'}")
    if ascending is not None:
        return sort, "min" if ascending else "max"
    known = results.metric(sort)
    if known is not None:
        return sort, known.mode
    notes.append(f"`{sort}` is not an objective metric of the study; sorting ascending "
                 "(smaller is better). Use --desc if larger is better")
    return sort, "min"


def _any_finite(results: Results, metric: str) -> bool:
    return any(t.value(metric) is not None for t in results.trials)


def outcomes(results: Results, metric: str) -> unranked.Outcomes:
    """What the trials did, as far as `metric` goes: for saying why none is best by it."""
    ran = [t for t in results.trials if not failed(t)]
    silent = [t for t in ran if t.status == "TERMINATED" and not t.history]
    return unranked.Outcomes(
        trials=len(results.trials), failed=len(results.trials) - len(ran),
        diverged=sum(1 for t in ran if any(_not_finite(r.get(metric)) for r in t.history)),
        silent=len(silent), timed=sum(1 for t in silent if t.stopped_by))


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)  # NaN, inf: training diverged


def _keep(trial: Trial, statuses: list[str]) -> bool:
    for wanted in statuses:
        if wanted in LABEL_FILTERS and status_label(trial) == LABEL_FILTERS[wanted]:
            return True
        if wanted.upper() == trial.status:
            return True
    return False


def parse_statuses(values: list[str] | None) -> list[str] | None:
    """--status a,b --status c -> ["a", "b", "c"]; unknown names are an error."""
    if not values:
        return None
    out = []
    for value in values:
        for item in value.split(","):
            item = "-".join(item.lower().split())  # "time limit", as the table shows it
            if not item:
                continue
            if item not in STATUS_FILTERS:
                hint = difflib.get_close_matches(item, STATUS_FILTERS, n=1)
                raise ResultsError(
                    f"unknown status `{item}`" + (f"; did you mean `{hint[0]}`?" if hint else "")
                    + f"\n  valid: {', '.join(STATUS_FILTERS)}")
            out.append(item)
    return out or None


def failed(trial: Trial) -> bool:
    """An errored trial, or one whose retry after an error the time budget or its time limit
    ended (its status is TERMINATED; its error is the failure the retry followed)."""
    return trial.status == "ERROR" or (trial.retry_cut and bool(trial.error))


def error_groups(trials: list[Trial]) -> list[list[Trial]]:
    """The failed trials, one group per distinct error line, the largest group first: its
    first trial's line says it. Lines alike but for their numbers or ids (the MiB each trial
    asked for, its directory) are one, as fail-fast has them: 500 trials out of memory, each
    for another size, are one error."""
    from hpoc.runtime.failfast import signature

    groups: dict[str, list[Trial]] = {}
    for t in trials:
        if failed(t):
            groups.setdefault(signature(t.error, t.trial_id, t.path) or t.error or "", []).append(t)
    return sorted(groups.values(), key=len, reverse=True)  # stable: first seen among equals


def lines_differ(group: list[Trial]) -> bool:
    """Whether a group's error lines differ (in numbers or ids): said, not hidden."""
    return len({t.error for t in group}) > 1


# The labels status_label gives, in the order tables and reports count them.
LABELS = ("completed", "stopped early", "time limit", "time budget", "no reports", "error", "running",
          "paused", "pending")


def label_counts(trials: list[Trial]) -> list[tuple[str, int]]:
    """(label, how many trials have it) for the labels some trial has, in LABELS order."""
    counts: dict[str, int] = {}
    for trial in trials:
        label = status_label(trial)
        counts[label] = counts.get(label, 0) + 1
    return [(label, counts[label]) for label in LABELS if label in counts]


def status_label(trial: Trial) -> str:
    if trial.status == "TERMINATED":
        if trial.stopped_by:  # "time limit", "time budget": said even when it never reported
            return trial.stopped_by
        if not trial.history:  # ended without one report: nothing to rank it by
            return "no reports"
        return "stopped early" if trial.stopped_early else "completed"
    return trial.status.lower()


def param_names(results: Results) -> list[str]:
    """Hyperparameter columns: the searched parameters (the plan's, or a run's marker's),
    else config keys that vary."""
    flats = [results.flat(t.config) for t in results.trials]
    if results.knows_space:
        names = [p["name"] for p in results.space()]
        return [n for n in names if any(n in f for f in flats)]
    keys: dict[str, None] = {}
    for flat in flats:
        for k in flat:
            keys.setdefault(k)
    with_config = [f for f in flats if f]
    if len(with_config) <= 1:
        return list(keys)
    return [k for k in keys if len({_hashable(f.get(k)) for f in with_config}) > 1]


def config_names(results: Results) -> list[str]:
    """Every key of the configs the trials saw: the searched parameters first, then the rest
    (the study's constants), for exports that carry a trial's whole config."""
    names = dict.fromkeys(param_names(results))
    for trial in results.trials:
        names.update(dict.fromkeys(results.flat(trial.config)))
    return list(names)


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, (list, dict)) else value


def pareto_front(results: Results, scope: str = "last") -> list[Trial]:
    """With several objective metrics: the trials no other trial beats on all of them (as
    good on each, better on one) - the trade-offs found, of which the ranked best trial,
    first by the first metric, is only one. Empty for one metric. Failed trials, and those
    without a finite value of every metric, take no part."""
    objectives = results.metrics
    if len(objectives) < 2:
        return []
    scored = []
    for trial in results.trials:
        if trial.status == "ERROR":
            continue
        values = [trial.value(m.name, scope, m.mode) for m in objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        scored.append((trial, [v if m.mode == "min" else -v for v, m in zip(values, objectives)]))

    # In lexicographic order a trial can only be beaten by one before it, and then by one
    # of the front before it: comparing with the front alone is linear in the trials per
    # front trial, not quadratic (hundreds of a big study sit on a real trade-off's front).
    front: list[list[float]] = []
    on_front: set[int] = set()
    for trial, mine in sorted(scored, key=lambda tv: tv[1]):
        if not any(_beats(other, mine) for other in reversed(front)):  # nearest first
            front.append(mine)
            on_front.add(id(trial))
    return [trial for trial, _ in scored if id(trial) in on_front]


def _beats(other: list[float], mine: list[float]) -> bool:
    """As good on every objective (values oriented to minimise) and not the same."""
    return all(o <= m for o, m in zip(other, mine)) and other != mine
