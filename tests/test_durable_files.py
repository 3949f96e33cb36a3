"""Files hpoc rewrites survive a node crash whole: write_atomic makes the new content durable
before the rename (fsync of the temporary file) and the rename itself after it (fsync of the
directory), so that a crash never leaves the renamed file empty (ext4, XFS, Lustre clients)."""

from __future__ import annotations

import os

import pytest

from hpoc import files


def test_write_atomic_syncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        what = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", "dir" if os.path.isdir(what) else
                       ("tmp" if os.path.basename(what).startswith(".summary.json.tmp") else what)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(str(dst))))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    files.write_atomic(target, "new")
    assert target.read_text() == "new"
    assert events == [("fsync", "tmp"), ("replace", "summary.json"), ("fsync", "dir")]


def test_a_directory_that_cannot_be_synced_does_not_fail_the_write(tmp_path, monkeypatch):
    """Some file systems refuse fsync of a directory (EINVAL): the file is written all the same."""
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    assert files.write_atomic(tmp_path / "a.json", "x").read_text() == "x"


def _record_syncs(monkeypatch) -> list[tuple[str, str]]:
    """fsync, rename and replace calls, in order, by the path they are about."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    def rename(src, dst):
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return events


def _durably_published(events: list[tuple[str, str]], final: str, files: list[str]) -> None:
    """Each of the copy's `files` (relative) and folders synced before the rename to `final`,
    and the folder holding `final` after it."""
    at = events.index(("rename", final))
    synced = {os.path.basename(path) for what, path in events[:at] if what == "fsync"}
    assert {os.path.basename(f) for f in files} <= synced, (files, events)
    assert any(os.path.basename(final) in name for name in synced), events  # the copy's own folder
    assert ("fsync", os.path.dirname(final)) in events[at + 1:], events


def _checkpoint(directory) -> list[str]:
    (directory / "sub").mkdir(parents=True)
    (directory / "state.pt").write_bytes(b"x" * 1000)
    (directory / "sub" / "shard.bin").write_bytes(b"y" * 10)
    return ["state.pt", "sub/shard.bin", "sub"]


def test_a_checkpoint_the_local_reporter_keeps_is_on_disk_before_it_is_named(tmp_path, monkeypatch):
    """A node crash after the rename left `checkpoint_<n>` with empty files (the copy was
    in the page cache only), and a resume read it as the newest complete checkpoint."""
    from hpoc.runtime.report import LocalReporter

    src = tmp_path / "scratch"
    files = _checkpoint(src)
    reporter = LocalReporter(tmp_path / "trial")
    events = _record_syncs(monkeypatch)
    reporter.report({"loss": 1.0}, checkpoint_dir=str(src))
    final = tmp_path / "trial" / "checkpoint_000000"
    assert (final / "sub" / "shard.bin").read_bytes() == b"y" * 10
    _durably_published(events, str(final), files)


def test_a_pbt_exploits_own_copy_is_on_disk_before_it_is_named(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hpoc.runtime import population

    donor = tmp_path / "trial_3" / "checkpoint_000004"
    files = _checkpoint(donor)
    own = tmp_path / "trial_1"
    for link in (True, False):  # a hard link (the donor's data, written by Ray) or a copy
        if not link:
            monkeypatch.setattr(population.os, "link", lambda a, b: (_ for _ in ()).throw(OSError(18, "EXDEV")))
        events = _record_syncs(monkeypatch)
        copy = population._own_copy(SimpleNamespace(path=str(donor)), SimpleNamespace(path=str(own)))
        assert copy.path == str(own / "exploited-trial_3-checkpoint_000004")
        _durably_published(events, copy.path, files)
        monkeypatch.undo()


def test_a_checkpoint_copy_a_crash_left_half_made_does_not_stop_the_next(tmp_path):
    """A run killed mid-copy leaves `checkpoint_<n>.tmp`; the resumed run numbers its next
    checkpoint `n` again (the half copy is not a checkpoint), and its copy failed on the
    folder left there (FileExistsError): the trial errored at its first checkpoint."""
    from hpoc.runtime.report import LocalReporter

    src = tmp_path / "scratch"
    _checkpoint(src)
    trial = tmp_path / "trial"
    (trial / "checkpoint_000000.tmp").mkdir(parents=True)
    (trial / "checkpoint_000000.tmp" / "state.pt").write_bytes(b"cut")
    reporter = LocalReporter(trial)
    reporter.report({"loss": 1.0}, checkpoint_dir=str(src))
    assert (trial / "checkpoint_000000" / "state.pt").read_bytes() == b"x" * 1000
    assert (trial / "checkpoint_000000" / "sub" / "shard.bin").read_bytes() == b"y" * 10
    assert [p.name for p in trial.glob("checkpoint_*")] == ["checkpoint_000000"]


def _ray_report(monkeypatch, module, storage):
    """`module`'s report and get_checkpoint as Ray's: a reported checkpoint's folder copied
    into `storage` (trial_0/checkpoint_<n>), unsynced, and given as the latest after."""
    import shutil

    from ray.train import Checkpoint

    latest = []

    def report(metrics, checkpoint=None):
        if checkpoint is not None:
            dest = storage / "trial_0" / f"checkpoint_{len(latest):06d}"
            shutil.copytree(checkpoint.path, dest)
            latest.append(Checkpoint.from_directory(str(dest)))

    monkeypatch.setattr(module, "report", report)
    monkeypatch.setattr(module, "get_checkpoint", lambda: latest[-1] if latest else None)
    return latest


def test_the_copy_ray_makes_of_a_reported_checkpoint_is_synced_in_the_storage(tmp_path, monkeypatch):
    """Ray copies a reported checkpoint into the storage without a sync: after a node crash
    the checkpoint it names as the trial's latest held empty files and the resume failed on
    them. Synced there once report returns, on a checkpoint step only, each of the files the
    trial reported (a Train rank: its own), their folders, the checkpoint's and the trial's."""
    import ray.train
    from ray import tune

    from hpoc.runtime.report import TrainReporter, TuneReporter

    src = tmp_path / "scratch"
    names = _checkpoint(src)
    for module, reporter in ((tune, TuneReporter()), (ray.train, TrainReporter())):
        storage = tmp_path / module.__name__
        _ray_report(monkeypatch, module, storage)
        events = _record_syncs(monkeypatch)
        reporter.report({"loss": 1.0})  # not a checkpoint step: nothing synced
        assert events == []
        reporter.report({"loss": 1.0}, checkpoint_dir=str(src))
        reporter.flush()  # synced in a thread of its own
        dest = storage / "trial_0" / "checkpoint_000000"
        synced = [path for what, path in events if what == "fsync"]
        assert {str(dest / "state.pt"), str(dest / "sub" / "shard.bin"), str(dest / "sub"), str(dest),
                str(dest.parent)} == set(synced), events
        assert synced.index(str(dest)) > synced.index(str(dest / "sub")), events
        monkeypatch.undo()


def test_a_reported_checkpoint_not_on_a_posix_path_or_not_taken_is_not_synced(tmp_path, monkeypatch):
    """A storage Ray reaches through another file system (S3) is not hpoc's to sync; a
    report Ray skipped (its latest checkpoint unchanged) names no new copy; a checkpoint
    Ray's `keep` deleted before the sync has nothing left to sync, and fails nothing."""
    from types import SimpleNamespace

    from ray import tune

    from hpoc.runtime.report import TuneReporter, sync_persisted

    src = tmp_path / "scratch"
    _checkpoint(src)
    latest = _ray_report(monkeypatch, tune, tmp_path / "storage")
    TuneReporter().report({"loss": 1.0}, checkpoint_dir=str(src))
    events = _record_syncs(monkeypatch)
    s3 = SimpleNamespace(path="bucket/trial_0/checkpoint_000001", filesystem=SimpleNamespace(type_name="s3"))
    sync_persisted(str(src), latest[0], s3)
    sync_persisted(str(src), latest[0], latest[0])
    sync_persisted(str(src), latest[0], None)
    assert events == []
    gone = tmp_path / "storage" / "trial_0" / "checkpoint_000009"
    sync_persisted(str(src), latest[0], tune.Checkpoint.from_directory(str(gone)))
    assert all(not path.startswith(str(gone)) for _, path in events), events


