"""Connect the driver to Ray: an embedded local instance, or the job's cluster.

Local: `ray.init()` in this process, sized to this machine (its CPUs, and its GPUs when
there are any), a short private temp dir (Ray's unix socket paths are limited to 107 bytes),
no dashboard, API server or autoscaler monitor (lean.py), and token authentication with a
fresh token in that temp dir (mode 0600) - so nothing is written to ~/.ray and other users
on a shared login node cannot attach.

Cluster: `RAY_ADDRESS` and the token (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`) come from
the job script. An unreachable head, something else listening at its address (probe.py:
`ray.init` would retry it for minutes) or a cluster smaller than one trial is a clear error.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import math
import os
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_OBJECT_STORE_CAP = 2 * 1024**3
# Ray's logs and session files of a short study take a few MiB; with less than this it timed
# out starting ("the current node timed out during startup"), half a minute later.
TEMP_MIN_FREE = 32 * 1024**2
# Ray's logs of each process (a worker's .out/.err hold what its trials print) move aside
# past this size, one part kept: Ray's default (512 MiB, 5 parts) could fill the temp disk.
RAY_LOG_ROTATION = {"RAY_ROTATION_MAX_BYTES": str(16 * 1024**2), "RAY_ROTATION_BACKUP_COUNT": "1"}


class SessionError(Exception):
    """Ray cannot be started or reached, or is too small for the study."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Session:
    local: bool
    address: str | None = None
    temp_dir: str | None = None
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # owner records of other live local runs
    _env_backup: dict[str, str | None] = field(default_factory=dict)

    def close(self) -> None:
        """Stop Ray (its processes, when local) and remove the temp dir. Safe to call twice;
        the temp dir (with the token) goes even when a second Ctrl-C cuts Ray's shutdown
        short, and at exit should close() itself never run."""
        import ray

        atexit.unregister(self.close)
        try:
            # Also after an interrupted ray.init, which may have started processes already.
            if ray.is_initialized() or getattr(ray._private.worker, "_global_node", None):
                ray.shutdown()
        finally:
            for key, value in self._env_backup.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if self._env_backup:
                self._env_backup = {}
                _refresh_auth()
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
                self.temp_dir = None


def _set_env(backup: dict[str, str | None], key: str, value: str | None) -> None:
    if key not in backup:
        backup[key] = os.environ.get(key)
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _pythonpath(workdir: str | None) -> str:
    parts = [workdir] if workdir else []
    parts += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != workdir]
    return os.pathsep.join(parts)


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def temp_root() -> str | None:
    """Where a local run's private temp dir goes: HPOC_TMP (as for SLURM jobs; e.g. a
    node-local disk where /tmp is small), else /tmp, whose short path leaves room for Ray's
    unix socket paths (a long TMPDIR would not)."""
    from hpoc.runtime.node import NodeError, check_socket_room, hpoc_tmp

    said = os.environ.get("HPOC_TMP")
    if said:
        try:  # the job's own check, in its words; sockets measure the absolute path
            root = hpoc_tmp(said, relative_ok=True)
            check_socket_room(os.path.join(root, "hpoc-xxxxxxxx"))
        except NodeError as exc:
            raise SessionError(str(exc), exit_code=2) from None
        return root
    return "/tmp" if os.path.isdir("/tmp") else None


def check_room(root: str) -> None:
    """SessionError when the local run's temp root has no room for Ray's files."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return  # mkdtemp says what is wrong with it
    if free < TEMP_MIN_FREE:
        where = f"HPOC_TMP={root}" if os.environ.get("HPOC_TMP") else root
        raise SessionError(
            f"{where} has {free / 1024**2:.1f} MiB free: a local run's Ray needs "
            f"{TEMP_MIN_FREE // 1024**2} MiB there at least (its logs, sockets and spilled objects)\n"
            "  help: free some space there, or set HPOC_TMP to a local directory with room (a "
            "short path: Ray's socket paths are limited)", exit_code=2)


def no_room(exc: BaseException, places: dict[str, str | None]) -> str | None:
    """When `exc` (Tune's, around a remote worker's) comes of a full disk or a quota
    (full.py): what ran out and which of `places` (name -> directory) has no room left, in
    words; else None."""
    from hpoc.runtime import full

    what = full.of_exception(exc)
    if what is None:
        return None
    said = []
    for name, where in places.items():
        try:
            free = shutil.disk_usage(where).free if where else None
            st = os.statvfs(where) if where else None
        except OSError:
            continue
        if free is None or st is None:
            continue
        if free < TEMP_MIN_FREE:
            said.append(f"{name} {where} has {free / 1024**2:.1f} MiB free")
        elif st.f_files and st.f_favail < full.FEW_INODES:  # room for bytes, none for files
            said.append(f"{name} {where} has {st.f_favail} inodes free")
    if said:
        return f"{what}: " + "; ".join(said)
    if what == full.QUOTA:  # statvfs does not see a user's quota: the storage is where it is kept
        storage = next((f"{name} {where}" for name, where in places.items() if "storage" in name), "a disk")
        return f"{what}: {storage} (`lfs quota` or `quota` shows yours)"
    return f"{what}: a disk the run writes to is full"


def local_object_store() -> int:
    """A local Ray's object store: a fifth of the memory left, capped; the memory left is
    the job's cgroup limit's under `salloc --mem` (memlimit.py): the host's 20% of 512 GB
    was a 2 GiB store in a job of 2 GiB, whose objects the cgroup's OOM killer met."""
    from hpoc.runtime.memlimit import room

    left = room()
    store = LOCAL_OBJECT_STORE_CAP if left is None else min(LOCAL_OBJECT_STORE_CAP, int(left.available * 0.2))
    return max(store, 100 * 1024**2)  # Ray refuses less than 75 MiB


