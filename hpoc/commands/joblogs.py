"""The output files of `sbatch BUILD/job.sbatch` jobs, for `hpoc status`.

Such a job is recorded nowhere but in squeue while it is queued or running. Once it has
ended, its `<study>-<job id>.err` (`<study>-<array id>_<task>.err` for a shard of an array)
beside plan.json is what is left: it names the job, and its last error line says why the
job failed (a setup line, a Ray head that died, SLURM's own `*** JOB … CANCELLED ***`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# What says why a job ended, in its .err: hpoc's own lines (the driver's `error: ...`),
# SLURM's, a traceback's last line, Python's when `python -m MODULE` cannot start, bash's
# for a program it cannot find. A warning is not why: the job went on after it.
_WHY = re.compile(r"hpoc: |error: |slurmstepd\S*: error: \*\*\* |[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b"
                  r"|\S+: (Error while finding module specification|No module named )"
                  r"|\S+: line \d+: .*: (command not found|No such file or directory)$")
_NOISE = ("hpoc: signal during teardown", "hpoc: stopping", "hpoc: terminated (SIGTERM)", "hpoc: warning:")
# SLURM's line for a requeue says that it happened, not why (the job's own requeue at the
# walltime, `scontrol requeue`): an earlier line may say why; `hpoc status` says it was requeued.
_REQUEUED = "DUE TO JOB REQUEUE ***"
TAIL_BYTES = 16384


def newest(build_dir: Path, study: str) -> dict[int, dict[str, Any]]:
    """shard -> {job_id, err} of the newest job whose .err lies in `build_dir`."""
    pattern = re.compile(re.escape(study) + r"-(\d+)(?:_(\d+))?\.err")
    found: dict[int, tuple[int, dict[str, Any]]] = {}
    try:
        names = [p.name for p in build_dir.iterdir()]
    except OSError:
        return {}
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        base, task = int(m.group(1)), m.group(2)
        shard = int(task) if task is not None else 0
        job_id = f"{base}_{task}" if task is not None else str(base)
        if shard not in found or base > found[shard][0]:
            found[shard] = (base, {"job_id": job_id, "err": str(build_dir / name)})
    return {shard: job for shard, (_, job) in found.items()}


def err_file(build_dir: Path | str, study: str, job: dict[str, Any]) -> str:
    """Where a job's .err is: beside plan.json for an `sbatch BUILD/job.sbatch` job (`sbatch`
    set), submitit's task-0 log for an `hpoc submit` one."""
    job_id = job["job_id"]
    if job.get("sbatch"):
        return str(Path(build_dir) / f"{study}-{job_id}.err")
    return str(Path(build_dir) / "logs" / job_id / f"{job_id}_0_log.err")


def why(err: str) -> str | None:
    """The last line of the job's .err that says why it ended (None: none does)."""
    try:
        with open(err, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if _WHY.match(line) and not line.startswith(_NOISE) and not line.endswith(_REQUEUED):
            return line if len(line) <= 400 else line[:400] + "…"
    return None


# Python itself saying that `python -m MODULE` cannot start: the nodes' interpreter lacks a
# package hpoc's job needs (hpoc, submitit, Ray), not the study's code.
_NO_PACKAGE = re.compile(r"\S+: (Error while finding module specification|No module named )")


_STORAGE = re.compile(r"(hpoc: )?(error: )?storage path .*(: \S.* exists and is not a directory| is not writable: )")


def advice(why: str) -> str | None:
    """What to change when the reason a job ended is the spec's (its interpreter, a setup
    line, the storage path), else None."""
    if _NO_PACKAGE.match(why):
        return ("the python on the nodes lacks it: set `slurm.python` to the python of the environment "
                "hpoc is installed in, or activate that environment in `slurm.setup`")
    if _STORAGE.match(why):  # the driver's check of `storage.path`: the same plan fails again
        return ("set `storage.path` in the spec to a directory the nodes can write (or make that one "
                "writable), compile and submit again")
    if why.startswith("hpoc: slurm.setup failed"):
        return ("fix that `slurm.setup` line in the spec (the nodes run it as written: `module avail`, "
                "`module spider` on a login node show the site's names), compile and submit again")
    return None
