"""The run lock: at most one driver per experiment directory.

`<experiment dir>/.hpoc-run.json` = {"pid": int, "host": str, "started": float (epoch s),
"shard": int}, plus "slurm_job" (str) and "slurm_restart" (int) inside a SLURM job, and
"slurm_task" (`ARRAYID_TASK`, as squeue names it) in an array task. The driver creates it
exclusively, whole (hard-linked from a private file, so nobody reads it half written;
O_EXCL where links are not allowed), before it looks at the directory, touches it every
HEARTBEAT_S while it runs, and removes it when it exits. Two drivers writing one experiment
corrupt it (each restores the other's live trials), so a second run refuses.

A lock left by a driver that died (SIGKILL, node crash) is stale and taken over:
- same host: its pid is gone, or is another process now (started after the lock), and
  the SLURM job that wrote it, if any, is not running (a job in a container may have a
  PID namespace of its own, where its pid means nothing here);
- another host: it was written by an earlier start of this very SLURM job (a requeue: same
  job id, higher restart count), or by a SLURM job that squeue says is no longer running
  (a node crash, then a new job), or its heartbeat is older than STALE_S.
Anything else is live, even a driver stopped with Ctrl-Z.

A SLURM job claims the lock before it brings Ray up (`claim`, from the job script's check
before Ray), so that of two jobs of one shard started at once only one starts a cluster.
A claim has `"claim": true` and, as its pid, the job script's shell (alive while the job
is); it has no heartbeat, so on another host it is live while squeue says its job runs.
The driver of the same job and restart takes it over (`Lock.acquire`); the job script's
teardown removes a claim no driver took (`release_claim`: Ray never came up).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

LOCK = ".hpoc-run.json"
HEARTBEAT_S = 60.0
STALE_S = 15 * 60.0  # generous: clocks of the nodes may disagree, shared storage may lag
PARTIAL_WAIT_S = 2.0  # how long a reader waits for an incomplete lock to be completed
WRITING_S = 10.0  # an incomplete lock younger than this may be being written: not stale


class Busy(Exception):
    """Another driver runs this experiment."""


def _me(shard: int, pid: int | None = None) -> dict[str, Any]:
    return {"pid": pid or os.getpid(), "host": socket.gethostname(), "started": time.time(), "shard": shard,
            **slurm_run()}


def slurm_run() -> dict[str, Any]:
    """{"slurm_job", "slurm_restart"[, "slurm_task"]} of this process's SLURM job, {} outside one."""
    if not os.environ.get("SLURM_JOB_ID"):
        return {}
    info: dict[str, Any] = {"slurm_job": os.environ["SLURM_JOB_ID"],
                            "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0)}
    if os.environ.get("SLURM_ARRAY_JOB_ID"):  # how squeue and the user name the task
        info["slurm_task"] = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return info


def pid_is(pid: int, started: float) -> bool:
    """Whether `pid` is alive and is the process that wrote a lock at `started`."""
    from hpoc.runtime.cluster import alive

    if not alive(pid):  # gone, or a zombie nobody reaped
        return False
    try:
        import psutil

        return psutil.Process(pid).create_time() <= started + 1.0
    except ImportError:
        return True
    except psutil.Error:
        return False


def _complete(info: dict[str, Any]) -> bool:
    return isinstance(info.get("pid"), int) and isinstance(info.get("host"), str)


def stale_reason(info: dict[str, Any], age_s: float) -> str | None:
    """Why the lock `info`, last touched `age_s` ago, is stale; None while it is live."""
    pid, host = info.get("pid"), info.get("host")
    if not _complete(info):
        return None if age_s < WRITING_S else "it is unreadable"
    if host == socket.gethostname():
        if pid == os.getpid():
            return "it is this process's own"
        if pid_is(pid, float(info.get("started") or 0)):
            return None
        job = info.get("slurm_job")
        if job and str(job) != os.environ.get("SLURM_JOB_ID") and _slurm_job_running(str(job)):
            return None  # its job runs, in a PID namespace of its own (a container)
        return f"process {pid} is gone"
    job = os.environ.get("SLURM_JOB_ID")
    if job and info.get("slurm_job") == job and \
            int(os.environ.get("SLURM_RESTART_COUNT") or 0) > int(info.get("slurm_restart") or 0):
        return f"an earlier start of this SLURM job ({job}) wrote it"
    running = _slurm_job_running(str(info["slurm_job"])) if info.get("slurm_job") else None
    if running is False:
        return f"its SLURM job {info['slurm_job']} is no longer running"
    if running and info.get("claim"):  # no heartbeat: live while its job runs
        return None
    if age_s > STALE_S:
        return f"its heartbeat stopped {age_s / 60:.0f} min ago"
    return None


_looked: dict[str, bool | None] | None = None  # within one_look(): each job's answer


@contextlib.contextmanager
def one_look() -> Iterator[None]:
    """One reader's view of many locks (`hpoc status`, which reads each shard's lock 4
    times): each SLURM job asked once, not once a read. A driver's claim always asks."""
    global _looked
    _looked = {}
    try:
        yield
    finally:
        _looked = None


def _slurm_job_running(job: str) -> bool | None:
    """Whether SLURM runs `job`; None when squeue cannot tell (not installed, no answer)."""
    looked = _looked
    if looked is None:
        return _ask_running(job)
    if job not in looked:
        looked[job] = _ask_running(job)
    return looked[job]


def _ask_running(job: str) -> bool | None:
    from hpoc.submit.queue import ask_squeue  # stdlib only: nothing of submitit's

    rows = ask_squeue("%T", "-j", job, timeout=20, anyones=True)  # a group's directory: anyone's job
    if isinstance(rows, str):
        return False if "invalid job id" in rows.lower() else None
    return any(state in ("RUNNING", "COMPLETING", "STOPPED", "SUSPENDED") for state in rows)


def _read(path: Path) -> tuple[str, dict[str, Any], float] | None:
    deadline = time.monotonic() + PARTIAL_WAIT_S
    while True:
        try:
            text = path.read_text(encoding="utf-8")
            age = time.time() - path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):  # no lock; the directory may be a file
            return None
        try:
            info = json.loads(text)
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        if _complete(info) or age >= WRITING_S or time.monotonic() >= deadline:
            return text, info, age
        time.sleep(0.05)  # another run is writing it (a filesystem without hard links)


