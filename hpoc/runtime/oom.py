"""Whether the kernel's OOM killer ended a rank of a multi-worker trial.

A process the OOM killer ends gets SIGKILL: it leaves no crash record, and Ray's error only
lists the OOM killer among every way a worker dies. The kernel counts its kills (`oom_kill`
in the memory cgroup's `memory.events` (v2) or `memory.oom_control` (v1), else the node's
`/proc/vmstat`): a count that rose on the dead rank's node while the trial ran points to it.
The trial's process reads it before and after (trial.py) and notes it on the error
(crash.OOM_NOTE), which crash.died_line turns into the trial's line.
"""

from __future__ import annotations

import re
from typing import Iterator

_KILLS = re.compile(r"^oom_kill (\d+)$", re.MULTILINE)
_IP = re.compile(r"^\s*ip: (\S+)$", re.MULTILINE)  # of the actor whose death an error is


def kills(cgroups: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup",
          vmstat: str = "/proc/vmstat") -> int | None:
    """The OOM killer's kills in this process's memory cgroup (Ray's workers on a node share
    the raylet's), else on this node, or None where neither can be read."""
    for path in [*_cgroup_counters(cgroups, root), vmstat]:
        try:
            with open(path) as fh:
                found = _KILLS.search(fh.read())
        except OSError:
            continue
        if found:
            return int(found.group(1))
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
