"""Read a study's results back from disk, across shards.

Ray Tune's own files are the primary source: each trial directory holds `params.json` and
`result.json` (one JSON line per report) even when the driver died before writing anything
else. `experiment_state-*.json` adds statuses of trials Ray knew about; the runtime's
`summary.json` (written last) adds final statuses and error messages.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from pathlib import Path
from typing import Any, Container, Iterator

from hpoc.files import newest_state, read_json_lines, saved_trials
from hpoc.results import live
from hpoc.results.model import (STATUSES, Metric, Results, ResultsError, Shard, Trial,
                                UnreadableError, number)
from hpoc.results.source import OtherPlanVersion, find_plan, study_dir
from hpoc.runtime import timelimit
from hpoc.runtime.marker import recorded_space
from hpoc.runtime.summary import ending, endings as summary_endings, error_line, stopped_itself

SUMMARY = "summary.json"
# Directories under an experiment that never hold Ray trials: don't walk into them.
_SKIP_DIRS = {"mlruns", "tensorboard", ".hpoc-locks", "__pycache__"}
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")
_SHARD_DIR = re.compile(r"shard-(\d+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Ray colours its tracebacks


def load(target: str | Path) -> Results:
    """Results for a build directory, a plan.json, a spec, or an experiment directory."""
    target = Path(target)
    if not target.exists():
        from hpoc.files import missing_hint

        hint = missing_hint(str(target))
        raise ResultsError(f"{target}: no such file or directory" + (f"\n  = help: {hint}" if hint else ""))
    warnings: list[str] = []
    try:
        plan, plan_path = find_plan(target)
    except OtherPlanVersion as exc:  # an older hpoc's build: its storage still reads
        plan, target = None, exc.storage
        warnings.append(exc.note)
    if plan is not None:
        return load_plan(plan, plan_path)
    if target.is_dir() and ((target / "result.json").is_file() or (target / "params.json").is_file()):
        raise ResultsError(f"{target} is one trial's directory; its study is the one above: "
                           f"{target.absolute().parent}")  # `.` has no parent of its own
    with _vanishing(target):
        root = study_dir(target, warnings).absolute()  # --json/--csv are read from elsewhere
        return _load_shards(root, _shard_dirs(root), None, warnings)


def load_plan(plan: dict[str, Any], origin: Path | None = None) -> Results:
    """Results of the study a plan describes, from the storage it names."""
    root = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    if not root.is_dir():
        if (moved := _left_behind(plan)) is not None:
            raise ResultsError(moved)
        raise ResultsError(
            f"no results yet for study `{plan['study']['name']}`: {root} does not exist\n"
            f"  (plan: {origin or 'given'}; run the study first with `hpoc run` or `hpoc submit`"
            + (f"; `hpoc status {shlex.quote(str(_status_target(origin)))}` shows its jobs, queued or failed"
               if origin else "") + ")"
            + (f"\n  note: {note}" if (note := compiled_elsewhere(plan)) else "")
        )
    count = int(plan["shards"]["count"])
    shard_dirs = [(k, root / f"shard-{k}") for k in range(count)] if count > 1 else [(0, root)]
    with _vanishing(root):
        return _load_shards(root, shard_dirs, plan, [])


def _resumable(plan: dict[str, Any] | None, recorded: dict[str, Any] | None) -> bool:
    """The study's resume.enabled (off: a run again refuses an unfinished one): the plan's,
    else the one its run recorded; on when neither says."""
    body = plan or (recorded.get("body") if isinstance(recorded, dict) else None)
    resume = body.get("resume") if isinstance(body, dict) else None
    return not isinstance(resume, dict) or resume.get("enabled", True) is not False


def compiled_elsewhere(plan: dict[str, Any]) -> str | None:
    """Why a plan's storage may be missing though the study ran: a build directory copied
    off the cluster (or a project moved) names paths of where it was compiled."""
    workdir = (plan.get("source") or {}).get("workdir")
    if not isinstance(workdir, str) or Path(workdir).is_dir():
        return None
    return (f"the plan was compiled in {workdir}, which is not here: if it was moved or copied "
            "from another machine, pass the study's experiment directory (`results/NAME`) or "
            "its spec instead")


def _status_target(origin: Path) -> Path:
    """What `hpoc status` takes for the plan read from `origin`: a build's directory, or the
    spec itself (its directory may hold other studies too)."""
    return Path(origin).parent if Path(origin).name == "plan.json" else Path(origin)


@contextlib.contextmanager
def _vanishing(root: Path) -> Iterator[None]:
    """A directory deleted or moved while it is read (`hpoc run --fresh` moves a run aside,
    a user cleans up) is a ResultsError naming it, not a traceback."""
    try:
        yield
    except PermissionError as exc:  # another user's results, a directory of theirs closed
        raise UnreadableError(f"{exc.filename or root}: permission denied: the study's files "
                              "must be readable by you") from None
    except (FileNotFoundError, NotADirectoryError) as exc:
        gone = exc.filename or root
        what = f"{root} disappeared while its" if str(gone) == str(root) else \
            f"{gone} disappeared while the"
        raise ResultsError(f"{what} results were read (moved or deleted meanwhile?)\n"
                           "  help: run the command again") from None


def _shard_dirs(root: Path) -> list[tuple[int, Path]]:
    shards = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _SHARD_DIR.match(p.name))
    )
    if shards:
        return shards
    own = _SHARD_DIR.match(root.resolve().name)  # one shard's directory, given directly
    return [(int(own.group(1)) if own else 0, root)]


def _load_shards(root: Path, shard_dirs: list[tuple[int, Path]], plan: dict | None,
                 warnings: list[str]) -> Results:
    from hpoc.runtime import marker

    trials: list[Trial] = []
    shards: list[Shard] = []
    summaries: list[dict[str, Any]] = []
    fp = _fingerprint(plan)
    others: list[str] = []  # shards that hold another plan's run: said once
    ran_in: str | None = None  # where that run ran, if it is this study moved
    said: list[tuple[int, str, str]] = []  # (shard, its warning, what shards alike share)
    grown: list[dict[str, Any] | None] = []  # what the plan raises of each run that ended
    ended: list[str] = []  # why runs ended with trials of their budget never run
    endings: list[tuple[int, str]] = []  # of those, by their time budget or a signal
    budgets: list[Any] = []  # the time budget that ended each shard's run (None: it did not)
    for index, path in shard_dirs:
        if not path.is_dir():
            said.append((index, f"shard {index}: {path} does not exist yet (not started?)",
                         "no directory yet (not started?)"))
            continue
        recorded = marker.read(path)  # once: which plan ran here, what it recorded
        recorded = marker.here(recorded, fp, path)  # a directory moved since: as if it ran here
        if fp is not None and (other := _other_plan(path, recorded, fp)):
            others.append(other)
            ran_in = ran_in or marker.ran_in(recorded, fp, marker.differences(recorded, fp, path) or [])
        reads: list[list[str]] = []  # each read's warnings: the last one's are said

        def read(path: Path = path) -> tuple[dict[str, Any] | None, bool]:
            reads.append([])
            return _summary_read(path, reads[-1])

        lock, summary = live.lock_and_summary(path, read)
        warnings.extend(reads[-1])
        running = lock if lock is not None and lock.alive else None
        # A summary older than the run in progress (or the last one, if it crashed) is an
        # earlier run's: its statuses are out of date; its study name and metrics still hold.
        stale = live.earlier_summary(summary, path / SUMMARY, lock) \
            or (lock is None and live.other_plans(summary, recorded))
        trial_dirs = list(_trial_dirs(path))
        states = _experiment_states(path, skip=set(trial_dirs))
        found = _load_trials(trial_dirs, index, None if stale else summary, states,
                             plan["space"] if plan else recorded_space(recorded))
        # hpoc's driver ran here (it records its plan marker before any trial; unlike a bare
        # Ray Tune directory, it holds a lock whenever a run is live) but holds no lock and
        # left no summary: stopped at once (a second Ctrl-C), so nothing trains its trials either
        unlocked = lock is None and summary is None and recorded is not None
        if running is not None:
            live.refresh(found, running)
            live.as_the_driver_sees(found, path, running)
        elif summary is not None and not stale and summary.get("interrupted"):
            live.interrupted(found)
        elif (lock is not None and (summary is None or stale)) or unlocked or stale:
            live.stopped(found)  # the last run died (a dead lock stayed) or quit at once: nothing runs
        source = ("Ray's last saved experiment state" if states
                  else "the trial directories (Ray saved no experiment state)")
        if running is not None:
            tail = f"trial statuses come from {source} and the trials' reports"
            said.append((index, f"{path}: a run is in progress ({running.describe()}); {tail}",
                         f"a run is in progress in each; {tail}"))
        elif (summary is None or stale) and found:
            no = f"no readable {SUMMARY}" if (path / SUMMARY).exists() else f"no {SUMMARY}"
            last = f"the last one ({lock.describe()})" if lock is not None else "the last one"
            why = (f"{SUMMARY} is from an earlier run: {last} stopped without writing one"
                   if stale else
                   f"{no}: the last run ({lock.describe()}) stopped without "
                   "writing one (killed, or its job ended)" if lock is not None else
                   f"{no}: the last run stopped at once, without writing one (a second "
                   "Ctrl-C)" if unlocked else
                   f"{no}: the study is still running or its driver stopped early")
            then = ("" if lock is None and not unlocked and not stale
                    else "; its unfinished trials are paused: running the same plan again resumes "
                    "them" if _resumable(plan, recorded)
                    else "; its unfinished trials are paused: resume is off in the study, so they "
                    "cannot go on (--fresh starts the study over)")
            said.append((index, f"{path}: {why}; trial statuses come from {source}{then}",
                         f"{why}; trial statuses come from {source}{then}"))
        # A directory made ahead of a run (a job that died before its driver began): as
        # `hpoc status` has it, the shard has not started.
        began = bool(found) or summary is not None or lock is not None or recorded is not None
        if not began and len(shard_dirs) > 1:
            said.append((index, f"shard {index}: {path} holds no run yet (not started?)",
                         "no run yet, only an empty directory (not started?)"))
        if summary is not None:
            summaries.append(summary)
        trials.extend(found)
        complete = summary is not None and not stale
        budgets.append(summary.get("budget_reached_s") if complete and running is None else None)
        if complete and running is None and (words := ending(summary)):  # budget, signal
            endings.append((index, words))
        elif complete and running is None and summary.get("interrupted") and summary.get("stopped"):
            ended.append(f"shard {index} {stopped_itself(summary['stopped'])}")  # fail-fast
        if fp is not None and complete and running is None and not summary.get("interrupted"):
            grown.append(marker.growth(recorded, fp))
        shards.append(Shard(index, path, complete, len(found),
                            summary.get("wall_s") if complete else None, run=running, marker=recorded,
                            began=began))
    planned = _planned_shards(plan, shards, shard_dirs, root)
    for k in sorted(set(range(planned)) - {i for i, _ in shard_dirs}):  # no directory: said as above
        said.append((k, f"shard {k}: {root / f'shard-{k}'} does not exist yet (not started?)",
                     "no directory yet (not started?)"))
    warnings.extend(_alike(root, sorted(said, key=lambda s: s[0])))
    ended[:0] = [endings[0][1]] if len(shard_dirs) == 1 and endings else summary_endings(endings)
    other_plan = others[0] + (f" (and {len(others) - 1} more shard(s))" if len(others) > 1 else "") \
        if others else None
    mixed = _mixed_plans(root, shards) if plan is None else None  # with the plan: other_plan says
    if other_plan or mixed:
        warnings.insert(0, other_plan or mixed)
    if not trials:
        where = ", ".join(str(p) for _, p in shard_dirs)
        runs = [s.run.describe() for s in shards if s.run is not None]
        why = (f"a run is in progress ({'; '.join(runs)}) and has not started a trial yet"
               if runs else "a run began there but stopped before its first trial: run the study "
               "again" if any(s.marker is not None for s in shards)  # hpoc's driver recorded its plan
               else "the study has not reported any results yet, or this is not an "
               "hpoc/Ray Tune experiment directory")
        raise ResultsError(f"no trials found in {where}\n  ({why})")
    study = (plan["study"]["name"] if plan else None) or next(
        (s["study"] for s in summaries if s.get("study")), None) or next(
        (n for s in shards if isinstance(n := _recorded(s.marker, "body", "study", "name"), str)),
        root.name)
    metrics = _metrics(plan, summaries, [s.marker for s in shards])
    plan_hash = (plan or {}).get("content_hash") or next(
        (s["plan_hash"] for s in summaries if isinstance(s.get("plan_hash"), str)), None)
    results = Results(study=study, root=root, metrics=metrics, trials=trials, shards=shards,
                      plan=plan, max_epochs=_max_epochs(plan or _recorded_plan(shards), trials),
                      warnings=warnings,
                      plan_hash=plan_hash, other_plan=other_plan, ran_in=ran_in,
                      extended=next((marker.grown_words(g, plan) for g in grown if g), None), ended=ended,
                      budget_s=max(budgets) if budgets and all(budgets) else None,
                      planned_shards=planned, mixed_plans=mixed)
    for trial in trials:
        trial.stopped_early = (trial.status == "TERMINATED" and results.max_epochs is not None
                               and 0 < trial.epochs < results.max_epochs)
    return results


def _left_behind(plan: dict[str, Any]) -> str | None:
    """marker.left_behind: the project moved with its results from the place the spec's
    absolute `storage.path` still names."""
    from hpoc.runtime import marker
    from hpoc.runtime.shards import experiment_dir

    return marker.left_behind(_fingerprint(plan), experiment_dir(plan, 0))


def _fingerprint(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    return marker.fingerprint(plan, plan_hash(plan)) if plan else None


def _other_plan(path: Path, recorded: dict[str, Any] | None, fp: dict[str, Any]) -> str | None:
    """Why the trials in `path` (whose marker is `recorded`) are not this plan's: another
    spec with the same study name and storage ran there (`hpoc run` refuses to resume it;
    results only show it)."""
    from hpoc.runtime import marker

    parts = marker.differences(recorded, fp, path) if recorded is not None else None
    if parts is None:
        return None
    return marker.describe(path, recorded, fp, parts) + "; the trials shown are that run's"


def _metrics(plan: dict | None, summaries: list[dict[str, Any]],
             markers: list[dict[str, Any] | None]) -> list[Metric]:
    """The objective: the plan's; without one, a summary's, else what a run recorded in its
    plan marker (a driver killed before its summary: scancel, kill -9)."""
    source = plan["objective"]["metrics"] if plan else next(
        (s.get("metrics") for s in summaries if s.get("metrics")), None) or next(
        (m for m in map(_recorded_objective, markers) if m), [])
    return [Metric(m["name"], m.get("mode", "min")) for m in source or []
            if isinstance(m, dict) and isinstance(m.get("name"), str)]


def _recorded_objective(recorded: dict[str, Any] | None) -> list[Any] | None:
    metrics = _recorded(recorded, "body", "objective", "metrics")
    return metrics if isinstance(metrics, list) else None


def _recorded(recorded: Any, *path: str) -> Any:
    """What a plan marker holds at `path`, None where it holds another shape (a marker
    edited by hand, or cut short)."""
    for key in path:
        recorded = recorded.get(key) if isinstance(recorded, dict) else None
    return recorded


def _mixed_plans(root: Path, shards: list[Shard]) -> str | None:
    """Read without a plan: shards whose runs recorded different plans (a spec edited between
    a job array's tasks) hold two searches, which nothing tells apart but this."""
    from hpoc.runtime.shards import index_ranges

    ran = [(s.index, s.marker) for s in shards if isinstance(s.marker, dict) and "run_hash" in s.marker]
    if len(ran) < 2:
        return None
    first, reference = ran[0]
    differ: dict[tuple[str, ...], list[int]] = {}
    for k, recorded in ran[1:]:
        if parts := _other_search(recorded, reference):
            differ.setdefault(tuple(parts), []).append(k)
    if not differ:
        return None
    said = "; ".join(f"shard{'s' * (len(ks) > 1)} {index_ranges(ks, ', ')} ran another plan than "
                     f"shard {first} (the plans differ in {', '.join(f'`{p}`' for p in parts)})"
                     for parts, ks in differ.items())
    return (f"{root}: {said}: their trials are ranked together; pass the study's spec or build "
            "directory to be told which shards ran it")


def _other_search(recorded: dict, reference: dict) -> list[str] | None:
    """The plan parts in which two shards' runs differ, or None (or [], a marker too old to
    tell) when they ran one search: their paths alone differ (the project moved between
    them), or a budget that grows (the study extended), whichever shard ran first."""
    from hpoc.runtime import marker

    parts = marker.differences(recorded, reference)
    if not parts or marker.ran_in(recorded, reference, parts) is not None:
        return None
    return parts if marker.differences(reference, recorded) else None


def _planned_shards(plan: dict | None, shards: list[Shard], shard_dirs: list[tuple[int, Path]],
                    root: Path) -> int:
    """The study's shards: the plan's; read without one, as many as its runs recorded in
    their markers, so that a shard that never started (no directory) is said, as with the
    plan, rather than the study taken for one of the shards found."""
    if plan is not None:
        return int(plan["shards"]["count"])
    if any(path == root for _, path in shard_dirs):  # a study of one shard, or one given alone
        return len(shard_dirs)
    counts = [n for s in shards if isinstance(n := _recorded(s.marker, "body", "shards", "count"), int)]
    return max(counts) if counts else len(shard_dirs)


def _recorded_plan(shards: list[Shard]) -> dict | None:
    """The plan a run recorded in its marker (no spec given): how long a trial runs, so that
    one a scheduler stopped is not taken for complete when none ran to the end."""
    for shard in shards:
        body = (shard.marker or {}).get("body")
        if isinstance(body, dict) and isinstance(body.get("trials"), dict) \
                and isinstance(body.get("space"), dict):
            return body
    return None


def _max_epochs(plan: dict | None, trials: list[Trial]) -> int | None:
    """Reports a trial makes when nothing stops it early, from the plan when it says so."""
    if plan is not None:
        limits = []
        stop = (plan["trials"].get("stop") or {}).get("training_iteration")
        if isinstance(stop, (int, float)):
            limits.append(int(stop))
        sched = plan.get("scheduler") or {}
        max_t = (sched.get("options") or {}).get("max_t")
        if sched.get("time_attr", "training_iteration") == "training_iteration" and isinstance(
                max_t, (int, float)):
            limits.append(int(max_t))
        epochs = (plan["space"].get("constants") or {}).get("epochs")
        if isinstance(epochs, int) and not isinstance(epochs, bool):
            limits.append(epochs)
        if limits:
            return min(limits)
    finished = [t.epochs for t in trials if t.status == "TERMINATED" and t.epochs]
    return max(finished) if finished else None


def _alike(root: Path, said: list[tuple[int, str, str]]) -> list[str]:
    """Each shard's warning, those of shards alike said once with the shards as ranges: a
    200-task array half way through warned 100 times that a shard has not started."""
    from hpoc.runtime.shards import index_ranges

    groups: dict[str, list[tuple[int, str]]] = {}
    for index, own, shared in said:
        groups.setdefault(shared, []).append((index, own))
    return [group[0][1] if len(group) == 1 else
            f"shards {index_ranges([k for k, _ in group], ', ')} of {root}: {shared}"
            for shared, group in groups.items()]


def _summary_read(path: Path, warnings: list[str]) -> tuple[dict[str, Any] | None, bool]:
    """(summary, whole): whole is False when the file is there but did not parse."""
    before = len(warnings)
    summary = _read_summary(path, warnings)
    return summary, len(warnings) == before


def _read_summary(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    file = path / SUMMARY
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.append(f"{file}: unreadable, ignored ({exc})")
        return None
    if not isinstance(data, dict):
        warnings.append(f"{file}: unreadable, ignored (not a JSON object)")
        return None
    return data


def _load_trials(trial_dirs: list[Path], shard: int, summary: dict[str, Any] | None,
                 states: dict[str, dict[str, Any]], space: dict[str, Any] | None = None) -> list[Trial]:
    by_id: dict[str, Trial] = {}
    for trial_dir in trial_dirs:
        trial = _read_trial_dir(trial_dir, shard, states, space)
        if trial is None:
            continue
        old = by_id.get(trial.trial_id)
        if old is None or len(trial.history) > len(old.history):
            by_id[trial.trial_id] = trial
    # Trials Ray created but that wrote no reports or params yet (pending ones, or started
    # a moment ago: their directory may hold the driver's start marker already).
    for trial_id, state in states.items():
        if trial_id not in by_id:
            where = state.get("dir")
            by_id[trial_id] = Trial(trial_id, state["status"], clean_config(state.get("config"), space),
                                    shard=shard, state_saved=state.get("saved"),
                                    path=str(where) if where is not None and where.is_dir() else None)
    for entry in (summary or {}).get("trials") or []:
        if not isinstance(entry, dict) or not entry.get("trial_id"):
            continue
        trial = by_id.get(entry["trial_id"])
        if trial is None:
            trial = by_id[entry["trial_id"]] = Trial(
                entry["trial_id"], "PENDING", clean_config(entry.get("config"), space), shard=shard,
                path=entry.get("path"))
        if entry.get("status") in STATUSES:
            trial.status = entry["status"]
        if isinstance(entry.get("stopped"), str):
            trial.stopped_by = entry["stopped"]
        trial.retry_cut = entry.get("retry_cut") is True
        if entry.get("error"):
            trial.error = _error_line(str(entry["error"]))
            trial.error_text = trial.error_text or str(entry["error"])
        if isinstance(entry.get("config"), dict) and entry["config"] and not any(trial.configs):
            # What the trainer saw, constants included. The reports' own configs win: under
            # PBT the trial's final config can be one it never trained with (an exploit
            # after its last epoch).
            trial.config = entry["config"]
    # In the order the trials were made (a searcher's trial ids are random)
    return sorted(by_id.values(), key=lambda t: (t.number is None, t.number or 0, t.trial_id))


def _trial_dirs(path: Path, depth: int = 3, top: bool = True) -> Iterator[Path]:
    """Directories holding a Ray trial; the experiment may sit one or two levels down."""
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir())
    except PermissionError:
        if top:  # the study's own directory: not "no trials" (a subdirectory closed: skipped)
            raise
        return
    except OSError:
        return
    for child in children:
        if child.name in _SKIP_DIRS or child.name.startswith("checkpoint_"):
            continue
        if (child / "result.json").is_file() or (child / "params.json").is_file():
            yield child
        elif depth > 1 and not _SHARD_DIR.match(child.name):
            yield from _trial_dirs(child, depth - 1, top=False)


def _experiment_states(path: Path, depth: int = 3,
                       skip: Container[Path] = frozenset()) -> dict[str, dict[str, Any]]:
    """trial_id -> {status, config, logdir, error_file} from the newest experiment_state file
    of every Ray experiment under `path`. `skip`: the trial directories, which hold none
    (listing each of thousands costs more than the rest of the load)."""
    states: dict[str, dict[str, Any]] = {}
    newest = newest_state(path)
    if newest is not None:
        states.update(_parse_state(newest))
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir()) if depth > 1 else []
    except PermissionError:  # a directory of someone else's, on a shared filesystem
        children = []
    for child in children:
        if child.name not in _SKIP_DIRS and not _SHARD_DIR.match(child.name) and child not in skip:
            for trial_id, state in _experiment_states(child, depth - 1, skip).items():
                states.setdefault(trial_id, state)
    return states


