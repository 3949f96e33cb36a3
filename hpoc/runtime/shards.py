"""Sharded studies: one study, K shards (job-array tasks), each on a Ray cluster of its own.

The study's trial budget (`trials.num_samples`) is the study's, not K times it, and no
configuration runs twice. How that holds depends on the search algorithm:

* `random`, `grid`: the trials are numbered over the whole study and shard k runs the
  trials i with i mod K == k (`hpoc.runtime.space.SpaceSamplerCore`). A config depends
  only on (seed, i), so the partition is exact and nothing is shared at run time.
* `optuna`: the shards share one Optuna study in a journal file on the study's storage,
  `<storage.path>/<storage.name>/optuna.journal` (`JournalFileBackend` appends under a
  lock file made for NFS; SQLite is not safe there). Every shard's sampler therefore
  learns from every shard's results, and the budget is global: a shard keeps asking for
  trials until the study holds `num_samples` of them, so fast shards take more trials.
  See `StudyOptunaSearch` for why that is race-free.
* other searchers (hyperopt, bayesopt, ...): each shard searches on its own with a
  seed of its own and runs its static share, `len(range(k, N, K))` trials.

Schedulers (ASHA, HyperBand, median stopping, PBT) decide per shard: a trial is compared
with the trials of its own shard only.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

JOURNAL = "optuna.journal"
# User attributes hpoc puts on the Optuna trials it creates (user attributes, because
# Optuna's system attributes are not public API).
SHARD_ATTR = "hpoc.shard"
RAY_TRIAL_ATTR = "hpoc.ray_trial"
SEEN_ATTR = "hpoc.seen"          # {shard: trials complete} visible when the trial was asked
EXTRA_ATTR = "hpoc.extra"        # set on trials that do not count against the budget
RETRY_OF_ATTR = "hpoc.retry_of"


def missing_shard(plan: dict[str, Any], shard: int) -> str | None:
    """Why `shard` is none of the plan's, with what to run instead; None when it is one."""
    shards = plan["shards"]["count"]
    if 0 <= shard < shards:
        return None
    fix = ("leave out --shard: a study that is not sharded (`slurm { array { shards = N } }`) runs as shard 0"
           if shards == 1 else f"pass --shard 0 to {shards - 1}")
    return f"shard {shard} does not exist: the study has {shards} shard(s) (0..{shards - 1})\n  help: {fix}"


def study_root(plan: dict[str, Any]) -> Path:
    return Path(plan["storage"]["path"]) / plan["storage"]["name"]


def experiment_dir(plan: dict[str, Any], shard: int) -> Path:
    """Where shard `shard` runs: the study root, or its `shard-<k>` when there are several."""
    root = study_root(plan)
    return root / f"shard-{shard}" if plan["shards"]["count"] > 1 else root


def journal_path(plan: dict[str, Any]) -> Path:
    return study_root(plan) / JOURNAL


def journal_storage(plan: dict[str, Any]) -> Any:
    """The shared Optuna storage of a sharded study (creates the study directory)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    root = study_root(plan)
    root.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(root / JOURNAL)))


def shared_budget(plan: dict[str, Any]) -> bool:
    """True when the shards draw from one global budget (Optuna on several shards)."""
    return plan["shards"]["count"] > 1 and plan["search"]["algorithm"] == "optuna"


def trials_of_shard(plan: dict[str, Any], shard: int) -> int:
    """The most trials shard `shard` runs: its static share `len(range(k, N, K))`, or under
    a shared Optuna budget the whole study's (a fast shard may take all of it)."""
    from hpoc.plan.space import total_trials

    total = total_trials(plan)
    return total if shared_budget(plan) else len(range(shard, total, plan["shards"]["count"]))


