"""A disk that is full or over its quota while a study runs (hpoc/runtime/full.py): the
study stops at the first trial that could not write, saying where, instead of retrying every
trial into the same full disk. No Ray; the tmpfs tests need root (mount) and skip without."""

from __future__ import annotations

import errno
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hpoc.runtime import full, watch

import tmpfs

PYARROW = ("Failure # 1 (occurred at 2026-11-30_09:45:31)\nray::ImplicitFunc.train() (pid=12, ip=10.0.0.1)\n"
           "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n")
QUOTA = "OSError: [Errno 122] Disk quota exceeded: '/p/scratch/me/results/s/trial_00001_ab/checkpoint_000003/state.pt'\n"


def test_a_full_disk_or_a_quota_is_told_from_other_errors():
    assert full.kind(PYARROW) == "no space left on a device"
    assert full.kind(QUOTA) == "disk quota exceeded"
    assert full.kind("RuntimeError: No space left on device (in the CUDA cache)") == "no space left on a device"
    assert full.kind("ValueError: expected 28 classes, got 122") is None
    assert full.kind("") is None and full.kind(None) is None
    assert full.of_exception(RuntimeError("Tune failed")) is None
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("Tune failed") from inner
    except RuntimeError as outer:
        assert full.of_exception(outer) == "disk quota exceeded"


def test_the_room_left_names_space_and_inodes(tmp_path):
    said = full.room(tmp_path / "not" / "made" / "yet")  # its nearest existing parent's
    assert said is not None and "MiB" in said and "inodes free" in said
    # a quota is not seen in the file system's room: the storage is named all the same
    assert full.stop_line("disk quota exceeded", str(tmp_path)).startswith(f"disk quota exceeded writing under {tmp_path} (")



def test_the_storage_is_blamed_when_it_is_out_of_room_or_named_not_for_a_full_dev_shm(tmp_path, monkeypatch):
    shm = "RuntimeError: unable to write to file </torch_12_345_0>: No space left on device (28)"
    assert full.of_storage(QUOTA, str(tmp_path)) == full.QUOTA  # quotas are the storage's
    assert full.of_storage(shm, str(tmp_path)) is None  # the storage has room: retried as before
    assert full.of_storage(PYARROW, str(tmp_path)) is None
    named = (f"OSError: [Errno 28] Cannot create directory '{tmp_path}/trial_1/checkpoint_000002'. "
             "Detail: [errno 28] No space left on device")  # one Lustre OST full, the others not
    assert full.of_storage(named, str(tmp_path)) == full.SPACE
    assert full.of_storage("ValueError: bad lr", str(tmp_path)) is None
    _full_fs(monkeypatch)
    assert full.of_storage(PYARROW, str(tmp_path)) == full.SPACE


@dataclass
class Trial:
    trial_id: str
    path: str
    error_file: str | None = None
    status: str = "PENDING"
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)
    checkpoint: object = None
    max_failures: int = 3
    run_metadata: object = None


@pytest.fixture
def state(tmp_path, monkeypatch):
    stops = []
    monkeypatch.setattr(watch, "stop_tune", lambda signum, frame: stops.append(signum) or True)
    watch.STATE.__init__()
    watch.STATE.stream = io.StringIO()
    watch.STATE.experiment = tmp_path
    yield stops
    watch.STATE.__init__()


def _trial(tmp_path: Path, tid: str, error: str, status: str = "PENDING") -> Trial:
    directory = tmp_path / f"trial_{tid}"
    directory.mkdir()
    (directory / "error.txt").write_text(error)
    return Trial(tid, str(directory), str(directory / "error.txt"), status=status)


