"""Whole studies as SLURM jobs, for the fault and isolation tests on the local cluster.

`study_job(folder, name=...)` writes the toy study of runtime_plans (a small classifier on
Gaussian points; `SlowTrainer` sleeps a little per epoch so that a test can act while trials
run), compiles its plan by hand with a `slurm` block for the fake nodes, renders the real
job.sbatch next to it and returns that script. The rest reads what a job left behind:
trial reports, the summary, the job's processes and the sockets they listen on.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from runtime_plans import make_plan, write_toy


def study_job(folder: Path, *, name: str, nodes: int = 2, num_samples: int = 4, max_concurrent: int = 2,
              epochs: int = 4, sleep: float = 1.0, max_retries: int = 1, extra: tuple[str, ...] = (),
              time_limit: str = "00:20:00", trainer: str = "toy:SlowTrainer",
              hold: Path | None = None) -> Path:
    from hpoc.compiler.render import render_all
    from hpoc.plan import dumps

    workdir = write_toy(folder / "code")
    hours, minutes, seconds = (int(x) for x in time_limit.split(":"))
    slurm = {"nodes": nodes, "gpus_per_node": 0, "cpus_per_node": 1, "mem": "2G", "partition": None,
             "account": None, "qos": None, "time": time_limit, "time_s": hours * 3600 + minutes * 60 + seconds,
             "constraint": None, "extra": list(extra), "setup": [], "env": {}, "container": None,
             "interface": None, "python": sys.executable}
    plan = make_plan(
        workdir, folder / "results", study={"name": name},
        pipeline={"getter": {"target": "toy:ToyGetter", "args": {}},
                  "splitter": {"target": "toy:ToySplitter", "args": {}},
                  "trainer": {"target": trainer,
                              "args": {"sleep": sleep, **({"hold": str(hold)} if hold else {})}}},
        space={"constants": {"epochs": epochs, "batch_size": 32}},
        trials={"num_samples": num_samples, "max_concurrent": max_concurrent},
        failure={"max_retries": max_retries}, checkpoint={"every": 1, "keep": 2},
        resume={"enabled": True, "retry_errored": True, "grace_s": 60}, slurm=slurm)
    plan["storage"]["name"] = name
    build = folder / "build"
    build.mkdir(parents=True, exist_ok=True)
    (build / "plan.json").write_text(dumps(plan))
    for file, text in render_all(json.loads((build / "plan.json").read_text()),
                                 plan_path=str(build / "plan.json")).items():
        (build / file).write_text(text)
    return build / "job.sbatch"


def experiment(folder: Path, name: str) -> Path:
    return folder / "results" / name


def reports(exp: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial directory name -> the results it reported so far (result.json rows)."""
    out = {}
    for path in sorted(glob.glob(str(exp / "trial_*" / "result.json"))):
        rows = []
        for line in Path(path).read_text(errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        out[Path(path).parent.name] = rows
    return out


def epochs_of(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["epoch"]) for r in rows if "epoch" in r]


def summary(exp: Path) -> dict[str, Any] | None:
    try:
        return json.loads((exp / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, what: str, on_fail=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s\n{on_fail()}")


# ---------------------------------------------------------------- processes and sockets


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    out, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo += children.get(pid, [])
    return out


def job_processes(job: str, plan_path: Path) -> dict[int, str]:
    """pid -> command line of every process of a job's Ray cluster (anything started with
    the job's temp dir on its command line, and their children) and of its study driver."""
    roots = {pid for pid in all_pids()
             if f"/tmp/hpoc-{job}/" in (cmd := _cmdline(pid)) or (
                 "hpoc.runtime" in cmd and str(plan_path) in cmd and "srun" not in cmd)}
    return {pid: _cmdline(pid) for pid in descendants(roots)}


def raylet_of(job: str, rank: int) -> int | None:
    for pid in all_pids():
        cmd = _cmdline(pid)
        if "/raylet " in cmd + " " and f"/tmp/hpoc-{job}/n{rank}/" in cmd:
            return pid
    return None


def listening_sockets() -> dict[str, tuple[str, int]]:
    """socket inode -> (bound address, port) for every listening TCP socket."""
    out = {}
    for family in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{family}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr, port = fields[1].split(":")
            out[fields[9]] = (_address(addr), int(port, 16))
    return out


def _address(hexaddr: str) -> str:
    import ipaddress
    import socket
    import struct

    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntoa(struct.pack("<I", int(hexaddr, 16)))
    words = struct.unpack("<4I", raw)
    return str(ipaddress.IPv6Address(struct.pack(">4I", *words)))


def sockets_of(pids: dict[int, str]) -> list[tuple[int, str, str, int]]:
    """(pid, program, address, port) of the listening sockets the processes hold."""
    listening = listening_sockets()
    out = []
    for pid, cmd in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", link)
            if m and m.group(1) in listening:
                addr, port = listening[m.group(1)]
                program = os.path.basename(cmd.split(" ", 1)[0]) if cmd else "?"
                out.append((pid, program, addr, port))
    return sorted(set(out))


ALL_INTERFACES = {"0.0.0.0", "::"}
