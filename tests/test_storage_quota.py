"""The room a study needs, checked before Ray starts: free inodes against the files the
study will write, and the user's quota as `lfs quota`, `quota` or `mmlsquota` says it (fake
tools on PATH print the real formats: lustre lfs.c print_quota, linuxquota quota.c)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpoc.runtime import full, login_preflight, quota
from hpoc.runtime.exits import StudyError
from runtime_plans import make_plan

LFS_HEAD = ("Disk quotas for usr alice (uid 1000):\n"
            "     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace\n")


def test_lfs_quota_is_read_with_its_marks_a_wrapped_name_and_its_graces():
    q = quota.parse_lfs(LFS_HEAD + "    /lustre/fs1  204800       0 1048576       -   12000   40000   50000       -\n")
    assert q.kib == quota.Limit(204800, 0, 1048576) and q.files == quota.Limit(12000, 40000, 50000)
    assert q.kib.left() == 843776 and q.files.left() == 38000 and q.files.soft_left() == 28000
    # a mount point longer than 15 characters is alone on its line; `*` marks over a limit
    over = quota.parse_lfs(LFS_HEAD + "/p/scratch/project-x\n"
                           "                 1100000*  1000000 2000000 6d23h59m57s  45000*  40000   50000    none\n"
                           "uid 1000 is using default file quota setting\n")
    assert over.kib == quota.Limit(1100000, 1000000, 2000000, grace="6d23h59m57s")
    assert over.files == quota.Limit(45000, 40000, 50000, grace="none", expired=True)
    assert over.files.left() == 0 and over.kib.left() == 900000
    # at the hard limit the grace reads `-`; `[...]`: some targets did not answer
    hard = quota.parse_lfs(LFS_HEAD + "    /lustre/fs1 [2000000]* 1000000 2000000       -       5       0       0       -\n")
    assert hard.kib.left() == 0 and hard.files.left() is None
    newer = LFS_HEAD.replace("quota   limit   grace   files   quota   limit   grace",
                             "bquota  blimit  bgrace   files  iquota  ilimit  igrace")
    assert quota.parse_lfs(newer + "    /lustre/fs1      10       0       0       -       1       0       0       -\n")
    assert quota.parse_lfs("lfs: /tmp is not on a Lustre file system\n") is None
    assert quota.parse_lfs(LFS_HEAD) is None


def test_linux_quota_is_read_with_raw_graces():
    head = ("Disk quotas for user alice (uid 1000): \n"
            "     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace\n")
    q = quota.parse_quota(head + "nfs:/export/home   51200  100000  120000       0     900    1000    1200       0\n")
    assert q.kib.left() == 68800 and q.files.left() == 300 and q.files.grace is None
    now = float(int(time.time()))
    over = quota.parse_quota(head + f"      /dev/sda1  110000* 100000  120000 {int(now) + 3600}  1100*   1000    "
                                    f"0 {int(now) - 60}\n", now=now)
    assert over.kib.grace == "1h0m" and not over.kib.expired and over.kib.left() == 10000
    assert over.files.expired and over.files.left() == 0
    assert quota.parse_quota("Disk quotas for user alice (uid 1000): none\n") is None


def test_gpfs_mmlsquota_is_read_by_its_header_names():
    text = ("mmlsquota::HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:"
            "blockQuota:blockLimit:blockInDoubt:blockGrace:filesUsage:filesQuota:filesLimit:filesInDoubt:"
            "filesGrace:remarks:quota:defQuota:fid:filesetname:\n"
            "mmlsquota::0:1:::gpfs1:USR:1000:alice:2097152:10485760:12582912:0:none:4000:0:5000:0:none:e:on:off:::\n")
    q = quota.parse_mmlsquota(text)
    assert q.kib.left() == 12582912 - 2097152 and q.files.left() == 1000 and q.kib.grace is None
    expired = text.replace(":4000:0:5000:0:none:", ":6000:5000:8000:0:expired:")
    assert quota.parse_mmlsquota(expired).files.left() == 0


def test_gpfs_per_fileset_quotas_are_no_finding_when_which_holds_the_path_is_not_known():
    """With per-fileset quotas mmlsquota prints one USR row per fileset: the first (a full
    `home` fileset) was read as the quota of a storage path in another (`scratch`), and a
    run with room was refused."""
    head = ("mmlsquota::HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:"
            "blockQuota:blockLimit:blockInDoubt:blockGrace:filesUsage:filesQuota:filesLimit:filesInDoubt:"
            "filesGrace:remarks:quota:defQuota:fid:filesetname:\n")
    home = "mmlsquota::0:1:::gpfs1:USR:1000:alice:10:0:0:0:none:5000:0:5000:0:none:e:on:off:1:home:\n"
    scratch = "mmlsquota::0:1:::gpfs1:USR:1000:alice:10:0:0:0:none:10:0:900000:0:none:e:on:off:2:scratch:\n"
    assert quota.parse_mmlsquota(head + home + scratch) is None
    assert quota.parse_mmlsquota(head + home).files.left() == 0  # one fileset: that one
    assert quota.parse_mmlsquota(head + home + home).files.left() == 0


# ---------------------------------------------------------------- the tools as the run meets them


def _tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def lustre(tmp_path, monkeypatch):
    """The storage on a Lustre mount with an `lfs` on PATH that prints `row` (and records its
    arguments); the file system itself has room."""
    bins = tmp_path / "bin"

    def given(row: str, sleep: float = 0) -> Path:
        _tool(bins, "lfs", f'[ "$2" = -u ] || exit 0\necho "$@" > {tmp_path}/lfs.args\nsleep {sleep}\ncat <<"EOF"\n{LFS_HEAD}{row}\nEOF\n')
        return tmp_path / "lfs.args"

    monkeypatch.setenv("PATH", f"{bins}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(quota, "_mount", lambda path: ("/lustre/fs1", "lustre", "10.0.0.1@tcp:/fs1"))
    return given


def _plan(tmp_path, num_samples=100):
    return make_plan(tmp_path, tmp_path / "results", trials={"num_samples": num_samples})


def test_the_run_refuses_a_file_quota_too_small_for_the_study_before_ray_starts(tmp_path, lustre):
    from hpoc.runtime import study

    args = lustre("    /lustre/fs1  204800       0 1048576       -   49000   40000   50000       -")
    plan = _plan(tmp_path)  # 100 trials x 15 files: 1,500 files, 1,000 left
    with pytest.raises(StudyError) as err:
        study._check_storage(plan, tmp_path / "results" / "toy", io.StringIO())
    said = str(err.value)
    assert "\n" not in said
    assert said.startswith(f"storage path {tmp_path / 'results'}: your file quota (`lfs quota -u $USER "
                           "/lustre/fs1`) leaves 1,000 file(s): the study's 100 trial(s) left need about 1,500")
    assert "storage.path" in said and "HPOC_MIN_FREE_GB=0 skips this check" in said
    assert args.read_text().split()[:2] == ["quota", "-u"] and args.read_text().split()[-1] == "/lustre/fs1"


def test_a_tight_quota_or_one_in_its_grace_is_a_warning_and_the_run_goes_on(tmp_path, lustre):
    from hpoc.runtime import study

    lustre("/lustre/fs1\n                 1100000*  1000000 9000000 6d23h59m57s  48000   0   50000       -")
    stream = io.StringIO()
    study._check_storage(_plan(tmp_path), tmp_path / "results" / "toy", stream)
    said = stream.getvalue()
    assert "warning: you are over your soft space quota (`lfs quota -u $USER /lustre/fs1`): writes stop in 6d23h59m57s" in said
    assert "warning: your file quota (`lfs quota -u $USER /lustre/fs1`) leaves 2,000 file(s)" in said


def test_a_used_up_space_quota_is_refused_as_free_space_is(tmp_path, lustre):
    lustre("    /lustre/fs1 1048576*       0 1048576       -     100       0       0       -")
    problem, _ = quota.check(_plan(tmp_path, 2), 1.0)
    assert problem.startswith(f"storage path {tmp_path / 'results'}: your quota (`lfs quota -u $USER /lustre/fs1`) "
                              "leaves 0.00 GiB, less than 1 GiB")
    assert "HPOC_MIN_FREE_GB" in problem


def test_preflight_says_the_quota_too(tmp_path, lustre):
    lustre("    /lustre/fs1  204800       0 1048576       -   49990       0   50000       -")
    found = login_preflight.check_storage(_plan(tmp_path))
    assert [(f.ok, f.what) for f in found] == [(False, "storage")]
    assert "leaves 10 file(s)" in found[0].message


def test_a_slow_or_missing_quota_tool_is_no_finding(tmp_path, lustre, monkeypatch):
    lustre("    /lustre/fs1  204800       0 1048576       -   49990       0   50000       -", sleep=5)
    t = time.monotonic()
    assert quota.check(_plan(tmp_path), 1.0, timeout=0.5) == (None, [])
    assert time.monotonic() - t < 3
    monkeypatch.setenv("PATH", "/nonexistent")
    assert quota.read(str(tmp_path)) == []


def test_too_few_free_inodes_for_the_study_are_refused_and_hpoc_min_free_gb_0_skips_it(tmp_path, monkeypatch):
    monkeypatch.setattr(quota, "read", lambda path, timeout=0: None)
    monkeypatch.setattr(full, "_statvfs", lambda path: SimpleNamespace(f_files=10**6, f_favail=700,
                                                                      f_bavail=10**9, f_frsize=4096))
    plan = _plan(tmp_path)  # 1,500 files
    problem, _ = quota.check(plan, 1.0)
    assert problem.startswith(f"storage path {tmp_path / 'results'} has 700 free files (inodes) on its file "
                              "system: the study's 100 trial(s) left need about 1,500 (15 each")
    monkeypatch.setenv("HPOC_MIN_FREE_GB", "0")
    assert quota.check(plan, login_preflight.free_gb_needed(1.0)) == (None, [])


def test_a_study_with_a_time_budget_is_warned_not_refused_for_files(tmp_path, lustre, monkeypatch):
    """`num_samples` under a time budget is a ceiling (trials "as many as fit in 2 h"): the
    files of all of them were read as needed, and a study the budget would end after a
    fraction was refused before it started."""
    monkeypatch.setattr(full, "_statvfs", lambda path: SimpleNamespace(f_files=10**6, f_favail=700,
                                                                      f_bavail=10**9, f_frsize=4096))
    lustre("    /lustre/fs1  204800       0 9000000       -   49000   40000   50000       -")
    plan = _plan(tmp_path)  # 1,500 files at most; 700 free inodes, 1,000 left in the quota
    plan["trials"]["time_budget_s"] = 7200
    problem, warnings = quota.check(plan, 1.0)
    assert problem is None
    assert any(w.startswith(f"storage path {tmp_path / 'results'} has 700 free files (inodes)") and
               "unless the time budget ends it first" in w for w in warnings), warnings
    assert any("your file quota" in w and "leaves 1,000 file(s)" in w for w in warnings), warnings


def test_trials_an_earlier_run_left_need_no_more_files(tmp_path, monkeypatch):
    plan = _plan(tmp_path, 10)
    exp = tmp_path / "results" / "toy"
    for i in range(4):
        (exp / f"trial_{i:05d}_x").mkdir(parents=True)
        (exp / f"trial_{i:05d}_x" / "params.json").write_text("{}")
    (exp / ".hpoc-locks").mkdir()
    assert quota.files_needed(plan) == (6 * 15, 6, 15)
    plan["checkpoint"]["every"] = 0
    assert quota.files_per_trial(plan) == 9


def test_a_study_whose_trials_all_ran_is_not_refused_for_files(tmp_path, lustre):
    """Its run only reads (`already ran to the end`) or resumes trials that have their files."""
    lustre("    /lustre/fs1  204800       0 9000000       -   50000*      0   50000       -")
    plan = _plan(tmp_path, 2)
    for i in range(2):
        (tmp_path / "results" / "toy" / f"trial_{i:05d}_x").mkdir(parents=True)
        (tmp_path / "results" / "toy" / f"trial_{i:05d}_x" / "params.json").write_text("{}")
    assert quota.check(plan, 1.0)[0] is None
    assert quota.check(_plan(tmp_path, 3), 1.0)[0].startswith(f"storage path {tmp_path / 'results'}: your file quota")


def test_the_mount_holding_a_path_is_found_with_its_type(tmp_path):
    point, fstype, _ = quota._mount(str(tmp_path / "not" / "yet"))
    assert fstype and os.path.realpath(tmp_path).startswith(point.rstrip("/") + "/")


def test_gpfs_mmlsquota_is_found_where_gpfs_installs_it(tmp_path, monkeypatch):
    """/usr/lpp/mmfs/bin is often not on a user's PATH."""
    row = ("mmlsquota::HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:"
           "blockQuota:blockLimit:blockInDoubt:blockGrace:filesUsage:filesQuota:filesLimit:filesInDoubt:"
           "filesGrace:remarks:quota:defQuota:fid:filesetname:\n"
           "mmlsquota::0:1:::gpfs1:USR:1000:alice:10:0:0:0:none:4000:0:5000:0:none:e:on:off:::")
    _tool(tmp_path / "mmfs", "mmlsquota", f'echo "$@" > {tmp_path}/mm.args\ncat <<"EOF"\n{row}\nEOF\n')
    monkeypatch.setattr(quota, "_ELSEWHERE", {"mmlsquota": (str(tmp_path / "mmfs" / "mmlsquota"),)})
    monkeypatch.setattr(quota, "_mount", lambda path: ("/gpfs/work", "gpfs", "/dev/gpfs1"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # its `cat`, no mmlsquota
    [q] = quota.read(str(tmp_path))
    assert q.command == "mmlsquota -u $USER -Y gpfs1" and q.files.left() == 1000
    assert (tmp_path / "mm.args").read_text().split()[-2:] == ["-Y", "gpfs1"]


def test_a_soft_quota_whose_grace_ran_out_is_said_as_refusing_writes(tmp_path, lustre):
    """All trials ran (the run only reads, or resumes them): not refused, but said."""
    lustre("    /lustre/fs1  100000       0 9000000       -   50001*  50000       0    none")
    exp = tmp_path / "results" / "toy"
    for i in range(2):
        (exp / f"trial_{i:05d}_x").mkdir(parents=True)
        (exp / f"trial_{i:05d}_x" / "params.json").write_text("{}")
    assert quota.check(_plan(tmp_path, 2), 1.0) == (None, [
        "you are over your soft file quota (`lfs quota -u $USER /lustre/fs1`): writes are refused unless you free some"])


# ---------------------------------------------------------------- group and project quotas, a hung tool

GRP_HEAD = ("Disk quotas for grp project_465000 (gid 465000):\n"
            "     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace\n")
PRJ_HEAD = ("Disk quotas for prj 3465000 (pid 3465000):\n"
            "     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace\n")


@pytest.fixture
def lustre_all(tmp_path, monkeypatch):
    """An `lfs` answering `quota -u`, `quota -g`, `quota -p` and `project -d` (lustre lfs.c
    print_quota_title, lfs_project.c project_list_one: `%5u %c %s`) with the rows given."""
    bins = tmp_path / "bin"

    def given(user: str, group: str, project: str | None = None, projid: str = "0 -") -> Path:
        calls = tmp_path / "lfs.calls"
        _tool(bins, "lfs", f'echo "$@" >> {calls}\n'
              'case "$1 $2" in\n'
              f'  "quota -u") printf "%s%s\\n" "{LFS_HEAD}" "{user}" ;;\n'
              f'  "quota -g") printf "%s%s\\n" "{GRP_HEAD}" "{group}" ;;\n'
              f'  "quota -p") printf "%s%s\\n" "{PRJ_HEAD}" "{project}" ;;\n'
              f'  "project -d") printf "%5s %s %s\\n" {projid} "$3" ;;\n'
              'esac\n')
        return calls

    monkeypatch.setenv("PATH", f"{bins}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(quota, "_mount", lambda path: ("/lustre/fs1", "lustre", "10.0.0.1@tcp:/fs1"))
    monkeypatch.setattr(quota, "_group", lambda path: "project_465000")
    return given


def test_a_lustre_group_quota_tighter_than_the_users_refuses_the_run(tmp_path, lustre_all):
    """On LUMI and JUWELS scratch the project's group quota is what runs out: the user's own
    quota had room, and a run was let start into a full group quota."""
    calls = lustre_all(user="    /lustre/fs1  204800       0       0       -   100       0       0       -",
                       group="    /lustre/fs1  204800       0 9000000       -   49500   0   50000       -")
    problem, _ = quota.check(_plan(tmp_path), 1.0)
    assert problem.startswith(f"storage path {tmp_path / 'results'}: group project_465000's file quota "
                              "(`lfs quota -g project_465000 /lustre/fs1`) leaves 500 file(s): the study's 100")
    assert "quota -g project_465000 /lustre/fs1" in calls.read_text()


def test_a_lustre_project_quota_of_the_study_folder_is_read_when_it_has_one(tmp_path, lustre_all):
    free = "    /lustre/fs1  204800       0       0       -   100       0       0       -"
    calls = lustre_all(user=free, group=free, projid="3465000 P",
                       project="/lustre/fs1\n    9000000*  8000000 9000000  1d2h3m4s   10   0   0       -")
    problem, warnings = quota.check(_plan(tmp_path), 1.0)
    assert problem.startswith(f"storage path {tmp_path / 'results'}: project 3465000's quota (`lfs quota -p "
                              "3465000 /lustre/fs1`) leaves 0.00 GiB, less than 1 GiB")
    said = calls.read_text().splitlines()
    assert any(line.startswith("project -d ") for line in said) and "quota -p 3465000 /lustre/fs1" in said
    # a folder without a project id (0): its project quota is not asked
    calls.unlink()
    lustre_all(user=free, group=free, projid="0 -")
    assert quota.check(_plan(tmp_path), 1.0) == (None, [])
    assert not any(line.startswith("quota -p") for line in calls.read_text().splitlines())


def test_a_group_over_its_soft_quota_is_said_as_the_groups(tmp_path, lustre_all):
    lustre_all(user="    /lustre/fs1  204800       0       0       -   100       0       0       -",
               group="/lustre/fs1\n    1100000*  1000000 9000000 6d23h59m57s  100   0   0       -")
    problem, warnings = quota.check(_plan(tmp_path), 1.0)
    assert problem is None
    assert warnings == ["group project_465000 is over its soft space quota (`lfs quota -g project_465000 "
                        "/lustre/fs1`): writes stop in 6d23h59m57s unless some is freed"]


def test_the_group_asked_is_the_one_the_files_get_a_setgid_folders_else_the_processs(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o2775)
    assert quota._group(str(d / "results" / "toy")) == quota._name_of_group(os.stat(d).st_gid)
    os.chmod(d, 0o775)
    assert quota._group(str(d)) == quota._name_of_group(os.getegid())


def test_a_quota_tool_hung_on_lustre_does_not_hold_the_start_past_its_bound(tmp_path, lustre, monkeypatch):
    """`lfs quota` on a hung Lustre sits in D state: SIGKILL does not end it, and waiting for
    it blocked the study's start for as long as the file system hung. Modelled by a kill that
    has no effect (SIGTERM sent instead) on a tool that ignores SIGTERM."""
    import signal
    import subprocess

    pid_file = tmp_path / "lfs.pid"
    bins = tmp_path / "bin"
    _tool(bins, "lfs", f"echo $$ >> {pid_file}\ntrap '' TERM\nexec sleep 30\n")
    monkeypatch.setattr(subprocess.Popen, "kill", lambda self: self.send_signal(signal.SIGTERM))
    try:
        t = time.monotonic()
        assert quota.check(_plan(tmp_path), 1.0, timeout=1.0) == (None, [])
        assert time.monotonic() - t < 2.5
    finally:
        for _ in range(50):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.1)
        if pid_file.exists():
            for pid in {int(p) for p in pid_file.read_text().split()}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ---------------------------------------------------------------- a storage that does not answer


def test_a_storage_that_does_not_answer_stops_the_start_within_its_bound(tmp_path, monkeypatch):
    """On a hung Lustre the storage check's test write (and statvfs) sits in D state: the
    driver waited with it, silent, until the job's time limit. Modelled by a test write that
    answers only after 3 s; the bound here is 0.5 s."""
    import threading

    from hpoc.runtime import study

    release = threading.Event()
    real = login_preflight.tempfile.mkstemp

    def hung(*args, **kwargs):
        release.wait(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(login_preflight.tempfile, "mkstemp", hung)
    monkeypatch.setattr(login_preflight, "STORAGE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(quota, "read", lambda path, timeout=0: [])
    storage = tmp_path / "results"
    try:
        t = time.monotonic()
        with pytest.raises(StudyError) as err:
            study._check_storage(_plan(tmp_path), storage / "toy", io.StringIO())
        assert time.monotonic() - t < 2
        said = str(err.value)
        assert "\n" not in said
        assert said.startswith(f"the storage at {storage} does not answer within 0.5 s; is its file system "
                               "hung?"), said
        found = login_preflight.check_storage(_plan(tmp_path))
        assert [(f.ok, f.message) for f in found] == [(False, said)]
    finally:
        release.set()
    # one that answers is checked as before
    assert login_preflight.storage_problem(storage) is None


def test_the_trials_an_earlier_run_left_are_counted_from_one_listing(tmp_path, monkeypatch):
    """The folders of the trials an earlier run left (hpoc names them `trial_NNNNN_<id>`) are
    counted from the listing of the study folder (and of each shard's): a stat of each one's
    params.json was a round trip to Lustre's servers per trial, 5,000 of them as a big
    study started (benchmarks/trial_count.py). Other folders there (hpoc's `train`, a
    `tensorboard`, hidden ones) are not trials."""
    root = tmp_path / "study"
    for shard in ("shard-0", "shard-1"):
        for i in range(20):
            (root / shard / f"trial_{i:05d}_a{i}").mkdir(parents=True)
            (root / shard / f"trial_{i:05d}_a{i}" / "params.json").write_text("{}")
    for other in ("train", "tensorboard", ".hpoc-locks", "shard-1/train"):
        (root / other).mkdir()
    (root / "trial_notes.txt").write_text("")  # a file, not a folder
    stats: list[str] = []
    real = os.stat

    def counted(path, *args, **kwargs):
        stats.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    assert quota._trials_there(root) == 40
    assert len(stats) <= 3, stats[:5]


# ---------------------------------------------------------------- group quotas off Lustre

QUOTA_HEAD = "     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace\n"


def test_a_group_quota_off_lustre_is_asked_of_quota_g_for_the_group_the_files_get(tmp_path, monkeypatch):
    """NFS or ext4 project space under `quota`: the group's quota was not asked, and a run
    whose group had 500 files left was let start. `quota -g` prints a block per group of
    the user's (linuxquota quota.c: heading, then the table): the one read is the group the
    study's files get."""
    user = ("Disk quotas for user alice (uid 1000): \n" + QUOTA_HEAD +
            "      /dev/sdb1     100       0       0       0     100       0       0       0\n")
    groups = ("Disk quotas for group alice (gid 1000): \n" + QUOTA_HEAD +
              "      /dev/sdb1     100       0       0       0     100       0       0       0\n"
              "Disk quotas for group proj (gid 5000): \n" + QUOTA_HEAD +
              "      /dev/sdb1   51200       0 9000000       0   49500       0   50000       0\n"
              "Disk quotas for group other (gid 6000): none\n")
    _tool(tmp_path / "bin", "quota", f'echo "$@" >> {tmp_path}/quota.calls\n'
          f'if [ "$1" = -g ]; then cat <<"EOF"\n{groups}EOF\nelse cat <<"EOF"\n{user}EOF\nfi\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(quota, "_mount", lambda path: ("/project", "ext4", "/dev/sdb1"))
    monkeypatch.setattr(quota, "_group", lambda path: "proj")
    problem, _ = quota.check(_plan(tmp_path), 1.0)
    assert problem is not None and problem.startswith(
        f"storage path {tmp_path / 'results'}: group proj's file quota (`quota -g -w -p -v -f /project`) "
        "leaves 500 file(s): the study's 100"), problem
    # a group the user's groups do not list, or with no limits: no finding
    monkeypatch.setattr(quota, "_group", lambda path: "other")
    assert quota.check(_plan(tmp_path), 1.0) == (None, [])


def test_a_gpfs_group_quota_is_asked_of_mmlsquota_g(tmp_path, monkeypatch):
    head = ("mmlsquota::HEADER:version:reserved:reserved:filesystemName:quotaType:id:name:blockUsage:"
            "blockQuota:blockLimit:blockInDoubt:blockGrace:filesUsage:filesQuota:filesLimit:filesInDoubt:"
            "filesGrace:remarks:quota:defQuota:fid:filesetname:\n")
    usr = head + "mmlsquota::0:1:::gpfs1:USR:1000:alice:10:0:0:0:none:10:0:0:0:none:e:on:off:::\n"
    grp = head + "mmlsquota::0:1:::gpfs1:GRP:5000:proj:10:0:0:0:none:4900:0:5000:0:none:e:on:off:::\n"
    _tool(tmp_path / "bin", "mmlsquota",
          f'if [ "$1" = -g ]; then cat <<"EOF"\n{grp}EOF\nelse cat <<"EOF"\n{usr}EOF\nfi\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(quota, "_mount", lambda path: ("/gpfs/work", "gpfs", "/dev/gpfs1"))
    monkeypatch.setattr(quota, "_group", lambda path: "proj")
    problem, _ = quota.check(_plan(tmp_path), 1.0)
    assert problem is not None and problem.startswith(
        f"storage path {tmp_path / 'results'}: group proj's file quota (`mmlsquota -g proj -Y gpfs1`) "
        "leaves 100 file(s)"), problem
    assert quota.parse_mmlsquota(grp) is None  # a group's row is not the user's


def test_a_shard_moved_aside_is_not_counted_as_trials_there(tmp_path):
    """`--fresh` of one shard moves its folder aside within the study's
    (`shard-1.prev-<date>`): its trials are the earlier run's, kept where they were, and
    the fresh shard writes all of its own again. They were counted as there already, and a
    quota with too few files left for the fresh shard let it start."""
    root = tmp_path / "study"
    for shard in ("shard-0", "shard-1.prev-20261130-101500", "shard-1.prev-20261130-101500-2"):
        for i in range(10):
            (root / shard / f"trial_{i:05d}_a{i}").mkdir(parents=True)
    assert quota._trials_there(root) == 10


def test_a_fresh_run_counts_none_of_the_trials_it_moves_aside(tmp_path, lustre):
    """`--fresh` moves the earlier run aside (its files stay) and writes every trial anew:
    its 2 trials were taken as there already, and a quota of 20 files left let a run of
    2 x 15 files start. A shard's `--fresh` leaves the other shards' trials counted."""
    from hpoc.runtime import study

    lustre("    /lustre/fs1  204800       0 9000000       -   49980      0   50000       -")
    plan = _plan(tmp_path, 2)
    exp = tmp_path / "results" / "toy"
    for i in range(2):
        (exp / f"trial_{i:05d}_x").mkdir(parents=True)
    study._check_storage(plan, exp, io.StringIO())  # resumed: nothing left to write
    with pytest.raises(StudyError, match="leaves 20 file"):
        study._check_storage(plan, exp, io.StringIO(), fresh=True)
    shutil.rmtree(exp)
    plan = _plan(tmp_path, 4)
    plan["shards"]["count"] = 2
    for shard in (0, 1):
        for i in range(shard, 4, 2):
            (exp / f"shard-{shard}" / f"trial_{i:05d}_x").mkdir(parents=True)
    assert quota.files_needed(plan, fresh=exp / "shard-1") == (2 * 15, 2, 15)
