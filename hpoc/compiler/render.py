"""Render a plan's SLURM scripts (pure: plan in, text out; no I/O besides the templates,
whose compiled form is kept in the user's cache, `hpoc.cache`).

`render_all(plan, plan_path=...)` returns `{filename: text}`:

* `job.sbatch`: brings up a private Ray cluster, checks it, runs the study driver
  (`python -m hpoc.runtime PLAN --shard N`), tears the cluster down;
* `preflight.sbatch`: the same without the driver, to test a site's settings cheaply.

With `preflight_only=True` only `job.sbatch` is returned, and it is the preflight script.
A plan without a `slurm` block has no scripts: `{}`.

Templates live in hpoc/templates/slurm/ (one partial per section of the script). Every
value from the plan reaches the shell through the `q` filter (`shlex.quote`); the only
text inserted as written is what the user wrote *as shell*: `slurm.setup` lines and the
`slurm.extra` #SBATCH flags. Both are validated here first.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shlex
from collections.abc import Mapping
from typing import Any

import jinja2

from hpoc.compiler import tables as T
from hpoc.plan import EXIT_INTERRUPTED, EXIT_NO_PROGRESS, MAX_WALLTIME_REQUEUES
from hpoc.sizes import slurm_mem

TEMPLATE_DIR = "templates/slurm"
SIGNAL_MARGIN_S = 10  # of the grace period, kept for teardown after the driver stopped
MAX_SIGNAL_S = 65535  # SLURM's limit for --signal=...@seconds

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]+){0,2}\Z")
_IFACE = re.compile(r"[A-Za-z0-9_.:-]{1,15}\Z")
_GRES_TYPE = re.compile(T.GRES_TYPE_RE + r"\Z")
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
CONTAINER_RUNTIMES = ("apptainer", "singularity")


NIC_ENV = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


def nic_env(slurm: Mapping[str, Any]) -> list[str]:
    """The NIC variables `slurm.interface` sets: those `slurm.env` does not set itself (a list
    such as `hsn0,hsn1,hsn2,hsn3` for NCCL, while Ray's node address needs one interface)."""
    if slurm.get("interface") is None:
        return []
    return [key for key in NIC_ENV if key not in (slurm.get("env") or {})]


def gpu_option(slurm: Mapping[str, Any]) -> tuple[str, str] | None:
    """The GPU option of the job and its steps as (name, value): `("gres", "gpu:N")` (with
    `slurm.gpu_type`: `gpu:TYPE:N`), `("gpus-per-node", "N")` (`TYPE:N`) under
    `gpu_request = per_node`; None without GPUs or under `none`. Plans from before
    `gpu_type`/`gpu_request` existed lack them: untyped `--gres`."""
    gpus = slurm.get("gpus_per_node")
    request = slurm.get("gpu_request") or "gres"
    if not gpus or request == "none":
        return None
    kind = slurm.get("gpu_type")
    if request == "per_node":
        return "gpus-per-node", f"{kind}:{gpus}" if kind else str(gpus)
    return "gres", f"gpu:{kind}:{gpus}" if kind else f"gpu:{gpus}"


def node_gpus(slurm: Mapping[str, Any]) -> int | None:
    """The GPU count a Ray node is told, or None to take SLURM's (`SLURM_GPUS_ON_NODE`):
    under `gpu_request = none` SLURM knows of no GPUs, so the plan's count is the node's."""
    if (slurm.get("gpu_request") or "gres") == "none" and slurm.get("gpus_per_node"):
        return slurm["gpus_per_node"]
    return None


# sbatch reads `\` in an #SBATCH line as an escape even inside single quotes
# (`--partition='a\b'` asks for partition `ab`): such values cannot be written there.
_BACKSLASH = "must not contain `\\`: sbatch drops it from #SBATCH lines, even quoted"


def _log_path(path: str) -> str:
    """`path` for sbatch's --output/--error, which expand `%j`, `%x`, ...: `%%` is a literal `%`."""
    return path.replace("%", "%%")


class RenderError(ValueError):
    """The plan cannot be rendered; `problems` lists every reason as `path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("cannot render SLURM scripts:\n  " + "\n  ".join(problems))

    def __reduce__(self):  # picklable, although __init__ takes a list
        return (RenderError, (self.problems,))


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Templates compiled by an earlier `hpoc compile` (Jinja checks the source and the
    Python version of each): compiling them is most of rendering. A file that cannot be
    read or written means compiling again, never a failed compile."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged cache file: compile the template
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _compiled_templates() -> jinja2.BytecodeCache | None:
    from hpoc.cache import cache_dir

    path = cache_dir()
    if path is None:
        return None
    path = os.path.join(path, "templates")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return _CompiledTemplates(path)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hpoc", TEMPLATE_DIR),
        bytecode_cache=_compiled_templates(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment: templates comment with {## ##}
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render_all(plan: Mapping[str, Any], *, plan_path: str, preflight_only: bool = False) -> dict[str, str]:
    """The SLURM scripts of `plan`, whose plan.json will be at absolute `plan_path`."""
    if plan.get("slurm") is None:
        return {}
    job = _context(plan, plan_path)
    template = environment().get_template("job.sbatch.j2")
    preflight = template.render(_preflight(job))
    if preflight_only:
        return {"job.sbatch": preflight}
    return {"job.sbatch": template.render(job), "preflight.sbatch": preflight}


def requeue_in_extra(flags: list[str]) -> bool:
    """Whether `slurm.extra` says itself whether the job may be requeued."""
    return any(T.sbatch_option(flag) in ("--requeue", "--no-requeue") for flag in flags)


def _preflight(job: dict[str, Any]) -> dict[str, Any]:
    """No driver: no time-limit signal or requeue either, and its own name and logs."""
    name = f"{job['job_name']}-preflight"
    stem = posixpath.join(_log_path(job["plan_dir"]), _FILE_SAFE.sub("_", name))
    tag = "%A_%a" if job["array"] is not None else "%j"
    return dict(job, driver=False, job_name=name, grace_s=None, stop_wait_s=None,
                output=f"{stem}-{tag}.out", error=f"{stem}-{tag}.err")


class _Problems:
    """Every reason the plan cannot be rendered, as `path: message`, and the checks of a
    single value that add to them (each returns the value, or a stand-in, to go on with)."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.found.append(f"{path}: {message}")

    def text(self, path: str, value: Any, *, allow_none: bool = True) -> str | None:
        if value is None:
            if not allow_none:
                self.bad(path, "is required")
            return None
        value = str(value)
        if "\n" in value or "\r" in value or "\0" in value:
            self.bad(path, "must be a single line")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a file name in another encoding: the script is UTF-8
            self.bad(path, f"must be valid UTF-8 (got {os.fsencode(value).decode('utf-8', 'backslashreplace')})")
        return value

    def count(self, path: str, value: Any, *, minimum: int, allow_none: bool = True) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.bad(path, f"must be an integer >= {minimum} (got {value!r})")
            return None
        return value


def _context(plan: Mapping[str, Any], plan_path: str) -> dict[str, Any]:
    """What the templates are rendered with; every problem of the plan at once (RenderError)."""
    problems = _Problems()
    slurm = plan["slurm"]
    plan_path = _plan_path(problems, plan_path)
    job = {**_resources(problems, slurm), **_site(problems, slurm), **_array(problems, plan["shards"])}
    grace = _grace(problems, plan)
    study = _study_name(problems, plan)
    plan_dir = _plan_dir(problems, plan_path)
    binds = _binds(problems, plan, plan_dir, slurm["container"])
    if problems.found:
        raise RenderError(problems.found)
    err_stem = posixpath.join(plan_dir, _FILE_SAFE.sub("_", study))  # the logs as sbatch names them
    stem = _log_path(err_stem)  # (the study's part holds no `%`)
    tag = "%A_%a" if job["array"] is not None else "%j"
    return {
        **job,
        "driver": True,
        "study": study,
        "job_name": study,
        "plan_path": plan_path,
        "plan_dir": plan_dir,
        "plan_hash": plan.get("content_hash") or "unhashed",
        "workdir": plan["source"]["workdir"],
        "log_dir": posixpath.join(plan_dir, "logs"),
        "output": f"{stem}-{tag}.out",
        "error": f"{stem}-{tag}.err",
        "err_stem": err_stem,
        "gpu_option": gpu_option(slurm),
        "node_gpus": node_gpus(slurm),
        "grace_s": grace,
        "stop_wait_s": max(grace - SIGNAL_MARGIN_S, 1) if grace else None,
        "no_progress_rc": EXIT_NO_PROGRESS,
        "interrupted_rc": EXIT_INTERRUPTED,
        "max_requeues": MAX_WALLTIME_REQUEUES,
        "nic_env": nic_env(slurm),
        "binds": binds,
        "job_dir_max": T.JOB_DIR_MAX,
        "kill_wait_sh": T.KILL_WAIT_SH,
    }


def _plan_path(problems: _Problems, plan_path: Any) -> str:
    if not isinstance(plan_path, str) or not posixpath.isabs(plan_path):
        problems.bad("plan_path", f"must be an absolute path (got {plan_path!r})")
        plan_path = "/plan.json"
    problems.text("plan_path", plan_path)
    return plan_path


def _resources(problems: _Problems, slurm: Mapping[str, Any]) -> dict[str, Any]:
    """What a node holds (counts, GPU type and request, memory) and the walltime."""
    nodes = problems.count("slurm.nodes", slurm["nodes"], minimum=1, allow_none=False) or 1
    cpus = problems.count("slurm.cpus_per_node", slurm["cpus_per_node"], minimum=1)
    gpus = problems.count("slurm.gpus_per_node", slurm["gpus_per_node"], minimum=0)
    gpu_type = problems.text("slurm.gpu_type", slurm.get("gpu_type"))
    if gpu_type is not None and not _GRES_TYPE.match(gpu_type):
        problems.bad("slurm.gpu_type", f"is not a GPU type: letters, digits, `_`, `-`, `.` (got {gpu_type!r})")
    elif gpu_type is not None and not gpus:
        problems.bad("slurm.gpu_type", f"needs GPUs, but gpus_per_node is {gpus!r}")
    request = slurm.get("gpu_request") or "gres"
    if request not in T.GPU_REQUESTS:
        problems.bad("slurm.gpu_request", f"must be one of {', '.join(T.GPU_REQUESTS)} (got {request!r})")
    elif gpu_type is not None and request == "none":
        problems.bad("slurm.gpu_type", "needs a GPU request, but gpu_request is 'none'")
    mem = problems.text("slurm.mem", slurm["mem"])
    if mem is not None and slurm_mem(mem) is None:
        problems.bad("slurm.mem", f"must be a number with an optional K/M/G/T suffix, like 64G (got {mem!r})")
    time_ = problems.text("slurm.time", slurm["time"])
    if time_ is not None and not _TIME.match(time_):
        problems.bad("slurm.time", f"must be a SLURM time such as 02:00:00 or 1-00:00:00 (got {time_!r})")
    return {"nodes": nodes, "cpus_per_node": cpus, "gpus_per_node": gpus, "mem": mem, "time": time_}


def _site(problems: _Problems, slurm: Mapping[str, Any]) -> dict[str, Any]:
    """What the user wrote for the site: its names, sbatch flags and shell lines, the
    environment, the network interface, the container and the interpreter."""
    for key in ("partition", "account", "qos", "constraint"):
        if "\\" in (problems.text(f"slurm.{key}", slurm[key]) or ""):
            problems.bad(f"slurm.{key}", _BACKSLASH)
    for i, flag in enumerate(slurm["extra"] or []):
        if problems.text(f"slurm.extra[{i}]", flag, allow_none=False) and not str(flag).startswith("--"):
            problems.bad(f"slurm.extra[{i}]", f"must be a long option starting with `--` (got {flag!r})")
    for i, line in enumerate(slurm["setup"] or []):
        problems.text(f"slurm.setup[{i}]", line, allow_none=False)
    env = sorted((slurm["env"] or {}).items())
    for key, value in env:
        if not _ENV_KEY.match(key):
            problems.bad(f"slurm.env.{key}", "is not a valid environment variable name")
        problems.text(f"slurm.env.{key}", value, allow_none=False)
    interface = problems.text("slurm.interface", slurm["interface"])
    if interface is not None and not _IFACE.match(interface):
        problems.bad("slurm.interface", f"is not a network interface name (got {interface!r})")
    container = slurm["container"]
    if container is not None:
        if container.get("runtime") not in CONTAINER_RUNTIMES:
            problems.bad("slurm.container.runtime", f"must be one of {', '.join(CONTAINER_RUNTIMES)}")
        problems.text("slurm.container.image", container.get("image"), allow_none=False)
    python = problems.text("slurm.python", slurm["python"]) or "python3"
    return {
        **{key: slurm[key] for key in ("partition", "account", "qos", "constraint")},
        "extra": list(slurm["extra"] or []),
        "requeue_own": requeue_in_extra(slurm["extra"] or []),
        "setup": list(slurm["setup"] or []),
        "setup_runs": any(line.strip() and not line.strip().startswith("#") for line in slurm["setup"] or []),
        "env": env,
        "interface": interface,
        "container": container,
        "python": python,
    }


def _array(problems: _Problems, shards: Mapping[str, Any]) -> dict[str, Any]:
    """The job array of `shards.count` tasks, `shards.parallel` at once (none for one shard)."""
    k = problems.count("shards.count", shards["count"], minimum=1, allow_none=False) or 1
    parallel = problems.count("shards.parallel", shards["parallel"], minimum=1, allow_none=False) or 1
    return {"array": f"0-{k - 1}%{min(parallel, k)}" if k > 1 else None, "shards": k}


def _grace(problems: _Problems, plan: Mapping[str, Any]) -> int | None:
    """Seconds of warning before the walltime (`--signal`), with resume only."""
    if not plan["resume"]["enabled"]:
        return None
    grace = problems.count("resume.grace_s", plan["resume"]["grace_s"], minimum=1, allow_none=False)
    time_s = plan["slurm"].get("time_s")
    if grace is not None and (grace > MAX_SIGNAL_S or (time_s and grace >= time_s)):
        problems.bad("resume.grace_s", f"must be below the time limit and at most {MAX_SIGNAL_S} s (got {grace})")
    return grace


def _study_name(problems: _Problems, plan: Mapping[str, Any]) -> str:
    study = problems.text("study.name", plan["study"]["name"], allow_none=False) or "study"
    if "\\" in study:  # the #SBATCH --job-name
        problems.bad("study.name", _BACKSLASH)
    return study


def _plan_dir(problems: _Problems, plan_path: str) -> str:
    plan_dir = posixpath.dirname(plan_path)
    if "\\" in plan_path:  # the #SBATCH --output/--error paths
        problems.bad("plan_path", f"the build directory {plan_dir!r} must not contain `\\`: sbatch drops it from "
                     "#SBATCH lines, so the job's logs would go elsewhere (use another build directory)")
    return plan_dir


def _binds(problems: _Problems, plan: Mapping[str, Any], plan_dir: str, container: Any) -> list[str]:
    """What the container binds: the study's directory, the build directory, the storage."""
    binds = list(dict.fromkeys([plan["source"]["workdir"], plan_dir, plan["storage"]["path"]]))
    if container is not None:
        for path in binds:
            if not T.bindable(path):
                problems.bad("slurm.container", f"cannot bind {path!r}: it must not contain `,` or `:`, which "
                             f"{container.get('runtime')} reads as separators in --bind (move the study, build "
                             "or storage directory)")
    return binds
