"""Which plan an experiment directory holds, so that a run resumes only the same study.

`<experiment dir>/.hpoc-plan.json`, written when a run starts:

    {"plan_hash": "sha256:…", "run_hash": "sha256:…", "parts": {"space": "…", …}, "shard": 0,
     "body": {…the plan the hashes are of…}}

`plan_hash` is the plan's content hash. Resume compares `run_hash` instead: the hash of the
plan without what does not change what the trials run (`COSMETIC`), so that a comment, a
`hpoc fmt -w` or a longer walltime does not block a resume. `parts` hashes each top-level
part of that plan, to say which parts a refused plan changed.

`body` is what the run was made from, its `space` what `hpoc results DIR` needs to show the
configs as the trainer saw them (Ray records only the sampled values, no constants); markers
from before `body` kept the space alone, as `space` (recorded_space reads either). After an
hpoc upgrade the same spec compiles to a plan
with keys the run's plan lacked. A key whose value is what its absence means (the schema's
`default`: "Absent in plans from before this key") is the same run (`aligned`); other keys
one side lacks are said as such, not as a change to the spec. Markers from before `body`
compare by hash only.

A raised `trials.num_samples` or `trials.time_budget` is the same study with more trials
or time (an extension): `grow_hash` hashes the plan without what may grow (`GROWABLE`),
and `num_samples` and `time_budget_s` are the budgets the run was started with.
`extended` stays set once a run grew the study: Tune's saved Tuner still holds the first
run's searcher, so every later resume builds it from the plan (extend.py). A run that starts
a new Tuner starts over (`Seen.started_over`): its Tuner holds this plan's searcher.

A directory moved since its run (`mv` of the project) is read as if its run had been made
where it is now (`here`): its paths are then no change, and a raised budget extends it.

Before the run lock took its name, this file was `.hpoc-run.json` with only `plan_hash` and
`shard`; such a marker still matches the exact same plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from hpoc.files import read_json_object, write_atomic

PLAN_MARKER = ".hpoc-plan.json"
LEGACY_MARKER = ".hpoc-run.json"  # now the run lock (hpoc.runtime.runlock)

# Paths into the plan that only say where it came from, how the SLURM job is sized or when
# the driver gives up: the spec's text, file name and wording, error locations, the job's
# allocation and signal timing, `failure.fail_fast` (turned off to resume a study it
# stopped; absent from plans before it).
COSMETIC = (("content_hash",), ("spans",), ("source", "sha256"), ("source", "file"),
            ("source", "format"), ("source", "words"), ("source", "pipe_key"), ("slurm",), ("resume", "grace_s"),
            ("failure", "fail_fast"))


# What a study may raise between runs and stay the same study (extend.py).
GROWABLE = (("trials", "num_samples"), ("trials", "time_budget_s"))


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def runnable(plan: dict[str, Any], paths: tuple[tuple[str, ...], ...] = COSMETIC) -> dict[str, Any]:
    """The plan without its COSMETIC paths (or the `paths` given)."""
    out = json.loads(json.dumps(plan))
    for path in paths:
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def fingerprint(plan: dict[str, Any], full_hash: str) -> dict[str, Any]:
    body = runnable(plan)
    return dict(_hashes(body), plan_hash=full_hash, body=body,
                **{path[-1]: plan["trials"].get(path[-1]) for path in GROWABLE})


def _hashes(body: dict[str, Any]) -> dict[str, Any]:
    return {"run_hash": _hash(body), "parts": {key: _hash(value) for key, value in sorted(body.items())},
            "grow_hash": _hash(runnable(body, GROWABLE))}


_MISSING: Any = object()


def _at(body: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any] | None, Any]:
    """(the dict that holds `path`'s last key, its value or _MISSING)."""
    node: Any = body
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return (node, node.get(path[-1], _MISSING)) if isinstance(node, dict) else (None, _MISSING)


def aligned(recorded: dict[str, Any], fp: dict[str, Any]) -> dict[str, Any]:
    """`recorded` as this hpoc would have recorded the same run: a key one plan lacks and
    the other holds at what its absence means (an hpoc upgrade or downgrade that added a
    key) is taken as held by both; hashes recomputed. `recorded` itself without a body."""
    old, new = recorded.get("body"), fp.get("body")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return recorded
    from hpoc.plan.validate import absent_means

    body = json.loads(json.dumps(old))
    for path, value in absent_means().items():
        (here, mine), (_, theirs) = _at(body, path), _at(new, path)
        if here is None or (mine is _MISSING) == (theirs is _MISSING):
            continue
        if mine is _MISSING and theirs == value:
            here[path[-1]] = value
        elif theirs is _MISSING and mine == value:
            del here[path[-1]]
    return recorded if body == old else dict(recorded, **_hashes(body), body=body)


def _keys(body: Any, path: str = "") -> set[str]:
    """Every key path in `body`'s nested dicts, dotted."""
    if not isinstance(body, dict):
        return set()
    return {f"{path}{k}" for k in body} | {p for k, v in body.items() for p in _keys(v, f"{path}{k}.")}


def _without(body: Any, paths: set[str], path: str = "") -> Any:
    if not isinstance(body, dict):
        return body
    return {k: _without(v, paths, f"{path}{k}.") for k, v in body.items() if f"{path}{k}" not in paths}


def unknown_keys(recorded: dict[str, Any], fp: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """(keys this plan has and the run's lacks, keys the run's has and this plan lacks) when
    the plans differ in such keys only, beyond what may grow (a run of another hpoc, whose
    plans held other keys); None otherwise, or where the marker keeps no body."""
    old, new = aligned(recorded, fp).get("body"), fp.get("body")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None
    from hpoc.plan.validate import closed_objects

    mine, theirs = _keys(old), _keys(new)
    one_side = mine ^ theirs
    outer = sorted(k for k in one_side if k.rpartition(".")[0] not in one_side)
    # a key of its own a spec may name (a constant, a trainer argument) is an edit of the spec
    if not outer or any(tuple(k.split(".")[:-1]) not in closed_objects() for k in outer):
        return None
    if runnable(_without(old, one_side), GROWABLE) != runnable(_without(new, one_side), GROWABLE):
        return None
    return [k for k in outer if k in theirs], [k for k in outer if k in mine]


def _more(old: Any, new: Any) -> int | None:
    """1 when `new` is a larger budget than `old`, 0 the same, -1 smaller, None unknown; a
    time budget of None is no limit."""
    if old == new:
        return 0
    if old is None or new is None:
        return 1 if new is None else -1
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return 1 if new > old else -1
    return None


def _budgets(recorded: dict[str, Any], fp: dict[str, Any]) -> dict[str, tuple[Any, Any, int | None]] | None:
    """{field: (recorded, this plan's, _more)} when the plans differ in what may grow only."""
    if "grow_hash" not in recorded:
        return None
    recorded = aligned(recorded, fp)
    if recorded["grow_hash"] != fp.get("grow_hash"):
        return None
    return {path[-1]: (recorded.get(path[-1]), fp.get(path[-1]),
                       _more(recorded.get(path[-1]), fp.get(path[-1]))) for path in GROWABLE}


def growth(recorded: dict[str, Any] | None, fp: dict[str, Any] | None) -> dict[str, tuple[Any, Any]] | None:
    """{field: (recorded, this plan's)} for the budgets this plan raises when it raises one
    or more and changes nothing else that counts: the same study, extended. None otherwise."""
    budgets = _budgets(recorded, fp) if recorded and fp else None
    if not budgets or any(more is None or more < 0 for _, _, more in budgets.values()):
        return None
    grown = {k: (old, new) for k, (old, new, more) in budgets.items() if more}
    return grown or None


def lowered(recorded: dict[str, Any], fp: dict[str, Any]) -> str | None:
    """What this plan lowers of the run's budgets, in words (an extension only raises)."""
    said = {"num_samples": lambda v: f"{v} trial(s)",
            "time_budget_s": lambda v: "no time budget" if v is None else f"a time budget of {v:g} s"}
    for field, (old, new, more) in (_budgets(recorded, fp) or {}).items():
        if more is not None and more < 0:
            return (f"holds a run of {said[field](old)} (`trials.{field.removesuffix('_s')}`), and "
                    f"this plan asks for {said[field](new)}: a study can be extended, not cut")
    return None


def grown_words(grown: dict[str, tuple[Any, Any]], plan: dict[str, Any] | None = None) -> str:
    """`num_samples 8 → 20, time_budget 3600 s → 7200 s` for a growth; with the plan of a
    grid, the trials too: `num_samples 1 → 2 × a 3-point grid = 3 → 6 trials` (a reader counts
    trials, and `num_samples` repeats the grid)."""
    def one(field: str, v: Any) -> str:
        return "∞" if v is None else f"{v:g} s" if field == "time_budget_s" else str(v)

    def trials(field: str) -> str:
        if field != "num_samples" or plan is None:
            return ""
        from hpoc.plan.space import trials_per_sample

        per = trials_per_sample(plan)
        a, b = grown[field]
        return f" × a {per}-point grid = {a * per} → {b * per} trials" if per > 1 else ""

    return ", ".join(f"{k.removesuffix('_s')} {one(k, a)} → {one(k, b)}{trials(k)}" for k, (a, b) in grown.items())


def extended(recorded: dict[str, Any] | None, fp: dict[str, Any] | None) -> bool:
    """Whether the run in the directory was ever extended, or this plan extends it."""
    return Seen(recorded, fp).extended


def read(exp: Path) -> dict[str, Any] | None:
    """The recorded fingerprint, or a legacy marker's {"plan_hash", "shard"}, or None."""
    for name in (PLAN_MARKER, LEGACY_MARKER):
        recorded = read_json_object(exp / name)
        if recorded is not None and "plan_hash" in recorded:  # the lock has no plan_hash
            return recorded
    return None


def recorded_space(recorded: dict[str, Any] | None) -> dict[str, Any] | None:
    """The space of the plan a marker records (its body's; an older marker's own `space`),
    None where it holds none of the plan's shape (a marker edited by hand, or cut short)."""
    body = (recorded or {}).get("body")
    space = body.get("space") if isinstance(body, dict) else (recorded or {}).get("space")
    return space if isinstance(space, dict) and isinstance(space.get("params"), list) else None


UNREAD: Any = object()  # a marker the caller has not read (None: there is none)


@dataclass(frozen=True)
class Seen:
    """The marker as one driver start read it (`recorded`, None where there is none), with
    this plan's fingerprint: read once, under the run lock, and passed down."""

    recorded: dict[str, Any] | None
    fp: dict[str, Any]

    @cached_property  # asked for by the driver's start and its Tuner's build alike
    def grown(self) -> dict[str, tuple[Any, Any]] | None:
        return growth(self.recorded, self.fp)

    @property
    def extended(self) -> bool:
        return bool(self.recorded and self.recorded.get("extended")) or self.grown is not None

    def started_over(self) -> Seen:
        """A run that starts a new Tuner (--fresh, or nothing saved to restore) holds this
        plan's search and budget: nothing of the earlier run's marker carries over."""
        return replace(self, recorded=None)


def write(exp: Path, fp: dict[str, Any], shard: int, previous: dict[str, Any] | None = UNREAD) -> None:
    """The fingerprint, its body the plan's space too (recorded_space). `previous`: the
    marker there, where the caller read it already."""
    exp.mkdir(parents=True, exist_ok=True)
    record = dict(fp, shard=shard)
    if extended(read(exp) if previous is UNREAD else previous, fp):
        record["extended"] = True
    write_atomic(exp / PLAN_MARKER, json.dumps(record) + "\n")


def migrate_legacy(exp: Path) -> None:
    """Move a legacy marker's content to PLAN_MARKER so that the run lock can take its name."""
    legacy = exp / LEGACY_MARKER
    recorded = read_json_object(legacy)
    if recorded is None or "plan_hash" not in recorded:
        return  # a run lock, or nothing
    if not (exp / PLAN_MARKER).exists():
        write(exp, {"plan_hash": recorded["plan_hash"]}, recorded.get("shard", 0), previous=recorded)
    legacy.unlink(missing_ok=True)


def differences(recorded: dict[str, Any], fp: dict[str, Any], exp: Path | None = None) -> list[str] | None:
    """None when `recorded` is a run of the same plan; else the top-level parts that differ
    (empty when the marker is too old to tell). With `exp`, the directory the marker is in,
    a run whose experiment directory was moved since is the same plan (`moved_from`)."""
    if recorded.get("plan_hash") == fp["plan_hash"]:
        return None
    if "run_hash" not in recorded:  # a legacy marker: only the exact plan matches
        return []
    recorded = aligned(recorded, fp)
    if recorded["run_hash"] == fp["run_hash"] or growth(recorded, fp) is not None:
        return None
    old, new = recorded.get("parts") or {}, fp["parts"]
    parts = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if exp is not None and moved_from(recorded, fp, parts, exp) is not None:
        return None
    return parts


UPGRADE = "the run was made by another hpoc version"  # what `hpoc status` tells apart


def _named(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


# Where a plan says it ran: its spec's directory and its storage, absolute paths.
_PLACES = (("source", "workdir"), ("storage", "path"))


def ran_in(recorded: dict[str, Any], fp: dict[str, Any], parts: list[str]) -> str | None:
    """Where the run ran, when its plan differs from this one in its paths alone: a project
    copied from a cluster's scratch, or moved, is not another study to its reader."""
    if not parts or not set(parts) <= {place[0] for place in _PLACES}:
        return None
    old, new = recorded.get("body") or {}, fp.get("body") or {}
    if runnable(old, _PLACES) != runnable(new, _PLACES):
        return None
    _, where = _at(old, _PLACES[0])
    return where if isinstance(where, str) else None


def moved_from(recorded: dict[str, Any], fp: dict[str, Any], parts: list[str], exp: Path) -> Path | None:
    """The experiment directory the run had, when `exp` is that directory moved (or copied)
    elsewhere: the plans differ in their paths alone and the storage the run recorded does
    not hold `exp`. Tune's restore re-points the trials to where the directory is now. The
    same storage under another workdir is another checkout running the same results, maybe
    with other code: still refused."""
    if ran_in(recorded, fp, parts) is None:
        return None
    return _moved_dir(recorded.get("body") or {}, fp.get("body") or {}, exp)


def _moved_dir(ran: dict[str, Any], body: dict[str, Any], exp: Path) -> Path | None:
    """moved_from's test of the paths alone: the run's plan body `ran`, this plan's `body`."""
    _, was = _at(ran, _PLACES[1])
    _, now = _at(body, _PLACES[1])
    if not isinstance(was, str) or not isinstance(now, str) or was == now:
        return None
    try:
        old = Path(was) / Path(exp).relative_to(now)
    except ValueError:  # `exp` is not under this plan's storage: not a directory it names
        return None
    # The same directory by another name (a symlink left where the project was, a
    # cluster's $SCRATCH alias): the same project, unless the workdirs are two.
    workdirs = [_at(one, _PLACES[0])[1] for one in (ran, body)]
    if _same(old, exp) and not (all(isinstance(w, str) for w in workdirs)
                                and _same(Path(workdirs[0]), Path(workdirs[1]))):
        return None
    return old


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and a.samefile(b)
    except OSError:
        return False


def here(recorded: dict[str, Any] | None, fp: dict[str, Any] | None, exp: Path) -> dict[str, Any] | None:
    """`recorded` as its run would have recorded it where `exp` is now, when `exp` is that
    run's experiment directory moved since (moved_from's test of the paths): its paths are
    this plan's, `moved_from` says where it was. What else differs is then judged as for a
    run that never moved: a raised budget extends it, an edit is named alone. So too where
    its paths are this plan's by other names (`_aliased`), with no `moved_from`. Read a
    marker through this wherever the plan it is compared with is known; else `recorded`."""
    if not recorded or not fp or "moved_from" in recorded:
        return recorded
    aligned_ = aligned(recorded, fp)
    ran, body = aligned_.get("body"), fp.get("body")
    if not isinstance(ran, dict) or not isinstance(body, dict):
        return recorded
    was = _moved_dir(ran, body, exp)
    if was is None and not _aliased(ran, body):
        return recorded
    ran = json.loads(json.dumps(ran))
    for path in _PLACES:
        (node, _), (_, value) = _at(ran, path), _at(body, path)
        if node is not None and value is not _MISSING:
            node[path[-1]] = value
    # plan_hash stays the run's: its summary.json holds that one (summary.finished)
    return dict(aligned_, **_hashes(ran), body=ran, **({} if was is None else {"moved_from": str(was)}))


def _aliased(ran: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether the paths that differ are each the same directory by another name (/scratch a
    link to /lustre/scratch: a spec given by that path, and one from the shell's resolved
    cwd): the same checkout over the same storage, not another."""
    pairs = [(_at(ran, path)[1], _at(body, path)[1]) for path in _PLACES]
    differ = [(a, b) for a, b in pairs if a != b]
    return bool(differ) and all(isinstance(a, str) and isinstance(b, str) and _same(Path(a), Path(b))
                                for a, b in differ)


def left_behind(fp: dict[str, Any], exp: Path) -> str | None:
    """Why a run of this plan in `exp`, which holds none, would start the study over while it
    lies in the spec's directory: the project moved with its results inside, and the spec
    names its storage by an absolute path, the old place. Found by the marker at that place
    in the project, which names this storage and another spec directory (the old one, which
    held the storage where the project holds it now). None otherwise."""
    body = fp.get("body") or {}
    (_, workdir), (_, storage) = _at(body, _PLACES[0]), _at(body, _PLACES[1])
    if not isinstance(workdir, str) or not isinstance(storage, str):
        return None
    try:
        below = Path(exp).relative_to(storage)
    except ValueError:
        return None
    parts = Path(storage).parts
    for k in range(1, min(len(parts), 6)):  # a few stats: the storage's place in the project
        tail = Path(*parts[-k:])
        there = Path(workdir) / tail / below
        ran = (read(there) or {}).get("body") or {}
        (_, was), (_, stored) = _at(ran, _PLACES[0]), _at(ran, _PLACES[1])
        if stored == storage and isinstance(was, str) and was != workdir and _alike(storage, Path(was) / tail):
            return (f"{exp} holds no run, and {there} holds this study's run, made in {was}: the project "
                    "moved with its results, and `storage.path` still names the old place\n  help: set "
                    f"`storage.path` to \"{tail}\" (relative to the spec, it moves with the project) to "
                    f"resume it there, or pass --fresh to start the study over under {storage}")
    return None


def _alike(a: str | Path, b: Path) -> bool:
    """The same path, or by another name where links lead (/scratch a link to /lustre/scratch:
    a storage named by the link, a spec's directory by the shell's resolved cwd). The last
    folders need not exist: the project moved away from there."""
    return Path(a) == b or os.path.realpath(a) == os.path.realpath(b)


def moved(recorded: dict[str, Any] | None, fp: dict[str, Any], exp: Path) -> Path | None:
    """Where `exp` was when its run ran, when it moved since (moved_from); None otherwise."""
    if recorded and isinstance(recorded.get("moved_from"), str):
        return Path(recorded["moved_from"])
    parts = differences(recorded, fp) if recorded and "body" in recorded else None
    return moved_from(aligned(recorded, fp), fp, parts, exp) if parts else None


def describe(exp: Path, recorded: dict[str, Any], fp: dict[str, Any], parts: list[str]) -> str:
    if (less := lowered(recorded, fp)) is not None:
        return f"{exp} {less}"
    if (keys := unknown_keys(recorded, fp)) is not None:
        added, dropped = keys
        what = f"{UPGRADE}: " + "; ".join(
            ([f"its plan lacks {_named(added)}, which this one sets"] if added else []) +
            ([f"it has {_named(dropped)}, which this hpoc's plans lack"] if dropped else []))
    elif parts and "body" in recorded:
        where = ran_in(recorded, fp, parts)
        what = f"the plans differ in {_named(parts)}" + (
            f" (it ran in {where}: moved or copied since?)" if where else
            f" (it ran in {recorded['moved_from']}, moved here since)" if recorded.get("moved_from") else "")
    elif parts:  # a marker without the body: a spec edit and an hpoc upgrade look the same
        what = (f"the plans differ in {_named(parts)} (a change to the spec, or an hpoc that "
                "compiles it differently)")
    else:
        what = ("it was recorded by an older hpoc, which kept only the plan's full hash, so "
                "even a comment in the spec counts")
    return (f"{exp} holds a run of a different plan ({recorded.get('plan_hash')}, this plan is "
            f"{fp['plan_hash']}): {what}")


def moved_help(where: str) -> str:
    """What to do with a run that differs from this plan in its paths alone: of this project
    moved since, or of another checkout of it (still there) over the same storage."""
    if Path(where).is_dir():  # not a move: "move the project back" cannot be done
        return (f"{where} is another checkout of the project, and this is its run: resume it from there, "
                "give this checkout's spec a `storage.name` of its own to run a study beside it, or pass "
                "--fresh to start the study over here (that checkout's run is moved aside, not resumed)")
    return (f"only its location changed: to resume it, run it from {where} again (move the "
            "project back), or pass --fresh to start the study over here (the run so far "
            "is moved aside, not resumed)")


def remedy(recorded: dict[str, Any], fp: dict[str, Any], parts: list[str] | None = None) -> str:
    """The help for a refused resume: what makes it resume, or start over."""
    if (where := ran_in(recorded, fp, parts or [])) is not None:
        # Not "undo that change": the change is a `mv`, and --fresh sets every trial aside.
        return moved_help(where)
    if unknown_keys(recorded, fp) is not None:
        return ("resume it with the hpoc version that started it, or pass --fresh to move the "
                "old run aside (or change `storage.name`)")
    if "body" in recorded or "run_hash" not in recorded:
        return "undo that change to resume, change `storage.name`, or pass --fresh to move the old run aside"
    return ("undo a change to the spec to resume (after an hpoc upgrade: resume with the hpoc "
            "version that started it), change `storage.name`, or pass --fresh to move the old run aside")
