"""Bytes said for people, in one unit system: binary (GiB, MiB), as SLURM reads `--mem=8G`
(8 GiB) and as free disk space is said elsewhere in hpoc. A job's 8G said in decimal units
was "8.6 GB", which its author did not recognise as the limit they set."""

from __future__ import annotations


def size(n: float) -> str:
    """`8.0 GiB`, `12.5 MiB`, `3.0 KiB`, `512 bytes`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"
