"""What a resumed study needs beyond `Tuner.restore`: gaps of Ray Tune, closed here.

1. ASHA's rungs are not saved with the experiment. A restored ASHA starts with empty rungs,
   so every resumed trial passes its next rung unchallenged (a rung with no results has no
   cutoff) and trials started after the resume are judged against a fraction of the
   study's history. `ResumableASHA` rebuilds the rungs when Tune hands it the restored
   trials: it replays each trial's reported results (`result.json`, else its last result)
   through the same bookkeeping ASHA uses live. The rebuilt rungs equal the lost ones for
   every trial whose results reached the storage, whatever killed the job.

2. Restored trials are not held to `max_concurrent_trials`. Tune enforces that limit only
   when it asks the searcher for new trials (ConcurrencyLimiter); every trial it restores
   (unfinished, and errored ones when they are retried) is queued at once
   (ray-project/ray#40652). The schedulers built here cap the trials that are running or
   about to run: a trial added while the cap is reached waits as PAUSED, and the
   scheduler hands PAUSED trials out one at a time as running ones end.

3. The experiment state is saved every 10 s or more, so a hard kill (node failure, SIGKILL)
   loses what happened since. The schedulers built here also save it as soon as a trial
   ends: a finished trial is never run again. Running trials resume from the last
   checkpoint the saved state knows (at most one save period old). A graceful stop (the
   walltime signal) saves the state on the way out.

4. PBT and PB2 restore an exploiting trial from the donor's checkpoint, which the donor's
   `checkpoint.keep` may delete before the trial starts again (it waits while paused, or
   until a resumed study restores it): the trial errored ("Could not recover from checkpoint
   as it does not exist on storage anymore") or started over. The schedulers built here
   give the exploiting trial its own copy (`exploited-<donor dir>-<checkpoint>` in its
   directory, the newest only), and clone the donor's latest checkpoint when the noted one
   is already gone.

`prepare_scheduler(scheduler, plan)` returns the plan's scheduler with these behaviours
(1-3: FIFO, ASHA and median stopping; PBT, PB2, HyperBand and BOHB pause and resume trials
themselves and keep Tune's behaviour there; 4: PBT and PB2). It changes the instance's class to a subclass of
its own class, so everything else about it stays as built.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUNNING, PENDING, PAUSED = "RUNNING", "PENDING", "PAUSED"


# ---------------------------------------------------------------- history of a trial


def trial_history(trial: Any) -> list[dict[str, Any]]:
    """The results a trial reported, oldest first: its `result.json` on the experiment
    storage, else the last result Tune kept in the experiment state."""
    for attr in ("path", "local_path"):
        try:
            where = getattr(trial, attr)
        except Exception:  # noqa: BLE001 - Ray raises when the storage is not set up
            continue
        if not where:
            continue
        rows = _read_results(Path(where) / "result.json")
        if rows:
            return rows
    last = getattr(getattr(trial, "run_metadata", None), "last_result", None) or {}
    return [last] if last else []


def _read_results(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by the kill
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _has_run(trial: Any) -> bool:
    meta = getattr(trial, "run_metadata", None)
    return bool(getattr(meta, "last_result", None))


# ---------------------------------------------------------------- schedulers


class _Capped:
    """Keeps at most `_hpoc_cap` trials RUNNING or PENDING (None: no cap)."""

    _hpoc_cap: int | None = None

    def _busy(self, tune_controller: Any, exclude: Any = None) -> int:
        return sum(1 for t in tune_controller.get_trials()
                   if t is not exclude and t.status in (RUNNING, PENDING))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        cap = self._hpoc_cap
        if cap and trial.status == PENDING and self._busy(tune_controller, exclude=trial) >= cap:
            trial.set_status(PAUSED)  # before Tune files it: it waits for choose_trial_to_run

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        cap = self._hpoc_cap
        if cap and self._busy(tune_controller) >= cap:
            # PENDING trials are within the cap already; nothing PAUSED may start.
            return next((t for t in tune_controller.get_trials() if t.status == PENDING), None)
        return super().choose_trial_to_run(tune_controller)


class _SaveOnComplete:
    """Saves Tune's experiment state right after a trial ends, not at the next periodic save
    (every 10 s or more): a job killed hard just after a trial finished must not run that
    trial's last epochs again. The save happens on the controller's next step, once the
    trial is marked TERMINATED."""

    _hpoc_save_pending = False

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: Any) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._hpoc_save_pending = True

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if self._hpoc_save_pending:
            self._hpoc_save_pending = False
            try:
                tune_controller.checkpoint(force=True)
            except Exception as exc:  # noqa: BLE001 - the periodic save still happens
                logger.debug("could not save the experiment state early: %s", exc)
        return super().choose_trial_to_run(tune_controller)


class _RungReplay:
    """Rebuilds ASHA's rungs from the results of trials Tune restores."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if not _has_run(trial):
            return  # a new trial: nothing to replay
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None or not self._metric_op:
            return
        replayed = 0
        for row in trial_history(trial):
            t, value = row.get(self._time_attr), row.get(self._metric)
            if isinstance(t, (int, float)) and isinstance(value, (int, float)):
                bracket.on_result(trial, t, self._metric_op * value)  # records; decision ignored
                replayed += 1
        if replayed:
            logger.debug("ASHA: replayed %d result(s) of restored trial %s", replayed, trial.trial_id)

    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        """Per bracket, [(milestone, {trial_id: value})] (for tests and debugging)."""
        return [[(m, dict(r)) for m, r in b._rungs] for b in self._brackets]


