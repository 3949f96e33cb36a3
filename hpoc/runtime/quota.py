"""Room for a whole study before Ray starts: files (inodes) as well as bytes, and the user's
quota as well as the file system's room.

On Lustre and GPFS a user meets the quota (bytes or files) long before the file system is
full, and a study writes 13 to 15 files per trial (docs/results.md, "Files per trial"):
`statvfs` sees neither the quota nor what the study will write. The quota is asked of the
site's tool (`lfs quota`, `mmlsquota`, `quota`) with a short timeout; a tool missing, slow
or saying something else is no finding, never a failed run. The quota of the group the
files get (LUMI, JUWELS scratch: the project's group) is asked too (`lfs quota -g`,
`mmlsquota -g`, `quota -g`), and on Lustre the study folder's project quota; each is
checked. The tools run in daemon threads the start does not wait for past the timeout: on a
hung Lustre `lfs` sits in D state, where no kill ends it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 5.0
KIB = 1024
TIGHT = 2  # less than this many times what the study needs: a warning


@dataclass(frozen=True)
class Limit:
    """One quota (KiB or files) as the tool said it; 0 is no limit."""
    used: int
    soft: int
    hard: int
    grace: str | None = None  # over the soft limit: the time left, as said
    expired: bool = False     # over the soft limit with its grace ended: writes are refused

    def left(self) -> int | None:
        """What can still be written before writes are refused; None: no limit."""
        if self.expired:
            return 0
        if self.hard:
            return max(0, self.hard - self.used)
        if self.soft and self.used < self.soft:  # beyond it a grace runs, then it refuses
            return self.soft - self.used
        return None

    def soft_left(self) -> int | None:
        return self.soft - self.used if self.soft else None


@dataclass(frozen=True)
class Quota:
    command: str  # as the user would type it to see the same
    kib: Limit
    files: Limit
    whose: str = "your"  # "group g's", "project 12's": in the messages

    def over(self) -> str:
        """Who is over a soft limit, in words: "you are over your", "group g is over its"."""
        return "you are over your" if self.whose == "your" else f"{self.whose[:-2]} is over its"


def _number(word: str) -> int | None:
    """`1234`, `1234*` (over), `[1234]` (lfs: inaccurate, some targets did not answer)."""
    word = word.strip("*[]")
    return int(word) if word.isdigit() else None


def _limits(values: list[str], expired: Any, said: Any = str) -> tuple[Limit, Limit] | None:
    """kbytes quota limit grace files quota limit grace -> (KiB, files); `expired(grace)`
    whether a grace has run out, `said(grace)` the time left in words."""
    if len(values) < 8:
        return None
    out = []
    for used, soft, hard, grace in (values[0:4], values[4:8]):
        nums = [_number(used), _number(soft), _number(hard)]
        if None in nums:
            return None
        grace = grace.strip("[]")
        over = grace not in ("-", "0", "")
        out.append(Limit(*nums, grace=said(grace) if over else None, expired=over and expired(grace)))  # type: ignore[misc]
    return out[0], out[1]


def _table(text: str) -> list[str] | None:
    """The words after the `Filesystem kbytes quota limit grace files quota limit grace`
    heading (lfs, quota: its names vary: blocks/space, bquota/iquota, ...): the file system,
    alone on its line when its name is long, then the 8 values."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if len(words) == 9 and words[0] == "Filesystem":
            return " ".join(lines[i + 1:]).split()
    return None


def parse_lfs(text: str, command: str = "lfs quota") -> Quota | None:
    """`lfs quota -u USER MOUNT`: grace `-` when not over the soft limit (or at the hard
    one), a time left (`6d23h59m57s`), or `none` once it has run out."""
    words = _table(text)
    got = _limits(words[1:9], lambda g: g == "none") if words else None
    return Quota(command, *got) if got else None


def parse_quota(text: str, command: str = "quota", now: float | None = None) -> Quota | None:
    """`quota -w -p -v -f MOUNT` (linuxquota): 1 KiB blocks; with -p a grace is `0` or the
    time (epoch seconds) it ends. `Disk quotas for user me (uid 1): none`: no limits."""
    now = time.time() if now is None else now
    words = _table(text)
    got = _limits(words[1:9], lambda g: g.isdigit() and int(g) <= now,
                  lambda g: _duration(int(g) - now) if g.isdigit() else g) if words else None
    return Quota(command, *got) if got else None