def _parse_state(file: Path) -> dict[str, dict[str, Any]]:
    try:
        saved = file.stat().st_mtime
    except OSError:
        return {}
    return {trial["trial_id"]: {
        "saved": saved,
        "status": trial.get("status") if trial.get("status") in STATUSES else "PENDING",
        "config": trial.get("config") if isinstance(trial.get("config"), dict) else {},
        "logdir": trial.get("relative_logdir"),
        "dir": file.parent / trial["relative_logdir"] if isinstance(trial.get("relative_logdir"), str) else None,
        "start": number(meta.get("start_time")),
        "end": number(meta.get("last_result_time")),
    } for trial, meta in saved_trials(file)}


def clean_config(config: Any, space: dict[str, Any] | None) -> dict[str, Any]:
    """A config Ray recorded, as the trainer saw it: with the plan, its active parameters and
    constants, nested (`trial_config`); without, hpoc's internal trial key left out and
    dotted names nested. (PBT/PB2 configs give inactive conditional parameters a value, see
    `space.SpaceSamplerCore.full_config`: only the plan tells them from active ones.)"""
    from hpoc.runtime.space import TRIAL_KEY, flatten, nest, trial_config

    if not isinstance(config, dict):
        return {}
    if space is not None:
        try:  # searchers hand Tune flat (dotted names) or nested configs
            keep = {p["name"] for p in space["params"]}
            return trial_config({**flatten(config, keep=keep), **config}, space)
        except Exception:  # noqa: BLE001 - a config of another shape: shown as recorded
            pass
    flat = {k: v for k, v in config.items() if k != TRIAL_KEY}
    try:
        return nest(flat) if any("." in k for k in flat) else flat
    except Exception:  # noqa: BLE001
        return flat


