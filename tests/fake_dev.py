"""A node's /dev faked for GPU counting: AMD's /dev/kfd and render nodes, and the opens a
job's device cgroup refuses (it refuses the open, not the stat)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hpoc.runtime import node


def amd_node(root: Path, monkeypatch, gpus: int) -> tuple[Path, set[Path]]:
    """`root/dev` with /dev/kfd and `gpus` render nodes, as node.DEV; and the set of its
    paths whose read-write open fails with EPERM (empty: add to it)."""
    dev = root / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "kfd").touch()
    for k in range(gpus):
        (dev / "dri" / f"renderD{128 + k}").touch()
    monkeypatch.setattr(node, "DEV", dev)
    denied: set[Path] = set()
    real_open = os.open

    def cgroup_open(path, flags, *args, **kwargs):
        if Path(path) in denied and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", cgroup_open)
    return dev, denied