def read(exp: Path) -> tuple[dict[str, Any], bool] | None:
    """The lock of `exp` and whether it is live (`hpoc status` and `hpoc results` ask too);
    None without one."""
    found = _read(exp / LOCK)
    if found is None:
        return None
    return found[1], stale_reason(found[1], found[2]) is None


def own_start(exp: Path) -> float | None:
    """When this process's run of `exp` started (its lock's `started`), or None."""
    found = _read(exp / LOCK)
    if found is None or found[1].get("pid") != os.getpid() \
            or found[1].get("host") != socket.gethostname():
        return None
    started = found[1].get("started")
    return float(started) if isinstance(started, (int, float)) else None


def holder(exp: Path) -> dict[str, Any] | None:
    """The live lock of `exp`, or None."""
    found = read(exp)
    return found[0] if found is not None and found[1] else None


def _own_claim(info: dict[str, Any]) -> bool:
    """Whether `info` is a claim by this very start of this SLURM job (its driver's to take)."""
    job = os.environ.get("SLURM_JOB_ID")
    return bool(info.get("claim")) and bool(job) and str(info.get("slurm_job")) == job and \
        info.get("slurm_restart") == int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def claim(exp: Path, shard: int, holder_pid: int, say: Callable[[str], None]) -> None:
    """Take the lock of `exp` for this SLURM job before it brings Ray up, held by the job
    script's shell `holder_pid`; raise Busy when another run holds it."""
    Lock(exp, shard)._create(dict(_me(shard, holder_pid), claim=True), say)


def release_claim(exp: Path) -> bool:
    """Remove this job's claim on `exp` that no driver took over (the job ends before its
    driver ran), and the directories it made if left empty; whether there was one."""
    found = _read(exp / LOCK)
    if found is None or not _own_claim(found[1]):
        return False
    (exp / LOCK).unlink(missing_ok=True)
    for d in reversed([Path(m) for m in found[1].get("made") or ()]):
        try:
            d.rmdir()
        except OSError:
            break
    return True