def test_a_checkpoints_sync_does_not_hold_the_trial_and_its_error_is_raised(tmp_path, monkeypatch):
    """The sync of Ray's copy (40 ms for 100 MB here, more on Lustre, at every checkpoint)
    held the trial's training. It runs in a thread of its own: report returns while it
    syncs; the next checkpoint's report and the trial's end (flush) wait for it, and a
    failed write-back (EIO) fails the trial there, as a failed sync did in report."""
    import threading

    from ray import tune

    from hpoc import files
    from hpoc.runtime.report import TuneReporter

    src = tmp_path / "scratch"
    _checkpoint(src)
    _ray_report(monkeypatch, tune, tmp_path / "storage")
    release, synced = threading.Event(), []
    real = files._sync_file

    def slow(path):
        assert release.wait(10)
        synced.append(path)
        real(path)

    monkeypatch.setattr(files, "_sync_file", slow)
    reporter = TuneReporter()
    reporter.report({"loss": 1.0}, checkpoint_dir=str(src))  # returns with the sync held
    assert synced == []
    release.set()
    reporter.report({"loss": 0.5}, checkpoint_dir=str(src))  # waits for the first one's sync
    assert len(synced) >= 2 and all("checkpoint_000000" in p for p in synced[:2]), synced
    reporter.flush()
    assert any("checkpoint_000001" in p for p in synced), synced

    def failing(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "_sync_file", failing)
    reporter.report({"loss": 0.1}, checkpoint_dir=str(src))
    with pytest.raises(OSError, match="Input/output error"):
        reporter.flush()
    reporter.flush()  # said once


