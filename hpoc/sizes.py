"""Bytes said for people, in one unit system: binary (GiB, MiB), as SLURM reads `--mem=8G`
(8 GiB) and as free disk space is said elsewhere in hpoc. A job's 8G said in decimal units
was "8.6 GB", which its author did not recognise as the limit they set. A spec's, a plan's
and the shell's memory sizes are read here, one way: as sbatch reads them."""

from __future__ import annotations

import re


def size(n: float) -> str:
    """`8.0 GiB`, `12.5 MiB`, `3.0 KiB`, `512 bytes`."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


# sbatch's --mem (str_to_mbytes): ASCII digits (not `\d`: `８`), K/M/G/T in either case
# with an optional B (not re.IGNORECASE: the Kelvin sign), no unit for MiB.
_SBATCH_MEM = re.compile(r"([0-9]+)(?:([KMGTkmgt])[Bb]?)?")


def slurm_mem(text: str) -> tuple[str, int] | None:
    """(The plan's spelling, MiB) of a size as sbatch reads it, K rounded up: `64gb` is
    ("64G", 65536); None where sbatch reads none."""
    found = _SBATCH_MEM.fullmatch(text)
    if not found:
        return None
    n, unit = int(found.group(1)), (found.group(2) or "").upper()
    return found.group(1) + unit, -(-n // 1024) if unit == "K" else n * 1024 ** "MGT".index(unit or "M")