def _read_trial_dir(trial_dir: Path, shard: int, states: dict[str, dict],
                    space: dict[str, Any] | None = None) -> Trial | None:
    history, configs = _supersede(*_read_results(trial_dir / "result.json"))
    configs = _clean_configs(configs, space)
    trial_id = next((r["trial_id"] for r in history if isinstance(r.get("trial_id"), str)), None)
    if trial_id is None:
        trial_id = next((tid for tid, s in states.items() if s.get("logdir") == trial_dir.name),
                        None)
    if trial_id is None:
        match = _TRIAL_ID.search(trial_dir.name)
        trial_id = match.group(1) if match else trial_dir.name
    if configs and configs[-1] is not None:
        config = configs[-1]  # what its last report was trained with (PBT changes it)
    elif isinstance(config := _read_json(trial_dir / "params.json"), dict):
        config = clean_config(config, space)
    else:
        config = clean_config((states.get(trial_id) or {}).get("config"), space)
    error_text = _read_text(trial_dir / "error.txt")
    error_text = _ANSI.sub("", error_text) if error_text else None
    state = states.get(trial_id)
    if error_text and not _retried(trial_dir, state):
        status = "ERROR"
    elif state is not None:
        status = state["status"]
    elif history and history[-1].get("done"):
        status = "TERMINATED"
    else:
        status = "RUNNING"  # Ray makes the directory when the trial starts
    trial = Trial(trial_id=trial_id, status=status, config=config, history=history, shard=shard,
                  path=str(trial_dir), error=_error_line(error_text) if error_text else None,
                  error_text=error_text, state_saved=(state or {}).get("saved"), configs=configs,
                  stopped_by=timelimit.reason(str(trial_dir)))
    if state and state.get("start") and state.get("end") and history:
        # Only trust them when they agree with result.json (a restored run restarts clocks).
        if abs(state["end"] - (number(history[-1].get("timestamp")) or 0)) < 2:
            trial.started_at, trial.ended_at = state["start"], state["end"]
    elif state and state.get("start") and not history:
        trial.started_at = state["start"]  # began, never reported: the timeline still places it
    return trial


