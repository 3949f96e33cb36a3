"""Where a trial's results and checkpoints go, and where its last checkpoint comes from.

- `TuneReporter`: a one-worker trial, running inside the Tune function trainable;
- `TrainReporter`: a worker of a multi-worker trial (Ray Train V2); every rank reports,
  Ray merges the ranks' checkpoint files into one directory;
- `LocalReporter`: no Ray at all (a directory), to run a trainer by hand or in tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from hpoc.files import publish_tree, read_json_lines, sync_names, tree_names

_MODE = {"kind": "local"}


def set_mode(kind: str) -> None:
    _MODE["kind"] = kind


def in_train_worker() -> bool:
    return _MODE["kind"] == "train"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now ("" for every interface: a rendezvous other nodes reach)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


SCRATCH_ENV = "HPOC_SCRATCH"


def scratch_dir(prefix: str = "hpoc-ckpt-") -> str:
    """A node-local directory for a checkpoint before it is handed to Ray.

    Under $HPOC_SCRATCH when set: the local run's private temp dir, or the job's directory
    on this node. Both are removed when the run or job ends, so a trial killed while it holds
    one (SIGKILL, the OOM killer, a lost node) leaves no checkpoint-sized directory in /tmp."""
    base = os.environ.get(SCRATCH_ENV)
    if base:
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            return tempfile.mkdtemp(prefix=prefix, dir=base)
        except OSError:  # gone or unwritable: the system's temp dir still works
            pass
    return tempfile.mkdtemp(prefix=prefix)


def older_checkpoints(latest: str) -> list[str]:
    """Checkpoints kept beside `latest` (same trial, `checkpoint_<n>` with a smaller n),
    newest first: what a trial falls back to when its latest checkpoint is unreadable.
    Empty when `latest` is not a directory on this machine's file system."""
    path = Path(latest)
    if not path.name.startswith("checkpoint_") or not path.parent.is_dir():
        return []
    older = [p for p in path.parent.glob("checkpoint_*")
             if p.is_dir() and not p.name.endswith(".tmp") and p.name < path.name]
    return [str(p) for p in sorted(older, reverse=True)]


def recorded_checkpoint(latest: str, own_dir: str | None) -> str | None:
    """The newest checkpoint the trial's recorded results (`result.json` beside its
    checkpoints) name, when that is newer than `latest`, the one the saved experiment
    state knows: a stop or a kill soon after a report leaves the state behind the results.
    Resuming there redoes nothing and loses no result; a checkpoint saved after the last
    recorded result is not used (its epoch's result was never recorded, so it is redone).
    None when `latest` is not in the trial's own directory `own_dir` (a name): a PBT trial
    given another trial's checkpoint takes it as it is."""
    path = Path(latest)
    if not own_dir or path.parent.name != own_dir or not path.name.startswith("checkpoint_"):
        return None
    names = [name for row in read_json_lines(path.parent / "result.json")
             if isinstance(name := row.get("checkpoint_dir_name"), str)
             and name.startswith("checkpoint_")]
    newest = max(names, default="")
    if newest > path.name and (path.parent / newest).is_dir():
        return str(path.parent / newest)
    return None


