"""Files hpoc rewrites survive a node crash whole: write_atomic makes the new content durable
before the rename (fsync of the temporary file) and the rename itself after it (fsync of the
directory), so that a crash never leaves the renamed file empty (ext4, XFS, Lustre clients)."""

from __future__ import annotations

import os

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
