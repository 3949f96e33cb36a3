"""More trials for a study that ran: raise `trials.num_samples` and run it again.

Tune cannot do this itself: `Tuner.restore` takes no new budget, and the restored search
algorithm's saved state (its count of trials asked, and the total) overwrites whatever
the restored Tuner was given. So an extension restores the run as a resume does (its
finished trials are kept, its unfinished ones go on) with a search algorithm built from
this plan, whose total is raised once Tune has restored its state:

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


def refuse_population(plan: dict[str, Any], exp: Path, old: int) -> None:
    from hpoc.runtime.search import POPULATION_SCHEDULERS

    name = (plan.get("scheduler") or {}).get("name")
    if name in POPULATION_SCHEDULERS:
        raise StudyError(
            f"{exp} holds a run of {old} trial(s) and this plan raises `trials.num_samples` to "
            f"{plan['trials']['num_samples']}, but a `scheduler {name}` study cannot be extended "
            "(its population is fixed when it starts)\n  help: put the old value back to "
            "resume it, or run the larger study with a new `storage.name` (or --fresh)")


def _growing_class() -> type:
    from ray.tune.search import SearchGenerator

    class GrowingSearchGenerator(SearchGenerator):
        """Tune's SearchGenerator whose total is this plan's after its state is restored."""

        def __init__(self, searcher: Any, total: int) -> None:
            super().__init__(searcher)
            self._hpoc_total = total

        def restore_from_dir(self, dirpath: str) -> None:
            super().restore_from_dir(dirpath)
            if self._hpoc_total > self._total_samples:
                self._total_samples = self._hpoc_total
                self._finished = False  # the searcher said FINISHED at the old budget

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


def rebuild_search(tuner: Any, searcher: Any, total: int, callbacks: list[Any]) -> None:
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
    config.search_alg = __getattr__("GrowingSearchGenerator")(searcher, total)
    config.max_concurrent_trials = None  # applied above: Tune only warns about a second one
    config.num_samples = total
    inner._run_config.callbacks = callbacks
