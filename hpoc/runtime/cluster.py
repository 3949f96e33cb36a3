"""Small bring-up steps the job script runs on the batch node (no Ray import, fast start).

    python -m hpoc.runtime.cluster init JOB_DIR
        fresh private job directory (0700) with a new random token (0600); removes the
        directories this user's ended jobs left beside it (sweep_ended_jobs)
    python -m hpoc.runtime.cluster wait-head JOB_DIR --timeout S [--pid PID] [--log FILE]
            [--address-only]
        wait until the head has written its address and its GCS port answers (with
        --address-only: just the address); print the address (IP:PORT) on stdout.
        Fails early if the head's step (PID) is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hpoc.files import read_tail
from hpoc.runtime.node import (HEAD_FILE, TOKEN_FILE, NodeError, answers, ensure_private_dir, host_name,
                               keep_if_asked, write_secret)
from hpoc.runtime.procstat import stat_fields
from hpoc.runtime.sweep import sweep_ended_jobs, wanted

POLL_S = 0.1


def init(job_dir: Path) -> Path:
    """A fresh job directory and token. A requeued job keeps its job id, so an old
    directory of the same id may exist: nothing of this job runs yet, so it goes."""
    if wanted(os.environ):  # /tmp, or the job's own TMPDIR: the other nodes sweep theirs (node.py)
        sweep_ended_jobs(job_dir.parent)
    if job_dir.is_symlink() or job_dir.is_file():
        raise SystemExit(f"hpoc: {job_dir} exists and is not a directory")
    if job_dir.exists():
        if job_dir.stat().st_uid != os.getuid():
            raise SystemExit(f"hpoc: {job_dir} belongs to another user")
        shutil.rmtree(job_dir)
    token = job_dir / TOKEN_FILE
    try:
        ensure_private_dir(job_dir)
    except NodeError as exc:
        raise SystemExit(f"hpoc: {exc}") from None
    except OSError as exc:  # a read-only /tmp, or one of another user's making
        raise SystemExit(f"hpoc: cannot create the job directory {job_dir} on {host_name()}: "
                         f"{exc.strerror or exc}; set HPOC_TMP to a writable node-local directory") from None
    try:
        write_secret(token, secrets.token_hex(32))
    except NodeError as exc:  # a full /tmp on a shared node
        shutil.rmtree(job_dir, ignore_errors=True)
        raise SystemExit(f"hpoc: {exc}") from None
    keep_if_asked(job_dir, os.environ)
    return token


def alive(pid: int | None) -> bool:
    """Whether process `pid` still runs (None: nothing to watch, so yes)."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that the shell has not reaped yet still answers kill(0).
    fields = stat_fields(pid)
    return fields is None or fields[0] != "Z"


def wait_head(job_dir: Path, timeout: float, pid: int | None = None, log: str | None = None,
              address_only: bool = False) -> str:
    deadline = time.monotonic() + timeout
    head_file = job_dir / HEAD_FILE
    address = None
    see = f"; its log: {log}" if log else ""
    while time.monotonic() < deadline:
        if address is None and head_file.exists():
            address = json.loads(head_file.read_text())["address"]
        if address and (address_only or answers(address)):
            return address
        if not alive(pid):
            why = last_error(log)
            raise SystemExit(f"hpoc: the Ray head step exited before it answered"
                             f"{f': {why}' if why else ''}{see}")
        time.sleep(POLL_S)
    where = f"at {address}" if address else "(it never chose its ports)"
    raise SystemExit(f"hpoc: the Ray head did not answer {where} within {timeout:g} s{see}")


def last_error(log: str | None, limit: int = 300) -> str | None:
    """The last line of a step's log that is not srun's own (a traceback's last line: "No
    module named 'ray'" where the nodes' Python lacks it), so the job's .err says why."""
    tail = read_tail(log or "", 8192)
    for line in reversed((tail or "").splitlines()):
        line = line.strip()
        if line and not line.startswith(("srun:", "slurmstepd")):
            line = line.removeprefix("hpoc: ")  # quoted after hpoc's own words
            return line if len(line) <= limit else line[:limit] + "…"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpoc.runtime.cluster")
    sub = p.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init", help="fresh job directory and auth token")
    p_init.add_argument("job_dir", type=Path)
    p_wait = sub.add_parser("wait-head", help="wait for the Ray head; print its address")
    p_wait.add_argument("job_dir", type=Path)
    p_wait.add_argument("--timeout", type=float, default=300)
    p_wait.add_argument("--pid", type=int, help="PID of the head's srun step")
    p_wait.add_argument("--log", help="head log file, named in error messages")
    p_wait.add_argument("--address-only", action="store_true", help="do not wait for the port to answer")
    args = p.parse_args(argv)
    if args.cmd == "init":
        init(args.job_dir)
    else:
        print(wait_head(args.job_dir, args.timeout, args.pid, args.log, args.address_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
