"""Plan -> what submitit submits (pure: no submitit import, no I/O).

`describe(plan, plan_path, cluster)` returns a `Submission`: the executor class, the
folder for logs, the interpreter on the nodes and the keyword arguments for
`executor.update_parameters`. `hpoc submit --dry-run` prints exactly this, and
`hpoc.submit.submit` builds the executor from it, so what is shown is what is sent.

SLURM mapping (the same allocation as the job.sbatch backend):
    nodes x 1 task per node; --cpus-per-task = slurm.cpus_per_node; --gres=gpu[:TYPE]:G
    (--gpus-per-node=[TYPE:]G, or nothing, as slurm.gpu_request says);
    mem, partition, account, qos, constraint; time in minutes; slurm.extra flags as
    additional sbatch options; slurm.setup lines, slurm.env and the interface variables
    run before srun; the srun step gets --cpus-per-task and the GPU option again (srun does not
    inherit --cpus-per-task); resume: --signal=USR2@grace_s and --requeue.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any

from hpoc.compiler.tables import KILL_WAIT_SH
from hpoc.plan import MAX_WALLTIME_REQUEUES

CLUSTERS = ("slurm", "local")
MAX_TIMEOUTS = MAX_WALLTIME_REQUEUES  # before submitit gives up (preemptions do not count)
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # a local run without slurm.time: a week
DEFAULT_GRACE_S = 120


class SubmitError(Exception):
    """The study cannot be submitted as asked; the message says why and what to change."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Submission:
    cluster: str                    # "slurm" or "local"
    executor: str                   # submitit class name
    plan_path: str                  # absolute plan.json the jobs read
    folder: str                     # submitit folder (with %j): logs, pickles, ray-<node>.log
    python: str                     # interpreter command on the nodes
    parameters: dict[str, Any]      # executor.update_parameters(**parameters)
    shards: list[int]               # one job (or array task) per shard
    array_parallelism: int
    max_num_timeout: int = MAX_TIMEOUTS
    study_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def array(self) -> bool:
        return self.cluster == "slurm" and len(self.shards) > 1


def study_id(plan: dict[str, Any]) -> str:
    """Stable id of a study's storage (what `hpoc status` and squeue comments match)."""
    root = posixpath.join(plan["storage"]["path"], plan["storage"]["name"])
    return hashlib.sha256(root.encode()).hexdigest()[:12]


def job_comment(plan: dict[str, Any]) -> str:
    return f"hpoc:{study_id(plan)}"


def describe(plan: dict[str, Any], plan_path: str, cluster: str) -> Submission:
    if cluster not in CLUSTERS:
        raise SubmitError(f"unknown cluster `{cluster}` (one of {', '.join(CLUSTERS)})")
    plan_dir = posixpath.dirname(plan_path)
    folder = posixpath.join(plan_dir, "logs", "%j")
    shards = list(range(plan["shards"]["count"]))
    parallel = min(plan["shards"]["parallel"], len(shards))
    if cluster == "local":
        return _local(plan, plan_path, folder, shards, parallel)
    if plan.get("slurm") is None:
        raise SubmitError(
            f"study `{plan['study']['name']}` has no `slurm` block, so it cannot go to SLURM\n"
            "  help: add a `slurm { ... }` block to the spec, or pass --cluster local")
    if "%" in plan_dir:  # submitit cannot escape it: it fills in %j itself
        raise SubmitError(
            f"the build directory {plan_dir} contains `%`, which sbatch and srun read as a pattern in "
            "the jobs' log paths (`%x` is the job name): the job would fail to launch without a line "
            "of output\n  help: submit into a directory without `%` (-o DIR), or compile and "
            "`sbatch BUILD/job.sbatch`, whose log paths escape it")
    from hpoc.compiler.tables import bindable

    if plan["slurm"].get("container") and not bindable(plan_dir):  # the job reads its pickles in there
        raise SubmitError(
            f"the build directory {plan_dir} cannot be bound into the container: "
            f"{plan['slurm']['container']['runtime']} reads `,` and `:` in --bind as separators\n"
            "  help: submit into a directory without them (-o DIR)")
    return _slurm(plan, plan_path, folder, shards, parallel)


def _grace(plan: dict[str, Any]) -> int | None:
    resume = plan["resume"]
    return int(resume["grace_s"] or DEFAULT_GRACE_S) if resume["enabled"] else None


def _minutes(time_s: int | None) -> int | None:
    return None if not time_s else max(1, math.ceil(time_s / 60))


