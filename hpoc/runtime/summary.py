"""summary.json: what a shard of a study did, written into its experiment directory.

    {"study", "shard", "plan_hash", "metrics": [{"name", "mode"}], "num_trials",
     "status_counts": {"TERMINATED": 5, "ERROR": 1}, "best": {...} | null,
     "trials": [{"trial_id", "status", "config", "metrics", "epochs", "error", "stopped", "path"[, "retry_cut"]}],
     "wall_s", "interrupted", "stopped", "stop", "experiment_dir", "run_started", "planned",
     "budget_reached_s", "signal"[, "slurm_job", "slurm_restart", "slurm_task"]}

Statuses are Ray Tune's (TERMINATED, ERROR, RUNNING, PENDING, PAUSED). `config` is the
nested config the trainer saw; `metrics` the trial's last report (the user's keys only);
`best` ranks trials by the first objective metric at their last report. A trial's `stopped`
is why hpoc stopped it ("time limit": timelimit.py; "time budget" for a trial whose retry
after a failure the study's time budget cut short), or null; `retry_cut` marks a trial
stopped while it was being retried, whose `error` is the failure the retry followed. The summary's `stopped` says why
the study stopped itself (failfast.py, full.py), or is null; such a run is `interrupted` (resumable).
`stop` is that stop as data, for status and results to act on rather than its words:
{"kind": "fail_fast" | "disk_full", "at": the full disk's folder | null}, or null (stop_of).
`budget_reached_s`: the time budget that ended the run, `signal` the signal that interrupted
it (`ending` says either), or null. `search_ended`: the search algorithm, when the run ended
with fewer trials than `planned` because it had nothing more to suggest (bayesopt's
`patience`), else absent. `slurm_job`, `slurm_restart` (SLURM_RESTART_COUNT) and, in an
array task, `slurm_task` (`ARRAYID_TASK`): the SLURM job run that wrote it, absent outside one.
"""

from __future__ import annotations

import json
import math
import os
import re
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

from hpoc import unranked
from hpoc.files import read_json_lines, read_json_object, trial_path
from hpoc.runtime.crash import died, died_line, stack_of, with_crash
from hpoc.runtime.shards import shared_budget
from hpoc.runtime import full, runlock, timelimit
from hpoc.runtime.space import trial_config
from hpoc.counts import counted

SUMMARY = "summary.json"
# Keys Ray adds to every result; the rest are the user's.
RAY_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "experiment_tag", "should_checkpoint", "warmup_time",
    "checkpoint_path", "experiment_id",
})
_MAX_ERROR = 4000


def flattened(key: str) -> bool:
    """A key Ray made by flattening its own nested values (`config/lr`) or hpoc's `perf`
    with `/`: no metric. A user's own `val/err` is one (`minimize "val/err"`)."""
    return "/" in key and key.split("/", 1)[0] in RAY_KEYS | {"perf"}


def exit_code(summary: dict[str, Any]) -> int:
    """The driver's exit status for a run that ended with `summary`: 0 when some trial
    succeeded, 1 when every trial failed or none gave a finite objective (diverged)."""
    total = summary.get("num_trials") or 0
    if total == 0 and summary.get("budget_taken"):
        return 0  # the other shards ran the whole study: this one has done its part
    if total == 0 or errored(summary) == total:
        return 1
    if summary.get("metrics") and summary.get("best") is None:
        return 1  # no trial gave a finite objective (NaN or inf: training diverged)
    return 0


def errored(summary: dict[str, Any]) -> int:
    """How many trials `summary` counts as ERROR (which ones --retry-errored runs again is
    rerun.errored's answer, from Ray's saved state and the summary's `retry_cut` trials)."""
    return int((summary.get("status_counts") or {}).get("ERROR") or 0)