def budget_open(plan: dict[str, Any], shard: int) -> int | None:
    """The trials shard `shard` may still run under the study's shared Optuna budget, by
    the journal: the budget's trials none has asked for (`budget_used`) and the shard's own
    running there (resumed, or asked before it was killed). None without a shared budget,
    or without a journal of the study to read."""
    if not shared_budget(plan) or not journal_path(plan).is_file():
        return None
    from optuna.trial import TrialState

    try:
        storage = journal_storage(plan)
        trials = storage.get_all_trials(storage.get_study_id_from_name(plan["study"]["name"]), deepcopy=False)
    except Exception:  # noqa: BLE001 - no such study yet, a journal cut short: no finding
        return None
    dup = duplicates(trials)
    own = sum(1 for t in trials if t.state == TrialState.RUNNING and EXTRA_ATTR not in t.user_attrs
              and t.user_attrs.get(SHARD_ATTR) == shard and t.number not in dup)
    return max(0, plan["trials"]["num_samples"] - budget_used(trials)) + own


def _key(params: dict[str, Any]) -> frozenset:
    try:
        return frozenset(params.items())
    except TypeError:  # a value Optuna would not hold as a parameter: compared as JSON
        return frozenset((k, json.dumps(v, sort_keys=True)) for k, v in params.items())


def _queued_key(t: Any) -> frozenset | None:
    """A queued trial's (`enqueue_trial`) fixed parameters, hashable; None for an asked one.
    Optuna keeps them as the `fixed_params` system attribute, set when the trial is made."""
    fixed = t.system_attrs.get("fixed_params")
    return None if fixed is None else _key(fixed)


def duplicates(trials: list[Any]) -> set[int]:
    """Numbers of queued trials that repeat the parameters of an earlier queued one: shards
    that queue the points at once may each add them (Optuna's `skip_if_exists` checks, then
    adds). The first copy (lowest number) is the point; a later copy is never run."""
    seen: set[frozenset] = set()
    out: set[int] = set()
    for t in sorted(trials, key=lambda t: t.number):
        key = _queued_key(t)
        if key is None or EXTRA_ATTR in t.user_attrs:
            continue
        if key in seen:
            out.add(t.number)
        seen.add(key)
    return out


def point_keys(points: list[dict[str, Any]], budget: int) -> list[frozenset]:
    """The distinct points (Optuna's parameters) that hold a budget slot of their own: at
    most `budget` of them, in order."""
    keys: list[frozenset] = []
    for point in points:
        key = _key(point)
        if key not in keys and len(keys) < budget:
            keys.append(key)
    return keys


def budget_passes(trials: list[Any], number: int, points: list[frozenset], budget: int) -> bool:
    """Whether trial `number`, just asked, runs under the shared budget. The points' slots
    are reserved up front, whoever queues them and whenever: a queued point (first copy)
    always runs, any other trial runs while fewer than `budget - len(points)` others
    precede it. So a shard that asks before the points are queued cannot push them past
    the budget, and the study never runs more than `budget` trials (Optuna numbers trials
    densely in the order the journal's lock serialises them)."""
    dup = duplicates(trials)
    if number in dup:
        return False
    points = set(points)  # looked up once per trial: each ask checks every trial
    this = next(t for t in trials if t.number == number)
    if _queued_key(this) in points:
        return True
    others = sum(1 for t in trials if t.number < number and EXTRA_ATTR not in t.user_attrs
                 and t.number not in dup and _queued_key(t) not in points)
    return others < budget - len(points)


def budget_used(trials: list[Any]) -> int:
    """Budget trials asked for: a queued point (WAITING, `points_to_evaluate`) is not, it
    waits for an ask (with as many points as the budget, none ran); nor a second copy of
    a point, never run."""
    dup = duplicates(trials)
    return sum(1 for t in trials if EXTRA_ATTR not in t.user_attrs and t.state.name != "WAITING"
               and t.number not in dup)


