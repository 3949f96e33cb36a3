"""Whether the kernel's OOM killer ended a trial's process, or a rank of a multi-worker trial.

A process the OOM killer ends gets SIGKILL: it leaves no crash record, and Ray's error only
lists the OOM killer among every way a worker dies. The kernel counts its kills (`oom_kill`
in the memory cgroup's `memory.events` (v2) or `memory.oom_control` (v1), else the node's
`/proc/vmstat`): a count that rose on the dead rank's node while the trial ran points to it.
The trial's process reads it before and after (trial.py) and notes it on the error
(crash.OOM_NOTE), which crash.died_line turns into the trial's line.

A one-worker trial's process is the one that died: it writes where its count stood at the
start (`record`, RECORD in the trial's directory, removed when the trial ends alive), and
the driver reads the same counter once Ray reports the death and notes it in the trial's
error.txt (`note_trial_kill`): the driver's own cgroup (a SLURM job's batch step) may not
be the Ray node's. On another node than the driver's, a task there reads it (`ask_on`):
the driver waits READ_NOW_S for its answer inside Tune's callback (none while another
answer is pending: trials dying together wait once), then leaves it pending
and notes a later answer at each step (`poll`), for READ_S at most: a slow raylet must not
stall every trial's results.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from typing import Any, Iterator

_KILLS = re.compile(r"^oom_kill (\d+)$", re.MULTILINE)
_IP = re.compile(r"^\s*ip: (\S+)$", re.MULTILINE)  # of the actor whose death an error is
_PID = re.compile(r"^\s*pid: (\d+)$", re.MULTILINE)
RECORD = ".hpoc-oom.json"  # a one-worker trial's process: its node, pid and count at the start
READ_S = 20.0  # how long another node's count is waited for (a node gone: none)
READ_NOW_S = 0.5  # of which the driver's loop waits at once: the trial's line has it then
END_S = 5.0  # what the end of the study waits for answers still pending
# trial directory -> (the pending task's ref, its error file, the failure asked about, the
# count at the start, deadline)
_PENDING: dict[str, tuple[Any, str, str, int, float]] = {}


def kills(cgroups: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup",
          vmstat: str = "/proc/vmstat") -> int | None:
    """The OOM killer's kills in this process's memory cgroup (Ray's workers on a node share
    the raylet's), else on this node, or None where neither can be read."""
    found = counter(cgroups, root, vmstat)
    return found[1] if found else None


def counter(cgroups: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup",
            vmstat: str = "/proc/vmstat") -> tuple[str, int] | None:
    """(the file, its count) that `kills` reads, or None."""
    for path in [*_cgroup_counters(cgroups, root), vmstat]:
        count = _count(path)
        if count is not None:
            return path, count
    return None


def _count(path: str) -> int | None:
    try:
        with open(path) as fh:
            found = _KILLS.search(fh.read())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def record(directory: str | None, **paths: str) -> None:
    """Write where this process's count stands (RECORD), for the driver to compare with
    should this process die (`note_trial_kill`)."""
    found = counter(**paths)
    if not directory or found is None:
        return
    try:
        with open(os.path.join(directory, RECORD), "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "path": found[0],
                       "kills": found[1], **_ray_node()}, fh)
    except OSError:
        pass  # a hint only: the trial runs as before


def forget(directory: str | None) -> None:
    """Remove `record`'s file: the process ended its trial alive."""
    if directory:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, RECORD))


def note_trial_kill(error_file: str | None, directory: str | None) -> None:
    """In the driver, after Ray reported a trial's failure in `error_file`: note in it
    (crash.OOM_NOTE, once) that the OOM killer killed on the trial's node while it ran, when
    the failure is the death of the one-worker trial's process that wrote `directory`'s
    RECORD, and the count it read there has risen since."""
    from hpoc.runtime.crash import OOM_NOTE, dead_rank, died
    from hpoc.runtime.retry import last_failure

    try:
        text = last_failure(error_file)
        if not text or not died(text) or dead_rank(text) is not None or OOM_NOTE in text:
            return
        with open(os.path.join(directory or "", RECORD)) as fh:
            start = json.load(fh)
        pid = _PID.findall(text)
        ip = _IP.findall(text)
        if not pid or int(pid[-1]) != start["pid"] or (ip and start.get("ip", ip[-1]) != ip[-1]):
            return  # another process's death (an earlier attempt's record, on another node)
        if start["host"] == socket.gethostname():
            now = _count(start["path"])
        elif start.get("node"):  # the counter is that node's: read it there
            if _PENDING.get(str(directory), (None, None, None))[2] == text:
                return  # asked already
            ref = ask_on(start["node"], start["path"])
            if ref is None:
                return
            # noted when it answers (`poll`); with one pending already (trials dying together
            # on a slow node), not waited for at all: the loop waits READ_NOW_S once, not per trial
            if not _ready([ref], 0 if _PENDING else READ_NOW_S):
                _PENDING[str(directory)] = (ref, str(error_file), text, start["kills"], time.monotonic() + READ_S)
                return
            now = _answer(ref)
        else:
            return
        if now is not None and now > start["kills"]:
            _note(str(error_file), text, str(directory))
    except Exception:  # noqa: BLE001 - a hint only: the trial's own error stands
        pass