def _full_fs(monkeypatch) -> None:
    """statvfs as on a full file system: no blocks, 5 inodes left."""
    real = os.statvfs

    def full_fs(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, 1000, 5, 5,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(full.os, "statvfs", full_fs)


def test_a_trial_that_finds_no_room_stops_the_study_and_is_not_retried(tmp_path, state, monkeypatch):
    _full_fs(monkeypatch)
    trial = _trial(tmp_path, "aaaa0001", PYARROW)
    watch._trial_recovered(trial, [trial])
    assert state == [watch.signal.SIGUSR1]
    assert watch.STATE.full == full.SPACE and f"no space left on a device writing under {tmp_path}" in watch.STATE.failed
    assert "trial aaaa0001" in watch.STATE.failed and "0.0 MiB and 5 inodes free" in watch.STATE.failed
    # not counted as waiting for a retry: it resumes as any stopped trial, not as errored
    assert "aaaa0001" not in watch.STATE.retrying
    said = watch.STATE.stream.getvalue()
    assert said.count("stopping the study: trial aaaa0001: no space left") == 1 and "retrying from" not in said
    # a second trial failing the same way as the stop lands says nothing more
    other = _trial(tmp_path, "aaaa0002", QUOTA)
    watch._trial_recovered(other, [trial, other])
    assert state == [watch.signal.SIGUSR1] and "aaaa0002" not in watch.STATE.retrying


def test_a_trial_that_errored_for_want_of_room_stops_the_study_too(tmp_path, state):
    trial = _trial(tmp_path, "aaaa0003", QUOTA, status="ERROR")
    watch._make_events().on_trial_error(0, [trial], trial)
    assert state == [watch.signal.SIGUSR1]
    assert watch.STATE.failed.startswith("trial aaaa0003: disk quota exceeded writing under")


def test_the_summary_records_the_kind_of_the_stop_not_only_its_words(tmp_path, state, monkeypatch):
    """status and results told a full disk from fail fast by parsing `stopped`'s words."""
    from types import SimpleNamespace

    from hpoc.runtime import summary as summary_mod

    plan = {"study": {"name": "s"}, "space": {"params": [], "constants": {}},
            "objective": {"metrics": [{"name": "loss", "mode": "min"}]}}

    def written() -> dict:
        built = summary_mod.build(plan, 0, [], wall_s=1.0, interrupted=True, experiment_dir=tmp_path,
                                  plan_hash="sha256:0", stopped=watch.STATE.failed, stop=watch.stop())
        summary_mod.write(built, tmp_path)
        return summary_mod.read(tmp_path)

    assert written()["stop"] is None  # a run that did not stop itself
    _full_fs(monkeypatch)
    trial = _trial(tmp_path, "aaaa0001", PYARROW)
    watch._trial_recovered(trial, [trial])
    assert written()["stop"] == {"kind": "disk_full", "at": str(tmp_path)}
    watch.STATE.__init__()
    watch.STATE.fail_fast = SimpleNamespace(headline="stopping the study: every trial failed")
    watch._stop_failed("all of the first 3 trials to end failed with the same error")
    got = written()
    assert got["stop"] == {"kind": "fail_fast", "at": None}
    same_way = "the study stopped itself, its trials failing the same way"
    assert same_way in summary_mod.describe_best(got)
    # the kind, not the words, says a full disk: no trial failed the same way, it resumes
    said = summary_mod.describe_best({**got, "stop": {"kind": "disk_full", "at": "/x"}})
    assert same_way not in said and "running the same plan again resumes it" in said


def test_an_old_summary_without_a_stop_reads_its_kind_from_the_words():
    from hpoc.runtime.summary import stop_of

    words = "trial a: disk quota exceeded writing under /scratch/me (1.0 MiB and 9 inodes free)"
    assert stop_of({"stopped": words}) == {"kind": "disk_full", "at": "/scratch/me"}
    assert stop_of({"stopped": "all 3 trials failed\n  KeyError: 'x'"}) == {"kind": "fail_fast", "at": None}
    assert stop_of({"stopped": None, "stop": None}) is None and stop_of(None) is None


@pytest.mark.parametrize("error", ["ValueError: bad lr\n", PYARROW])  # PYARROW: the storage has room
def test_another_error_is_retried_as_before(tmp_path, state, error):
    trial = _trial(tmp_path, "aaaa0004", error)
    watch._trial_recovered(trial, [trial])
    assert state == [] and not watch.STATE.full and watch.STATE.failed is None
    assert "aaaa0004" in watch.STATE.retrying


def test_the_hint_says_to_make_room_then_resume():
    line = full.hint("/p/scratch/me/results/s", "run the same command again")
    assert line.startswith("  help: free space and files under /p/scratch/me/results/s")
    assert line.endswith("then run the same command again")


def test_the_stops_help_says_fresh_when_the_full_disk_cut_the_state_it_would_resume_from(tmp_path):
    """It said "run the same command again: the study resumes", and that run refused: the
    state Ray saved as the disk filled was cut short."""
    again = "run the same command again: the study resumes and retries the failed trials"
    state = tmp_path / "experiment_state-2026-11-30_09-55-31.json"
    state.write_text('{"trial_data": [["a", "b"]], "runner_data": {}}')
    assert full.after_stop(str(tmp_path), str(tmp_path), again) == full.hint(str(tmp_path), again)
    state.write_text('{"trial_data": [["a"')
    said = full.after_stop(str(tmp_path), str(tmp_path), again)
    assert said.startswith(f"  help: free space and files under {tmp_path} (or ask")
    assert "the study resumes" not in said
    assert said.endswith(f"then pass --fresh to start the study over: {state} is cut short (20 bytes; "
                         "a disk full or over its quota as Ray saved it in place, under an hpoc before its saves were "
                         "replaced whole), so the run cannot resume "
                         "(`hpoc results` still reads its trials)")


def test_an_error_pickle_the_full_disk_left_empty_is_removed_a_readable_one_kept(tmp_path, state, monkeypatch):
    import pickle

    _full_fs(monkeypatch)

    from types import SimpleNamespace

    cut = _trial(tmp_path, "aaaa0005", PYARROW)
    Path(cut.path, "error.pkl").write_bytes(b"")  # Ray's results would unpickle it: EOFError
    # Ray reads the storage's copy, which its sync may cut after this: it reads error.txt instead
    cut.run_metadata = SimpleNamespace(pickled_error_filename="error.pkl")
    watch._trial_recovered(cut, [cut])
    assert not Path(cut.path, "error.pkl").exists() and Path(cut.path, "error.txt").exists()
    assert cut.run_metadata.pickled_error_filename is None
    kept = _trial(tmp_path, "aaaa0006", QUOTA)
    Path(kept.path, "error.pkl").write_bytes(pickle.dumps(OSError(errno.EDQUOT, "Disk quota exceeded")))
    watch._trial_recovered(kept, [cut, kept])
    assert Path(kept.path, "error.pkl").exists()


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs of 64 inodes (root only: mount); unmounted after."""
    yield from tmpfs.mounted(tmp_path, "size=1m,nr_inodes=64")


def test_a_summary_the_full_disk_refuses_leaves_the_earlier_one_whole_and_no_temporary_file(tiny_fs):
    from hpoc.runtime import summary as summary_mod

    exp = tiny_fs / "s"
    summary_mod.write({"study": "s", "interrupted": True}, exp)
    tmpfs.fill(tiny_fs)
    with pytest.raises(OSError) as caught:
        summary_mod.write({"study": "s", "interrupted": False, "pad": "x" * 200_000}, exp)
    assert full.of_exception(caught.value) == "no space left on a device"
    assert summary_mod.read(exp) == {"study": "s", "interrupted": True}
    assert sorted(p.name for p in exp.iterdir()) == ["summary.json"]


def test_the_driver_says_in_one_line_that_the_summary_could_not_be_written(tmp_path, monkeypatch):
    from hpoc.runtime import study
    from hpoc.runtime import summary as summary_mod

    def refuse(result, exp):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", str(exp / "summary.json"))

    monkeypatch.setattr(summary_mod, "write", refuse)
    stream = io.StringIO()
    assert study._write_summary({}, tmp_path, stream) is None
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert line.startswith(f"[hpoc] could not write {tmp_path}/summary.json: disk quota exceeded writing under {tmp_path} (")
    monkeypatch.setattr(summary_mod, "write", lambda result, exp: (_ for _ in ()).throw(OSError(errno.EACCES, "no")))
    with pytest.raises(OSError):  # not a full disk: as before
        study._write_summary({}, tmp_path, stream)


def test_tune_failing_for_a_quota_or_for_inodes_is_said_as_such(tmp_path, monkeypatch):
    from hpoc.runtime import session

    try:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    except OSError as exc:
        said = session.no_room(exc, {"the run's temp dir in": str(tmp_path), "the storage": "/p/scratch/me/results"})
    assert said == "disk quota exceeded: the storage /p/scratch/me/results (`lfs quota` or `quota` shows yours)"
    real = os.statvfs

    def few_inodes(path):  # bytes to spare, 12 inodes left
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail,
                                  1000, 12, 12, st.f_flag, st.f_namemax))

    monkeypatch.setattr(session.os, "statvfs", few_inodes)
    said = session.no_room(OSError(errno.ENOSPC, "No space left on device"), {"the storage": str(tmp_path)})
    assert said == f"no space left on a device: the storage {tmp_path} has 12 inodes free"
    assert session.no_room(ValueError("28 things"), {"the storage": str(tmp_path)}) is None


def test_hpoc_min_free_gb_moves_the_runs_own_limit_as_its_message_says(tmp_path, monkeypatch):
    from hpoc.runtime import login_preflight, study
    from hpoc.runtime.exits import StudyError

    real = os.statvfs

    def small(path):  # 40 KiB free
        st = real(path)
        return os.statvfs_result((st.f_bsize, 4096, 1000, 10, 10, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(login_preflight.os, "statvfs", small)
    monkeypatch.delenv("HPOC_MIN_FREE_GB", raising=False)
    plan = {"storage": {"path": str(tmp_path)}}
    with pytest.raises(StudyError, match="set HPOC_MIN_FREE_GB to change the limit"):
        study._check_storage(plan, tmp_path / "s", io.StringIO())
    monkeypatch.setenv("HPOC_MIN_FREE_GB", "0")
    study._check_storage(plan, tmp_path / "s", io.StringIO())  # as the message says: no refusal
    monkeypatch.setenv("HPOC_MIN_FREE_GB", "lots")  # not a number: the run's own limit
    with pytest.raises(StudyError):
        study._check_storage(plan, tmp_path / "s", io.StringIO())


def _prior_run(tmp_path: Path, exp: Path) -> str:
    """prior_run over `exp` as an interrupted run of the digits example left it (no summary)."""
    import shutil

    from hpoc.commands.run import load_plan
    from hpoc.runtime import marker
    from hpoc.runtime.prior import prior_run
    from hpoc.runtime.study import plan_hash

    spec = tmp_path / "digits"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "digits", spec,
                    ignore=shutil.ignore_patterns("results", "build"))
    plan = load_plan(str(spec / "study.hpo"))
    fp = marker.fingerprint(plan, plan_hash(plan))
    marker.write(exp, fp, 0)
    (exp / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    return prior_run(exp, fp, False, True, io.StringIO())


def test_a_state_file_the_full_disk_cut_short_refuses_the_resume_tune_would_start_over(tmp_path):
    import pickle

    from hpoc.runtime.exits import StudyError

    exp = tmp_path / "s"
    exp.mkdir()
    (exp / "experiment_state-2026-11-30_09-54-31.json").write_text('{"trial_data": []}')
    (exp / "searcher-state-2026-11-30_09-54-31.pkl").write_bytes(pickle.dumps({"n": 1}))
    (exp / "search_gen_state-2026-11-30_09-54-31.json").write_bytes(pickle.dumps({"n": 1}))  # Ray's name
    assert full.cut_state(exp) is None
    whole = '{"trial_data": [["a", "b"]], "runner_data": {}}'
    cut = exp / "experiment_state-2026-11-30_09-55-31.json"
    cut.write_text(whole[:20])
    said = full.cut_state(exp)
    assert said.startswith(f"{cut} is cut short (20 bytes; a disk full or over its quota")
    assert said.endswith("the study cannot resume from it")
    with pytest.raises(StudyError, match="pass --fresh to start the study over"):
        _prior_run(tmp_path, exp)
    cut.write_text(whole)
    pkl = exp / "searcher-state-2026-11-30_09-55-31.pkl"
    pkl.write_bytes(pickle.dumps({"n": 2, "pad": "x" * 100})[:30])
    assert full.cut_state(exp).startswith(f"{pkl} is cut short")


def test_rays_traceback_of_another_trial_failing_on_the_full_disk_is_left_out(tmp_path, state, monkeypatch, caplog):
    from ray._private import worker

    monkeypatch.setattr(worker, "_unhandled_error_handler", worker._unhandled_error_handler)
    monkeypatch.setattr(logging.getLogger("ray"), "propagate", True)  # to caplog's root handler
    _full_fs(monkeypatch)
    trial = _trial(tmp_path, "aaaa0007", PYARROW)
    watch._trial_recovered(trial, [trial])  # the stop
    with caplog.at_level("ERROR"):
        worker._unhandled_error_handler(OSError(28, PYARROW))  # another trial's: the stop said it
        assert "Unhandled error" not in caplog.text
        worker._unhandled_error_handler(ValueError("bad lr"))  # any other: as Ray logs it
    assert "Unhandled error" in caplog.text and "bad lr" in caplog.text


def test_a_quota_met_outside_the_storage_names_that_place_not_the_storage(tmp_path, state):
    """A trial over the home quota (~/.cache) stops the study as a quota does, but the line
    and its help named the storage, which had room and no quota problem."""
    home = "OSError: [Errno 122] Disk quota exceeded: '/home/me/.cache/torch/hub/model.pt'\n"
    trial = _trial(tmp_path, "aaaa0005", home)
    watch._trial_recovered(trial, [trial])
    assert state == [watch.signal.SIGUSR1]
    assert "disk quota exceeded writing under /home/me/.cache/torch/hub" in watch.STATE.failed
    assert str(tmp_path) not in watch.STATE.failed
    assert watch.STATE.full_at == "/home/me/.cache/torch/hub"
    # a path under the storage names the storage, as before
    assert full.place(f"OSError: [Errno 122] Disk quota exceeded: '{tmp_path}/trial_1/x.pt'", str(tmp_path)) == str(tmp_path)
    assert full.place(PYARROW, str(tmp_path)) == str(tmp_path)
    # a traceback's files are not where the disk was full: only the error's own line counts
    traced = ('Traceback (most recent call last):\n  File "/home/me/study/train.py", line 9, in save\n'
              "OSError: [Errno 122] Disk quota exceeded\n")
    assert full.place(traced, str(tmp_path)) == str(tmp_path)


def test_the_stops_help_under_retry_errored_false_says_to_retry_the_trials_the_disk_failed_not_fresh(tmp_path):
    """It said "run again with --fresh (resuming would keep these trials failed)": every
    finished trial lost for trials that failed only for want of room."""
    from hpoc.runtime import failfast

    plan = {"resume": {"enabled": True, "retry_errored": False}}
    said = full.after_stop(str(tmp_path), str(tmp_path), full.run_again(plan))
    assert "--fresh" not in said
    assert said.endswith("then run the same command again with --retry-errored --from-checkpoint "
                         "(HPOC_RETRY_ERRORED=checkpoint for a job script): the study resumes, its finished "
                         "trials kept, and the trials the full disk failed go on from their last checkpoint "
                         "(a plain resume keeps them failed: `resume.retry_errored = false`)")
    for resume in ({"enabled": True, "retry_errored": True}, {"enabled": False, "retry_errored": False}):
        assert full.run_again({"resume": resume}) == failfast.run_again({"resume": resume})
