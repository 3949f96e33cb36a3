"""PBT and PB2 as hpoc runs them: Ray's schedulers, plus what a resumed run needs.

An exploit gives a trial a new config (`Trial.set_config`), but when a run is restored,
Tune rebuilds every trial's config from its *unresolved* one (the `tune.sample_from`
placeholders of `space.fixed_trials`) as it adds the trial: a trial that had exploited
another went back to its first config, and the resumed run trained a config PBT had dropped.
So each exploit also records the new config on the trial (saved with it in the experiment
state), and the scheduler puts it back when Tune adds the restored trial, right after that
rebuild.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2 as RayPB2

SAVED = "_hpoc_config"  # attribute of a ray.tune Trial, kept in Tune's experiment state


def keep_config(trial: Any) -> None:
    """Record `trial`'s current config with it (after an exploit)."""
    setattr(trial, SAVED, copy.deepcopy(trial.config))
    invalidate = getattr(trial, "invalidate_json_state", None)
    if invalidate is not None:
        invalidate()


def restore_config(trial: Any) -> None:
    """Give a restored trial back the config its last exploit gave it."""
    saved = getattr(trial, SAVED, None)
    if isinstance(saved, dict) and saved and trial.config != saved:
        trial.set_config(copy.deepcopy(saved))


class PBT(PopulationBasedTraining):
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        restore_config(trial)
        super().on_trial_add(tune_controller, trial)

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        super()._exploit(tune_controller, trial, trial_to_clone)
        keep_config(trial)


class PB2(RayPB2):
    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        restore_config(trial)
        super().on_trial_add(tune_controller, trial)

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        super()._exploit(tune_controller, trial, trial_to_clone)
        keep_config(trial)