def setup_lines(plan: dict[str, Any]) -> list[str]:
    """Shell lines run before the job's tasks start (site setup first, as in job.sbatch)."""
    slurm = plan["slurm"] or {}
    lines = []
    if slurm.get("setup"):  # submitit's script has no `set -e`: a failing line went unnoticed
        lines += [f"cd {shlex.quote(plan['source']['workdir'])}",  # relative paths: the spec's directory's
                  'hpoc_setup_failed() { (($1 == 0)) || echo "hpoc: slurm.setup failed (exit $1) at: $2" >&2; }',
                  """trap 'hpoc_setup_failed $? "$BASH_COMMAND"' EXIT""", "set -e",
                  *slurm["setup"], "set +e", "trap - EXIT"]
    for key, value in sorted((slurm.get("env") or {}).items()):
        lines.append(f"export {key}={shlex.quote(str(value))}")
    from hpoc.compiler.render import nic_env

    if nics := nic_env(slurm):
        nic = shlex.quote(slurm["interface"])
        lines.append("export " + " ".join(f"{key}={nic}" for key in nics))
    lines.append("export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1")
    lines += KILL_WAIT_SH.split("\n")  # the Ray nodes stop within a share of it (node_stop.py)
    lines.append(f"cd {shlex.quote(plan['source']['workdir'])}")
    container = slurm.get("container")
    if container:
        lines.append('hpoc_gpu_flag=""')
        lines.append("if command -v nvidia-smi >/dev/null 2>&1; then hpoc_gpu_flag=--nv; "
                     "elif command -v rocm-smi >/dev/null 2>&1; then hpoc_gpu_flag=--rocm; fi")
        lines += _job_dir_bind()
    return lines


def _job_dir_bind() -> list[str]:
    """`hpoc_tmp_bind`: the job directory's base when the container would not see it, as
    job.sbatch binds it (setup.j2): HPOC_TMP, else the job's own TMPDIR (the runtime picks
    the same, hpoc.runtime.node.job_dir_base); apptainer binds /tmp itself."""
    tmp = "hpoc_tmp=${HPOC_TMP:-}"
    ref = "hpoc_job_ref=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
    own = 'hpoc_own_re="(^|[^0-9])(${SLURM_JOB_ID}|${hpoc_job_ref:-$SLURM_JOB_ID})([^0-9]|\\$)"'
    return [
        f"hpoc_tmp_bind=(); {tmp}; {ref}; {own}",
        'if [[ -n $hpoc_tmp && $hpoc_tmp != /* ]]; then echo "hpoc: HPOC_TMP=$hpoc_tmp must be an absolute '
        'path (a node-local directory such as /tmp)" >&2; exit 2; fi',
        'if [[ -n $hpoc_tmp && ( $hpoc_tmp == *[,:]* || ! -d $hpoc_tmp ) ]]; then '
        'echo "hpoc: HPOC_TMP=$hpoc_tmp cannot be bound into the container (not a directory, '
        'or it contains a comma or a colon)" >&2; exit 2; fi',
        'if [[ -z $hpoc_tmp && ${TMPDIR:-} == /* && $TMPDIR =~ $hpoc_own_re && $TMPDIR != *[,:]* '
        '&& -d $TMPDIR ]]; then hpoc_tmp=$TMPDIR; fi',
        'while [[ $hpoc_tmp == ?*/ ]]; do hpoc_tmp=${hpoc_tmp%/}; done  # as the runtime names it',
        'if [[ -n $hpoc_tmp && $hpoc_tmp != /tmp ]]; then hpoc_tmp_bind=(--bind "$hpoc_tmp"); fi',
    ]


def python_command(plan: dict[str, Any], plan_dir: str) -> str:
    """The interpreter on the nodes: `slurm.python`, inside the container when there is one,
    with what job.sbatch binds: the spec's directory, the build directory (submitit's pickles,
    read in there; it need not lie under the spec's), the storage and the job directory's base."""
    slurm = plan["slurm"] or {}
    python = slurm.get("python") or "python3"
    container = slurm.get("container")
    if not container:
        return shlex.quote(python)
    binds = list(dict.fromkeys([plan["source"]["workdir"], plan_dir, plan["storage"]["path"]]))
    bind = " ".join(f"--bind {shlex.quote(b)}" for b in binds)
    return (f"{shlex.quote(container['runtime'])} exec $hpoc_gpu_flag \"${{hpoc_tmp_bind[@]}}\" {bind} "
            f"{shlex.quote(container['image'])} {shlex.quote(python)}")


def extra_parameters(flags: list[str]) -> dict[str, Any]:
    """`slurm.extra` (`--exclusive`, `--mail-type=END`) as submitit additional_parameters.
    Read as sbatch reads the `#SBATCH` line job.sbatch writes (shell words: `--name value`
    too, quotes removed), since submitit quotes each value again."""
    out: dict[str, Any] = {}
    for flag in flags:
        if not flag.startswith("--"):
            raise SubmitError(f"slurm.extra: `{flag}` is not a long sbatch option (`--name[=value]`)")
        words = shlex.split(flag, comments=True)  # hpoc check refused more than one value
        name, eq, value = words[0][2:].partition("=")
        out[name] = value if eq else words[1] if len(words) > 1 else True
    return out