def _clean_configs(configs: list[Any], space: dict[str, Any] | None) -> list[Any]:
    """Each report's config, cleaned. Ray repeats the config on every line and it changes
    only under PBT: one cleaning per change, not per report (a 5,000-trial study of 20 epochs
    spent most of its loading here)."""
    out: list[Any] = []
    raw: Any = None
    cleaned: Any = None
    for config in configs:
        if config is not None and config != raw:
            raw, cleaned = config, clean_config(config, space)
        out.append(None if config is None else cleaned)
    return out


def _retried(trial_dir: Path, state: dict[str, Any] | None) -> bool:
    """Whether Tune went on with the trial after the failure its error.txt holds (it keeps
    the file, and appends a retry's own failure): the retry started since, or Ray saved
    the trial as waiting for it. The error stays the trial's, for its row."""
    try:
        failed = (trial_dir / "error.txt").stat().st_mtime
    except OSError:
        return False
    if live.started_after(trial_dir, failed):
        return True
    return bool(state) and state["status"] in ("PENDING", "RUNNING", "PAUSED") \
        and state["saved"] > failed


def _read_results(file: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """(reports, the config each was trained with, None where the line has none)."""
    out = read_json_lines(file)
    configs = [row.pop("config", None) for row in out]  # repeated on every line: kept apart
    return out, [c if isinstance(c, dict) else None for c in configs]


def _supersede(rows: list[dict[str, Any]], configs: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """The reports of the trial's final line of training. A trial that went back to an
    earlier checkpoint (a resume after a hard kill, or a restored PBT trial) reports those
    iterations again, appended to result.json; the new reports replace the old ones from
    that iteration on, so the curve, the epochs and `--scope best` follow what it became."""
    kept: list[tuple[dict[str, Any], Any]] = []
    for row, config in zip(rows, configs):
        it = number(row.get("training_iteration"))
        if it is not None:
            while kept and (number(kept[-1][0].get("training_iteration")) or 0) >= it:
                kept.pop()
        kept.append((row, config))
    return [r for r, _ in kept], [c for _, c in kept]


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _read_text(file: Path) -> str | None:
    try:
        text = file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None


def _error_line(text: str) -> str:
    """A trial's error as the table shows it: the line the run itself says (error_line)."""
    return error_line(text, 200)