def seen_by_shard(trials: list[Any]) -> dict[str, int]:
    """Complete trials per shard: what a sampler asking now learns from."""
    from optuna.trial import TrialState

    seen: dict[str, int] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and SHARD_ATTR in t.user_attrs:
            key = str(t.user_attrs[SHARD_ATTR])
            seen[key] = seen.get(key, 0) + 1
    return dict(sorted(seen.items()))


def _optuna_search_class() -> type:
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class StudyOptunaSearch(OptunaSearch):
        """OptunaSearch that keeps hpoc's bookkeeping on the Optuna trials and, for a
        sharded study, draws trials from the study's global budget.

        Budget, race-free: a shard asks Optuna for a trial first and checks second
        (`budget_passes`). The journal numbers trials densely in the order its lock
        serialises the asks, so of any set of concurrent asks exactly the first
        `budget - used` (by number) pass; the others are marked extra, told FAIL
        (samplers ignore failed trials) and the shard stops. Extra trials never count,
        and a mark only lowers the count ahead of later trials, so a late mark cannot
        let another ask through.

        Points (`points_to_evaluate`): every shard queues them before its first ask, and
        their budget slots are reserved, so a shard that asks first cannot crowd them
        out. Two shards may queue them at once; the second copy of a point is marked
        extra and failed when popped (never run), and the shard asks again.

        Survival: a shard killed between asking Optuna and Ray saving its experiment
        state leaves RUNNING Optuna trials that no Ray trial knows. When the shard runs
        again it hands those trials (same parameters) to its next Ray trials before
        asking for new ones, so the budget is neither lost nor exceeded.

        Retried errored trials: Optuna cannot change a finished (FAIL) trial, so when a
        trial that errored runs again and completes, its result is added as an extra
        COMPLETE trial with the same parameters: the sampler learns from it.
        """

        def __init__(self, *args: Any, shard: int = 0, budget: int | None = None, **kwargs: Any):
            # Ray enqueues the points each time a searcher is made: in a shared study that
            # would be once per shard and per resumed run. Each shard queues the missing ones
            # instead (_hpoc_queue), now and, restored, before its first ask.
            points = kwargs.pop("points_to_evaluate", None) if budget is not None else None
            super().__init__(*args, **kwargs)
            self._hpoc_shard = shard
            self._hpoc_budget = budget
            self._hpoc_points = [dict(p) for p in points or ()]
            self._hpoc_queued = False  # per process: a restored searcher queues again
            self._hpoc_orphans: list[Any] | None = None  # found once per process
            # the journal's path restore() keeps (_hpoc_repoint); None: not a shared study
            self._hpoc_journal = getattr(getattr(self._storage, "_backend", None), "_file_path", None)
            if self._hpoc_points and self._ot_study is not None:
                self._hpoc_queue(self._trials())

        def restore(self, checkpoint_path: str) -> None:
            budget = self._hpoc_budget  # this plan's: an extension raised it (extend.py)
            points = getattr(self, "_hpoc_points", [])
            journal = getattr(self, "_hpoc_journal", None)  # where it is now (repoint_journal)
            super().restore(checkpoint_path)
            self._hpoc_budget = budget
            self._hpoc_points, self._hpoc_queued = points, False
            self._hpoc_orphans = None  # look again, against the restored trials
            if journal is not None:
                self._hpoc_repoint(journal)

        def _hpoc_repoint(self, journal: str) -> None:
            """The saved storage names the journal where it was when saved: a study moved
            since appends to the journal where it is now, never to the old path. The study
            and its trials share that storage object, so its file is swapped."""
            from optuna.storages.journal import JournalFileBackend

            self._hpoc_journal = journal
            if self._storage is not None and getattr(self._storage, "_backend", None) is not None:
                if getattr(self._storage._backend, "_file_path", None) != journal:
                    self._storage._backend = JournalFileBackend(journal)

        # ---- budget

        def _trials(self) -> list[Any]:
            return self._ot_study.get_trials(deepcopy=False)

        def _hpoc_keys(self) -> list[frozenset]:
            return point_keys(getattr(self, "_hpoc_points", []), self._hpoc_budget or 0)

        def _hpoc_queue(self, trials: list[Any]) -> None:
            """Queue the points no shard has queued (a copy that is not extra): before
            any ask of this shard, so no ask of any shard precedes them all."""
            self._hpoc_queued = True
            have = {_queued_key(t) for t in trials if EXTRA_ATTR not in t.user_attrs}
            keys = self._hpoc_keys()
            for point in getattr(self, "_hpoc_points", []):
                if _key(point) in keys and _key(point) not in have:
                    self._ot_study.enqueue_trial(point)
                    have.add(_key(point))

        def _orphans(self, trials: list[Any]) -> list[Any]:
            from optuna.trial import TrialState

            known = {t._trial_id for t in self._ot_trials.values()}
            dup = duplicates(trials)  # a second copy of a point, popped: never run
            return sorted(
                (t for t in trials
                 if t.state == TrialState.RUNNING and EXTRA_ATTR not in t.user_attrs
                 and t.user_attrs.get(SHARD_ATTR) == self._hpoc_shard
                 and t._trial_id not in known and t.number not in dup),
                key=lambda t: t.number)

        def suggest(self, trial_id: str) -> Any:
            if trial_id in self._ot_trials or self._ot_study is None:
                return super().suggest(trial_id)
            trials = self._trials()
            if self._hpoc_budget is not None:
                if not getattr(self, "_hpoc_queued", False):
                    self._hpoc_queue(trials)
                    trials = self._trials()
                if self._hpoc_orphans is None:
                    self._hpoc_orphans = self._orphans(trials)
                    if self._hpoc_orphans:
                        logger.info("shard %d: %d trial(s) asked before an interruption run now",
                                    self._hpoc_shard, len(self._hpoc_orphans))
                if self._hpoc_orphans:
                    return self._adopt(trial_id, self._hpoc_orphans.pop(0))
            # each pass pops a second copy of a point (failed) or ends: copies are finite
            while True:
                if self._hpoc_budget is not None and budget_used(trials) >= self._hpoc_budget:
                    return Searcher.FINISHED
                seen = seen_by_shard(trials)  # what the sampler learns from for this ask
                config = super().suggest(trial_id)
                ot_trial = self._ot_trials[trial_id]
                ot_trial.set_user_attr(SHARD_ATTR, self._hpoc_shard)
                ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
                ot_trial.set_user_attr(SEEN_ATTR, seen)
                if self._hpoc_budget is None:
                    return config
                trials = self._trials()
                if budget_passes(trials, ot_trial.number, self._hpoc_keys(), self._hpoc_budget):
                    return config
                from optuna.trial import TrialState

                twice = ot_trial.number in duplicates(trials)
                ot_trial.set_user_attr(EXTRA_ATTR, "duplicate point" if twice else "over budget")
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
                del self._ot_trials[trial_id]
                if not twice:
                    return Searcher.FINISHED
                trials = self._trials()

        def _adopt(self, trial_id: str, frozen: Any) -> Any:
            import optuna
            from ray.tune.utils.util import unflatten_dict

            ot_trial = optuna.trial.Trial(self._ot_study, frozen._trial_id)
            ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
            self._ot_trials[trial_id] = ot_trial
            if callable(self._space):
                return unflatten_dict(self._suggest_from_define_by_run_func(self._space, ot_trial))
            return unflatten_dict(dict(frozen.params))

        # ---- results

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if result and self._diverged(result):
                # Optuna fails a NaN itself, but told with Ray's COMPLETE it raised and the
                # trial stayed RUNNING; an infinity in the good direction was its best trial.
                result, error = None, True
            if trial_id in self._completed_trials and result and not error and trial_id in self._ot_trials:
                self._record_retry(trial_id, result)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

        def _diverged(self, result: dict) -> bool:
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            return any(isinstance(v, float) and not math.isfinite(v) for v in map(result.get, metrics))

        def _record_retry(self, trial_id: str, result: dict) -> None:
            import optuna
            from optuna.trial import TrialState

            metric = self.metric
            values = [result.get(m) for m in metric] if isinstance(metric, list) else [result.get(metric)]
            if any(v is None for v in values):
                return
            number = self._ot_trials[trial_id].number
            old = next((t for t in self._trials() if t.number == number), None)
            if old is None or old.state != TrialState.FAIL:
                return
            attrs = {EXTRA_ATTR: "retry", RETRY_OF_ATTR: old.number, SHARD_ATTR: self._hpoc_shard,
                     RAY_TRIAL_ATTR: trial_id}
            record = optuna.trial.create_trial(
                params=old.params, distributions=old.distributions, user_attrs=attrs,
                values=values, state=TrialState.COMPLETE)
            try:
                self._ot_study.add_trial(record)
            except Exception as exc:  # noqa: BLE001 - a bookkeeping record must never end the study
                logger.warning("could not record the retried trial %s with Optuna: %s", trial_id, exc)

    # Pickled by reference as `hpoc.runtime.shards.StudyOptunaSearch` (module __getattr__).
    StudyOptunaSearch.__module__ = __name__
    StudyOptunaSearch.__qualname__ = StudyOptunaSearch.__name__
    return StudyOptunaSearch


