"""SBATCH_* variables of the submitting shell that override the spec.

sbatch reads its input environment variables over the job script's `#SBATCH` lines (only its
command line wins over them), and submitit's sbatch and `sbatch BUILD/job.sbatch` run in the
user's shell. A site's project tool may export them (JUWELS's `jutil env activate` sets
SBATCH_ACCOUNT): the job then runs under another account, partition or time than the spec
says, without a word. Settings the spec leaves to the site are not in question.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hpoc.sizes import slurm_mem

# variable -> the `slurm` setting it overrides (compared as SLURM reads both)
_SETTINGS = {
    "SBATCH_PARTITION": "partition",
    "SBATCH_ACCOUNT": "account",
    "SBATCH_QOS": "qos",
    "SBATCH_CONSTRAINT": "constraint",
    "SBATCH_TIMELIMIT": "time",
    "SBATCH_MEM_PER_NODE": "mem",
}


def overrides(plan: dict[str, Any], env: Mapping[str, str] | None = None) -> list[str]:
    """One line for each variable in `env` (default: this process's) that overrides what
    the plan's job script asks for."""
    env = os.environ if env is None else env
    slurm = plan.get("slurm") or {}
    out = []
    for key, var in in_shell(plan, env).items():
        if (mine := slurm.get(key)) is not None:
            shown = f'"{mine}"' if key not in ("time", "mem") else mine
            out.append(f"`slurm.{key} = {shown}` is overridden by {var} in this shell")
    resume = plan.get("resume") or {}
    signal = env.get("SBATCH_SIGNAL")
    if resume.get("enabled") and signal:  # the job checkpoints and requeues on its USR2
        out.append(f"resume's walltime signal (USR2 {resume['grace_s']} s before the time limit) is overridden "
                   f"by SBATCH_SIGNAL={signal} in this shell")
    return out


def in_shell(plan: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`slurm` setting -> `VAR=value` for each variable in `env` (default: this process's)
    whose value sbatch asks for instead of the spec's, or where the spec asks for nothing."""
    from hpoc.compiler.sections import slurm_time

    env = os.environ if env is None else env
    slurm = plan.get("slurm") or {}
    out = {}
    for var, key in _SETTINGS.items():
        value, mine = env.get(var), slurm.get(key)
        if not value:
            continue
        if mine is None:
            same = False
        elif key == "time":
            same = slurm_time(value)[0] == slurm.get("time_s")
        else:
            same = _mib(value) == _mib(mine) if key == "mem" else value == mine
        if not same:
            out[key] = f"{var}={value}"
    return out


def advice(line: str) -> str:
    """`line` with what to do about it."""
    var = line.split(" by ", 1)[1].split("=", 1)[0]
    return (f"{line}: sbatch reads its SBATCH_* variables over the job script's #SBATCH lines; "
            f"`unset {var}` and submit again, or write the same in the spec")


def _mib(size: str) -> int | str:
    """A SLURM size in MiB as sbatch reads it (`64GB`, `65536`), or the text itself when it is none."""
    read = slurm_mem(size.strip())
    return read[1] if read else size


def what_to_check(said: str, plan: dict[str, Any]) -> str:
    """Where to look when sbatch refused the job (`said`: its words), before submission
    (`hpoc check --preflight`) or at it: what this shell sets over the spec comes first."""
    from hpoc.compiler import refusal

    shards = plan.get("shards") or {}
    if "job array" in said.lower() and shards.get("count", 1) > 1:  # above the site's MaxArraySize
        return (f"check `slurm.array {{ shards = {shards['count']}, parallel = {shards['parallel']} }}` in "
                f"{plan['source']['file']} with the site's limits "
                "(`scontrol show config | grep -E 'MaxArraySize|MaxJobCount'`)")
    shell = in_shell(plan)
    check = refusal.what_to_check(said, plan["slurm"], plan["source"]["file"], shell)
    unset = refusal.left_to_site(said, plan["slurm"], plan["source"]["file"], shell)
    if unset and not check:
        return unset
    check = check or ("compare the spec's `slurm` block (partition, account, qos, cpus_per_node, gpus_per_node, "
                      "mem, time)")
    return f"{check} with what the site offers (`{refusal.SINFO}`)" + (f"; {unset}" if unset else "")
