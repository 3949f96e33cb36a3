"""What the site's partitions allow, as sinfo reports it.

A site that does not enforce partition limits at submission (EnforcePartLimits=NO, SLURM's
default) lets sbatch take a job whose `time` is above the partition's MaxTime, or whose
`nodes` are more than the partition has or lets one job use: the job then pends for ever
(PartitionTimeLimit, PartitionNodeLimit), and squeue may not say so until seconds later.
So does a `cpus_per_node` above every node's CPUs (PartitionConfig).
`never_fits` says so from the partition's own limits, for `hpoc check --preflight` (whose
`sbatch --test-only` takes such a `time`) and `hpoc submit`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

# partition, time limit, node count, job size in nodes (`1-infinite`), CPUs per node (`64+`
# where the row's nodes differ: the fewest), the row's nodes (`nid[005000-005001]`)
_FORMAT = "%P|%l|%D|%s|%c|%N"


class Sinfo:
    """The site's partitions as sinfo reports them, asked once, on first need: the checks of
    one preflight share its answer."""

    def __init__(self, timeout: float = 30) -> None:
        self.timeout = timeout
        self._asked: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}

    @functools.cached_property
    def _table(self) -> tuple[dict[str, dict[str, Any]], str | None] | None:
        """(partition -> its row, the default partition), None when sinfo cannot tell."""
        if not shutil.which("sinfo"):
            return None
        try:
            run = subprocess.run(["sinfo", "-h", "-o", _FORMAT], capture_output=True, text=True,
                                 timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if run.returncode != 0:
            return None
        found: dict[str, dict[str, Any]] = {}
        default = None
        for line in run.stdout.splitlines():
            parts = line.split("|")
            if len(parts) not in (4, 5, 6) or not parts[2].isdigit():
                continue
            name, time, count, size, *rest = parts
            if name.endswith("*"):
                name = default = name[:-1]
            top = size.rpartition("-")[2]
            row = found.setdefault(name, {"time": time, "nodes": 0, "max_nodes": int(top) if top.isdigit() else None,
                                          "cpus": None, "most_cpus": 0, "hosts": []})
            row["nodes"] += int(count)  # sinfo splits a partition into rows by node state
            if len(rest) == 2 and rest[1] and int(count):
                row["hosts"].append(rest[1])
            cpus = re.match(r"\d+", rest[0]) if rest else None
            if cpus is not None and int(count):
                row["cpus"] = min(row["cpus"] or int(cpus[0]), int(cpus[0]))
            if row["most_cpus"] is not None and int(count):  # `64+`: some have more, how many unsaid
                row["most_cpus"] = max(row["most_cpus"], int(cpus[0])) if cpus and cpus[0] == rest[0] else None
        return found, default

    def _usable(self, hosts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Node -> {cpus: those a job may have, threads: hardware threads a core, partitions},
        as `scontrol show node` says of `hosts` (sinfo's node lists; asked once); empty when
        it cannot tell. sinfo's CPUs count the cores a site keeps for the system
        (CoreSpecCount), which a job never gets: a `cpus_per_node` above the rest pends for ever."""
        if hosts not in self._asked:
            self._asked[hosts] = self._ask_scontrol(hosts)
        return self._asked[hosts]

    def _ask_scontrol(self, hosts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        if not hosts or not shutil.which("scontrol"):
            return {}
        try:
            run = subprocess.run(["scontrol", "-o", "show", "node", ",".join(hosts)], capture_output=True,
                                 text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        nodes = {}
        for line in run.stdout.splitlines() if run.returncode == 0 else []:
            said = dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", line))
            if said.get("NodeName") and (cpus := usable_cpus(said)) is not None:
                threads = said.get("ThreadsPerCore", "1")
                nodes[said["NodeName"]] = {"cpus": cpus, "threads": int(threads) if threads.isdigit() else 1,
                                           "partitions": said.get("Partitions", "").split(",")}
        return nodes

    def limits(self, partition: str | None) -> dict[str, dict[str, Any]] | None:
        """Partition -> {time (as sinfo writes it: `10:00`, `infinite`), nodes, max_nodes
        (None: no limit), cpus (the fewest a node has; None: not said), most_cpus (the most a
        node has; None: not said), threads (hardware threads a core, 1 when not said)} for
        the partitions a job asking for `partition` may run in (`a,b` lets SLURM choose; the
        default one when None); None when sinfo cannot tell. CPUs are those a job may have
        where scontrol says (not the cores a site keeps for the system), else sinfo's."""
        if self._table is None:
            return None
        found, default = self._table
        wanted = [default] if partition is None else partition.split(",")
        if None in wanted or not set(wanted) <= set(found):  # an unknown partition: sbatch says so itself
            return None
        usable = self._usable(tuple(sorted({h for name in wanted for h in found[name]["hosts"]})))
        out = {}
        for name in wanted:
            row = {**found[name], "threads": 1}
            nodes = [n for n in usable.values() if name in n["partitions"]]
            if nodes:
                row.update(cpus=min(n["cpus"] for n in nodes), most_cpus=max(n["cpus"] for n in nodes),
                           threads=max(n["threads"] for n in nodes))
            out[name] = row
        return out


def usable_cpus(node: dict[str, str]) -> int | None:
    """The CPUs of a node (scontrol's fields) that a job may have: CPUEfctv (SLURM 22.05 and
    later), else CPUTot less the system's (CPUSpecList, else CoreSpecCount cores)."""
    if node.get("CPUEfctv", "").isdigit():
        return int(node["CPUEfctv"])
    if not node.get("CPUTot", "").isdigit():
        return None
    spec = 0
    if node.get("CPUSpecList") not in (None, "", "(null)"):
        for part in node["CPUSpecList"].split(","):
            low, _, high = part.partition("-")
            spec += int(high or low) - int(low) + 1 if low.isdigit() and (high or low).isdigit() else 0
    elif node.get("CoreSpecCount", "").isdigit():
        threads = node.get("ThreadsPerCore", "1")
        spec = int(node["CoreSpecCount"]) * (int(threads) if threads.isdigit() else 1)
    return int(node["CPUTot"]) - spec


def one_thread_a_core(slurm: dict[str, Any], env: Mapping[str, str] | None = None) -> bool:
    """Whether the job asks for one hardware thread a core (`--hint=nomultithread`,
    `--threads-per-core=1`, or SBATCH_HINT/SLURM_HINT in the shell): its CPUs are cores."""
    env = os.environ if env is None else env
    flags = [re.sub(r"\s+", "=", str(f).strip(), count=1) for f in slurm.get("extra") or []]
    return "--hint=nomultithread" in flags or "--threads-per-core=1" in flags or \
        "nomultithread" in (env.get("SBATCH_HINT") or env.get("SLURM_HINT") or "")


def _job_cpus(row: dict[str, Any], key: str, one_thread: bool) -> int | None:
    """row[key] (CPUs) as a job counts them: cores when it takes one thread a core."""
    n = row.get(key)
    return n // row.get("threads", 1) if n is not None and one_thread else n


def enforces_part_limits(timeout: float = 30) -> bool | None:
    """Whether sbatch refuses, at submission, a job that no node of its partition fits
    (EnforcePartLimits other than NO); None when scontrol cannot tell."""
    if not shutil.which("scontrol"):
        return None
    try:
        run = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"^EnforcePartLimits\s*=\s*(\S+)", run.stdout, re.MULTILINE)
    return None if run.returncode != 0 or found is None else found[1].upper() != "NO"


def never_fits(plan: dict[str, Any], timeout: float = 30, sinfo: Sinfo | None = None) -> list[tuple[str, str]]:
    """(why the job never starts, what to change in the spec) for each of the job's `time`
    and `nodes` that no partition it may run in allows; empty when it fits or sinfo cannot
    tell. Said before submission and after, each with its own way out."""
    return [(f"{why}, and this site queues such jobs for ever ({reason})", f"{change} in {plan['source']['file']}")
            for why, reason, change in _misfits(plan["slurm"], sinfo or Sinfo(timeout))]


def _misfits(slurm: dict[str, Any], sinfo: Sinfo) -> list[tuple[str, str, str]]:
    """(why, squeue's reason, what to change) for never_fits."""
    from hpoc.compiler.sections import slurm_time
    from hpoc.site.sbatch_env import in_shell

    if in_shell({"slurm": slurm}).keys() & {"partition", "time"}:  # the shell's win: not the spec's job
        return []
    parts = sinfo.limits(slurm.get("partition"))
    if parts is None:
        return []
    plural = "s" * (len(parts) > 1)
    out = []
    seconds = {name: slurm_time(row["time"])[0] for name, row in parts.items()}
    if slurm.get("time_s") and all(s is not None and s < slurm["time_s"] for s in seconds.values()):
        longest = max(parts, key=lambda name: seconds[name] or 0)
        said = ", ".join(f"`{name}` ({row['time']})" for name, row in parts.items())
        out.append((f"`slurm.time = {slurm['time']}` is above the time limit of partition{plural} {said}",
                    "PartitionTimeLimit", f"lower `time` to {parts[longest]['time']} or less"))
    room = {name: min(row["nodes"], row["max_nodes"] or row["nodes"]) for name, row in parts.items()}
    if all(slurm["nodes"] > n for n in room.values()):
        said = ", ".join(f"`{name}` ({n})" for name, n in room.items())
        # squeue's reason: PartitionNodeLimit above a MaxNodes (slurmctld checks it first, whatever
        # the node count), PartitionConfig above the node count of a partition without one
        capped = any(row["max_nodes"] and row["max_nodes"] < slurm["nodes"] for row in parts.values())
        out.append((f"`slurm.nodes = {slurm['nodes']}` is more than partition{plural} {said} "
                    f"give{'s' * (len(parts) == 1)} one job", "PartitionNodeLimit" if capped else "PartitionConfig",
                    f"lower `nodes` to {max(room.values())} or fewer"))
    # A job step's CPUs come from one node: sbatch may take more than any node has (PartitionConfig)
    one_thread = one_thread_a_core(slurm)
    most = {name: _job_cpus(row, "most_cpus", one_thread) for name, row in parts.items()}
    cpus = slurm.get("cpus_per_node")
    if cpus and all(n is not None and 0 < n < cpus for n in most.values()):
        said = ", ".join(f"`{name}` ({n} CPUs)" for name, n in most.items())
        out.append((f"`slurm.cpus_per_node = {cpus}` is more than any node of partition{plural} {said} has",
                    "PartitionConfig", f"lower `cpus_per_node` to {max(most.values())} or fewer"))
    return out


def idle_cpus(plan: dict[str, Any], timeout: float = 30, sinfo: Sinfo | None = None) -> str | None:
    """A plain `--exclusive` in `slurm.extra` holds whole nodes, but each Ray node starts with
    its step's `cpus_per_node` CPUs: the rest of each node sits idle. Said (None: it does
    not, or sinfo cannot tell) for `hpoc check --preflight`, which asks sinfo. The nodes are
    those of the partition sbatch picks: the shell's SBATCH_PARTITION over the spec's."""
    slurm = plan.get("slurm") or {}
    cpus = slurm.get("cpus_per_node")
    if cpus is None or "--exclusive" not in [str(flag).strip() for flag in slurm.get("extra") or []]:
        return None
    shell = os.environ.get("SBATCH_PARTITION")
    partition = shell or slurm.get("partition")
    rows = list(((sinfo or Sinfo(timeout)).limits(partition) or {}).values())
    one_thread = one_thread_a_core(slurm)
    have = [_job_cpus(row, "cpus", one_thread) for row in rows]
    if not have or None in have or min(have) <= cpus:
        return None
    where = f" of partition `{partition}` (SBATCH_PARTITION in this shell)" if shell else ""
    threads = max(row.get("threads", 1) for row in rows)
    kind = "" if threads == 1 else " (cores: one thread each)" if one_thread else f" ({threads} hardware threads a core)"
    return (f"`--exclusive` in `slurm.extra` gives the job whole nodes{where} of {min(have)} CPUs{kind} or more, but "
            f"Ray uses only `cpus_per_node = {cpus}` of each; set `cpus_per_node = {min(have)}` in "
            f"{plan['source']['file']} to use them, or drop `--exclusive` to leave them to other jobs")
