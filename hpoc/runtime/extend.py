"""More trials or time for a study that ran: raise `trials.num_samples` or
`trials.time_budget` and run it again (marker.growth says when a plan does).

Tune cannot do this itself: `Tuner.restore` takes no new budget, and the restored search
algorithm's saved state (its count of trials asked, and the total) and the time budget's
saved count overwrite whatever the restored Tuner was given. So an extension restores the
run as a resume does (its finished trials are kept, its unfinished ones go on) with a
search algorithm built from this plan, whose total is raised once Tune has restored its
state, and with the added time put into the saved count first (`add_time`):

- the searcher restores its own saved state: Optuna its study (every trial told so far,
  so the sampler learns from the first run's trials), hpoc's random/grid sampler its seed
  and position (trial `i` gets the config it would have had in one run of the larger
  budget);
- the trials go on counting from the first run's (`t00002_…` after `t00001_…`), in the
  same experiment: `hpoc results`, `status` and the report see one study.

Tune's saved Tuner (`tuner.pkl`) keeps the first run's searcher and budget, so every
later resume of an extended study builds its search algorithm from the plan as well
(`marker.extended`). PBT and PB2 run under Tune's BasicVariantGenerator with the configs
fixed in advance: an extension is refused for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpoc.runtime.exits import StudyError


def refuse_population(plan: dict[str, Any], exp: Path, grown: dict[str, Any]) -> None:
    from hpoc.runtime.marker import grown_words
    from hpoc.runtime.search import POPULATION_SCHEDULERS

    name = (plan.get("scheduler") or {}).get("name")
    if name in POPULATION_SCHEDULERS:
        raise StudyError(
            f"{exp}: this plan extends the study ({grown_words(grown, plan)}), but a `scheduler {name}` "
            "study cannot be extended (its population is fixed when it starts)\n  help: put the "
            "old budget back to resume it, or run the larger study with a new `storage.name` "
            "(or --fresh)")


# Key of the experiment state: the time budget (s, None for none) its saved count is of.
ADDED_FOR = "hpoc_time_budget_s"


def add_time(exp: Path, old: float | None, new: float | None) -> None:
    """Raise the time budget Tune restores from the experiment state by `new - old` (no
    limit for None). Tune keeps what is left of it in the saved state and restores it as
    saved, whatever the restored Tuner was given; the study's state says when it was
    reached and stopped, which the new time undoes."""
    import json

    from ray._common.utils import hex_to_binary
    from ray.tune.stopper import TimeoutStopper
    from ray.tune.utils.serialization import TuneFunctionEncoder
    import cloudpickle

    from hpoc.files import newest_state, write_atomic

    state = newest_state(exp)
    if state is None:
        return  # nothing saved: the run starts with the plan's budget
    doc = json.loads(state.read_text(encoding="utf-8"))
    runner = doc["runner_data"]
    saved = runner.get("_stopper")
    if not (isinstance(saved, dict) and saved.get("_type") == "CLOUDPICKLE_FALLBACK"):
        return
    # The state says which budget its count is of once time was added to it: the marker
    # that says so is written later, and a driver killed in between must not add it twice.
    old = doc.get(ADDED_FOR, old)
    if old is None or old == new:
        return
    stopper = cloudpickle.loads(hex_to_binary(saved["value"]))
    for one in [stopper, *getattr(stopper, "_stoppers", ())]:
        if isinstance(one, TimeoutStopper):
            one._budget = float("inf") if new is None else one._budget + (new - old)
    runner["_stopper"] = json.loads(json.dumps(stopper, cls=TuneFunctionEncoder))
    runner["_should_stop_experiment"] = False
    doc[ADDED_FOR] = new
    write_atomic(state, json.dumps(doc, cls=TuneFunctionEncoder))


def _growing_class() -> type:
    from ray.tune.search import SearchGenerator

    class GrowingSearchGenerator(SearchGenerator):
        """Tune's SearchGenerator whose total is this plan's after its state is restored."""

        def __init__(self, searcher: Any, total: int, ended: set[str]) -> None:
            super().__init__(searcher)
            self._hpoc_total, self._hpoc_ended = total, ended

        def restore_from_dir(self, dirpath: str) -> None:
            super().restore_from_dir(dirpath)
            # Trials Tune stopped at the time budget were saved as still live in the
            # concurrency limiter: at `max_concurrent` it never asked for another trial.
            # (hpoc's schedulers cap what runs, restored trials included.)
            limiter = self.searcher
            while limiter is not None and not hasattr(limiter, "live_trials"):
                limiter = getattr(limiter, "searcher", None)
            if limiter is not None:
                limiter.live_trials -= self._hpoc_ended
                limiter.num_unfinished_live_trials = len(limiter.live_trials)
            self._total_samples = max(self._total_samples, self._hpoc_total)
            # Saved as finished when the old budget ran out (the searcher said FINISHED, or
            # Tune's time budget stopped the study); a searcher still done says so again.
            self._finished = False

    GrowingSearchGenerator.__module__ = __name__  # pickled by reference
    GrowingSearchGenerator.__qualname__ = GrowingSearchGenerator.__name__
    return GrowingSearchGenerator


_MADE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "GrowingSearchGenerator":
        if not _MADE:
            _MADE[name] = _growing_class()
        return _MADE[name]
    raise AttributeError(name)


def _ended(exp: Path) -> set[str]:
    """Ids of the trials that ended, by the experiment state Ray saved last."""
    from hpoc.files import newest_state, saved_trials

    state = newest_state(exp)
    return {t["trial_id"] for t, _ in (saved_trials(state) if state else [])
            if t.get("status") in ("TERMINATED", "ERROR") and t.get("trial_id")}


def rebuild_search(tuner: Any, exp: Path, searcher: Any, total: int, callbacks: list[Any]) -> None:
    """Give a restored Tuner this plan's searcher (wrapped as Tune wraps it), its total and
    progress callbacks that count the new total."""
    from ray.tune.search import ConcurrencyLimiter, Searcher

    inner = tuner._local_tuner
    if inner is None or not isinstance(searcher, Searcher):  # PBT/PB2: refused before
        raise StudyError("this study's search cannot be extended")
    config = inner._tune_config
    cap = config.max_concurrent_trials
    if cap:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=cap)
    config.search_alg = __getattr__("GrowingSearchGenerator")(searcher, total, _ended(exp))
    config.max_concurrent_trials = None  # applied above: Tune only warns about a second one
    config.num_samples = total
    inner._run_config.callbacks = callbacks
