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

import tmpfs


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (root only: mount); unmounted after."""
    yield from tmpfs.mounted(tmp_path, "size=1m")


def _save(storage: Path, staging: Path) -> None:
    """One save of Tune's experiment, as _ExperimentCheckpointManager makes it (Ray 2.60):
    the storage context's syncer uploads the driver's staging folder and is waited for."""
    from ray.train._internal.storage import StorageContext

    context = StorageContext(storage_path=str(storage), experiment_dir_name="s")
    assert context.syncer.sync_up(str(staging), context.experiment_fs_path)
    context.syncer.wait()



def _refuse(monkeypatch, name: str, error: OSError):
    """Copies into the storage of files named `name` raise `error` (a quota, a colleague's
    file); the others go through. Returns the real copy, to put back."""
    real = whole_upload.shutil.copyfile

    def refused(src, dst):
        if name in dst:
            raise type(error)(error.errno, error.strerror, dst)
        return real(src, dst)

    monkeypatch.setattr(whole_upload.shutil, "copyfile", refused)
    return real

def _staging(root: Path, state: str, result: str) -> Path:
    staging = root / "staging"
    (staging / "trial_0").mkdir(parents=True, exist_ok=True)
    (staging / "experiment_state-2026-11-30_09-55-31.json").write_text(state)
    (staging / "trial_0" / "result.json").write_text(result)
    (staging / "trial_0" / "params.json").write_text('{"lr": 0.1}')
    return staging


def test_rays_save_replaces_each_file_by_a_rename_pinned_to_this_rays_syncer(tmp_path):
    """whole_upload patches Ray's private `_FilesystemSyncer._sync_up_command`: this fails
    when a Ray upgrade changes how Tune uploads its experiment (then upload() is unused)."""
    import inspect

    pytest.importorskip("ray")
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    assert whole_upload.install()
    # Tune's saves go through the storage context's syncer (what install() patches)
    assert "self._storage.syncer.sync_up(" in inspect.getsource(_ExperimentCheckpointManager.sync_up_experiment_state)
    staging = _staging(tmp_path, '{"trial_data": []}', '{"epoch": 1}\n')
    _save(tmp_path / "storage", staging)
    exp = tmp_path / "storage" / "s"
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    before = state.stat().st_ino, (exp / "trial_0" / "result.json").stat().st_ino
    params = (exp / "trial_0" / "params.json").stat().st_ino
    _staging(tmp_path, '{"trial_data": [["a", "b"]]}', '{"epoch": 1}\n{"epoch": 2}\n')
    _save(tmp_path / "storage", staging)
    assert state.read_text() == '{"trial_data": [["a", "b"]]}'
    assert (exp / "trial_0" / "result.json").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    after = state.stat().st_ino, (exp / "trial_0" / "result.json").stat().st_ino
    assert after[0] != before[0] and after[1] != before[1]  # new files renamed over, not rewritten
    assert (exp / "trial_0" / "params.json").stat().st_ino == params  # the same: not written again
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
    tmpfs.fill(tiny_fs)
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
    _refuse(monkeypatch, "result.json", OSError(errno.EDQUOT, "Disk quota exceeded"))
    with pytest.raises(OSError):
        whole_upload.upload(str(staging), None, str(exp))
    assert (exp / "experiment_state-2026-11-30_09-55-31.json").read_text() == '{"trial_data": []}'
    assert (exp / "trial_0" / "result.json").read_text() == '{"epoch": 1}\n'


FILLING = textwrap.dedent('''
    import glob, os, time
    from toy import ToyTrainer

    class FillingTrainer(ToyTrainer):
        """Trial 1, after its first report and once Tune saved trial 0's end, fills the
        storage's disk, and its second report is wide (the experiment state grows on a full
        disk); its third epoch's checkpoint finds no room. Once: marker files remember."""

        def report(self, metrics, *, epoch=None, **kwargs):
            once, mine = self.args["once"], self.trial.index == 1
            if mine and epoch == 1 and not os.path.exists(once + ".wide"):
                open(once + ".wide", "w").close()
                metrics = {**metrics, **{f"m{i}": float(i) for i in range(2000)}}
            super().report(metrics, epoch=epoch, **kwargs)
            if not mine or epoch != 0 or os.path.exists(once):
                return
            open(once, "w").close()
            deadline = time.time() + 120
            while time.time() < deadline and not any(
                    "TERMINATED" in open(f).read() for f in glob.glob(self.args["states"])):
                time.sleep(0.2)
            with open(self.args["filler"], "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\\0" * 4096)
                except OSError:
                    pass
