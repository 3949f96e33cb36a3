"""A small tmpfs for the tests of a disk that fills (root only: mount)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def mounted(tmp_path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted with `options` under `tmp_path` (a fixture's body: `yield from`);
    unmounted after. Skips without root or where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def fill(mnt: Path) -> None:
    """Fill the file system at `mnt` (`mnt/filler`) until a write fails."""
    with open(mnt / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
