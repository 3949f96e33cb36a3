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