def user_metrics(result: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for key, value in (result or {}).items():
        if key in RAY_KEYS or flattened(key):
            continue
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = value if math.isfinite(value) else None
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# hpoc's own TrainerError and PipelineError (a trainer a trial cannot build) say their
# sentence for the user: their class path is noise there
OWN_ERROR = re.compile(r"^(?:hpoc\.[\w.]+\.)?(?:TrainerError|PipelineError): ")
_EXC_LINE = re.compile(r"^\s*(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt|Exit)\b.*")


# Ray's error whose line says nothing alone: hpoc says what it means, in a sentence that
# needs none of the lines after Ray's colon
_RAY_STORAGE = "RuntimeError: Unable to set up cluster storage with the following settings:"
_STORAGE_GONE = ("the study's experiment directory is gone or cannot be written (Ray's "
                 "`.validate_storage_marker` in it is missing): was it deleted or moved during "
                 "the run?")


def error_line(text: str, width: int = 240) -> str:
    """The one line of an error text worth printing: the last `SomeError: message` line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    picks = [ln for ln in lines if _EXC_LINE.match(ln)]
    last = (picks or lines or [""])[-1].replace(_RAY_STORAGE, _STORAGE_GONE)
    line = died_line(text) or OWN_ERROR.sub("", one_line([last, *_goes_on(text, picks, last)]))
    return line if len(line) <= width else line[: width - 1] + "…"


def one_line(lines: list[str]) -> str:
    """The lines of one message as one line, words apart by single spaces (an error's line
    here, a getter's error in pipeline._describe)."""
    return " ".join(" ".join(lines).split())


def _goes_on(text: str, picks: list[str], last: str) -> list[str]:
    """The lines a message `last` ending in a colon goes on with, each line one more while
    the one before ends in a colon (torchvision's "Error downloading x.gz:", "Tried <first
    mirror>, got:" and its reason, not the next mirror's "Tried ..., got:"); else []."""
    if not picks:
        return []
    raw = text.splitlines()
    at = max(i for i, ln in enumerate(raw) if ln.strip() == picks[-1])
    more: list[str] = []
    for ln in raw[at + 1:]:
        if not (more or [last])[-1].endswith(":") or not ln.strip() or _FRAME.match(ln) or \
                ln.startswith(("Traceback", "During handling", "The above")):
            break
        more.append(ln.strip())
    return more


def error_help(text: str) -> str | None:
    """The `help:` an hpoc error carries on the line after its message (`install `timm` in
    the environment the study runs in`), which error_line leaves out; None without one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = max((i for i, ln in enumerate(lines) if _EXC_LINE.match(ln)), default=None)
    if last is None or last + 1 >= len(lines) or not lines[last + 1].startswith("help: "):
        return None
    return lines[last + 1][len("help: "):]


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_NOT_USER = tuple(os.path.normpath(p) + os.sep for p in {
    sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"], str(Path(__file__).parents[1])})


def error_where(text: str) -> str | None:
    """`file:line` of the innermost traceback frame in the study's own code (not Python's,
    an installed package's or hpoc's), or None. Of a crash, its stack's (crash.stack_of):
    that lists the innermost call first; of a process that died without one, None."""
    stack = stack_of(text)
    if stack is None and died(text):
        return None  # the frames are another rank's, which only lost the one that died
    frames = [m.groups() for m in map(_FRAME.match, (stack or text).splitlines()) if m]
    for path, line in (frames if stack else reversed(frames)):
        norm = os.path.normpath(path)
        if not path.startswith("<") and not norm.startswith(_NOT_USER) and \
                "site-packages" not in norm.split(os.sep):
            return f"{path}:{line}"
    return None


def error_at(text: str) -> str:
    """`SomeError: message at file.py:12`: the error's line and where the study's code raised
    it, when it did (and the line does not say so already)."""
    line, at = error_line(text), error_where(text)
    return line + (f" at {at}" if at and at not in line else "")


def raised_where(exc: BaseException) -> str | None:
    """`file.py:12`: the innermost frame of `exc` in the study's own code (not in a library
    that raised or called sys.exit for it, such as argparse), or None."""
    import traceback

    return error_where("".join(traceback.format_tb(exc.__traceback__)))


def raised_at(exc: BaseException) -> str:
    """` at file.py:12` (raised_where), or ""."""
    at = raised_where(exc)
    return f" at {at}" if at else ""


def trial_error(trial: Any) -> str | None:
    if trial.status != "ERROR" and not getattr(trial, "error_file", None):
        return None
    text = None
    for attr in ("error_file", "pickled_error_file"):
        path = getattr(trial, attr, None)
        if path and attr == "error_file" and os.path.isfile(path):
            text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
            break
    if text is None:
        msg = getattr(trial, "error_msg", None)
        text = str(msg) if msg else ("errored" if trial.status == "ERROR" else None)
    text = with_crash(text, trial_path(trial))
    if text and len(text) > _MAX_ERROR:
        text = "…" + text[-_MAX_ERROR:]
    return text if trial.status == "ERROR" else None


def own_last_result(trial: Any) -> dict[str, Any]:
    """The trial's own last report. When PBT/PB2 make a trial exploit another one, Tune
    hands it the donor's last result with the donor's checkpoint: a trial exploited after
    its last epoch would show the donor's metrics. Its result.json has its own."""
    result = trial.last_result or {}
    if result.get("trial_id") in (None, trial.trial_id):
        return result
    path = trial_path(trial)
    rows = read_json_lines(Path(path) / "result.json") if path else []
    return next((row for row in reversed(rows) if row.get("trial_id") == trial.trial_id), {})