def _checkpoint_exists(checkpoint: Any) -> bool:
    path, fs = getattr(checkpoint, "path", None), getattr(checkpoint, "filesystem", None)
    if not path or fs is None:
        return False
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


EXPLOIT_PREFIX = "exploited-"


def _own_copy(checkpoint: Any, trial: Any) -> Any:
    """A copy of a donor's checkpoint in the exploiting trial's directory (the only one kept
    there), or the checkpoint itself when the trial has no directory yet."""
    import shutil

    from ray.train import Checkpoint

    if not getattr(trial, "path", None):
        return checkpoint
    own = Path(trial.path)
    dest = own / f"{EXPLOIT_PREFIX}{Path(checkpoint.path).parent.name}-{Path(checkpoint.path).name}"
    own.mkdir(parents=True, exist_ok=True)
    tmp = own / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint.path, tmp)
    for old in own.glob(f"{EXPLOIT_PREFIX}*"):  # the trial restores from its newest copy only
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return Checkpoint(str(dest))


class _LiveDonor:
    """PBT/PB2: the exploiting trial restores from its own copy of the donor's checkpoint.
    The donor's own is subject to the donor's `checkpoint.keep`: it was deleted before a
    paused exploiting trial started again, or before a resumed study restored it ("Could
    not recover from checkpoint as it does not exist on storage anymore", or a trial that
    started over from epoch 0). A noted checkpoint already deleted is replaced by the
    donor's latest; with none left the exploit is skipped."""

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        state = self._trial_state[trial_to_clone]
        noted = state.last_checkpoint
        if not _checkpoint_exists(noted):
            noted = trial_to_clone.checkpoint
            if not _checkpoint_exists(noted):
                logger.info("[pbt] trial %s has no checkpoint left to clone; %s goes on as it is",
                            trial_to_clone.trial_id, trial.trial_id)
                return
            state.last_checkpoint = noted
        state.last_checkpoint = _own_copy(noted, trial)
        try:
            super()._exploit(tune_controller, trial, trial_to_clone)  # type: ignore[misc]
        finally:
            state.last_checkpoint = noted  # the donor's own, for the next trial that clones it


def _classes() -> dict[str, type]:
    from ray.tune import schedulers as s

    class CappedFIFOScheduler(_SaveOnComplete, _Capped, s.FIFOScheduler):
        pass

    class CappedMedianStoppingRule(_SaveOnComplete, _Capped, s.MedianStoppingRule):
        pass

    class ResumableASHA(_SaveOnComplete, _Capped, _RungReplay, s.AsyncHyperBandScheduler):
        pass

    class LiveDonorPBT(_LiveDonor, s.PopulationBasedTraining):
        pass

    classes: list[type] = [CappedFIFOScheduler, CappedMedianStoppingRule, ResumableASHA, LiveDonorPBT]
    try:
        from ray.tune.schedulers.pb2 import PB2
    except ImportError:  # PB2's own dependencies are optional
        pass
    else:
        class LiveDonorPB2(_LiveDonor, PB2):
            pass

        classes.append(LiveDonorPB2)
    made = {}
    for cls in classes:
        cls.__module__ = __name__  # pickled by reference (Tuner.restore unpickles them)
        cls.__qualname__ = cls.__name__
        made[cls.__name__] = cls
    return made


_MADE: dict[str, type] = {}


def _made() -> dict[str, type]:
    if not _MADE:
        _MADE.update(_classes())
    return _MADE


def __getattr__(name: str) -> Any:
    if name in ("CappedFIFOScheduler", "CappedMedianStoppingRule", "ResumableASHA", "LiveDonorPBT",
                "LiveDonorPB2"):
        return _made()[name]
    raise AttributeError(name)


def prepare_scheduler(scheduler: Any, plan: dict[str, Any]) -> Any:
    """The plan's scheduler, resumable and capped at `trials.max_concurrent`."""
    from ray.tune import schedulers as s

    made = _made()
    exact = type(scheduler)
    if exact is s.PopulationBasedTraining or (type(scheduler).__name__ == "PB2" and "LiveDonorPB2" in made):
        scheduler.__class__ = made["LiveDonorPBT" if exact is s.PopulationBasedTraining else "LiveDonorPB2"]
        return scheduler
    target = {
        s.FIFOScheduler: made["CappedFIFOScheduler"],
        s.MedianStoppingRule: made["CappedMedianStoppingRule"],
        s.AsyncHyperBandScheduler: made["ResumableASHA"],
    }.get(exact)
    if target is None:
        return scheduler
    scheduler.__class__ = target
    scheduler._hpoc_cap = plan["trials"]["max_concurrent"] or None
    return scheduler
