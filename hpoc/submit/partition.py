"""What the site's partitions allow, as sinfo reports it.

A site that does not enforce partition limits at submission (EnforcePartLimits=NO, SLURM's
default) lets sbatch, and `sbatch --test-only`, take a job whose `time` is above the
partition's MaxTime: the job then pends for ever (PartitionTimeLimit). `too_long` says so
before the job waits, for `hpoc check --preflight` and `hpoc submit`.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any


def time_limits(partition: str | None, timeout: float = 30) -> dict[str, str] | None:
    """Partition -> its time limit as sinfo writes it (`10:00`, `infinite`), for the partitions
    a job asking for `partition` may run in (`a,b` lets SLURM choose; the default one when
    None); None when sinfo cannot tell."""
    if not shutil.which("sinfo"):
        return None
    try:
        run = subprocess.run(["sinfo", "-h", "-o", "%P|%l"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if run.returncode != 0:
        return None
    rows = [line.split("|", 1) for line in run.stdout.splitlines() if "|" in line]
    if partition is None:
        return {name[:-1]: limit for name, limit in rows if name.endswith("*")} or None
    wanted = set(partition.split(","))
    found = {name.rstrip("*"): limit for name, limit in rows if name.rstrip("*") in wanted}
    return found if set(found) == wanted else None  # an unknown partition: sbatch says so itself


def too_long(slurm: dict[str, Any], timeout: float = 30) -> tuple[str, str] | None:
    """Why a job of `slurm` would never start for its `time` (a sentence naming the setting
    and the limits) and the longest limit it could have; None when it fits or sinfo cannot tell."""
    from hpoc.compiler.sections import slurm_time

    if not slurm.get("time_s") or (limits := time_limits(slurm.get("partition"), timeout)) is None:
        return None
    seconds = {name: slurm_time(limit)[0] for name, limit in limits.items()}
    if any(s is None or s >= slurm["time_s"] for s in seconds.values()):  # infinite, or one fits
        return None
    names = ", ".join(f"`{name}` ({limits[name]})" for name in limits)
    why = (f"`slurm.time = {slurm['time']}` is above the time limit of partition{'s' * (len(limits) > 1)} "
           f"{names}, and this site queues such jobs for ever (PartitionTimeLimit)")
    return why, limits[max(seconds, key=lambda name: seconds[name] or 0)]
