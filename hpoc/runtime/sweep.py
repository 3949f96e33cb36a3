"""Job directories that ended jobs of this user left in a node's /tmp (no Ray import).

A teardown that SLURM's SIGKILL cut short (KillWait), or a node that rebooted keeping /tmp,
left the job's token and Ray's session logs there, and nothing else ever removes them. Each
node of a later job of the same user removes those of its own /tmp: the batch node in
`cluster init`, every other node when its Ray worker starts (`hpoc.runtime.node`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from hpoc.runtime.session import OWNER

KEEP_FILE = "keep"  # HPOC_KEEP_TMP=1: kept to read Ray's logs, never swept
JOB_DIR_NAME = re.compile(r"hpoc-(\d+)(-r\d+)?")


def wanted(env: Mapping[str, str]) -> bool:
    """Inside a SLURM job, and not under HPOC_TMP: that may be shared with another cluster,
    whose jobs this squeue does not list (/tmp, or the job's own TMPDIR, is the node's)."""
    return bool(env.get("SLURM_JOB_ID")) and not env.get("HPOC_TMP")


def sweep_ended_jobs(base: Path, where: str = "", own: str = "") -> list[Path]:
    """Remove this user's job directories in `base` whose SLURM job has ended; the removed.

    Only when squeue answers (asked once, and only when there is a candidate), and never a
    job it still lists (a requeued or completing one included), one kept on purpose
    (HPOC_KEEP_TMP=1), another user's directory, or a local run's (`hpoc-<random>`). The
    directories are listed before squeue is asked: one that a job starting meanwhile
    makes is not among them, and a job whose directory is listed is already in the queue.
    `own`: this job's directory, made already (no reason to ask squeue)."""
    try:
        found = [p for p in base.iterdir() if JOB_DIR_NAME.fullmatch(p.name) and p.name != own and not p.is_symlink()
                 and p.is_dir() and p.stat().st_uid == os.getuid() and not (p / KEEP_FILE).exists()
                 and not (p / OWNER).exists()]  # a local run's, whose random name came out all digits
    except OSError:
        return []
    if not found or (listed := _listed_jobs()) is None:
        return []
    ended = sorted((p for p in found if JOB_DIR_NAME.fullmatch(p.name).group(1) not in listed),
                   key=lambda p: int(JOB_DIR_NAME.fullmatch(p.name).group(1)))
    for path in ended:
        shutil.rmtree(path, ignore_errors=True)
    if ended:
        print(f"hpoc: removed what ended jobs left in {base}{where} ({', '.join(p.name for p in ended)}): "
              "their teardown did not finish", flush=True)
    return ended


def _listed_jobs() -> set[str] | None:
    """The ids of this user's jobs squeue lists (array tasks one by one), this one's too;
    None when squeue cannot be asked."""
    from hpoc.submit.queue import ask_squeue  # stdlib only: nothing of submitit's

    rows = ask_squeue("%A", "-r", timeout=10)
    if isinstance(rows, str):
        return None
    return {r.strip() for r in rows if r.strip()} | {os.environ.get("SLURM_JOB_ID", "")}
