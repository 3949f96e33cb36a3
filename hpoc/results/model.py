"""What a finished (or running, or crashed) study looks like once read back from disk."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpoc.runtime import summary as _summary
from hpoc.runtime.marker import recorded_space
from hpoc.runtime.space import flatten as flatten  # {"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}

_NUMBERED = re.compile(r"trial_(\d+)_")  # hpoc.runtime.tuner.trial_dirname

# Keys Ray Tune adds to every reported result; everything else numeric is a user metric.
# hpoc's trainer reports `epoch` beside training_iteration: an axis, not a metric.
RAY_KEYS = _summary.RAY_KEYS | {"epoch"}

STATUSES = ("TERMINATED", "ERROR", "RUNNING", "PENDING", "PAUSED")


class ResultsError(Exception):
    """Results cannot be shown: missing or empty directory, unreadable plan, bad option."""


class UnreadableError(ResultsError):
    """The study's files are there but not readable by this user: not a study not started."""


@dataclass(frozen=True)
class Metric:
    name: str
    mode: str  # "min" or "max"

    def better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b


@dataclass
class Trial:
    trial_id: str
    status: str
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per report
    shard: int = 0
    path: str | None = None
    error: str | None = None          # one line, for tables
    error_text: str | None = None     # full traceback when Ray kept one
    stopped_early: bool = False
    stopped_by: str | None = None     # why hpoc stopped it ("time limit"), when it did
    retry_cut: bool = False           # stopped while being retried: `error` is its failure
    started_at: float | None = None   # wall-clock seconds, from Ray's state when it has them
    ended_at: float | None = None
    state_saved: float | None = None  # when Ray saved the experiment state its status is from
    # The config each report was trained with (parallel to `history`; None where result.json
    # did not say). A population scheduler (PBT, PB2) changes a trial's config while it runs.
    configs: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        if not self.history:
            return 0
        # A line another writer made (a hand-edited or foreign result.json) may not say.
        it = number(self.history[-1].get("training_iteration"))
        return int(it) if it and it > 0 else len(self.history)

    @property
    def number(self) -> int | None:
        """Its creation order in its shard, from hpoc's `trial_<N>_<id>` directory; None for
        another's. Searchers' trial ids are random: only this tells which trial came first."""
        match = _NUMBERED.match(Path(self.path).name) if self.path else None
        return int(match.group(1)) if match else None

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def value(self, metric: str, scope: str = "last", mode: str = "min") -> float | None:
        """`metric` at the last report, or its best value over all reports (scope="best")."""
        if all(number(r.get(metric)) is None for r in self.history):
            return None
        return number(self.history[self.report_index(metric, scope, mode)].get(metric))  # type: ignore[index]

    def report_index(self, metric: str | None, scope: str = "last", mode: str = "min") -> int | None:
        """Index in `history` of the report `value` takes (the first best one for scope="best")."""
        if not self.history:
            return None
        if scope != "best" or metric is None:
            return len(self.history) - 1
        scored = [(v, i) for i, v in enumerate(number(r.get(metric)) for r in self.history)
                  if v is not None]
        if not scored:
            return len(self.history) - 1
        return min(scored, key=lambda vi: (vi[0] if mode == "min" else -vi[0], vi[1]))[1]

    def config_at(self, index: int | None) -> dict[str, Any]:
        """The config report `index` was trained with; `config` when unknown."""
        if index is not None and 0 <= index < len(self.configs) and self.configs[index] is not None:
            return self.configs[index]
        return self.config

    def config_schedule(self) -> list[tuple[int, int, dict[str, Any]]]:
        """[(first epoch, last epoch, config)] when the trial's config changed while it ran
        (PBT, PB2), one entry per stretch of reports with the same config; else []."""
        spans: list[tuple[int, int, dict[str, Any]]] = []
        for row, config in zip(self.history, self.configs):
            if config is None:
                continue
            epoch = int(number(row.get("training_iteration")) or 0)
            if spans and spans[-1][2] == config:
                spans[-1] = (spans[-1][0], epoch, config)
            else:
                spans.append((epoch, epoch, config))
        return spans if len(spans) > 1 else []

    # result.json timestamps are whole seconds; Ray's state keeps finer start/end times.
    @property
    def start_ts(self) -> float | None:
        if self.started_at is not None and self.history:
            return self.started_at
        if not self.history:
            return None
        first = self.history[0]
        ts, took = number(first.get("timestamp")), number(first.get("time_this_iter_s")) or 0.0
        return None if ts is None else ts - took

    @property
    def end_ts(self) -> float | None:
        if not self.history:
            return None
        if self.ended_at is not None:
            return self.ended_at
        return number(self.last.get("timestamp"))

    def metric_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for report in self.history:
            for key, val in report.items():
                # NaN and inf count: a metric every trial diverged on keeps its column (`nan`)
                if key not in RAY_KEYS and not _summary.flattened(key) and _numeric(val):
                    seen.setdefault(key)
        return list(seen)