def trial_entry(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    result = own_last_result(trial)
    # The config its last report was trained with: PBT/PB2 change a trial's config, and an
    # exploit after its last epoch leaves one it never trained with.
    config = result.get("config") if isinstance(result.get("config"), dict) else None
    return {
        "trial_id": trial.trial_id,
        "status": trial.status,
        "config": trial_config(config or trial.config or {}, space),
        "metrics": user_metrics(result),
        "epochs": int(result.get("epoch") or result.get("training_iteration") or 0),
        "error": trial_error(trial),
        "stopped": timelimit.reason(trial_path(trial)) if trial.status == "TERMINATED" else None,
        "path": trial_path(trial),
    }


def best_entry(entries: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    scored = [e for e in entries if e["status"] != "ERROR" and _finite(e["metrics"].get(metric))]
    if not scored:
        return None
    pick = min if mode == "min" else max
    best = pick(scored, key=lambda e: e["metrics"][metric])
    return {k: best[k] for k in ("trial_id", "config", "metrics", "epochs")}


BUDGET = "time budget"


def build(plan: dict[str, Any], shard: int, trials: list[Any], *, wall_s: float,
          interrupted: bool, experiment_dir: str | os.PathLike, plan_hash: str,
          run_started: float | None = None, stopped: str | None = None,
          cut_short: dict[str, str] | None = None, budget_reached: bool = False,
          time_budget_s: float | None = None, planned: int | None = None,
          signal_name: str | None = None, stop: dict[str, Any] | None = None) -> dict[str, Any]:
    """`cut_short`: trial id -> the failure of the trials being retried when the run ended
    (Tune marks a trial that the time budget or its time limit stopped TERMINATED, as any
    other): such a trial keeps that failure as its `error`, with `retry_cut` set; one
    a fail-fast stop caught (ERROR, watch._as_seen) keeps it as its error."""
    entries = [trial_entry(t, plan["space"]) for t in trials]
    for entry in entries:
        failure = (cut_short or {}).get(entry["trial_id"])
        if failure and entry["status"] == "ERROR":
            entry["error"] = failure[-_MAX_ERROR:]
        elif failure and entry["status"] == "TERMINATED":
            entry["error"], entry["retry_cut"] = failure[-_MAX_ERROR:], True
            if budget_reached and not entry["stopped"]:
                entry["stopped"] = BUDGET
    metrics = [{"name": m["name"], "mode": m["mode"]} for m in plan["objective"]["metrics"]]
    # A shard of a shared budget (Optuna) that got no trial at all found it spent: the other
    # shards asked every trial before it started (an array throttled by `parallel`).
    taken = not (entries or interrupted or stopped or budget_reached) and shared_budget(plan)
    # Nothing stopped the run and trials are missing: Tune ends a run early only when its
    # searcher says FINISHED. (A shard of a shared budget ends so when the others spent it;
    # a run as long as its time budget is not told apart from one the budget ended.)
    searched_out = (not (interrupted or stopped or budget_reached or shared_budget(plan))
                    and planned is not None and len(entries) < planned
                    and not (time_budget_s and wall_s >= time_budget_s))
    return {
        "study": plan["study"]["name"],
        "shard": shard,
        "plan_hash": plan_hash,
        "metrics": metrics,
        "num_trials": len(entries),
        "status_counts": dict(sorted(Counter(e["status"] for e in entries).items())),
        "best": best_entry(entries, metrics[0]["name"], metrics[0]["mode"]) if metrics else None,
        "trials": entries,
        "wall_s": round(float(wall_s), 3),
        "interrupted": bool(interrupted),
        "stopped": stopped,
        "stop": stop if stopped else None,  # watch.stop(): the kind of that stop
        "experiment_dir": str(experiment_dir),
        # The run lock's `started`: which run wrote this. Its mtime cannot tell: Ray copies
        # a resumed run's staging folder, old summary.json included, back over the storage.
        "run_started": run_started,
        **({"budget_taken": True} if taken else {}),
        **({"search_ended": plan["search"]["algorithm"]} if searched_out else {}),
        # the shard's trials, and the time budget that ended the run before they all ran
        "planned": planned,
        "budget_reached_s": time_budget_s if budget_reached else None,
        "signal": signal_name if interrupted else None,  # what stopped an interrupted run
        # the SLURM job (and its restart) that wrote it: status ties a time limit to its job
        **runlock.slurm_run(),
    }


def budget_words(seconds: float) -> str:
    """`1 h`, `90 min`, `45 s`: a time budget as a spec says it."""
    for unit, n in (("h", 3600), ("min", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{seconds / n:g} {unit}"
    return f"{seconds:g} s"


def stopped_itself(stopped: str) -> str:
    """`stopped itself: WHY (ERROR)`: a fail-fast stop (the summary's `stopped`) in one line,
    as `hpoc status`, `hpoc results` and the report say it."""
    why = [line.strip() for line in str(stopped).splitlines()] + [""]
    return f"stopped itself: {why[0]}" + (f" ({why[1]})" if why[1] else "")


def stop_of(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary's `stop` ({"kind", "at"}), or None where the study did not stop itself."""
    if not summary or not summary.get("stopped"):
        return None
    if isinstance(summary.get("stop"), dict):
        return summary["stop"]
    return _old_stop(str(summary["stopped"]))


# OLD FILES ONLY: summaries written before `stop` existed; their kind read back from the words.
_UNDER = re.compile(r" writing under (.+?)(?: \(\d[^()]*free\))?$")


def _old_stop(stopped: str) -> dict[str, Any]:
    """The `stop` of an old summary's `stopped`: full.stop_line's words are a full disk."""
    first = stopped.split("\n", 1)[0]
    m = _UNDER.search(first) if full.SPACE in first or full.QUOTA in first else None
    return {"kind": "disk_full", "at": m.group(1)} if m else {"kind": "fail_fast", "at": None}


def ending(summary: dict[str, Any] | None) -> str | None:
    """Why a run ended with trials of its budget never run, when its time budget or a signal
    ended it: the words `hpoc status`, `hpoc results` and the report share. None otherwise."""
    budget, signum = (summary or {}).get("budget_reached_s"), (summary or {}).get("signal")
    if summary and summary.get("interrupted") and signum and not summary.get("stopped"):
        return ("stopped at its job's time limit (SIGUSR2): the job requeues itself and resumes"
                if signum == "SIGUSR2" else f"stopped by a signal ({signum}): running it again resumes it")
    if summary and summary.get("search_ended") and not summary.get("interrupted"):
        return search_ended(summary)
    if not budget or summary.get("interrupted"):
        return None
    ran, planned = summary.get("num_trials") or 0, summary.get("planned")
    of = f" of {planned}" if planned and planned > ran else ""
    return f"time budget of {budget_words(budget)} reached{_AFTER.format(ran=ran, of=of)}"


# Why a searcher stops suggesting before `num_samples`, where its options say so
_SEARCH_ENDS = {"bayesopt": " (it suggested one configuration more than `patience` times: it has converged)"}


def search_ended(summary: dict[str, Any]) -> str:
    """A run its searcher ended, in the words status, results and the report share: it
    finished, and running it again runs nothing more (the searcher is restored as it was)."""
    alg = str(summary["search_ended"])
    ran, planned = summary.get("num_trials") or 0, summary.get("planned")
    return (f"the search ended: `search {alg}` had no new configuration to suggest"
            f"{_SEARCH_ENDS.get(alg, '')}{_AFTER.format(ran=ran, of=f' of {planned}')}")


_AFTER = " after {ran}{of} trial(s)"
_AFTER_RE = re.compile(r" after \d+(?: of \d+)? trial\(s\)$")


def endings(ended: list[tuple[int, str]]) -> list[str]:
    """ending() of each shard, `shard K: …`; shards that ended alike as one line, as ranges
    and without their own trial counts (the table has them): an array whose every task its
    time budget ended said it once per task."""
    from hpoc.runtime.shards import index_ranges

    groups: dict[str, list[tuple[int, str]]] = {}
    for k, words in ended:
        groups.setdefault(_AFTER_RE.sub("", words), []).append((k, words))
    return [f"shard {group[0][0]}: {group[0][1]}" if len(group) == 1 else
            f"shards {index_ranges([k for k, _ in group], ', ')}: {alike}"
            for alike, group in groups.items()]


def write(summary: dict[str, Any], directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from hpoc.files import write_atomic  # a full disk leaves no cut temporary file behind

    return write_atomic(directory / SUMMARY, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


def read(directory: str | os.PathLike) -> dict[str, Any] | None:
    return read_json_object(Path(directory) / SUMMARY)


def finished_run(directory: str | os.PathLike, recorded: Any, plan_hash: str | None,
                 fp: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The summary of a run of this plan that ran to the end in `directory`, or None. The
    caller has refused a marker (`recorded`) of another plan; without a marker (a run
    before markers), the summary's own plan hash must match. `fp`, this plan's
    fingerprint: a plan that raises the run's `num_samples` has trials left to run."""
    summary = read(directory)
    return summary if finished(summary, recorded, plan_hash, fp) else None


def finished(summary: dict[str, Any] | None, recorded: Any, plan_hash: str | None,
             fp: dict[str, Any] | None = None) -> bool:
    """finished_run's test, for a summary already read."""
    from hpoc.runtime.marker import growth

    if summary is None or summary.get("interrupted") or growth(recorded, fp) is not None:
        return False
    if recorded is not None and recorded.get("extended") and summary.get("plan_hash") \
            and summary["plan_hash"] != recorded.get("plan_hash"):
        return False  # the run before the extension's: the extension died before its own
    return recorded is not None or summary.get("plan_hash") == plan_hash


def objective(summary: dict[str, Any]) -> str:
    """The name of the summary's first objective metric; "" for a study without one."""
    return ((summary.get("metrics") or [{}])[0]).get("name", "")


def outcomes(summary: dict[str, Any]) -> unranked.Outcomes:
    """What the summary's trials did, as far as its objective goes."""
    name = objective(summary)
    trials = summary.get("trials") or []
    ran = [t for t in trials if t.get("status") != "ERROR"]
    silent = [t for t in ran if not t.get("metrics") and t.get("status") == "TERMINATED"]
    return unranked.Outcomes(
        trials=len(trials), failed=len(trials) - len(ran),
        diverged=sum(1 for t in ran if name in (t.get("metrics") or {})),  # reported, not finite
        silent=len(silent), timed=sum(1 for t in silent if t.get("stopped")))


def errors_said(summary: dict[str, Any]) -> str:
    """The errored trials' most common error line (errors alike but for their numbers, a shape
    or an id, are one, as fail-fast has them), for a study with no success to show."""
    from hpoc.runtime.failfast import signature
    from hpoc.runtime.retry import first_way

    trials = summary.get("trials") or []
    texts = [str(t["error"]) for t in trials if t.get("status") == "ERROR" and t.get("error")]
    lines = [first_way(error_line(text)) for text in texts]
    errors = Counter(signature(line) or line for line in lines)
    if not errors:
        return "each trial's error.txt says why"
    (first, _), *others = errors.most_common()
    i = next(i for i, line in enumerate(lines) if (signature(line) or line) == first)
    help = error_help(texts[i])  # a module missing on the nodes: "install it"
    return lines[i] + (f"; {help}" if help else "") + (f" (and {len(others)} other error(s))" if others else "")


def describe_best(summary: dict[str, Any], budget_s: float | None = None, planned: int | None = None,
                  words: dict[str, str] | None = None) -> str:
    """Human-readable lines about the best trial, for the end of a run; `budget_s`: the
    study's time budget, when it ended the run (the trials did not end by themselves);
    `planned`: the shard's number of trials, said when a stop left some never started;
    `words`: the plan's `source.words`, to name settings as a YAML config writes them."""
    best = summary.get("best")
    counts = ", ".join(counted(n, s.lower()) for s, n in summary["status_counts"].items()) or "none"
    of = f" of {planned}" if planned and planned > summary["num_trials"] else ""
    if summary.get("budget_taken"):
        return (f"study `{summary['study']}` shard {summary['shard']}: nothing to do: the other shards "
                "had already asked for every trial of the study's shared budget (`trials.num_samples`)")
    lines = [f"study `{summary['study']}`: {summary['num_trials']}{of} trial(s) ({counts}) "
             f"in {summary['wall_s']:.1f} s"]
    if not summary["metrics"]:
        lines.append("the study has no objective: trials are not ranked")
        return "\n".join(lines)
    if best is None:
        # a stop for want of room is no trial failing the same way: it resumes once there is room
        failed_fast = (stop_of(summary) or {}).get("kind") == "fail_fast"
        lines.append(unranked.why(objective(summary), outcomes(summary),
                                  errors_said(summary), stopped=bool(summary.get("interrupted")),
                                  failed_fast=failed_fast, budget_s=budget_s, words=words))
        return "\n".join(lines)
    name = summary["metrics"][0]["name"]
    value = best["metrics"].get(name)
    lines.append(f"best trial {best['trial_id']}: {name}={value:.4g} after {best['epochs']} epoch(s)")
    lines.append("  config:  " + json.dumps(best["config"], sort_keys=True, ensure_ascii=False))
    shown = " ".join(f"{k}={v:.4g}" if _finite(v) else f"{k}={v}"
                     for k, v in best["metrics"].items() if k != "epoch")
    lines.append("  metrics: " + shown)
    return "\n".join(lines)