def test_a_pooled_trials_end_waits_for_its_last_checkpoints_sync_and_fails_on_its_error(tmp_path, monkeypatch):
    """A pooled trial's checkpoints reach Tune through the same TuneReporter, whose sync runs
    in a thread: the trial's end waits for the last one (its thread died with the actor)
    and a failed write-back (EIO) fails the trial, as for a one-worker trial."""
    from types import SimpleNamespace

    from ray import tune

    from hpoc.runtime import pool

    src = tmp_path / "scratch"
    _checkpoint(src)
    _ray_report(monkeypatch, tune, tmp_path / "storage")
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_dir=lambda: ""))

    def failing(path):
        raise OSError(5, "Input/output error")

    def run_trial(group, work, on_report):
        on_report({"loss": 1.0}, str(src))  # the last report's checkpoint: its sync fails
        return "done"

    monkeypatch.setattr(files, "_sync_file", failing)
    monkeypatch.setattr(pool, "borrow", lambda plan, trial_dir: object())
    monkeypatch.setattr(pool, "payload", lambda *a: {})
    monkeypatch.setattr(pool, "run_trial", run_trial)
    trial = SimpleNamespace(dir=str(tmp_path / "trial"), id="t0")
    with pytest.raises(OSError, match="Input/output error"):
        pool.run_pooled_trial({}, {}, [], trial, str(tmp_path / "exp"))


def test_a_checkpoint_whose_report_tune_answers_with_a_stop_is_synced(tmp_path, monkeypatch):
    """A scheduler's stop or PBT's pause ends the trial's report with SystemExit after Ray
    persisted its checkpoint: the one a paused trial resumes from was never synced (nor
    the previous one's thread waited for). Synced before the stop goes on; a sync that
    fails there leaves the stop a stop (the trial is not made an error)."""
    from ray import tune

    from hpoc.runtime.report import TuneReporter

    src = tmp_path / "scratch"
    _checkpoint(src)
    latest = _ray_report(monkeypatch, tune, tmp_path / "storage")
    copy = tune.report

    def stopped(metrics, checkpoint=None):
        copy(metrics, checkpoint=checkpoint)
        raise SystemExit(0)  # as Ray's session does once Tune stops the trial

    monkeypatch.setattr(tune, "report", stopped)
    events = _record_syncs(monkeypatch)
    with pytest.raises(SystemExit):
        TuneReporter().report({"loss": 1.0}, checkpoint_dir=str(src))
    dest = latest[0].path
    assert {os.path.join(dest, "state.pt"), dest} <= {path for what, path in events if what == "fsync"}, events

    def failing(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files, "_sync_file", failing)
    with pytest.raises(SystemExit):
        TuneReporter().report({"loss": 1.0}, checkpoint_dir=str(src))


RAY_REPORT = '''
import json, os, sys, tempfile
import ray
from ray import tune

out = sys.argv[1]


def trainable(config):
    from hpoc.runtime.report import TuneReporter

    synced, real = [], os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    scratch = tempfile.mkdtemp()
    with open(os.path.join(scratch, "state.pt"), "wb") as fh:
        fh.write(b"x" * 1000)
    os.fsync = fsync
    try:
        reporter = TuneReporter()
        reporter.report({"loss": 1.0}, checkpoint_dir=scratch)
        reporter.flush()
    finally:
        os.fsync = real
    with open(os.path.join(out, "synced.json"), "w") as fh:
        json.dump(synced, fh)


ray.init(num_cpus=1, include_dashboard=False)
result = tune.Tuner(trainable, run_config=tune.RunConfig(
    storage_path=os.path.join(out, "storage"), name="exp", verbose=0)).fit()[0]
with open(os.path.join(out, "result.json"), "w") as fh:
    json.dump({"checkpoint": result.checkpoint.path}, fh)
'''


@pytest.mark.ray
def test_through_ray_the_checkpoint_synced_is_the_one_ray_persisted(tmp_path):
    """Ray's own report and get_checkpoint: the latest checkpoint it gives once report
    returned is its copy in the storage, which the trial syncs (file, folder, trial's)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", RAY_REPORT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = json.loads((tmp_path / "result.json").read_text())["checkpoint"]
    assert checkpoint.startswith(str(tmp_path / "storage" / "exp")), checkpoint
    synced = json.loads((tmp_path / "synced.json").read_text())
    assert {os.path.join(checkpoint, "state.pt"), checkpoint, os.path.dirname(checkpoint)} <= set(synced), synced