def start_local(*, workdir: str | None, num_cpus: int | None = None, num_gpus: int | None = None,
                verbose: bool = False) -> Session:
    import logging

    import ray

    backup: dict[str, str | None] = {}
    _set_env(backup, "RAY_ADDRESS", None)  # never attach to someone else's cluster
    root = temp_root()
    base = root or tempfile.gettempdir()
    runs = _local_runs(base)  # one look at the temp root: the dead to sweep, the live to warn of
    sweep_stale_temp_dirs(base, runs)
    check_room(base)
    others = [info for _, info, live in runs if live]
    cpus = num_cpus or local_cpus()
    temp = tempfile.mkdtemp(prefix="hpoc-", dir=root)
    _write_owner(temp, cpus)
    token = os.path.join(temp, "token")
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    _set_env(backup, "RAY_AUTH_MODE", "token")
    _set_env(backup, "RAY_AUTH_TOKEN_PATH", token)
    _set_env(backup, "RAY_AUTH_TOKEN", None)
    # Workers inherit the environment of this process: they import the spec's modules, and
    # put checkpoints being saved in the temp dir (removed at close, even after a kill -9).
    # Not a job runtime_env too: the workers Ray starts ahead with the raylet have none, and
    # the first trials then waited for new ones (1-2 s of each local run on two cores).
    _set_env(backup, "PYTHONPATH", _pythonpath(workdir))
    _set_env(backup, "HPOC_SCRATCH", os.path.join(temp, "scratch"))
    from hpoc.runtime.node import miopen_env

    for key, value in miopen_env(os.environ, Path(temp)).items():  # AMD nodes: not in $HOME (node.py)
        os.makedirs(value, mode=0o700, exist_ok=True)
        _set_env(backup, key, value)
    for key, value in RAY_LOG_ROTATION.items():  # the user's own setting stays
        _set_env(backup, key, os.environ.get(key) or value)
    _refresh_auth()
    session = Session(local=True, temp_dir=temp, _env_backup=backup, neighbours=others)
    atexit.register(session.close)
    gpus = local_gpus() if num_gpus is None else num_gpus
    store = local_object_store()
    from hpoc.runtime.raylet_lines import quiet_worker_deaths

    from hpoc.runtime.lean import lean_head, wanted

    quiet_worker_deaths(not verbose)  # the terminal is the user's: hpoc's trial lines say a worker died
    try:
        with lean_head(wanted()), own_session():  # no API server or autoscaler monitor (lean.py)
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                     _temp_dir=os.path.join(temp, "r"), object_store_memory=store,
                     log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING)
    except Exception as exc:
        session.close()
        raise SessionError(f"cannot start a local Ray instance: {exc}") from exc
    except BaseException:  # interrupted: stop what ray.init started so far
        session.close()
        raise
    return session


@contextlib.contextmanager
def own_session() -> Iterator[None]:
    """Within: the Ray processes this process starts (GCS, raylet, and so the raylet's
    workers) run in a session of their own. A closed terminal's SIGHUP, or `timeout`'s
    SIGTERM, goes to the run's whole process group: it killed the GCS too, and the driver's
    graceful stop waited 60 s for it, then failed. The driver stops them itself (ray.shutdown),
    and Ray's fate sharing (the parent-death signal) still ends them with a killed driver;
    where the kernel has none, Ray's reaper needs them in this group, so they stay."""
    from ray._private import services, utils

    plain = services.ConsolePopen
    if not utils.detect_fate_sharing_support() or not sys.platform.startswith("linux"):
        yield
        return

    class OwnSession(plain):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["start_new_session"] = True
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnSession
    try:
        yield
    finally:
        services.ConsolePopen = plain


