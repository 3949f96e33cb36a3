"""PBT and PB2 as hpoc runs them: Ray's schedulers, with two gaps closed.

1. A resumed run trained configs PBT had dropped, or never drew. An exploit gives a trial a
   new config (`Trial.set_config`), but when a run is restored, Tune rebuilds every trial's
   config from its *unresolved* one (the `tune.sample_from` placeholders of
   `space.fixed_trials`) as it adds the trial: a trial that had exploited another went back
   to its first config. And those placeholders are the restoring run's: without a
   `search { seed }` its sampler draws with a new seed, so every restored trial got a config
   it had never trained with. So each trial's config is recorded on it when Tune first adds
   it and after each exploit (saved with it in the experiment state), and the scheduler puts
   it back when Tune adds the restored trial, right after that rebuild.

2. An exploit at a trial's last epoch gave it a config it never trained with and restarted
   it for nothing: `hpoc results` showed it "stopped early" with its last metrics. A trial
   that has reported its last epoch is left as it is (`final_epochs`).

3. An exploiting trial restores from the donor's checkpoint, which the donor's
   `checkpoint.keep` may delete before the trial starts again (it waits while paused, or
   until a resumed study restores it): the trial errored ("Could not recover from checkpoint
   as it does not exist on storage anymore") or started over. The exploiting trial gets its
   own copy (`exploited-<donor dir>-<checkpoint>` in its directory, the newest only; hard
   links where possible), and the donor's latest checkpoint is cloned when the noted one is
   already gone.

4. A resumed study started every restored trial at once (all errored ones, with
   `resume.retry_errored`), whatever `trials.max_concurrent`: the generator that caps these
   schedulers' trials (`space.fixed_trials`) caps only those it makes. PBT and PB2 take
   resume.py's cap (set by `prepare_scheduler`) and its early save of a finished trial.
   Trials over the cap wait PAUSED, so PBT time-shares: at each perturbation a running
   trial yields to the least-trained waiting one.

5. PBT's explore step multiplies a value by a perturbation factor or resamples it from
   Ray's domain, and PB2 picks any point within its bounds: `quniform(0.1, 0.9, 0.1)` gave
   0.36000000000000004 or 0.48, `qrandint(32, 256, 32)` gave 38, and values left their
   bounds. Each new value is moved to the nearest one its domain declares (`space.snap`),
   and PB2's model records the point the trial then trains with.

6. Synchronous PBT pauses every trial at a perturbation until all live trials reach it; a
   trial that failed before it (its exploit's weights did not fit its model) left the
   others PAUSED forever, the driver spinning. They go on without that perturbation.

7. Ray's PBT leaves a trial whose objective is NaN out of its quantiles: a diverged trial
   never exploited a better one. It counts as the worst trial (diverged.py).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2 as RayPB2

from hpoc.files import publish_tree
from hpoc.runtime.diverged import DivergedWorst
from hpoc.runtime.resume import Capped, Repointed, SaveOnComplete
from hpoc.runtime.timelimit import TimeLimited
from hpoc.runtime.space import grid_step, snap

logger = logging.getLogger(__name__)

SAVED = "_hpoc_config"  # attribute of a ray.tune Trial, kept in Tune's experiment state
EXPLOIT_PREFIX = "exploited-"


def keep_config(trial: Any) -> None:
    """Record `trial`'s current config with it (after an exploit)."""
    setattr(trial, SAVED, copy.deepcopy(trial.config))
    invalidate = getattr(trial, "invalidate_json_state", None)
    if invalidate is not None:
        invalidate()


def restore_config(trial: Any) -> bool:
    """Give a restored trial back the config recorded with it; whether one was."""
    saved = getattr(trial, SAVED, None)
    if not (isinstance(saved, dict) and saved):
        return False
    if trial.config != saved:
        trial.set_config(copy.deepcopy(saved))
    return True