def describe(exp: Path, info: dict[str, Any]) -> str:
    job = info.get("slurm_task") or info.get("slurm_job")
    stop = f"`scancel {job}`; " if job else ""  # its id alone did not say how
    help_ = (f"  help: wait for it to end or stop it ({stop}it can be resumed); if no such run exists "
             f"any more, delete {exp / LOCK}")
    if not _complete(info):  # still being written, or damaged: say so, not "pid None"
        return f"{exp} is in use by another run (its run lock {exp / LOCK} is incomplete)\n{help_}"
    who = f"pid {info.get('pid')} on {info.get('host')}"
    kind = "`hpoc run`"
    if info.get("slurm_job"):
        who += f", SLURM job {info.get('slurm_task') or info['slurm_job']}"
        kind = "run (a SLURM job)"
        if info.get("claim"):  # the pid is the job script's
            kind = "run (a SLURM job starting its Ray cluster)"
    since = ""
    if isinstance(info.get("started"), (int, float)):
        since = ", since " + time.strftime("%Y-%m-%d %H:%M", time.localtime(info["started"]))
    return f"{exp} is in use by another {kind} ({who}{since})\n{help_}"


class Lock:
    """The lock of one experiment directory, held by this process until release()."""

    def __init__(self, exp: Path, shard: int) -> None:
        self.exp, self.shard = exp, shard
        self.path = exp / LOCK
        self._made: list[Path] = []  # directories this lock created (removed when left empty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    def acquire(self, say: Callable[[str], None]) -> None:
        """Create the lock, or take over this job's claim or a stale lock; raise Busy for a
        live one."""
        self._create(_me(self.shard), say)
        self._held = True
        self._start_heartbeat()
        atexit.register(self.release)  # should an exception skip the driver's own release

    def _create(self, info: dict[str, Any], say: Callable[[str], None]) -> None:
        for _ in range(5):
            self._mkdirs()
            if info.get("claim"):  # for whoever ends the claim: the driver or release_claim
                info = dict(info, made=[str(d) for d in self._made])
            if self._create_exclusive(json.dumps(info) + "\n"):
                return
            read = _read(self.path)
            if read is None:
                continue  # its holder just left
            text, held, age = read
            if _own_claim(held):  # live for everyone else, so nobody replaces it meanwhile
                self._made = [Path(m) for m in held.get("made") or ()]
                self._replace(info)
                return
            reason = stale_reason(held, age)
            if reason is None:
                raise Busy(describe(self.exp, held)) from None
            say(f"[hpoc] taking over the lock of a run that is no longer running "
                f"({reason}): {self.path}")
            self._drop_stale(text)
        raise Busy(f"{self.exp}: cannot take its run lock {self.path} (other runs keep "
                   "taking it)")

    def _create_exclusive(self, content: str) -> bool:
        """Create the lock with `content` unless it exists. Linked in whole from a private
        file, so a run reading it never sees it empty or half written."""
        tmp = self.path.with_name(f"{LOCK}.{os.getpid()}.{threading.get_ident()}.new")
        tmp.write_text(content, encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here: exclusive create, then write
            pass
        finally:
            tmp.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        return True

    def _replace(self, info: dict[str, Any]) -> None:
        new = self.path.with_name(f"{LOCK}.{os.getpid()}.new")
        new.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.replace(new, self.path)  # atomic: the lock never goes missing

    def release(self) -> None:
        atexit.unregister(self.release)
        self._stop.set()
        # Only a lock this process took: a run that stopped before (a storage path that is
        # a file, say) must not fail again here, hiding why it stopped.
        read = _read(self.path) if self._held else None
        self._held = False
        if read is not None and read[1].get("pid") == os.getpid() \
                and read[1].get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        for d in reversed(self._made):  # a run that stopped before writing anything
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []

    def _mkdirs(self) -> None:
        missing = []
        d = self.exp
        while not d.exists():
            missing.append(d)
            d = d.parent
        self.exp.mkdir(parents=True, exist_ok=True)
        self._made += reversed(missing)

    def _drop_stale(self, text: str) -> None:
        """Remove the stale lock whose content is `text`, never a new holder's lock."""
        grab = self.path.with_name(f"{LOCK}.{os.getpid()}.stale")
        try:
            os.rename(self.path, grab)
        except FileNotFoundError:
            return
        try:
            if grab.read_text(encoding="utf-8") != text:  # a new holder's: put it back
                os.link(grab, self.path)
        except OSError:
            pass
        grab.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=beat, name="hpoc-run-lock", daemon=True)
        self._thread.start()
