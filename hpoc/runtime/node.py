"""Start one Ray node of a job's private cluster: `python -m hpoc.runtime.node head|worker`.

Run once per node (the SLURM script starts it with `srun -w NODE`; submitit reuses it).
It works out everything node-specific, then runs `ray start --block` in its own process,
so the step's PID *is* the Ray node and killing the step stops exactly this node:

* a private per-job directory (0700) holding the auth token (0600); a worker on another
  host receives the token through the HPOC_RAY_TOKEN environment variable and writes it
  there, so the token never appears on a command line;
* a short temp dir of its own inside it, `<job dir>/n<rank>`, where `rank` counts this
  job's Ray nodes on this host (fake nodes share a host, and Ray's unix sockets must not);
* the node's IP: the configured interface, else the first non-loopback IPv4 of the host;
* a port slot from `hpoc.runtime.ports`, probed free before use;
* CPUs, GPUs and memory from the allocation (SLURM_*), not from the whole machine (`--gpus N`
  for a job that asked SLURM for none: `slurm.gpu_request = none`);
* on AMD nodes, MIOpen's kernel databases in the job directory rather than $HOME.

The head writes `<job dir>/head.json` with its address before Ray starts, so the script
can start the workers right away: each loads Ray while the head starts, waits until the
head's GCS answers, and only then runs `ray start`.

Usage:
    python -m hpoc.runtime.node head   --job-dir /tmp/hpoc-123 [--interface ib0]
    python -m hpoc.runtime.node worker --job-dir /tmp/hpoc-123 --address 10.0.0.1:12288
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hpoc.runtime import memlimit, node_stop, ports, sweep, visible
from hpoc.runtime.sweep import KEEP_FILE

TOKEN_ENV = "HPOC_RAY_TOKEN"
TOKEN_FILE = "token"
HEAD_FILE = "head.json"
# Ray puts "/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store" under --temp-dir
# (about 64 characters); a unix socket path holds at most 107 bytes.
SOCKET_PATH_MAX = 107
RAY_SOCKET_SUFFIX = 64
JOB_DIR_MAX = SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX - len("/n00")  # a job dir, its `n<rank>` inside
OBJECT_STORE_FRACTION = 0.3
OBJECT_STORE_MIN = 80 * 2**20  # Ray refuses less than 75 MiB


class NodeError(Exception):
    """A node cannot start; the message says why and what to change."""


# ---------------------------------------------------------------- job directory and token


def ensure_private_dir(path: Path) -> None:
    """Create `path` as 0700, or check that an existing one is ours and private."""
    try:
        path.mkdir(mode=0o700)
    except FileNotFoundError:  # the job script checked the base on the batch node only
        raise NodeError(f"{path.parent} does not exist on {host_name()}: the job directory's "
                        "base (HPOC_TMP, or the job's TMPDIR) must exist on every node of the job") from None
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise NodeError(f"{path} exists and is not a directory owned by this user") from None
        if stat.S_IMODE(st.st_mode) != 0o700:
            raise NodeError(f"{path} must have mode 0700, has {stat.S_IMODE(st.st_mode):o}")


def write_secret(path: Path, text: str) -> None:
    """Write `text` to a new 0600 file (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as exc:  # a full node-local disk: an empty token would pass for this job's
        path.unlink(missing_ok=True)
        raise NodeError(f"cannot write {path} on {host_name()}: {exc.strerror or exc}; free space there, "
                        "or set HPOC_TMP to another node-local directory") from None


def host_name() -> str:
    """This node as SLURM names it (fake nodes share a host), else the host's name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def ensure_token(job_dir: Path, env: Mapping[str, str]) -> Path:
    """The token file of this job on this host; written from HPOC_RAY_TOKEN if missing."""
    ensure_private_dir(job_dir)
    token = job_dir / TOKEN_FILE
    if token.exists():
        mode = stat.S_IMODE(token.stat().st_mode)
        if mode & 0o077:
            raise NodeError(f"{token} must not be readable by others (mode {mode:o})")
        return token
    if not env.get(TOKEN_ENV):
        raise NodeError(f"no auth token: {token} is missing and {TOKEN_ENV} is not set")
    try:
        write_secret(token, env[TOKEN_ENV])
    except FileExistsError:  # another node of this job on this host was faster
        pass
    return token


def keep_if_asked(job_dir: Path, env: Mapping[str, str]) -> None:
    """Mark the job directory as kept on purpose (HPOC_KEEP_TMP=1, Ray's logs to read)."""
    if env.get("HPOC_KEEP_TMP") == "1":
        (job_dir / KEEP_FILE).touch()


def claim_rank(job_dir: Path, limit: int = ports.N_SLOTS) -> tuple[int, Path]:
    """Atomically take the first free `n<rank>` temp dir: rank = Ray nodes of this job
    already on this host (mkdir is atomic, so concurrent nodes get distinct ranks)."""
    for rank in range(limit):
        path = job_dir / f"n{rank}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return rank, path
    raise NodeError(f"more than {limit} Ray nodes of this job share {job_dir}: it must be on node-local "
                    "storage (an HPOC_TMP on a shared file system is every node's at once)")


def path_bytes(path: str) -> int:
    """A path's length as a unix socket's limit counts it: bytes, not characters."""
    return len(os.fsencode(path))


def job_dir_name(env: Mapping[str, str]) -> str:
    """`hpoc-<job id>`, `-r<restarts>` added in a requeued job: the job script's name for
    the job directory (setup.j2: a worker node may still hold the last run's token)."""
    restarts = env.get("SLURM_RESTART_COUNT") or "0"
    return f"hpoc-{env.get('SLURM_JOB_ID')}" + (f"-r{restarts}" if restarts != "0" else "")


def usable_dir(path: str) -> bool:
    """A directory this user can make entries in: mkdir needs write and search permission
    (the job script's `-d && -w && -x`)."""
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def hpoc_tmp(said: str, *, relative_ok: bool = False) -> str:
    """HPOC_TMP as set (`said`), trimmed, else NodeError in the job script's words. Relative
    is a local run's (one working directory, made absolute: Ray takes no other); in a job it
    would be each node's own working directory."""
    if not os.path.isabs(said) and not relative_ok:
        raise NodeError(f"HPOC_TMP={said} must be an absolute path (a node-local directory such as /tmp)")
    path = _trimmed(os.path.abspath(said) if relative_ok else said)
    if not usable_dir(path):
        raise NodeError(f"HPOC_TMP={said} is not a writable directory")
    return path


def job_dir_base(env: Mapping[str, str], name: str) -> str:
    """Where the job directory `name` goes on this node, as the job script picks it
    (hpoc/templates/slurm/setup.j2, which says why): HPOC_TMP; else the job's own TMPDIR
    (its path names the job) when `TMPDIR/name` leaves Ray's sockets room; else /tmp."""
    if env.get("HPOC_TMP"):
        return _trimmed(env["HPOC_TMP"])
    tmpdir = _own_tmpdir(env)
    if tmpdir and path_bytes(tmpdir) + path_bytes(name) < JOB_DIR_MAX:
        return tmpdir
    return "/tmp"


def _own_tmpdir(env: Mapping[str, str]) -> str | None:
    """TMPDIR, trimmed, when it is this job's own: an absolute path naming the job, to a
    writable directory that apptainer could bind."""
    tmpdir = _trimmed(env.get("TMPDIR") or "")
    ids = [env.get("SLURM_JOB_ID")]
    if env.get("SLURM_ARRAY_JOB_ID"):
        ids.append(f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}")
    own = any(re.search(rf"(^|[^0-9]){re.escape(i)}([^0-9]|$)", tmpdir) for i in ids if i)
    if own and os.path.isabs(tmpdir) and not set(",:") & set(tmpdir) and usable_dir(tmpdir):
        return tmpdir
    return None


def _trimmed(path: str) -> str:
    """`path` without trailing slashes (`/x//` is /x, `//` is /), as the job script trims it."""
    return path.rstrip("/") or path[:1]


def job_dir(env: Mapping[str, str], name: str) -> Path:
    """The job directory `name` on this node under job_dir_base, refused (NodeError) as the
    job script refuses it (setup.j2, the same limit: tests/test_render_slurm.py): an HPOC_TMP
    that is not a writable directory, or too long for Ray's unix socket paths under it."""
    base = job_dir_base(env, name)
    path = f"{base.rstrip('/')}/{name}"
    said = env.get("HPOC_TMP")  # as set, as the script names it
    if not said and base == "/tmp" and _own_tmpdir(env):
        print(f"hpoc: TMPDIR={env['TMPDIR']} is too long for Ray's unix socket paths; the job "
              "directory goes to /tmp", file=sys.stderr)
    if said:
        hpoc_tmp(said)
    if path_bytes(path) > JOB_DIR_MAX:
        raise NodeError(f"HPOC_TMP={said} is too long: Ray's unix socket paths under {path} would "
                        f"exceed {SOCKET_PATH_MAX} bytes; choose a node-local directory of at most "
                        f"{JOB_DIR_MAX - path_bytes(name) - 1} bytes")
    return Path(path)


def check_socket_room(temp_dir: Path) -> None:
    longest = path_bytes(str(temp_dir)) + RAY_SOCKET_SUFFIX
    if longest > SOCKET_PATH_MAX:
        raise NodeError(
            f"temp dir {temp_dir} is too long: Ray's socket paths under it would take "
            f"{longest} bytes, more than the {SOCKET_PATH_MAX} a unix socket allows; "
            "set HPOC_TMP to a shorter node-local directory"
        )


# ---------------------------------------------------------------- addresses


def _ipv4_of_interface(name: str) -> str | None:
    """Primary IPv4 of interface `name`, as `ip -4 addr show NAME` reports it."""
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", name],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return _ioctl_ipv4(name)  # containers often lack iproute2


def _ioctl_ipv4(name: str) -> str | None:
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _routable(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == 4 and not ip.is_loopback and not ip.is_link_local


def node_ip(interface: str | None) -> str:
    """The address this node's Ray listens on and advertises."""
    if interface:
        addr = _ipv4_of_interface(interface)
        if not addr:
            raise NodeError(
                f"interface {interface!r} has no IPv4 address on "
                f"{host_name()}; "
                "fix slurm.interface in the spec (see `ip -4 addr` on a compute node)"
            )
        return addr
    try:
        out = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    candidates = out.split()
    if not candidates:  # no `hostname -I` (minimal containers): ask every interface
        candidates = [a for _, n in socket.if_nameindex() if (a := _ioctl_ipv4(n) or "")]
    return next((a for a in candidates if _routable(a)), "127.0.0.1")


# ---------------------------------------------------------------- ports


def port_free(ip: str, port: int) -> bool:
    """True if nothing listens on `port` (Ray binds its gRPC servers to all interfaces, `[::]`
    where the host has IPv6: an IPv6-only listener of another program stops them too)."""
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, ip), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # a host without IPv6
            continue
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            try:
                s.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise
    return True


PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")  # IPv6 sockets take theirs from it too
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # not Linux, or /proc not mounted: Linux's default
        return ""


def slot_bases() -> tuple[int, ...]:
    """The port slots clear of this host's ephemeral ports: those the kernel may hand to any
    program's client socket at any moment, where a Ray worker then could not listen. Linux's
    default layout when none fits (a range widened to 1024-65535, say), said in the node's log."""
    ephemeral = ports.parse_port_range(_read(PORT_RANGE)) or ports.EPHEMERAL
    bases = ports.slot_bases(ephemeral, ports.parse_reserved(_read(RESERVED_PORTS)))
    if bases:
        return bases
    print(f"hpoc: warning: no block of {ports.SLOT} ports in {ports.LOW}-{ports.HIGH - 1} lies outside "
          f"{host_name()}'s ephemeral port range {ephemeral[0]}-{ephemeral[1]} ({PORT_RANGE}): Ray's ports "
          "are taken from it, and a client connection of any program may hold one that a Ray worker "
          "needs later; the site can exclude some with net.ipv4.ip_local_reserved_ports", file=sys.stderr)
    return ports.DEFAULT_BASES


def pick_ports(job_id: int, rank: int, ip: str, bases: Sequence[int] | None = None) -> ports.NodePorts:
    bases = slot_bases() if bases is None else bases
    busy: list[int] = []
    for attempt in range(ports.MAX_ATTEMPTS):
        candidate = ports.node_ports(job_id, rank, attempt, bases)
        busy = [p for p in candidate.all_ports() if not port_free(ip, p)]
        if not busy:
            return candidate
        print(f"hpoc: ports {busy[:5]} of slot {candidate.slot} are taken; trying the next slot",
              file=sys.stderr)
    raise NodeError(f"no free port slot after {ports.MAX_ATTEMPTS} attempts (last busy: {busy[:5]})")


# ---------------------------------------------------------------- resources


def _int_env(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name, "").split("(")[0]  # "2(x3)" style values
        if value.isdigit():
            return int(value)
    return None


def allocation(env: Mapping[str, str], shm: str = "/dev/shm") -> dict[str, int | None]:
    """CPUs, GPUs and memory (bytes) this job has on this node, from SLURM's variables."""
    cpus = _int_env(env, "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")
    gpus = _int_env(env, "SLURM_GPUS_ON_NODE")
    if gpus is None:  # CUDA_VISIBLE_DEVICES, or on AMD nodes ROCR_/HIP_VISIBLE_DEVICES
        gpus = visible.count(env) or 0
    mem_mb = memlimit.slurm_mib(env, cpus, gpus)  # this node's CPUs and GPUs: its cgroup's share
    memory = store = None
    if mem_mb:
        total = mem_mb * 2**20
        store = int(total * OBJECT_STORE_FRACTION)
        try:  # the object store lives in /dev/shm; more than fits there falls back to disk
            st = os.statvfs(shm)
            store = min(store, int(st.f_bavail * st.f_frsize * 0.9))
        except OSError:
            pass
        store = max(store, OBJECT_STORE_MIN)
        memory = max(total - store, 0)
    return {"cpus": cpus, "gpus": gpus, "memory": memory, "object_store_memory": store}


def resource_args(res: Mapping[str, int | None]) -> list[str]:
    flags = {"cpus": "--num-cpus", "gpus": "--num-gpus", "memory": "--memory",
             "object_store_memory": "--object-store-memory"}
    return [f"{flag}={res[key]}" for key, flag in flags.items() if res[key] is not None]


# ---------------------------------------------------------------- ray start


def ray_start_command(
    *, role: str, python: str, ip: str, node_ports: ports.NodePorts, temp_dir: Path,
    node_name: str, res: Mapping[str, int | None], address: str | None,
    client_server: bool = True,
) -> list[str]:
    cmd = [python, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
           f"--node-ip-address={ip}", f"--temp-dir={temp_dir}", f"--node-name={node_name}"]
    if role == "head":
        cmd += ["--head", "--include-dashboard=false"]
    else:
        cmd.append(f"--address={address}")
    cmd += node_ports.ray_start_args(head=role == "head", client_server=client_server)
    return cmd + resource_args(res)


def ray_env(env: Mapping[str, str], token: Path) -> dict[str, str]:
    out = {k: v for k, v in env.items() if k not in (TOKEN_ENV, "RAY_AUTH_TOKEN")}
    out.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    # Trials save checkpoints in the job directory (the teardown removes it on every node,
    # also after a trial was killed mid-save), not in /tmp.
    out["HPOC_SCRATCH"] = str(token.parent / "scratch")
    out.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's logs of each process (what a multi-worker trial's workers print) capped as in a
    # local run (session.py): the node's temp dir is small. The user's own setting stays.
    from hpoc.runtime.session import RAY_LOG_ROTATION

    for key, value in RAY_LOG_ROTATION.items():
        out[key] = out.get(key) or value
    # On SIGTERM `ray start` first asks the GCS to drain this node, for up to 30 s. At
    # teardown every node of the job stops at once and the GCS may be gone already.
    out["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    out.update(miopen_env(env, token.parent))
    return out


MIOPEN_VARS = ("MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR")


def miopen_env(env: Mapping[str, str], job_dir: Path) -> dict[str, str]:
    """On AMD nodes, MIOpen's databases in the node's job directory, not in $HOME: SQLite
    files there that every trial of every node locks at once on a shared file system (LUMI's
    Lustre), or that a container's read-only home refuses. What the user set stays."""
    if not (visible.ROCR in env or (DEV / "kfd").exists()):
        return {}
    return {name: str(job_dir / "miopen") for name in MIOPEN_VARS if not env.get(name)}


def write_head_file(job_dir: Path, address: str, node_name: str) -> None:
    tmp = job_dir / f".{HEAD_FILE}.tmp"
    tmp.write_text(json.dumps({"address": address, "node": node_name}) + "\n")
    tmp.replace(job_dir / HEAD_FILE)  # atomic: readers never see half a file


def _has_grpc() -> bool:
    import importlib.util

    return importlib.util.find_spec("grpc") is not None


DEV = Path("/dev")


def gpu_devices() -> int:
    """The GPU devices of this node as the driver makes them: NVIDIA's `nvidia0`…, AMD's and
    Intel's render nodes (`dri/renderD128`…, one per GCD on LUMI); AMD's only those this
    job may open (_denied)."""
    nvidia = [p for p in DEV.glob("nvidia*") if p.name[len("nvidia"):].isdigit()]
    if nvidia:
        return len(nvidia)
    if (DEV / "kfd").exists():
        return amd_gpus()
    return len(list(DEV.glob("dri/renderD*")))


def amd_closed() -> str | None:
    """Why this job may not use the node's AMD GPUs (`/dev/kfd: Operation not permitted`);
    None when it may, or the node has none."""
    if not (DEV / "kfd").exists():
        return None
    return next(filter(None, map(_denied, [DEV / "kfd", *sorted(DEV.glob("dri/renderD*"))])), None)


def _denied(path: Path) -> str | None:
    """Why `path` does not open read-write, as ROCm opens it, when a permission says so.
    SLURM's device cgroup (ConstrainDevices) denies a job the GPUs it did not ask for, but
    leaves their device files there: only an open tells. Cheap: no GPU context is made."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):  # the cgroup's answer; file modes alike
            return f"{path}: {exc.strerror}"
    return None


def amd_gpus() -> int:
    """AMD's GPUs of this node that this job may open (_denied): render nodes where the
    compute driver is (/dev/kfd)."""
    if not (DEV / "kfd").exists() or _denied(DEV / "kfd"):
        return 0
    return sum(not _denied(p) for p in DEV.glob("dri/renderD*"))


def prepare(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Everything before Ray: returns the `ray start` command and its environment."""
    job_dir = Path(args.job_dir)
    job_id = args.job_id if args.job_id is not None else _int_env(env, "SLURM_JOB_ID")
    if job_id is None:
        raise NodeError("no job id: pass --job-id or run inside a SLURM job")
    token = ensure_token(job_dir, env)
    keep_if_asked(job_dir, env)
    check_socket_room(job_dir / "n00")
    rank, temp_dir = claim_rank(job_dir)
    name = args.node_name or env.get("SLURMD_NODENAME") or socket.gethostname()
    if args.role == "worker" and rank == 0 and sweep.wanted(env):  # the batch node's: `cluster init`
        sweep.sweep_ended_jobs(job_dir.parent, f" on {name}", own=job_dir.name)  # squeue only if one is there
    ip = node_ip(args.interface)
    node_ports = pick_ports(job_id, rank, ip)
    res = allocation(env)
    if args.gpus is not None:  # a job that asked SLURM for no GPUs (gpu_request = none)
        if args.gpus and not gpu_devices() and (closed := amd_closed()):
            raise NodeError(f"the plan gives each node {args.gpus} GPU(s) (slurm.gpu_request = none), but {name}'s "
                            f"AMD GPUs are closed to this job ({closed}): the job asked SLURM for none, and SLURM "
                            "gives a job only the GPUs it asks for; set slurm.gpu_request = gres or per_node")
        if args.gpus and not gpu_devices():  # Ray would place trials on GPUs that are not there
            raise NodeError(f"the plan gives each node {args.gpus} GPU(s) (slurm.gpu_request = none), but {name} "
                            f"has no GPU device ({DEV}/nvidia*, {DEV}/dri/renderD*): its partition gives no GPUs "
                            "with the node; choose a GPU partition, or set slurm.gpu_request = gres or per_node")
        res["gpus"] = args.gpus
    env_out = ray_env(env, token)
    if any(env_out.get(name) == str(job_dir / "miopen") for name in MIOPEN_VARS):
        (job_dir / "miopen").mkdir(mode=0o700, exist_ok=True)
    address = f"{ip}:{node_ports.gcs}" if args.role == "head" else args.address
    cmd = ray_start_command(
        role=args.role, python=sys.executable, ip=ip, node_ports=node_ports, temp_dir=temp_dir,
        node_name=name, res=res, address=address, client_server=_has_grpc(),
    )
    if args.role == "head":
        write_head_file(job_dir, address, name)
    print(
        f"hpoc: ray {args.role} on {name}: ip={ip} ports={node_ports.gcs}-{node_ports.max_worker} "
        f"temp={temp_dir} cpus={res['cpus']} gpus={res['gpus']} memory={res['memory']}",
        flush=True,
    )
    return cmd, env_out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpoc.runtime.node", description=__doc__.split("\n")[0])
    p.add_argument("role", choices=("head", "worker"))
    p.add_argument("--job-dir", required=True, help="private per-job directory on node-local storage")
    p.add_argument("--address", help="head address IP:PORT (workers)")
    p.add_argument("--job-id", type=int, help="default: $SLURM_JOB_ID")
    p.add_argument("--node-name", help="name Ray reports for this node (default: $SLURMD_NODENAME)")
    p.add_argument("--interface", help="network interface for Ray (default: first non-loopback IPv4)")
    p.add_argument("--gpus", type=int, help="GPUs of this node for Ray (default: $SLURM_GPUS_ON_NODE, "
                   "else the devices in $CUDA_VISIBLE_DEVICES or $ROCR_VISIBLE_DEVICES)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("HPOC_BRINGUP_TIMEOUT", 300)),
                   help="seconds a worker waits for the head to answer (default: $HPOC_BRINGUP_TIMEOUT or 300)")
    return p


def answers(address: str, timeout: float = 1.0) -> bool:
    """True if something accepts TCP connections at IP:PORT (the head's GCS)."""
    from hpoc.runtime.probe import split  # as the driver's check before ray.init reads it

    where = split(address)
    if where is None:
        return False
    try:
        with socket.create_connection(where, timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_head(address: str, timeout: float, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not answers(address):
        if time.monotonic() >= deadline:
            raise NodeError(f"the Ray head at {address} did not answer within {timeout:g} s")
        time.sleep(poll_s)


def run_ray(cmd: list[str], env: Mapping[str, str], *, head: str | None = None, timeout: float = 300,
            cleanup: Callable[[], None] = lambda: None) -> None:
    """Run `ray start` in this very process, which thereby becomes the Ray node.

    Loading Ray takes a while; a worker does it while the head is still starting and only
    runs `ray start` once the head answers, so no fixed sleep and no lost time.
    """
    os.environ.clear()
    os.environ.update(env)  # before the import: Ray reads some settings at import time
    from ray.scripts.scripts import cli

    if head is not None:
        wait_for_head(head, timeout)
    print(f"hpoc: {shlex.join(['ray', *cmd[3:]])}", flush=True)
    # scancel while Ray waits for a GCS that has gone: stopped within a share of KillWait
    node_stop.heed_sigterm(cleanup, node_stop.grace_for(env.get(node_stop.KILL_WAIT_ENV)))
    cli.main(args=cmd[3:], prog_name="ray")  # exits with ray start's status


def release_job_dir(job_dir: Path, env: Mapping[str, str]) -> None:
    """A worker node's job directory (token, Ray's temp dir, staged checkpoints) once its
    Ray node has stopped. The batch script's teardown removes it too, with an srun that
    SLURM refuses once scancel or a requeue has ended the job's steps: the token and
    checkpoints stayed in the node's /tmp. One the head uses as well (its address file
    is there: HPOC_TMP on a shared file system, nodes of one host) is the teardown's."""
    if env.get("HPOC_KEEP_TMP") == "1" or (job_dir / HEAD_FILE).exists():
        return
    shutil.rmtree(job_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.role == "worker" and not args.address:
        parser().error("worker needs --address IP:PORT of the head")
    try:
        cmd, env = prepare(args, os.environ)
        def cleanup() -> None:
            if args.role == "worker":
                release_job_dir(Path(args.job_dir), env)

        try:
            run_ray(cmd, env, head=args.address if args.role == "worker" else None, timeout=args.timeout,
                    cleanup=cleanup)
        finally:  # `ray start --block` ends by SystemExit, on SIGTERM too
            cleanup()
    except (NodeError, OSError) as exc:
        print(f"hpoc: cannot start ray {args.role}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
