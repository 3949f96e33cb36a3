"""Room for a whole study before Ray starts: files (inodes) as well as bytes, and the user's
quota as well as the file system's room.

On Lustre and GPFS a user meets the quota (bytes or files) long before the file system is
full, and a study writes 13 to 15 files per trial (docs/results.md, "Files per trial"):
`statvfs` sees neither the quota nor what the study will write. The quota is asked of the
site's tool (`lfs quota`, `mmlsquota`, `quota`) with a short timeout; a tool missing, slow
or saying something else is no finding, never a failed run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


def parse_mmlsquota(text: str, command: str = "mmlsquota") -> Quota | None:
    """`mmlsquota -u USER -Y DEVICE` (GPFS): colon-separated rows read by the HEADER's names,
    KiB; a grace is `none` (not over), a time left (`6 days`) or `expired`. Per-fileset
    quotas print a row per fileset, and which one holds the path is not said: no finding."""
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
        if row.get("quotaType", "USR") != "USR":
            continue
        values = [row.get(k, "") for k in ("blockUsage", "blockQuota", "blockLimit", "blockGrace",
                                           "filesUsage", "filesQuota", "filesLimit", "filesGrace")]
        values = [v.replace(" ", "") or "-" for v in values]
        got = _limits([("-" if v == "none" else v) for v in values], lambda g: g == "expired")
        if got:
            found.setdefault(row.get("filesetname", ""), Quota(command, *got))
    return next(iter(found.values())) if len(found) == 1 else None


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


def read(path: str, timeout: float = TIMEOUT_S) -> Quota | None:
    """The user's quota on the file system of `path`, or None: no quota tool here, none
    answering within `timeout`, no quota, or output not understood."""
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
        return None
    cmd[0] = tool
    try:  # quota exits 1 when the user is over a quota: its output is read all the same
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    shown = " ".join(w if w != user else "$USER" for w in [os.path.basename(tool), *cmd[1:]])
    return parse(run.stdout, shown)


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


def _trials_there(root: Path) -> int:
    """Trial directories an earlier run left (a shard's too): they need no more room."""
    count = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name.startswith("shard-"):
            count += _trials_there(Path(entry.path))
        elif os.path.exists(os.path.join(entry.path, "params.json")):
            count += 1
    return count


def files_needed(plan: dict[str, Any]) -> tuple[int, int, int]:
    """(files, trials, files per trial) the study still has to write."""
    from hpoc.plan.space import total_trials

    root = Path(plan["storage"]["path"]) / plan["storage"]["name"]
    trials = max(0, total_trials(plan) - _trials_there(root))
    per = files_per_trial(plan)
    return trials * per, trials, per


# ---------------------------------------------------------------- the check

SKIP = "HPOC_MIN_FREE_GB=0 skips this check"


def check(plan: dict[str, Any], need_gb: float, timeout: float = TIMEOUT_S) -> tuple[str | None, list[str]]:
    """(why the study cannot start: too few files or too little quota left, one line; the
    warnings: tight, or over a soft quota whose grace runs). `need_gb` is the bytes limit
    (free_gb_needed): 0 skips every room check."""
    if need_gb <= 0:
        return None, []
    storage = plan["storage"]["path"]
    need, trials, per = files_needed(plan)
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
    q = read(storage, timeout)
    if q is None:
        return None, warnings
    where = f"`{q.command}`"
    files_left, kib_left = q.files.left(), q.kib.left()
    if files_left is not None and need and files_left < need and not capped:  # all ran: a few writes
        return (f"storage path {storage}: your file quota ({where}) leaves {files_left:,} file(s): "
                f"{study}; {fix}"), []
    if kib_left is not None and kib_left < need_gb * 2**20:
        return (f"storage path {storage}: your quota ({where}) leaves {kib_left / 2**20:.2f} GiB, less than "
                f"{need_gb:g} GiB; free space there, set `storage.path` to a file system with room, or set "
                "HPOC_MIN_FREE_GB to change the limit (0 skips it)"), []
    for what, limit in (("space", q.kib), ("file", q.files)):
        if limit.grace is not None:
            when = "writes are refused" if limit.expired else f"writes stop in {limit.grace}"
            warnings.append(f"you are over your soft {what} quota ({where}): {when} unless you free some")
    if files_left is not None and files_left < TIGHT * need:
        warnings.append(f"your file quota ({where}) leaves {files_left:,} file(s): {study}")
    elif (soft := q.files.soft_left()) is not None and q.files.grace is None and 0 <= soft < need:
        warnings.append(f"your soft file quota ({where}) leaves {soft:,} file(s): {study}; past it, writes "
                        "stop when its grace period ends")
    return None, warnings