OWNER = "owner.json"  # in a local run's temp dir: the driver that made it


def _write_owner(temp: str, cpus: int) -> None:
    with open(os.path.join(temp, OWNER), "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                   "cpus": cpus}, fh)


def sweep_stale_temp_dirs(root: str, runs: list[tuple[str, dict[str, Any], bool]] | None = None) -> list[str]:
    """Remove the temp dirs of this user's local runs whose driver is gone; the removed paths.

    A driver killed with SIGKILL (or by the OOM killer) cannot remove its temp dir: its Ray
    processes stop by themselves, but the token, Ray's logs and spilled objects and the
    checkpoints being saved stay in /tmp. Only a directory with an `owner.json` of this host,
    owned by this user, is a candidate: never another user's, never a SLURM job directory
    (`hpoc-<job id>`, which has no owner file), never a live run's."""
    removed = []
    for path, _, live in _local_runs(root) if runs is None else runs:
        if not live:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _local_runs(root: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(temp dir, owner record, driver alive) of this user's local runs on this host,
    this one's aside."""
    from hpoc.runtime.runlock import pid_is

    runs = []
    for path in glob.glob(os.path.join(glob.escape(root), "hpoc-*")):
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            with open(os.path.join(path, OWNER), encoding="utf-8") as fh:
                info = json.load(fh)
            pid, started = int(info["pid"]), float(info["started"])
            if info["host"] != socket.gethostname() or pid == os.getpid():
                continue
        except (OSError, ValueError, TypeError, KeyError):
            continue
        runs.append((path, info, pid_is(pid, started)))
    return runs


def _refresh_auth() -> None:
    """Make this process see the auth settings just put in the environment: Ray reads them
    once, when it is imported (maybe long before, e.g. by an earlier run in this process)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray version: its import-time read stands
        pass


def _reachable(address: str, timeout: float = 5.0) -> str | None:
    """None if a TCP connection to `host:port` works, else the reason."""
    from hpoc.runtime.probe import split

    # A Ray Client address too: its client would retry a dead one for half a minute first.
    where = split(address)
    if where is None:
        return None  # let Ray judge what it accepts
    try:
        with socket.create_connection(where, timeout=timeout):
            return None
    except OSError as exc:
        return str(exc)


def connect_cluster(address: str, *, workdir: str | None, verbose: bool = False) -> Session:
    import logging

    import ray

    if address.strip().lower() == "auto":
        # Ray would join whichever cluster this machine started last (in the shared /tmp/ray),
        # perhaps another user's; hpoc's jobs export their own head's IP:PORT.
        raise SessionError(
            "RAY_ADDRESS=auto would join any Ray cluster running on this machine, maybe another "
            "user's\n  help: unset RAY_ADDRESS (an earlier `ray start` left it) or pass --local "
            "to run on this machine; inside an hpoc job it is the head's IP:PORT")
    problem = _reachable(address)
    if problem:
        raise SessionError(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {problem}\n"
            "  help: run inside the job that started the cluster (its head must be up), or "
            "unset RAY_ADDRESS / pass --local to run on this machine")
    from hpoc.runtime.probe import not_ray

    other = not_ray(address)  # ray.init would retry it for minutes
    if other:
        raise SessionError(
            f"cannot connect to the Ray cluster at RAY_ADDRESS={address}: {other} listens there, "
            "not a Ray head\n"
            "  help: it must be the head's GCS address, IP:PORT (`ray start --head --port`, "
            "6379 by default; an hpoc job exports it), not the dashboard's or another "
            "service's; unset RAY_ADDRESS / pass --local to run on this machine")
    mode = os.environ.get("RAY_AUTH_MODE")
    if not sys.stdout.isatty():  # a job's .out: Ray's lines without terminal colour codes
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        ray.init(address=address, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.WARNING,
                 runtime_env={"env_vars": {"PYTHONPATH": _pythonpath(workdir)}})
    except BaseException as exc:
        if not isinstance(exc, Exception):  # interrupted: let go of what init set up
            if ray.is_initialized():
                ray.shutdown()
            raise
        hint = ""
        if mode != "token" or not (os.environ.get("RAY_AUTH_TOKEN_PATH") or os.environ.get("RAY_AUTH_TOKEN")):
            hint = ("\n  help: the job's cluster uses token authentication: set RAY_AUTH_MODE=token "
                    "and RAY_AUTH_TOKEN_PATH to the job's token file")
        raise SessionError(f"cannot connect to the Ray cluster at {address}: "
                           f"{type(exc).__name__}: {exc}{hint}") from exc
    return Session(local=False, address=address)


# Tune refuses {"CPU": 0}; the driver of a Train run needs next to nothing. It sits on a
# node beside the trial's workers (hpoc/compiler/tables.py TRIAL_DRIVER_CPU checks the fit).
DRIVER_CPU = 0.01


def trial_needs(plan: dict[str, Any]) -> tuple[float, float, int, float, float]:
    """(cpu, gpu, workers, cpu per worker, gpu per worker) of one trial."""
    res = plan["resources"]
    workers = int(res["workers"])
    cpw, gpw = float(res["cpus_per_worker"]), float(res["gpus_per_worker"] or 0)
    extra = DRIVER_CPU if workers > 1 else 0.0
    return workers * cpw + extra, workers * gpw, workers, cpw, gpw


def held(have: float, each: float) -> int:
    """How many shares of `each` a node's `have` holds, as Ray counts them (in ten-thousandths):
    `1 // 0.2` is 4.0 in floating point, where Ray places 5."""
    return int(round(have * 10_000)) // int(round(each * 10_000))


def worker_slots(plan: dict[str, Any], nodes: list[dict[str, Any]]) -> list[int]:
    """How many of a trial's workers each alive node's CPUs and GPUs hold (a worker's
    bundle on one node)."""
    _, _, _, cpw, gpw = trial_needs(plan)
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    return [min(held(r.get("CPU", 0), cpw) if cpw else 10**6, held(r.get("GPU", 0), gpw) if gpw else 10**6)
            for r in alive]


def trials_at_once(plan: dict[str, Any], nodes: list[dict[str, Any]]) -> int:
    """How many trials the alive nodes' CPUs and GPUs hold at once (each worker's bundle on
    one node), before `trials.max_concurrent`."""
    cpu, _, workers, _, _ = trial_needs(plan)
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    by_cpu = int(sum(r.get("CPU", 0) for r in alive) / cpu + 1e-9) if cpu else 10**6
    return min(sum(worker_slots(plan, nodes)) // workers, by_cpu)


def check_capacity(plan: dict[str, Any], nodes: list[dict[str, Any]], where: str) -> None:
    """Raise SessionError unless the alive nodes can hold one trial's workers."""
    cpu, gpu, workers, cpw, gpw = trial_needs(plan)
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    have_cpu = sum(r.get("CPU", 0) for r in alive)
    have_gpu = sum(r.get("GPU", 0) for r in alive)
    fit = 0
    for r in alive:  # a worker's bundle must fit on one node
        by_cpu = held(r.get("CPU", 0), cpw) if cpw else workers
        by_gpu = held(r.get("GPU", 0), gpw) if gpw else workers
        fit += min(by_cpu, by_gpu)
    if fit >= workers and have_cpu >= cpu - 1e-9:
        return
    each = f"{cpw:g} CPU" + (f", {gpw:g} GPU" if gpw else "")
    # Enough for the workers but for the driver's share: say so, or "needs 2 x 1 CPU, has 2" puzzles.
    driver = f", plus {cpu - workers * cpw:g} CPU for the trial's driver" if fit >= workers else ""
    slots = math.ceil(cpu - 1e-9)
    # More CPU slots do not make up for GPUs: no `--cpus` hint when the GPUs are short.
    gpus_short = bool(gpw) and sum(held(r.get("GPU", 0), gpw) for r in alive) < workers
    yaml = (plan.get("source") or {}).get("format") == "yaml"  # the words of the file the user wrote
    if gpus_short:
        # itwinai refuses `use_gpu: false` beside a `GPU` in `resources_per_worker`
        off = ("`use_gpu: false` in `scaling_config` (and no `GPU` in `resources_per_worker`)" if yaml
               else "`gpus_per_worker = 0`")
        help = f"set {off} to run the trials on CPUs, lower `workers`, or run it where there are GPUs"
    else:
        help = (f"lower `workers`/`cpus_per_worker`/`gpus_per_worker` in the {'config' if yaml else 'study'}, "
                "or run it where there is room" + (f" (`--cpus {slots}` lets a local run use {slots} CPU slots)"
                                                   if where == "this machine" else ""))
    raise SessionError(
        f"one trial needs {workers} worker(s) x ({each}){driver}; {where} has {have_cpu:g} CPU and "
        f"{have_gpu:g} GPU on {len(alive)} node(s)\n  help: {help}", exit_code=2)