def _slurm(plan: dict[str, Any], plan_path: str, folder: str, shards: list[int],
           parallel: int) -> Submission:
    slurm = plan["slurm"]
    cpus = slurm["cpus_per_node"]
    params: dict[str, Any] = {
        "job_name": plan["study"]["name"],
        "nodes": slurm["nodes"],
        "ntasks_per_node": 1,
        "setup": setup_lines(plan),
        "comment": job_comment(plan),
        "stderr_to_stdout": False,
        # submitit's default `--wckey=submitit` is refused where a site enforces wckeys, and
        # job.sbatch sets none: a wckey comes from `extra` only
        "wckey": None,
    }
    # --export=ALL: the tasks need the setup's environment even under `sbatch --export=NONE`
    # (a site default or `extra`), which srun would inherit through SLURM_EXPORT_ENV.
    srun_args = ["--export=ALL", "--kill-on-bad-exit=0"]
    if cpus is not None:
        params["cpus_per_task"] = cpus
        srun_args.append(f"--cpus-per-task={cpus}")
    from hpoc.compiler.render import gpu_option, requeue_in_extra

    # --gres=gpu[:TYPE]:N, or --gpus-per-node=[TYPE:]N (gpu_request = per_node), as job.sbatch
    if option := gpu_option(slurm):
        name, value = option
        params[name.replace("-", "_")] = int(value) if value.isdigit() else value
        srun_args.append(f"--{name}={value}")
    params["srun_args"] = srun_args
    for key in ("mem", "partition", "account", "qos", "constraint"):
        if slurm[key] is not None:
            params[key] = slurm[key]
    minutes = _minutes(slurm.get("time_s"))
    if minutes is not None:
        params["time"] = minutes
    extra = extra_parameters(list(slurm["extra"] or []))
    grace = _grace(plan)
    notes = []
    if grace is not None:
        params["signal_delay_s"] = grace
        extra["requeue"] = True
        notes.append(f"USR2 {grace} s before the time limit: the study checkpoints, the job "
                     "requeues itself and resumes")
    elif not requeue_in_extra(list(slurm["extra"] or [])):
        # SLURM requeues any batch job after a node failure (JobRequeue=1, its default); the
        # run it started would refuse the unfinished run that resume may not continue.
        extra["no-requeue"] = True
    if extra:
        params["additional_parameters"] = extra
    if len(shards) > 1:
        params["array_parallelism"] = parallel
    return Submission(cluster="slurm", executor="SlurmExecutor", plan_path=plan_path, folder=folder,
                      python=python_command(plan, posixpath.dirname(plan_path)), parameters=params,
                      shards=shards, array_parallelism=parallel, study_id=study_id(plan), notes=notes)


def local_gpus(env: dict[str, str] | None = None) -> list[int]:
    """This machine's GPU indices: CUDA_VISIBLE_DEVICES when it lists numbers, else on AMD
    nodes HIP_VISIBLE_DEVICES or what ROCR_VISIBLE_DEVICES leaves (HIP numbers it from 0),
    else the devices `nvidia-smi -L` shows, else AMD's render nodes (/dev/kfd there)."""
    import os
    import shutil
    import subprocess

    from hpoc.runtime import node

    env = os.environ if env is None else env
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        if name in env:
            items = [d.strip() for d in env[name].split(",") if d.strip()]
            numbers = name != "ROCR_VISIBLE_DEVICES" and all(d.isdigit() for d in items)
            return [int(d) for d in items] if numbers else list(range(len(items)))
    if not shutil.which("nvidia-smi"):
        return list(range(node.amd_gpus()))
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


def _local(plan: dict[str, Any], plan_path: str, folder: str, shards: list[int],
           parallel: int) -> Submission:
    slurm = plan["slurm"] or {}
    minutes = _minutes(slurm.get("time_s")) or LOCAL_TIMEOUT_MIN
    params: dict[str, Any] = {"timeout_min": minutes, "tasks_per_node": 1, "nodes": 1}
    # submitit sets CUDA_VISIBLE_DEVICES for local jobs (to nothing without gpus_per_node):
    # hand the job this machine's GPUs, or as many of them as the study asks per node.
    visible = local_gpus()
    if visible:
        wanted = slurm.get("gpus_per_node")
        params["gpus_per_node"] = min(wanted, len(visible)) if wanted else len(visible)
        params["visible_gpus"] = visible
    grace = _grace(plan)
    if grace is not None:
        params["signal_delay_s"] = min(grace, max(1, minutes * 60 - 1))
    notes = ["this machine: each shard runs its study driver with an embedded Ray"]
    if slurm.get("nodes", 1) > 1:
        notes.append(f"slurm.nodes = {slurm['nodes']} is ignored here: one machine")
    import sys

    return Submission(cluster="local", executor="LocalExecutor", plan_path=plan_path, folder=folder,
                      python=shlex.quote(sys.executable), parameters=params, shards=shards,
                      array_parallelism=parallel, study_id=study_id(plan), notes=notes)