''')


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_whose_disk_filled_as_tune_saved_resumes_with_its_finished_trials_once_there_is_room(tiny_fs):
    """A quota met mid-study: Ray's in-place save cut the experiment state short, the stop
    said to pass --fresh and the next run refused to resume (every trial lost). Now the
    last whole state stays: after room is made, the plain run resumes, the finished trial
    kept and not run again."""
    from hpoc.plan import dumps
    from runtime_plans import make_plan, write_toy

    subprocess.run(["mount", "-o", "remount,size=3m", str(tiny_fs)], check=True)
    work = tiny_fs.parent
    workdir = write_toy(work / "study")
    (workdir / "filling.py").write_text(FILLING)
    exp = tiny_fs / "toy"
    plan = make_plan(workdir, tiny_fs, trials={"num_samples": 3, "max_concurrent": 1},
                     pipeline={"trainer": {"target": "filling:FillingTrainer",
                                           "args": {"once": str(work / "filled"), "filler": str(tiny_fs / "filler"),
                                                    "states": str(exp / "experiment_state-*.json")}}},
                     space={"constants": {"epochs": 3, "batch_size": 32}},
                     checkpoint={"every": 3, "keep": 1})
    (work / "plan.json").write_text(dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(work), HPOC_MIN_FREE_GB="0")
    cmd = [sys.executable, "-m", "hpoc.runtime", str(work / "plan.json"), "--local", "--cpus", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=work)
    assert first.returncode == 1, first.stderr[-4000:]
    assert "[hpoc] stopped: trial" in first.stderr and "no space left on a device" in first.stderr
    assert "--fresh" not in first.stderr and "then run the same command again" in first.stderr
    assert full.cut_state(exp) is None
    (tiny_fs / "filler").unlink()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=work)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "(1 finished trial(s) kept" in again.stderr, again.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 3}
    first_trial = next(exp.glob("trial_00000_*"))
    epochs = [json.loads(ln)["epoch"] for ln in (first_trial / "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # not run again


def test_the_copies_a_driver_killed_mid_save_left_are_removed_on_resume_the_files_kept(tmp_path):
    exp = tmp_path / "exp"
    (exp / "trial_0").mkdir(parents=True)
    left = [exp / f".experiment_state-x.json{whole_upload.TMP_SUFFIX}",
            exp / "trial_0" / f".result.json{whole_upload.TMP_SUFFIX}"]
    kept = [exp / "experiment_state-x.json", exp / "trial_0" / "result.json", exp / ".hpoc-plan.json"]
    for path in left + kept:
        path.write_text("x")
    assert whole_upload.remove_leftovers(exp) == 2
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


def test_a_staging_file_gone_since_the_walk_does_not_hold_the_state_back(tmp_path, monkeypatch):
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n')
    exp = tmp_path / "exp"
    real = whole_upload.replace_whole

    def vanishing(src, dest):
        if src.endswith("params.json"):
            os.unlink(src)  # a trial's staging folder removed as the save ran
        return real(src, dest)

    monkeypatch.setattr(whole_upload, "replace_whole", vanishing)
    whole_upload.upload(str(staging), None, str(exp))
    assert (exp / "experiment_state-2026-11-30_09-55-31.json").read_text() == '{"trial_data": [["new", "{}"]]}'


def test_a_replaced_file_keeps_the_mode_and_group_it_had_in_the_storage(tmp_path):
    """Ray's copy rewrote a file in place, keeping its mode and group: a study folder opened
    to a project's group (chmod g+rw, chgrp) stayed open. A file renamed over it is created
    anew, by the umask and the user's own group: each save closed it again."""
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n{"epoch": 2}\n')
    exp = tmp_path / "exp"
    (exp / "trial_0").mkdir(parents=True)
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    state.write_text('{"trial_data": []}')
    (exp / "trial_0" / "result.json").write_text('{"epoch": 1}\n')
    state.chmod(0o664)
    (exp / "trial_0" / "result.json").chmod(0o640)
    group = os.getgid() if os.geteuid() != 0 else 12345  # root can give any group
    os.chown(state, -1, group)
    old = os.umask(0o077)  # a private umask: new files 0600
    try:
        whole_upload.upload(str(staging), None, str(exp))
    finally:
        os.umask(old)
    assert state.read_text() == '{"trial_data": [["new", "{}"]]}'
    assert state.stat().st_mode & 0o7777 == 0o664 and state.stat().st_gid == group
    assert (exp / "trial_0" / "result.json").stat().st_mode & 0o7777 == 0o640
    assert (exp / "trial_0" / "params.json").stat().st_mode & 0o7777 == 0o600  # new: the umask's


def test_each_file_written_is_on_disk_before_its_rename_and_the_renames_after(tmp_path, monkeypatch):
    """A node crash just after a save (the driver's node, its storage a local disk or a
    Lustre client's cache) could leave the renamed state empty had its data not reached
    the disk: the study could not resume. Unchanged files are neither written nor synced."""
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n{"epoch": 2}\n')
    exp = tmp_path / "exp"
    (exp / "trial_0").mkdir(parents=True)
    (exp / "trial_0" / "params.json").write_text('{"lr": 0.1}')
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        what = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", os.path.relpath(what, exp)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.relpath(dst, exp)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    whole_upload.upload(str(staging), None, str(exp))
    state, result = "experiment_state-2026-11-30_09-55-31.json", os.path.join("trial_0", "result.json")
    tmp = lambda rel: os.path.join(os.path.dirname(rel), f".{os.path.basename(rel)}{whole_upload.TMP_SUFFIX}")  # noqa: E731
    assert events == [("fsync", tmp(result)), ("replace", result), ("fsync", "trial_0"),
                      ("fsync", tmp(state)), ("replace", state), ("fsync", ".")]


def test_a_quota_the_file_system_reports_only_at_writeback_holds_the_state_back(tmp_path, monkeypatch):
    """Lustre and NFS clients may accept the writes and report the quota when the data goes
    out (fsync, close): the state renamed over before that would be cut on the server."""
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n')
    exp = tmp_path / "exp"
    exp.mkdir()
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    state.write_text('{"trial_data": []}')
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(f"{state.name}{whole_upload.TMP_SUFFIX}"):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        whole_upload.upload(str(staging), None, str(exp))
    assert caught.value.errno == errno.EDQUOT
    assert state.read_text() == '{"trial_data": []}'
    assert not [p for p in exp.rglob("*") if p.name.endswith(whole_upload.TMP_SUFFIX)]


def test_a_state_tune_rewrites_as_it_is_copied_is_not_renamed_over_the_last_whole_one(tmp_path, monkeypatch):
    """Tune writes its next state into the staging folder in place while the last save's
    upload may still run (its period counts the write, not the upload): the copy of a
    file written meanwhile is cut, and renamed over it left the storage's only state cut
    until the next save (a driver killed before that could not resume). Now the storage
    keeps its last whole state, and the next save takes the new one."""
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n')
    name = "experiment_state-2026-11-30_09-55-31.json"
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / name).write_text('{"trial_data": []}')
    real = whole_upload.shutil.copyfile

    def rewritten_meanwhile(src, dst):
        if not src.endswith(name):
            return real(src, dst)
        with open(src) as a, open(dst, "w") as b:
            b.write(a.read()[:10])  # the copy got this far when Tune truncated and wrote again
        with open(src, "w") as fh:
            fh.write('{"trial_data": [["newer", "{}"]]}')
        return dst

    monkeypatch.setattr(whole_upload.shutil, "copyfile", rewritten_meanwhile)
    whole_upload.upload(str(staging), None, str(exp))
    assert (exp / name).read_text() == '{"trial_data": []}'
    assert not [p for p in exp.rglob("*") if p.name.endswith(whole_upload.TMP_SUFFIX)]
    monkeypatch.setattr(whole_upload.shutil, "copyfile", real)
    whole_upload.upload(str(staging), None, str(exp))  # the next save takes it whole
    assert (exp / name).read_text() == '{"trial_data": [["newer", "{}"]]}'


@pytest.fixture
def held(monkeypatch):
    """The driver's lines, with the count of held saves fresh; a clock the test moves."""
    said: list[str] = []
    clock = [1_000_000.0]
    monkeypatch.setattr(whole_upload, "_held", {"since": None, "saves": 0, "said": False})
    monkeypatch.setattr(whole_upload, "_say", said.append)
    monkeypatch.setattr(whole_upload.time, "time", lambda: clock[0])
    return said, clock


def test_a_trials_file_refused_at_every_save_is_said_once_it_held_the_state_back_long(tmp_path, monkeypatch, held):
    """A colleague's file in a shared storage (EACCES) fails at every save: the state stays
    held for the rest of the study. Once held for HELD_SAVES saves and HELD_S seconds the
    driver says so, once, with the file, the error, what to do and the state a resume reads;
    `hpoc status` reads the same line beside the state until a save goes whole again."""
    said, clock = held
    staging = _staging(tmp_path, '{"trial_data": [["new", "{}"]]}', '{"epoch": 1}\n')
    exp = tmp_path / "exp"
    (exp / "trial_0").mkdir(parents=True)
    state = exp / "experiment_state-2026-11-30_09-55-31.json"
    state.write_text('{"trial_data": []}')
    os.utime(state, (1_000_000.0 - 3600,) * 2)
    real = _refuse(monkeypatch, "result.json", PermissionError(errno.EACCES, "Permission denied"))
    for _ in range(whole_upload.HELD_SAVES + 2):  # saves every few seconds: not yet HELD_S
        clock[0] += 10
        with pytest.raises(PermissionError):
            whole_upload.upload(str(staging), None, str(exp))
    assert said == [] and not (exp / whole_upload.HELD).exists()
    for _ in range(3):
        clock[0] += whole_upload.HELD_S
        with pytest.raises(PermissionError):
            whole_upload.upload(str(staging), None, str(exp))
    assert len(said) == 1, said
    line = said[0]
    stamp = whole_upload.time.strftime("%Y-%m-%d %H:%M", whole_upload.time.localtime(1_000_000.0 - 3600))
    assert line.startswith("[hpoc] warning: the experiment state was not saved for the last 6 saves")
    assert "trial_0/result.json" in line and "Permission denied" in line and "fix its permissions" in line
    assert f"a resume starts from the state of {stamp}" in line and "\n" not in line
    assert (exp / whole_upload.HELD).read_text() == line.removeprefix("[hpoc] warning: ") + "\n"
    assert state.read_text() == '{"trial_data": []}'  # still held: never skipped past the trial's file

    monkeypatch.setattr(whole_upload.shutil, "copyfile", real)  # the permissions fixed
    whole_upload.upload(str(staging), None, str(exp))
    assert state.read_text() == '{"trial_data": [["new", "{}"]]}'
    assert not (exp / whole_upload.HELD).exists() and whole_upload._held["saves"] == 0


def test_a_state_held_back_by_a_full_disk_says_to_free_space(tmp_path, monkeypatch, held):
    said, clock = held
    staging = _staging(tmp_path, "{}", '{"epoch": 1}\n')
    _refuse(monkeypatch, "params.json", OSError(errno.EDQUOT, "Disk quota exceeded"))
    for _ in range(whole_upload.HELD_SAVES):
        clock[0] += whole_upload.HELD_S
        with pytest.raises(OSError):
            whole_upload.upload(str(staging), None, str(tmp_path / "exp"))
    assert len(said) == 1 and "trial_0/params.json could not be written" in said[0]
    assert "(Disk quota exceeded); free space in the storage" in said[0]
    assert said[0].endswith("until then no state was saved yet: a resume would start over")


def test_a_held_back_line_an_earlier_run_left_goes_at_this_runs_first_whole_save(tmp_path, held):
    """A driver ended while the state was held leaves HELD; the next run's save that goes
    whole must not leave `hpoc status` saying the state is old."""
    staging = _staging(tmp_path, "{}", '{"epoch": 1}\n')
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / whole_upload.HELD).write_text("the experiment state was not saved ...\n")
    whole_upload.upload(str(staging), None, str(exp))
    assert not (exp / whole_upload.HELD).exists()


def test_a_state_still_held_back_as_the_run_ends_is_said_however_briefly(tmp_path, monkeypatch, held):
    """Tune's last save failed too: no later save takes the state whole, so the run's end
    says it (and leaves HELD for `hpoc status`), though held fewer than HELD_S seconds; a
    run whose last save went whole says nothing."""
    said, clock = held
    staging = _staging(tmp_path, "{}", '{"epoch": 1}\n')
    exp = tmp_path / "exp"
    real = _refuse(monkeypatch, "result.json", PermissionError(errno.EACCES, "Permission denied"))
    clock[0] += 10
    with pytest.raises(PermissionError):
        whole_upload.upload(str(staging), None, str(exp))
    assert said == []
    whole_upload.ended()
    assert len(said) == 1 and "trial_0/result.json could not be written" in said[0]
    assert (exp / whole_upload.HELD).read_text() == said[0].removeprefix("[hpoc] warning: ") + "\n"
    whole_upload.ended()  # said once
    assert len(said) == 1

    monkeypatch.setattr(whole_upload.shutil, "copyfile", real)
    whole_upload.upload(str(staging), None, str(exp))
    whole_upload.ended()
    assert len(said) == 1 and not (exp / whole_upload.HELD).exists()


def test_the_held_back_line_is_said_though_the_storage_folder_cannot_be_listed(tmp_path, monkeypatch):
    """The state's time is read by listing the storage folder; one that refuses it (a folder
    writable but not readable) must not turn the line into an error of its own: the run's
    end says it on the driver's thread."""
    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(whole_upload.os, "listdir", refused)
    line = whole_upload.held_words(str(tmp_path), "trial_0/result.json",
                                   PermissionError(errno.EACCES, "Permission denied"), 1, 30.0)
    assert line.startswith("the experiment state was not saved for the last save (0 min)")
    assert line.endswith("until then a resume starts from the last state saved")
