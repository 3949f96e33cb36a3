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

4. The checkpoint the saved state names may be gone: after a hard kill the trial went on
   checkpointing, and `checkpoint.keep` deleted that one for better or newer ones. Ray
   then fails every attempt to restore the trial ("Could not recover from checkpoint as it
   does not exist on storage anymore") until it errors. `lost_checkpoint` resumes it from
   the newest checkpoint left whose report the storage's `result.json` holds (Ray needs
   that report to count the trial's iterations on), or from the start without one.

5. A trial made after the resume of a moved experiment directory went to the old one.
   Tune points the trials it restores to where the directory is now, but its restored
   searcher makes new trials from the first run's experiment, storage included: they were
   made where the directory was, and errored there.
   `Repointed` points them to where the directory is now as they are added.

`prepare_scheduler(scheduler, plan)` returns the plan's scheduler with these behaviours
(FIFO, ASHA and median stopping; HyperBand and BOHB pause and resume trials themselves and
keep Tune's behaviour there), and each of them, HyperBand and BOHB too, stops trials at
`trials.time_limit` (timelimit.py); those that compare trials (not FIFO, and the median rule,
which leaves non-finite values out itself) see a NaN or infinite objective as the worst
(diverged.py). It changes the instance's class to a subclass of its own
class, so everything else about it stays as built. hpoc's PBT and PB2 (`population.py`)
have gaps 2 and 3 closed in their classes; `prepare_scheduler` sets their cap.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from hpoc.files import read_json_lines
from hpoc.runtime.diverged import DivergedWorst, judged
from hpoc.runtime.timelimit import TimeLimited

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
        rows = read_json_lines(Path(where) / "result.json")
        if rows:
            return rows
    last = getattr(getattr(trial, "run_metadata", None), "last_result", None) or {}
    return [last] if last else []


def _has_run(trial: Any) -> bool:
    meta = getattr(trial, "run_metadata", None)
    return bool(getattr(meta, "last_result", None))


# ---------------------------------------------------------------- schedulers


class Capped:
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


class Repointed:
    """Puts each trial added in the controller's experiment directory (gap 5)."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        here, there = getattr(tune_controller, "_storage", None), getattr(trial, "storage", None)
        if here is not None and there is not None and _place(there) != _place(here):
            moved = copy.copy(there)  # as Tune re-points the trials it restores
            moved.storage_filesystem = here.storage_filesystem
            moved.storage_fs_path = here.storage_fs_path
            moved.experiment_dir_name = here.experiment_dir_name
            trial.set_storage(moved)
        super().on_trial_add(tune_controller, trial)


def _place(storage: Any) -> tuple[str, str]:
    return storage.storage_fs_path, storage.experiment_dir_name


class SaveOnComplete:
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


class _ReportedOnly:
    """Ray's median rule keeps each completed trial's last result and reads its `time_attr`
    and metric at every later result; a trial stopped at its time limit (timelimit.py)
    before it reported completes with an empty one, which raised a KeyError there."""

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: Any) -> None:
        if self._time_attr in (result or {}) and self._metric in result:  # as on_trial_result asks
            super().on_trial_complete(tune_controller, trial, result)


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
                # records; decision ignored
                bracket.on_result(trial, t, self._metric_op * judged(value, self._mode))
                replayed += 1
        if replayed:
            logger.debug("ASHA: replayed %d result(s) of restored trial %s", replayed, trial.trial_id)

    def rungs(self) -> list[list[tuple[float, dict[str, float]]]]:
        """Per bracket, [(milestone, {trial_id: value})] (for tests and debugging)."""
        return [[(m, dict(r)) for m, r in b._rungs] for b in self._brackets]


def _classes() -> dict[str, type]:
    from ray.tune import schedulers as s

    class CappedFIFOScheduler(TimeLimited, Repointed, SaveOnComplete, Capped, s.FIFOScheduler):
        pass

    class CappedMedianStoppingRule(TimeLimited, Repointed, SaveOnComplete, Capped, _ReportedOnly,
                                   s.MedianStoppingRule):
        pass

    class ResumableASHA(TimeLimited, Repointed, SaveOnComplete, Capped, _RungReplay, DivergedWorst,
                        s.AsyncHyperBandScheduler):
        pass

    class TimedHyperBand(TimeLimited, Repointed, DivergedWorst, s.HyperBandScheduler):
        pass

    class TimedBOHB(TimeLimited, Repointed, DivergedWorst, s.HyperBandForBOHB):
        pass

    made = {}
    for cls in (CappedFIFOScheduler, CappedMedianStoppingRule, ResumableASHA, TimedHyperBand, TimedBOHB):
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
    if name in ("CappedFIFOScheduler", "CappedMedianStoppingRule", "ResumableASHA", "TimedHyperBand", "TimedBOHB"):
        return _made()[name]
    raise AttributeError(name)


def prepare_scheduler(scheduler: Any, plan: dict[str, Any]) -> Any:
    """The plan's scheduler, resumable and capped at `trials.max_concurrent`."""
    from ray.tune import schedulers as s

    if isinstance(scheduler, Capped):  # population.PBT / PB2
        scheduler._hpoc_cap = plan["trials"]["max_concurrent"] or None
        return scheduler
    made = _made()
    exact = type(scheduler)
    target = {
        s.FIFOScheduler: made["CappedFIFOScheduler"],
        s.MedianStoppingRule: made["CappedMedianStoppingRule"],
        s.AsyncHyperBandScheduler: made["ResumableASHA"],
        s.HyperBandScheduler: made["TimedHyperBand"],
        s.HyperBandForBOHB: made["TimedBOHB"],
    }.get(exact)
    if target is None:
        return scheduler
    scheduler.__class__ = target
    scheduler._hpoc_cap = plan["trials"]["max_concurrent"] or None
    return scheduler


# ---------------------------------------------------------------- a trial's logs on restart

# What Ray's JSON and CSV loggers copy back from the storage when a trial restarts.
_TRIAL_LOGS = ("result.json", "progress.csv")


def mend_cut_logs(exp: Path) -> list[Path]:
    """Drop the half-written last line a hard kill leaves in a trial's logs.

    Ray's loggers append to them when the trial resumes: its first new report would join
    the cut line and be lost to every reader. The cut line itself cannot be recovered.
    Returns the files mended."""
    mended = []
    for name in _TRIAL_LOGS:
        for path in exp.glob(f"*/{name}"):
            try:
                with open(path, "rb+") as f:
                    end = f.seek(0, os.SEEK_END)
                    if end == 0:
                        continue
                    f.seek(end - 1)
                    if f.read(1) == b"\n":
                        continue  # whole: the common case reads one byte, not the log
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
                mended.append(path)
            except OSError as exc:  # an unreadable log loses what it lost before
                logger.debug("could not mend %s: %s", path, exc)
    return mended


def push_trial_logs(trial: Any) -> list[str]:
    """Bring the storage's copy of a restarting trial's logs up to date with the driver's.

    Ray's loggers write into a staging folder that Tune copies to the storage only when it
    saves the experiment (every 10 s or more). When a trial with a checkpoint starts again
    (PBT/PB2 exploits, HyperBand and synchronous PBT pause and resume it within one run, and
    a failed trial is retried), the loggers first copy the storage's file back over the
    staging one: reports made since the last save were lost (a PBT trial's result.json
    began at epoch 3; a trial retried after failing at epoch 3 reported 1, 2, 4, 5).
    Called from a callback that runs before the loggers'. Returns the files it copied."""
    if not getattr(trial, "checkpoint", None):
        return []  # the loggers restore nothing then
    try:
        if type(trial.storage.storage_filesystem).__name__ != "LocalFileSystem":
            return []  # hpoc's storage is a path; another filesystem is left to Ray
        local, remote = Path(trial.local_path), Path(trial.storage.trial_fs_path)
    except Exception:  # noqa: BLE001 - storage not set up yet
        return []
    copied = []
    for name in _TRIAL_LOGS:
        src, dst = local / name, remote / name
        try:
            if not src.is_file() or (dst.exists() and src.samefile(dst)):
                continue
            if dst.is_file() and dst.stat().st_size >= src.stat().st_size:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{name}.hpoc-tmp")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)
            copied.append(name)
        except OSError as exc:  # the loggers go on as before
            logger.debug("could not update %s: %s", dst, exc)
    return copied


def lost_checkpoint(trial: Any) -> str | None:
    """Before a trial restores (gap 4): when its checkpoint is gone from the storage, point
    it at the newest one left with a known report, or start it over; what was done, in
    words, or None (nothing gone)."""
    result = getattr(trial, "latest_checkpoint_result", None)
    checkpoint = getattr(result, "checkpoint", None)
    try:
        if checkpoint is None or type(checkpoint.filesystem).__name__ != "LocalFileSystem":
            return None  # hpoc's storage is a path; another filesystem is left to Ray
        lost, storage = Path(checkpoint.path), Path(trial.storage.trial_fs_path)
    except Exception:  # noqa: BLE001 - storage not set up yet
        return None
    if lost.is_dir():
        return None
    reports = {row["checkpoint_dir_name"]: row for row in read_json_lines(storage / "result.json")
               if isinstance(row, dict) and row.get("checkpoint_dir_name")}
    left = sorted(name for name in reports if (storage / name).is_dir())
    gone = f"its checkpoint {lost.name} is gone from the storage"
    if not left:
        from hpoc.runtime import rerun

        rerun.set_aside(storage.parent, {trial.trial_id: storage}, scratch=True)
        rerun.start_over(trial)
        return f"{gone} and no other with a known report is left: it starts over"
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    older = _TrainingResult(checkpoint=Checkpoint(str(storage / left[-1]), checkpoint.filesystem),
                            metrics=reports[left[-1]])
    trial.run_metadata.checkpoint_manager._latest_checkpoint_result = older
    return f"{gone}: it resumes from {left[-1]}"