_CLASS: list[type] = []


def optuna_search(*, shard: int, budget: int | None, **kwargs: Any) -> Any:
    """A `StudyOptunaSearch` (OptunaSearch's arguments, plus this shard and the global
    budget, None when the shard's share is fixed)."""
    if not _CLASS:
        _CLASS.append(_optuna_search_class())
    return _CLASS[0](shard=shard, budget=budget, **kwargs)


def repoint_journal(search_alg: Any, journal: Path) -> None:
    """Make a restored Tuner's Optuna searcher (Tune's wrappers around it) use the shared
    journal at `journal`, this plan's path: Tune unpickles the searcher, and then its saved
    state, with the path the study had when it ran."""
    node = search_alg
    while node is not None and not hasattr(node, "_hpoc_repoint"):
        node = getattr(node, "searcher", None)
    if node is not None and node._storage is not None:
        node._hpoc_repoint(str(journal))


def __getattr__(name: str) -> Any:
    # Pickled searchers (Tuner.restore) refer to the class by this module's attribute.
    if name == "StudyOptunaSearch":
        if not _CLASS:
            _CLASS.append(_optuna_search_class())
        return _CLASS[0]
    raise AttributeError(name)


# ---------------------------------------------------------------- reading the journal


def journal_trials(plan: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The shared study's trials as plain dicts (None without a journal): for `hpoc status`
    and tests. Keys: number, state, params, values, shard, ray_trial, seen, extra."""
    path = journal_path(plan)
    if not path.exists():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = journal_storage(plan)
    try:
        study = optuna.load_study(study_name=plan["study"]["name"], storage=storage)
    except KeyError:
        return []
    out = []
    trials = study.get_trials(deepcopy=False)
    dup = duplicates(trials)  # a second copy of a point: never run, as if marked
    for t in trials:
        out.append({
            "number": t.number, "state": t.state.name, "params": dict(t.params),
            "values": list(t.values) if t.values is not None else None,
            "shard": t.user_attrs.get(SHARD_ATTR), "ray_trial": t.user_attrs.get(RAY_TRIAL_ATTR),
            "seen": t.user_attrs.get(SEEN_ATTR),
            "extra": t.user_attrs.get(EXTRA_ATTR) or ("duplicate point" if t.number in dup else None),
        })
    return out


def index_ranges(indices: list[int], sep: str = ",") -> str:
    """sbatch's --array list with runs as ranges: `0-2,6,10-999`, not a thousand numbers
    (`sep` ", " for a sentence)."""
    runs: list[list[int]] = []
    for k in sorted(indices):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return sep.join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
