"""Machine-readable exports: JSON for scripts, CSV for spreadsheets (one row per trial)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from hpoc.results.model import RAY_KEYS, Results, Trial, number
from hpoc.results.rank import Ranking, config_names, pareto_front, status_label

# Ray bookkeeping kept in the per-epoch history export (the rest is user metrics).
_HISTORY_KEYS = ("training_iteration", "time_total_s", "timestamp")


def trial_record(results: Results, ranking: Ranking, trial: Trial, rank: int,
                 history: bool = False) -> dict[str, Any]:
    # A metric whose last report is not finite (a diverged trial) is null; strict JSON has no
    # NaN. One never reported is absent: dropping a NaN as well would hide the divergence.
    metrics = {m: trial.value(m) for m in results.metric_names()
               if trial.value(m) is not None or _diverged(trial.last.get(m))}
    record: dict[str, Any] = {
        "rank": rank,
        "trial_id": trial.trial_id,
        "shard": trial.shard,
        "status": trial.status,
        "label": status_label(trial),
        "stopped_early": trial.stopped_early,
        "epochs": trial.epochs,
        "score": ranking.value(trial),
        "metrics": metrics,
        "config": ranking.config(trial),
        "params": results.flat(ranking.config(trial)),
        "error": trial.error,
        "path": trial.path,
        "wall_s": _wall(trial),
    }
    schedule = trial.config_schedule()
    if schedule:  # PBT, PB2: the config changed while the trial ran
        record["config_schedule"] = [{"from_epoch": a, "to_epoch": b, "config": c}
                                     for a, b, c in schedule]
    if history:
        record["history"] = [
            {k: None if _diverged(v) else v for k, v in row.items()
             if k in _HISTORY_KEYS or k not in RAY_KEYS and (number(v) is not None or _diverged(v))}
            for row in trial.history
        ]
    return record


def _diverged(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _wall(trial: Trial) -> float | None:
    return number(trial.last.get("time_total_s")) if trial.history else None


def to_dict(results: Results, ranking: Ranking, history: bool = False) -> dict[str, Any]:
    return {
        "study": results.study,
        "root": str(results.root),
        "plan_hash": results.plan_hash,
        "objective": [{"name": m.name, "mode": m.mode} for m in results.metrics],
        "sort": {"metric": ranking.metric, "mode": ranking.mode, "scope": ranking.scope},
        "max_epochs": results.max_epochs,
        "num_trials": ranking.total,
        "status_counts": results.status_counts(),
        "shards": [{"index": s.index, "path": str(s.path), "num_trials": s.num_trials,
                    "complete": s.has_summary, "wall_s": s.wall_s,
                    "run": s.run.to_dict() if s.run is not None else None}
                   for s in results.shards],
        "best": (trial_record(results, ranking, ranking.best, 1)
                 if ranking.best is not None else None),
        "pareto_front": [t.trial_id for t in pareto_front(results, ranking.scope)],
        "trials": [trial_record(results, ranking, t, i, history)
                   for i, t in enumerate(ranking.trials, 1)],
        "warnings": list(results.warnings),
    }


def to_json(results: Results, ranking: Ranking, history: bool = False) -> str:
    return json.dumps(to_dict(results, ranking, history), indent=2, allow_nan=False,
                      default=str) + "\n"


def to_csv(results: Results, ranking: Ranking) -> str:
    metrics = results.metric_names()
    params = config_names(results)  # what --json's `params` holds: constants too
    header = ["rank", "trial_id", "shard", "status", "label", "stopped_early", "epochs", "wall_s"]
    header += metrics + [f"config/{p}" for p in params] + ["error", "path"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, trial in enumerate(ranking.trials, 1):
        flat = results.flat(ranking.config(trial))
        row: list[Any] = [i, trial.trial_id, trial.shard, trial.status, status_label(trial),
                          str(trial.stopped_early).lower(), trial.epochs, _cell(_wall(trial))]
        row += [_metric_cell(trial, m) for m in metrics]
        # empty: a conditional parameter the trial lacks; `null` is a value (`choice(relu, null)`)
        row += ["null" if p in flat and flat[p] is None else _cell(flat.get(p)) for p in params]
        row += [trial.error or "", trial.path or ""]
        writer.writerow(row)
    return buf.getvalue()


def _metric_cell(trial: Trial, metric: str) -> str:
    """The last reported value; `nan`/`inf` when it diverged, empty when never reported."""
    value = trial.value(metric)
    raw = trial.last.get(metric)
    if value is None and isinstance(raw, float) and not isinstance(raw, bool):
        return repr(raw)  # non-finite: 'nan', 'inf', '-inf'
    return _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)