def checkpoint_note(latest: str, message: str, *, write: bool = True) -> None:
    """A line about checkpoint recovery on stderr (the trial's log) and, when `write`, in
    `hpoc-checkpoints.log` beside the trial's checkpoints (kept with the results)."""
    import sys
    import time

    line = f"[hpoc] {time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    print(line, file=sys.stderr, flush=True)
    if write and Path(latest).parent.is_dir():
        try:
            with open(Path(latest).parent / "hpoc-checkpoints.log", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass


def sync_persisted(source: str, before: Any, after: Any, syncer: _Syncer | None = None) -> None:
    """Make Ray's copy of a reported checkpoint durable: `report` copies `source` into the
    storage and does not sync it, so after a node crash the checkpoint Ray names as the
    trial's latest could hold empty files and its resume fail on them. `after` is the
    checkpoint Ray gives as the latest once `report` returned (get_checkpoint: the persisted
    one), `before` the one it gave before: unchanged, Ray took no new checkpoint (a skipped
    report). Only a storage on a POSIX path (shared or local): another file system (S3, GCS)
    is written whole by its own client, and hpoc has no sync for it. No rename: Ray owns it.
    With a `syncer`, synced in its thread while the trial trains on."""
    if after is None or getattr(after, "path", None) == getattr(before, "path", None):
        return
    if getattr(getattr(after, "filesystem", None), "type_name", None) != "local":
        return
    names = tree_names(source)  # now: the trainer may remove `source` once report returns
    if syncer is None:
        sync_names(after.path, *names)
    else:
        syncer.start(lambda: sync_names(after.path, *names))


class _Syncer:
    """Syncs a checkpoint in a thread of its own: an fsync of 100 MB costs 40 ms on this
    disk (benchmarks/checkpoint_sync.py), more on a network file system, at every
    checkpoint, and the trial's GPU need not wait for it. The next checkpoint and the
    trial's end wait for it, and raise what it met (EIO, ENOSPC: the copy is not whole)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, sync: Any) -> None:
        self.wait()
        self.thread = threading.Thread(target=self._run, args=(sync,), daemon=True, name="hpoc-checkpoint-sync")
        self.thread.start()

    def _run(self, sync: Any) -> None:
        try:
            sync()
        except BaseException as exc:  # noqa: BLE001 - raised in the trial's thread by wait()
            self.error = exc

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class Reporter:
    def latest_checkpoint(self) -> contextlib.AbstractContextManager[str | None]:
        raise NotImplementedError

    def has_checkpoint(self) -> bool:
        """Whether the trial was given a checkpoint to resume from (nothing is read)."""
        with self.latest_checkpoint() as directory:
            return directory is not None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Wait for what a report left to finish (a checkpoint's sync), raising its error."""
        syncer = getattr(self, "_syncer", None)
        if syncer is not None:
            syncer.wait()

    def _sync(self) -> _Syncer:
        if getattr(self, "_syncer", None) is None:
            self._syncer = _Syncer()
        return self._syncer


class TuneReporter(Reporter):
    def has_checkpoint(self) -> bool:
        from ray import tune

        return tune.get_checkpoint() is not None

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        try:
            own = Path(tune.get_context().get_trial_dir()).name or None
        except Exception:  # noqa: BLE001 - outside a Tune session, or an older Ray
            own = None
        with checkpoint.as_directory() as path:
            recorded = recorded_checkpoint(path, own)
            if recorded:  # its older ones, `path` among them, stay the fallbacks
                checkpoint_note(path, f"resuming from {recorded}, the newest its recorded results name; "
                                f"the saved experiment state knew only {Path(path).name}")
            yield recorded or path

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        from ray import tune

        if not checkpoint_dir:
            tune.report(metrics)
            return
        before = tune.get_checkpoint()
        try:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))
        except SystemExit:
            # Tune stopped the trial (a scheduler's stop, PBT's pause, which resumes from this
            # checkpoint) once Ray persisted it: synced now, the actor ends soon; a failed
            # sync leaves the stop a stop
            with contextlib.suppress(Exception):
                self.flush()
            with contextlib.suppress(Exception):
                sync_persisted(checkpoint_dir, before, tune.get_checkpoint())
            raise
        sync_persisted(checkpoint_dir, before, tune.get_checkpoint(), self._sync())


class TrainReporter(Reporter):
    def has_checkpoint(self) -> bool:
        import ray.train

        return ray.train.get_checkpoint() is not None

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as path:
            yield path

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        import ray.train

        if not checkpoint_dir:
            ray.train.report(metrics, checkpoint=None)
            return
        before = ray.train.get_checkpoint()
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir))
        sync_persisted(checkpoint_dir, before, ray.train.get_checkpoint(), self._sync())  # this rank's files


class LocalReporter(Reporter):
    """Results to `<dir>/result.jsonl`, checkpoints to `<dir>/checkpoint_<n>/` (newest
    `keep` kept). A second run on the same directory resumes from the newest checkpoint."""

    def __init__(self, directory: str | os.PathLike, keep: int | None = 2) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.history: list[dict[str, Any]] = []

    def _checkpoints(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("checkpoint_*") if p.is_dir() and not p.name.endswith(".tmp"))

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        found = self._checkpoints()
        yield str(found[-1]) if found else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.history.append(dict(metrics))
        if checkpoint_dir:
            existing = self._checkpoints()
            n = int(existing[-1].name.split("_")[-1]) + 1 if existing else 0
            final = self.dir / f"checkpoint_{n:06d}"
            tmp = self.dir / f"checkpoint_{n:06d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)  # a copy a killed run left half made
            shutil.copytree(checkpoint_dir, tmp)
            publish_tree(tmp, final)  # a kill mid-copy or a node crash leaves no half checkpoint
            if self.keep:
                for old in self._checkpoints()[: -self.keep]:
                    shutil.rmtree(old, ignore_errors=True)
        with open(self.dir / "result.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics, default=float) + "\n")
