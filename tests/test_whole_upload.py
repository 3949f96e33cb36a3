"""Tune's saves of the experiment replace each file whole (hpoc/runtime/whole_upload.py): a
disk that fills or a quota met as Tune saves leaves the last whole experiment state, where
Ray's in-place copy left it cut short and the study could not resume. The tmpfs tests need
root (mount) and skip without; the Ray test runs a study on a 3 MiB tmpfs."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpoc.runtime import full, whole_upload


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (root only: mount); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(mnt: Path) -> None:
    with open(mnt / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


def _save(storage: Path, staging: Path) -> None:
    """One save of Tune's experiment, as _ExperimentCheckpointManager makes it (Ray 2.60):
    the storage context's syncer uploads the driver's staging folder and is waited for."""
    from ray.train._internal.storage import StorageContext

    context = StorageContext(storage_path=str(storage), experiment_dir_name="s")
    assert context.syncer.sync_up(str(staging), context.experiment_fs_path)
    context.syncer.wait()


def _staging(root: Path, state: str, result: str) -> Path:
    staging = root / "staging"
    (staging / "trial_0").mkdir(parents=True, exist_ok=True)
    (staging / "experiment_state-2026-11-30_09-55-31.json").write_text(state)
    (staging / "trial_0" / "result.json").write_text(result)
    return staging


def test_rays_save_replaces_each_file_by_a_rename_pinned_to_this_rays_syncer(tmp_path):
    """whole_upload patches Ray's private `_FilesystemSyncer._sync_up_command`: this fails
    when a Ray upgrade changes how Tune uploads its experiment (then upload() is unused)."""
    pytest.importorskip("ray")
    assert whole_upload.install()
    staging = _staging(tmp_path, '{"trial_data": []}', '{"epoch": 1}\n')
    _save(tmp_path / "storage", staging)
    exp = tmp_path / "storage" / "s"
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    before = state.stat().st_ino, (exp / "trial_0" / "result.json").stat().st_ino
    _staging(tmp_path, '{"trial_data": [["a", "b"]]}', '{"epoch": 1}\n{"epoch": 2}\n')
    _save(tmp_path / "storage", staging)
    assert state.read_text() == '{"trial_data": [["a", "b"]]}'
    assert (exp / "trial_0" / "result.json").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    after = state.stat().st_ino, (exp / "trial_0" / "result.json").stat().st_ino
    assert after[0] != before[0] and after[1] != before[1]  # new files renamed over, not rewritten
    assert not [p for p in exp.rglob("*") if p.name.endswith(whole_upload.TMP_SUFFIX)]


def test_a_save_the_full_disk_refuses_leaves_the_last_whole_state_and_no_temporary_file(tiny_fs):
    """Ray's copy truncated the state and wrote what fit: the only copy was cut short."""
    pytest.importorskip("ray")
    whole_upload.install()
    work = tiny_fs.parent
    whole = json.dumps({"trial_data": [["a" * 2000, "{}"]]})
    staging = _staging(work, whole, '{"epoch": 1}\n')
    _save(tiny_fs, staging)
    exp = tiny_fs / "s"
    _fill(tiny_fs)
    grown = json.dumps({"trial_data": [["a" * 2000, "{}"], ["b" * 200_000, "{}"]]})
    _staging(work, grown, '{"epoch": 1}\n')
    with pytest.raises(OSError) as caught:
        _save(tiny_fs, staging)
    assert full.of_exception(caught.value) == full.SPACE
    assert (exp / "experiment_state-2026-11-30_09-55-31.json").read_text() == whole
    assert full.cut_state(exp) is None
    assert not [p for p in exp.rglob("*") if p.name.endswith(whole_upload.TMP_SUFFIX)]
    (tiny_fs / "filler").unlink()  # room again: the next save goes through
    _save(tiny_fs, staging)
    assert (exp / "experiment_state-2026-11-30_09-55-31.json").read_text() == grown


def test_a_trials_log_that_does_not_fit_holds_the_state_back(tmp_path, monkeypatch):
    """The state goes only after every trial's file went: a state that names a report its
    trial's result.json lacks would show a finished trial short of its last epochs."""
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n{"epoch": 2}\n')
    exp = tmp_path / "exp"
    (exp / "trial_0").mkdir(parents=True)
    (exp / "experiment_state-2026-11-30_09-55-31.json").write_text('{"trial_data": []}')
    (exp / "trial_0" / "result.json").write_text('{"epoch": 1}\n')
    real = whole_upload.shutil.copyfile

    def quota(src, dst):
        if "result.json" in dst:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", dst)
        return real(src, dst)

    monkeypatch.setattr(whole_upload.shutil, "copyfile", quota)
    with pytest.raises(OSError):
        whole_upload.upload(str(staging), None, str(exp))
    assert (exp / "experiment_state-2026-11-30_09-55-31.json").read_text() == '{"trial_data": []}'
    assert (exp / "trial_0" / "result.json").read_text() == '{"epoch": 1}\n'
