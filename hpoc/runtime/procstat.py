"""A process's /proc/<pid>/stat, read once for the runtime (cluster.alive, node_stop).

The name field (`comm`, in parentheses) may hold spaces and parentheses of its own (`a) b`):
only the last ")" ends it, and the fields after it are numbers and the state letter.
"""

from __future__ import annotations


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of `pid`'s stat after its name: [state, ppid, ...]; None when it cannot be
    read (the process is gone, or this is no Linux) or makes no sense."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return after_name(text)


def after_name(text: str) -> list[str] | None:
    """The fields of a stat line after the name (`12 (a) b) S 1 ...` -> ["S", "1", ...])."""
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    return fields if paren and len(fields) >= 2 else None
