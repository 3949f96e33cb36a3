"""A run in progress: the driver's lock file, and what it makes stale.

While a run is live the driver keeps `<experiment dir>/.hpoc-run.json` =
{"pid", "host", "started" (epoch seconds), "shard"} and removes it when the run ends. Files
older than `started` (summary.json, Ray's experiment state) describe an earlier run: a
resumed study's old summary says "interrupted" and its trials "paused" while they train.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hpoc.files import STARTED, read_live
from hpoc.results.model import STATUSES, Trial

_UNFINISHED = ("RUNNING", "PENDING", "PAUSED")


@dataclass(frozen=True)
class RunLock:
    pid: int
    host: str
    started: float
    shard: int
    alive: bool  # the run goes on (runlock's rule)
    slurm_job: str | None = None  # the driver's SLURM job, inside one
    slurm_restart: int | None = None  # that job's SLURM_RESTART_COUNT (status: its requeues)

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        where = "this machine" if self.here else self.host
        job = f" (SLURM job {self.slurm_job})" if self.slurm_job else ""
        return f"pid {self.pid} on {where}{job}, started {since}"

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "started": self.started,
                "shard": self.shard, "alive": self.alive, "slurm_job": self.slurm_job}


def read_lock(exp: Path) -> RunLock | None:
    """The lock of the run that last started in `exp`, or None. Whether it is alive is the
    driver's own rule (`hpoc.runtime.runlock`): a dead pid here, an ended SLURM job or a
    stopped heartbeat elsewhere. A marker without a pid (older drivers' plan record) is no lock."""
    from hpoc.runtime import runlock

    found = runlock.read(exp)
    if found is None:
        return None
    data, live = found
    try:
        pid, host, started = int(data["pid"]), str(data["host"]), float(data["started"])
    except (ValueError, TypeError, KeyError):
        return None
    shard = data.get("shard") if isinstance(data.get("shard"), int) else 0
    job = data.get("slurm_task") or data.get("slurm_job")
    restart = data.get("slurm_restart") if isinstance(data.get("slurm_restart"), int) else None
    return RunLock(pid, host, started, shard, live, str(job) if job else None, restart)


def lock_and_summary(exp: Path, read: Callable[[], tuple[Any, bool]], tries: int = 5,
                     pause_s: float = 0.1) -> tuple[RunLock | None, Any]:
    """The run lock and `read()`'s summary as one consistent view: `read` returns (summary,
    whole: False when the file is there but does not parse). A run that starts or ends
    between the two reads, or a summary caught half written (Ray copies a resumed run's
    staging folder, old summary.json included, over the storage), is read again: the
    summary of a run that ended is whole and its lock gone, one of a live run is stale."""
    for attempt in range(tries):
        lock = read_lock(exp)
        summary, whole = read()
        if lock == read_lock(exp) and whole:  # (a dataclass: field by field)
            return lock, summary
        if attempt < tries - 1:
            time.sleep(pause_s)
    return read_lock(exp), summary


def stopped(trials: list[Trial]) -> None:
    """Statuses after a run that ended without its summary (killed: its lock is dead):
    nothing trains now, so a trial Ray last saw RUNNING is PAUSED until the plan runs again."""
    for trial in trials:
        if trial.status == "RUNNING":
            trial.status = "PAUSED"


def interrupted(trials: list[Trial]) -> None:
    """Statuses after a run that was interrupted (Ctrl-C, walltime): Ray hands its running
    trials back as PENDING. One that began waits for the next run to go on from where it
    got to, so it is PAUSED; PENDING stays for trials that never started."""
    for trial in trials:
        if trial.status in ("PENDING", "RUNNING") and (
                trial.history or (bool(trial.path) and (Path(trial.path) / STARTED).exists())):
            trial.status = "PAUSED"


def earlier_summary(summary: dict[str, Any] | None, file: Path, lock: RunLock | None) -> bool:
    """Whether `summary` (read from `file`) was written by a run before the locked one. It
    names its run (`run_started`, the lock's `started`); older drivers' by its mtime."""
    if summary is None or lock is None:
        return False
    started = summary.get("run_started")
    if isinstance(started, (int, float)):
        return abs(started - lock.started) > 1e-3
    return older(file, lock)


def other_plans(summary: dict[str, Any] | None, recorded: dict[str, Any] | None) -> bool:
    """Whether `summary` is of a smaller plan than the extension (num_samples raised) the
    last run started with (its marker): that run died before writing its own (its lock gone
    since)."""
    ours, theirs = (summary or {}).get("plan_hash"), (recorded or {}).get("plan_hash")
    return bool(ours and theirs and (recorded or {}).get("extended")) and ours != theirs


def older(file: Path, lock: RunLock | None) -> bool:
    """Whether `file` was written before the locked run started (so by an earlier run)."""
    if lock is None:
        return False
    try:
        return file.stat().st_mtime < lock.started
    except OSError:
        return False


def _written_since(file: Path, lock: RunLock) -> bool:
    try:
        return file.stat().st_mtime >= lock.started
    except OSError:
        return False


def started_after(trial_dir: str | Path | None, when: float) -> bool:
    """Whether the driver marked the trial in `trial_dir` started (files.STARTED) after `when`."""
    try:
        return bool(trial_dir) and (Path(trial_dir) / STARTED).stat().st_mtime > when
    except OSError:
        return False


def refresh(trials: list[Trial], lock: RunLock) -> None:
    """Statuses of unfinished trials during a live run, where Ray's saved state predates it:
    running when the trial started or reported since the run started, else pending; and
    where a trial started after Ray last saved it."""
    for trial in trials:
        if trial.state_saved is not None and trial.state_saved >= lock.started:
            # Ray saved this trial's state during this run: it knows best, but saves every
            # few seconds; the driver marks a start (PBT resuming a paused trial too) at once
            if trial.status in ("PENDING", "PAUSED") and started_after(trial.path, trial.state_saved):
                trial.status = "RUNNING"
            continue
        fresh = bool(trial.path) and _written_since(Path(trial.path) / "result.json", lock)
        if trial.status in _UNFINISHED:
            started = bool(trial.path) and _written_since(Path(trial.path) / STARTED, lock)
            trial.status = "RUNNING" if fresh or started else "PENDING"
        elif trial.status == "ERROR" and fresh and older(Path(trial.path) / "error.txt", lock):
            trial.status = "RUNNING"  # retried (retry_errored): the old error.txt stays


def as_the_driver_sees(trials: list[Trial], exp: Path, lock: RunLock) -> None:
    """Statuses from the live run's own view (files.LIVE), where it is newer than Ray's saved
    state: the progress line shows the same at the same moment."""
    found = read_live(exp)
    if found is None:
        return
    statuses, run, written = found
    if run is None or abs(run - lock.started) > 1e-3:  # an earlier run's, or no run's
        return
    for trial in trials:
        status = statuses.get(trial.trial_id)
        if status in STATUSES and (trial.state_saved is None or written > trial.state_saved):
            trial.status = status