def _duration(seconds: float) -> str:
    """`6d23h`, `5h12m`, `40m`: a grace's time left as lfs says it, to the minute."""
    minutes = max(0, int(seconds) // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    return f"{days}d{hours}h" if days else f"{hours}h{mins}m" if hours else f"{mins}m"


_MM = re.compile(r"^mmlsquota::")


def parse_mmlsquota(text: str, command: str = "mmlsquota", kind: str = "USR") -> Quota | None:
    """`mmlsquota -u USER -Y DEVICE` (GPFS; `-g GROUP`: rows of `kind` GRP): colon-separated
    rows read by the HEADER's names, KiB; a grace is `none` (not over), a time left (`6 days`)
    or `expired`. Per-fileset quotas print a row per fileset, and which one holds the path is
    not said: no finding."""
    header: list[str] | None = None
    found: dict[str, Quota] = {}
    for line in text.splitlines():
        if not _MM.match(line):
            continue
        fields = line.split(":")
        if fields[2] == "HEADER":
            header = fields
            continue
        if header is None:
            continue
        row = dict(zip(header, fields))
        if row.get("quotaType", "USR") != kind:
            continue
        values = [row.get(k, "") for k in ("blockUsage", "blockQuota", "blockLimit", "blockGrace",
                                           "filesUsage", "filesQuota", "filesLimit", "filesGrace")]
        values = [v.replace(" ", "") or "-" for v in values]
        got = _limits([("-" if v == "none" else v) for v in values], lambda g: g == "expired")
        if got:
            found.setdefault(row.get("filesetname", ""), Quota(command, *got))
    return next(iter(found.values())) if len(found) == 1 else None


_GROUP_BLOCK = re.compile(r"^Disk quotas for group (\S+) \(gid (\d+)\):", re.MULTILINE)


def group_block(text: str, group: str) -> str:
    """The block of `quota -g` (one per group of the user's) about `group` (a name, or the
    gid where it has none), or ""."""
    found = list(_GROUP_BLOCK.finditer(text))
    for here, after in zip(found, found[1:] + [None]):
        if group in (here.group(1), here.group(2)):
            return text[here.start():after.start() if after else len(text)]
    return ""


def _mount(path: str) -> tuple[str, str, str]:
    """(mount point, file system type, device) holding `path` (its nearest existing part)."""
    path = os.path.realpath(path)
    best = ("/", "", "")
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
                    best = (point, parts[2], parts[0])
    except OSError:
        pass
    return best


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


# GPFS installs its commands outside the usual PATH
_ELSEWHERE = {"mmlsquota": ("/usr/lpp/mmfs/bin/mmlsquota",)}


def _name_of_group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _existing(path: str) -> str:
    """`path`'s nearest part that exists (the storage folder may not yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _group(path: str) -> str:
    """The group the study's files will have: a setgid folder's (project folders), else
    this process's."""
    try:
        st = os.stat(_existing(path))
    except OSError:
        return _name_of_group(os.getegid())
    return _name_of_group(st.st_gid if st.st_mode & 0o2000 else os.getegid())


def _output(cmd: list[str], deadline: float) -> str | None:
    """The stdout of `cmd` (its exit code aside: quota exits 1 over a quota), or None: not
    started, or not done by `deadline` (killed; waiting for that only blocks this thread)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    try:
        return proc.communicate(timeout=left)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()  # in D state this never returns: the caller has moved on
        return None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _within(probes: list[Any], timeout: float) -> list[Any]:
    """The results of `probes` (callables given the deadline) that are done within
    `timeout`, in their order; each runs in a daemon thread, the late ones are left."""
    deadline = time.monotonic() + timeout
    results: dict[int, Any] = {}

    def run(i: int, probe: Any) -> None:
        try:
            results[i] = probe(deadline)
        except Exception:  # noqa: BLE001 - a quota is a hint: none found
            results[i] = None

    threads = [threading.Thread(target=run, args=(i, p), daemon=True, name="hpoc-quota")
               for i, p in enumerate(probes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [results.get(i) for i in range(len(probes))]


_PROJECT = re.compile(r"^\s*(\d+) ([P-]) ", re.MULTILINE)


def _lustre_probes(lfs: str, path: str, mount: str, user: str) -> list[Any]:
    """`lfs quota` of the user, the group the files get, and the folder's project (asked
    of `lfs project -d` first: 0, or no inherit flag `P`, is none), as `_within`'s probes:
    even a stat of the folder may hang on a hung Lustre."""
    def ask(flag: str, name: str, shown: str, whose: str, deadline: float) -> Quota | None:
        text = _output([lfs, "quota", flag, name, mount], deadline)
        q = parse_lfs(text or "", f"lfs quota {flag} {shown} {mount}")
        return Quota(q.command, q.kib, q.files, whose) if q else None

    def group(deadline: float) -> Quota | None:
        name = _group(path)
        return ask("-g", name, name, f"group {name}'s", deadline)

    def project(deadline: float) -> Quota | None:
        found = _PROJECT.search(_output([lfs, "project", "-d", _existing(path)], deadline) or "")
        if not found or found.group(1) == "0" or found.group(2) != "P":
            return None
        pid = found.group(1)
        return ask("-p", pid, pid, f"project {pid}'s", deadline)

    return [lambda d: ask("-u", user, "$USER", "your", d), group, project]


def read(path: str, timeout: float = TIMEOUT_S) -> list[Quota]:
    """The quotas on the file system of `path` that bind the study (the user's; on Lustre
    its group's and project's too), those that answered within `timeout` in all: none with
    no quota tool here, none answering, no quota, or output not understood."""
    mount, fstype, device = _mount(path)
    user = _user()
    if fstype == "lustre":
        cmd, parse = ["lfs", "quota", "-u", user, mount], parse_lfs
    elif fstype == "gpfs":
        cmd, parse = ["mmlsquota", "-u", user, "-Y", os.path.basename(device)], parse_mmlsquota
    else:
        cmd, parse = ["quota", "-w", "-p", "-v", "-f", mount], parse_quota
    tool = shutil.which(cmd[0]) or next((p for p in _ELSEWHERE.get(cmd[0], ()) if os.access(p, os.X_OK)), None)
    if tool is None:
        return []
    if fstype == "lustre":
        probes = _lustre_probes(tool, path, mount, user)
    else:
        shown = " ".join(w if w != user else "$USER" for w in [os.path.basename(tool), *cmd[1:]])
        probes = [lambda d: parse(_output([tool, *cmd[1:]], d) or "", shown),
                  _group_probe(tool, path, mount, device)]
    return [q for q in _within(probes, timeout) if q is not None]


def _group_probe(tool: str, path: str, mount: str, device: str) -> Any:
    """`_within`'s probe of the group quota off Lustre, of the group the files get:
    `mmlsquota -g GROUP -Y DEVICE` (GPFS), or `quota -g` (one block per group of the
    user's, that group's read)."""
    def probe(deadline: float) -> Quota | None:
        name = _group(path)
        if os.path.basename(tool) == "mmlsquota":
            args = ["-g", name, "-Y", os.path.basename(device)]
            q = parse_mmlsquota(_output([tool, *args], deadline) or "", f"mmlsquota {' '.join(args)}", kind="GRP")
        else:
            args = ["-g", "-w", "-p", "-v", "-f", mount]
            q = parse_quota(group_block(_output([tool, *args], deadline) or "", name), f"quota {' '.join(args)}")
        return Quota(q.command, q.kib, q.files, f"group {name}'s") if q else None

    return probe


# ---------------------------------------------------------------- what the study needs

BASE_FILES = 9  # Ray's 5 files, stdout/stderr, .hpoc-started and the trial's directory


def files_per_trial(plan: dict[str, Any]) -> int:
    """The files (inodes) one trial leaves: its directory and 8 files, then `keep + 1`
    checkpoints of a directory and a file each (docs/results.md; 15 with `keep = 2`)."""
    ckpt = plan.get("checkpoint") or {}
    if not ckpt.get("every"):
        return BASE_FILES
    keep = ckpt.get("keep") or 2  # keep all: at least as many
    return BASE_FILES + 2 * (int(keep) + 1)


def _trials_there(root: Path, fresh: Path | None = None) -> int:
    """Trial directories an earlier run left (a shard's too): they need no more room, but
    for those under `fresh` (a `--fresh` run's folder: moved aside, every trial written
    anew). Read from the listing alone, by the name hpoc gives them (tuner.trial_dirname):
    a stat of each one's files is a round trip to Lustre's servers per trial
    (benchmarks/trial_count.py)."""
    if fresh is not None and root == fresh:
        return 0
    count = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        if not entry.is_dir():
            continue
        if re.fullmatch(r"shard-\d+", entry.name):  # not a shard moved aside (`shard-1.prev-<date>`)
            count += _trials_there(Path(entry.path), fresh)
        elif entry.name.startswith("trial_"):
            count += 1
    return count


def files_needed(plan: dict[str, Any], fresh: Path | None = None) -> tuple[int, int, int]:
    """(files, trials, files per trial) the study still has to write; `fresh`: the folder
    a `--fresh` run moves aside (its trials are written again)."""
    from hpoc.plan.space import total_trials

    root = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    trials = max(0, total_trials(plan) - _trials_there(root, fresh))
    per = files_per_trial(plan)
    return trials * per, trials, per


# ---------------------------------------------------------------- the check

SKIP = "HPOC_MIN_FREE_GB=0 skips this check"


def check(plan: dict[str, Any], need_gb: float, timeout: float = TIMEOUT_S,
          fresh: Path | None = None) -> tuple[str | None, list[str]]:
    """(why the study cannot start: too few files or too little quota left, one line; the
    warnings: tight, or over a soft quota whose grace runs). `need_gb` is the bytes limit
    (free_gb_needed): 0 skips every room check; `fresh` as files_needed takes it."""
    if need_gb <= 0:
        return None, []
    storage = plan["storage"]["path"]
    need, trials, per = files_needed(plan, fresh)
    study = f"the study's {trials:,} trial(s) left need about {need:,} ({per} each; docs/results.md, \"Files per trial\")"
    fix = f"free files there, set `storage.path` to a file system with room (or `checkpoint.keep` lower), or {SKIP}"
    warnings: list[str] = []
    # under a time budget `num_samples` is a ceiling: too few files is said, not refused
    capped = bool((plan.get("trials") or {}).get("time_budget_s"))
    if capped:
        study += ", unless the time budget ends it first"

    from hpoc.runtime import full

    st = full._statvfs(storage)
    if st is not None and st.f_files and need:
        if st.f_favail < need and not capped:
            return (f"storage path {storage} has {st.f_favail:,} free files (inodes) on its file system: "
                    f"{study}; {fix}"), []
        if st.f_favail < TIGHT * need:
            warnings.append(f"storage path {storage} has {st.f_favail:,} free files (inodes) on its file "
                            f"system: {study}")
    problems: list[str] = []
    for q in sorted(read(storage, timeout) or [], key=_tightest):
        problem = _verdict(q, storage, need, need_gb, study, fix, capped, warnings)
        if problem:
            problems.append(problem)
    return (problems[0], []) if problems else (None, warnings)


def _tightest(q: Quota) -> tuple[float, float]:
    """Files, then KiB left: the quota that leaves least is said first."""
    files, kib = q.files.left(), q.kib.left()
    return (float("inf") if files is None else files, float("inf") if kib is None else kib)


def _verdict(q: Quota, storage: str, need: int, need_gb: float, study: str, fix: str, capped: bool,
             warnings: list[str]) -> str | None:
    """Why `q` refuses the study, or None, its warnings added to `warnings`."""
    where = f"`{q.command}`"
    files_left, kib_left = q.files.left(), q.kib.left()
    if files_left is not None and need and files_left < need and not capped:  # all ran: a few writes
        return (f"storage path {storage}: {q.whose} file quota ({where}) leaves {files_left:,} file(s): "
                f"{study}; {fix}")
    if kib_left is not None and kib_left < need_gb * 2**20:
        return (f"storage path {storage}: {q.whose} quota ({where}) leaves {kib_left / 2**20:.2f} GiB, less than "
                f"{need_gb:g} GiB; free space there, set `storage.path` to a file system with room, or set "
                "HPOC_MIN_FREE_GB to change the limit (0 skips it)")
    for what, limit in (("space", q.kib), ("file", q.files)):
        if limit.grace is not None:
            when = "writes are refused" if limit.expired else f"writes stop in {limit.grace}"
            who = "you free some" if q.whose == "your" else "some is freed"
            warnings.append(f"{q.over()} soft {what} quota ({where}): {when} unless {who}")
    if files_left is not None and files_left < TIGHT * need:
        warnings.append(f"{q.whose} file quota ({where}) leaves {files_left:,} file(s): {study}")
    elif (soft := q.files.soft_left()) is not None and q.files.grace is None and 0 <= soft < need:
        warnings.append(f"{q.whose} soft file quota ({where}) leaves {soft:,} file(s): {study}; past it, writes "
                        "stop when its grace period ends")
    return None