def _note(error_file: str, failure: str, directory: str | None = None) -> bool:
    """Add OOM_NOTE to `error_file`, once, while `failure` (the death it is about) is still
    its latest: a later attempt's failure is not this kill's. Whether it was added now.
    Tune's `error_file` is its staging copy, copied to the trial's `directory` when Tune
    saves the experiment, the last time before the end's callbacks: that copy is made now."""
    from hpoc.files import write_atomic
    from hpoc.runtime.crash import OOM_NOTE
    from hpoc.runtime.retry import last_failure

    if last_failure(error_file) != failure:
        return False
    with open(error_file, "a") as fh:
        fh.write(OOM_NOTE + "\n")
    stored = os.path.join(directory, "error.txt") if directory else None
    if stored and os.path.isdir(directory) and not (os.path.exists(stored) and os.path.samefile(stored, error_file)):
        with open(error_file, encoding="utf-8", errors="replace") as fh:
            write_atomic(stored, fh.read())
    return True


def poll(timeout: float = 0.0) -> list[str]:
    """Note the kills the nodes asked by `note_trial_kill` have answered since, waiting
    `timeout` at most; those not answering by their deadline are given up. The trial
    directories whose error.txt was noted now."""
    if not _PENDING:
        return []
    import ray

    refs = {entry[0]: directory for directory, entry in _PENDING.items()}
    done = _ready(list(refs), timeout)
    noted = []
    for ref in done:
        directory = refs[ref]
        _, error_file, failure, kills, _ = _PENDING.pop(directory)
        now = _answer(ref)
        try:
            if now is not None and now > kills and _note(error_file, failure, directory):
                noted.append(directory)
        except OSError:
            pass  # a hint only
    clock = time.monotonic()
    for directory, (ref, *_, deadline) in list(_PENDING.items()):
        if clock >= deadline:
            del _PENDING[directory]
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - its node is gone, or the task already ended
                pass
    return noted


def _ray_node() -> dict[str, str]:
    """This process's Ray node: its id and address ({} outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            return {"node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}
    except Exception:  # noqa: BLE001 - a hint only
        pass
    return {}


def ask_on(node: str, path: str) -> Any:
    """A task reading the count in `path` on Ray node `node` (no CPU of the trials'): its
    ref, or None where it cannot be asked."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        task = ray.remote(_count).options(num_cpus=0, max_retries=0,
                                          scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        return task.remote(path)
    except Exception:  # noqa: BLE001 - a hint only
        return None


def _ready(refs: list[Any], timeout: float) -> list[Any]:
    """Those of `refs` done within `timeout`."""
    import ray

    try:
        return ray.wait(refs, num_returns=len(refs), timeout=timeout)[0]
    except Exception:  # noqa: BLE001 - Ray going away: none
        return []


def _answer(ref: Any) -> int | None:
    """The count a done task read, or None (it failed: the node is gone)."""
    import ray

    try:
        return ray.get(ref, timeout=0)
    except Exception:  # noqa: BLE001 - a hint only
        return None


def _cgroup_counters(cgroups: str, root: str) -> Iterator[str]:
    try:
        with open(cgroups) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if path in ("", "/"):
            continue  # the root cgroup has no counter of its own: the node's is read
        if controllers == "":
            yield f"{root}{path}/memory.events"
        elif "memory" in controllers.split(","):
            yield f"{root}/memory{path}/memory.oom_control"


def note_kill(exc: BaseException, before: int | None) -> None:
    """Note on `exc` (a rank's death) that the OOM killer killed meanwhile on this node,
    when the dead process ran here and the count rose since `before`."""
    from hpoc.runtime.crash import OOM_NOTE, died

    try:
        text = "\n".join([str(exc), *getattr(exc, "__notes__", [])])
        if before is None or not died(text) or not _here(text):
            return
        now = kills()
        add = getattr(exc, "add_note", None)  # Python 3.11+
        if now is not None and now > before and add is not None:
            add(OOM_NOTE)
    except Exception:  # noqa: BLE001 - a hint only: the trial's own error stands
        pass


def _here(text: str) -> bool:
    """Whether the process whose death `text` is ran on this node (its `ip:`; without one,
    when the cluster has one node)."""
    import ray

    ips = _IP.findall(text)
    if ips:
        return ips[-1] == ray.util.get_node_ip_address()
    return len([n for n in ray.nodes() if n.get("Alive")]) == 1