def _checkpoint_exists(checkpoint: Any) -> bool:
    path, fs = getattr(checkpoint, "path", None), getattr(checkpoint, "filesystem", None)
    if not path or fs is None:
        return False
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link when `dst` can share `src`'s file system, else a copy. The Tune driver
    waits while an exploit copies, and a checkpoint can be gigabytes; a link is instant.
    Sharing the files is safe: Ray persists each checkpoint into a new directory and nothing
    rewrites a persisted file in place, and the donor's `keep` deleting its checkpoint only
    unlinks its own names."""
    try:
        os.link(src, dst)
    except OSError:  # another file system (EXDEV), or one without hard links
        shutil.copy2(src, dst)


def _own_copy(checkpoint: Any, trial: Any) -> Any:
    """A copy of a donor's checkpoint (hard links where possible) in the exploiting trial's
    directory (the only one kept there), or the checkpoint itself when the trial has no
    directory yet."""
    from ray.train import Checkpoint

    if not getattr(trial, "path", None):
        return checkpoint
    own = Path(trial.path)
    dest = own / f"{EXPLOIT_PREFIX}{Path(checkpoint.path).parent.name}-{Path(checkpoint.path).name}"
    own.mkdir(parents=True, exist_ok=True)
    tmp = own / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint.path, tmp, copy_function=_link_or_copy)
    for old in own.glob(f"{EXPLOIT_PREFIX}*"):  # the trial restores from its newest copy only
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    publish_tree(tmp, dest)  # on disk before it is named: the trial restores from it after a crash
    return Checkpoint(str(dest))


def final_epochs(plan: dict[str, Any]) -> int | None:
    """The epochs a trial trains when `epochs` is not searched (as `Trainer.epochs` finds
    them: the constant, the trainer's argument, a `stop` on training_iteration); None when
    the plan does not say (a trainer of one's own)."""
    value = (plan["space"].get("constants") or {}).get("epochs")
    if value is None:
        value = (plan["pipeline"]["trainer"].get("args") or {}).get("epochs")
    if value is None:
        value = (plan["trials"].get("stop") or {}).get("training_iteration")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Population:
    """What hpoc adds to Ray's PBT and PB2 (see the module's docstring)."""

    hpoc_epochs: int | None = None  # set by search.make_scheduler: final_epochs(plan)
    hpoc_domains: dict[str, dict[str, Any]] = {}  # and the plan domains of the mutated params

    def _ended(self, trial: Any) -> bool:
        """Whether `trial`'s result at this perturbation was its last epoch."""
        state = self._trial_state.get(trial)  # type: ignore[attr-defined]
        result = getattr(state, "last_result", None) or {}
        config = result.get("config") if isinstance(result.get("config"), dict) else trial.config
        final = (config or {}).get("epochs", self.hpoc_epochs)  # a searched `epochs` first
        done = result.get("epoch", result.get("training_iteration"))
        return (isinstance(final, (int, float)) and isinstance(done, (int, float))
                and not isinstance(done, bool) and done >= final)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if not restore_config(trial):
            keep_config(trial)  # a new trial: the config it starts with
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]

    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        config, operations = super()._get_new_config(trial, trial_to_clone)  # type: ignore[misc]
        for name, param in self.hpoc_domains.items():
            if name not in config:
                continue
            old, new = trial_to_clone.config.get(name), snap(param, config[name])
            op, step = operations.get(name), grid_step(param)
            if new == old and step and isinstance(op, str) and op.startswith("* "):
                # A factor that rounds back to the donor's value (16 * 1.2 on a grid of 8)
                # would leave a small value unperturbable: one step the factor's way.
                factor = float(op[2:])
                up = old * factor > old if old else factor > 1
                new = snap(param, old + step if up else old - step)
            config[name] = new
        return config, operations

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        chosen = super().choose_trial_to_run(tune_controller)  # type: ignore[misc]
        if chosen is not None or not getattr(self, "_synch", False):
            return chosen
        trials = tune_controller.get_trials()
        paused = [t for t in trials if t.status == "PAUSED" and t in self._trial_state]  # type: ignore[attr-defined]
        if not paused or any(t.status in ("RUNNING", "PENDING") for t in trials):
            return None
        # Nothing can run and nothing will report: a trial failed before the perturbation
        # the paused ones wait at (the module's docstring, 6).
        reached = max(self._trial_state[t].last_train_time for t in paused)  # type: ignore[attr-defined]
        self._next_perturbation_sync = reached + self._perturbation_interval  # type: ignore[attr-defined]
        logger.info("[pbt] a trial failed before the perturbation at %s; the others go on without it", reached)
        return super().choose_trial_to_run(tune_controller)  # type: ignore[misc]

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        if self._ended(trial):
            logger.info("[pbt] trial %s reported its last epoch; no exploit", trial.trial_id)
            return
        state = self._trial_state[trial_to_clone]  # type: ignore[attr-defined]
        noted = state.last_checkpoint
        if not _checkpoint_exists(noted):
            noted = trial_to_clone.checkpoint
            if not _checkpoint_exists(noted):
                logger.info("[pbt] trial %s has no checkpoint left to clone; %s goes on as it is",
                            trial_to_clone.trial_id, trial.trial_id)
                return
        state.last_checkpoint = _own_copy(noted, trial)
        try:
            super()._exploit(tune_controller, trial, trial_to_clone)  # type: ignore[misc]
        finally:
            state.last_checkpoint = noted  # the donor's own, for the next trial that clones it
        keep_config(trial)


class PBT(TimeLimited, Repointed, SaveOnComplete, Capped, _Population, DivergedWorst, PopulationBasedTraining):
    pass


class PB2(TimeLimited, Repointed, SaveOnComplete, Capped, _Population, DivergedWorst, RayPB2):
    def _get_new_config(self, trial: Any, trial_to_clone: Any) -> tuple[dict, dict]:
        rows = len(self.data)
        config, operations = super()._get_new_config(trial, trial_to_clone)
        # Ray's PB2 noted the point its model chose, before the snap: as a row of the new
        # config (with the donor's reward, the base of the trial's next improvement) and in
        # the batch of points chosen at this step. Both must be the point trained, or the
        # trial's next report is not matched to its config's row.
        names = list(self._hyperparam_bounds_flat)
        point = [config[name] for name in names]
        if len(self.data) > rows:
            self.data.loc[self.data.index[-1], names] = point
        if self.current is not None:
            self.current[-1] = point
        return config, operations