@dataclass
class Shard:
    index: int
    path: Path
    has_summary: bool
    num_trials: int
    wall_s: float | None = None
    run: Any = None                 # live.RunLock of the run going on in it, if any
    marker: dict[str, Any] | None = None  # its plan marker (runtime/marker.py), read once
    began: bool = True              # a run began in it: not an empty directory made ahead of one


@dataclass
class Results:
    study: str
    root: Path                      # the study's experiment directory
    metrics: list[Metric]           # objective metrics, primary first (may be empty)
    trials: list[Trial]
    shards: list[Shard]
    plan: dict[str, Any] | None = None
    max_epochs: int | None = None   # what a trial that ran to the end reports
    warnings: list[str] = field(default_factory=list)
    plan_hash: str | None = None    # the plan's, else the one summary.json recorded
    other_plan: str | None = None   # why the trials are another plan's run (same storage), if so
    ran_in: str | None = None       # where that run ran, when it differs from this plan in its paths alone
    extended: str | None = None     # what the plan raises of a run that ended (marker.grown_words)
    ended: list[str] = field(default_factory=list)  # runs a time budget ended (summary.ending)
    budget_s: float | None = None   # the time budget that ended every shard's run, if one did
    started: float | None = None    # when a selection of a study: when the whole study began
    planned_shards: int | None = None  # the plan's shards, or those its runs recorded (no plan)
    mixed_plans: str | None = None  # read without a plan: which shards ran another plan, if any
    _names: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def words(self) -> dict[str, str] | None:
        """The plan's `source.words`: a YAML config's names for hpoc's settings."""
        return ((self.plan or {}).get("source") or {}).get("words")

    @property
    def sharded(self) -> bool:
        return len(self.shards) > 1

    @property
    def shards_said(self) -> str | None:
        """"150 of 200 shards" while shards of the plan have not started (`hpoc status`
        counts the plan's), "200 shards"; None for a study of one."""
        planned = max(((self.plan or {}).get("shards") or {}).get("count") or 0,
                      self.planned_shards or 0, len(self.shards))
        if planned <= 1:
            return None
        began = sum(s.began for s in self.shards)
        return f"{began} of {planned} shards" if began < planned else f"{planned} shards"

    @property
    def primary(self) -> Metric | None:
        return self.metrics[0] if self.metrics else None

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def over(self) -> bool:
        """Every shard ended with its summary, no run goes on and no trial waits for one: what
        has not been reported never will be (until the study is run again)."""
        return bool(self.shards) and all(s.has_summary and s.run is None for s in self.shards) \
            and not any(t.status in ("RUNNING", "PENDING", "PAUSED") for t in self.trials)

    def metric_names(self) -> list[str]:
        """Every user metric some trial reported; objective metrics first."""
        key = (len(self.trials), tuple(self.metrics))
        if self._names is None or self._names[0] != key:  # cached: asked for per row
            names = {m.name: None for m in self.metrics}
            seen: set[str] = set()
            for trial in self.trials:
                for name in trial.metric_names():
                    names.setdefault(name)
                    seen.add(name)
            self._names = (key, [n for n in names if n in seen])
        return list(self._names[1])

    def space(self) -> list[dict[str, Any]]:
        """The searched parameters: the plan's, else those a run recorded in its marker."""
        if self.plan:
            return list(self.plan["space"]["params"])
        for shard in self.shards:
            params = (recorded_space(shard.marker) or {}).get("params")
            if isinstance(params, list) and all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                                for p in params):
                return list(params)
        return []

    @property
    def knows_space(self) -> bool:
        """Whether the searched parameters are known (from the plan or a marker), not guessed."""
        return self.plan is not None or bool(self.space())

    def flat(self, config: dict[str, Any]) -> dict[str, Any]:
        """A config by dotted names; a parameter's value stays whole (a dict from a
        `choice`, which plain flattening would split into keys no parameter has)."""
        return flatten(config, keep={p["name"] for p in self.space()})

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        return counts


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (strings, NaN, bools)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
