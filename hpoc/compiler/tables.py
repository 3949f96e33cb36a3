"""The single source of truth for what a study may say: sections, keys, defaults,
search algorithms, schedulers and search domains (with Ray Tune's argument names).

The checker reads specs against these tables, did-you-mean suggestions come from
them, and docs/language.md lists the same names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hpoc.compiler import kinds as K
from hpoc.plan import NEVERGRAD_OPTIMIZER


@dataclass(frozen=True)
class F:
    """One key of a section: how to read its value, and its default when absent."""

    kind: Any  # a kinds.Kind, or a Rec for a nested `{ ... }` record
    default: Any = None
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Rec:
    """A nested record written `key { ... }` or `key = { ... }`."""

    fields: dict[str, F] = field(default_factory=dict)
    open: Any = None  # kind of values for free-form maps (env, stop, ...); keys are free
    key_pattern: str | None = None  # for free-form maps: what keys must look like
    key_what: str = "key"
    taken: dict[str, str] = field(default_factory=dict)  # keys the job sets itself → help


NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]*"  # study/experiment names: safe in paths and job names
NAME_HELP = ("use ASCII letters and digits, `.`, `_` and `-`, starting with a letter or digit "
             "(it names directories and jobs)")
NAME_MAX = 200  # they name directories and log files (`<name>-<job id>.out`): 255 bytes at most
ENV_RE = r"[A-Za-z_][A-Za-z0-9_]*"
_OWN_RAY = "each job starts its own Ray cluster and its drivers attach to it only"
_TOKEN = "each job makes a fresh token in a private file: the cluster admits no other process"
# What the job script (templates/slurm) exports or unsets after `slurm.env`: a value for them is lost
JOB_ENV = {
    "RAY_ADDRESS": _OWN_RAY,
    "RAY_AUTH_MODE": _TOKEN, "RAY_AUTH_TOKEN": _TOKEN, "RAY_AUTH_TOKEN_PATH": _TOKEN, "HPOC_RAY_TOKEN": _TOKEN,
    "RAY_USAGE_STATS_ENABLED": "Ray's usage statistics stay off: the nodes cannot reach the internet",
    "PYTHONUNBUFFERED": "the trainers' output goes to the logs as it is printed",
    "HPOC_WALLTIME_REQUEUE": "the job sets it when it requeues itself at its walltime",
}
IFACE_RE = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}"  # Linux: at most 15 characters
_IFACE_HINT = ("one interface, whose address the Ray nodes take (`ib0`, `hsn0`); give NCCL a list "
               "(`hsn0,hsn1`, `^lo`) in `env`: `NCCL_SOCKET_IFNAME = \"hsn0,hsn1\"`")
GRES_TYPE_RE = r"[A-Za-z0-9_.-]+"  # a gres type (`a100`, `h100_80gb`): `--gres=gpu:TYPE:N`
# How a job asks for its GPUs: `--gres=gpu:N` (default), `--gpus-per-node=N`, or not at all
# (a partition that hands out whole nodes with their GPUs).
GPU_REQUESTS = ("gres", "per_node", "none")

# SLURM's default MaxArraySize: array indices up to 1000, so at most 1001 shards (sites may raise it).
SLURM_MAX_ARRAY_SIZE = 1001

def bindable(path: str) -> bool:
    """Whether `--bind PATH` binds PATH: apptainer reads `src[:dest[:opts]][,more]`."""
    return "," not in path and ":" not in path


# Longest SLURM job directory (`<base>/hpoc-<job id>`): Ray's unix sockets go under its
# `n<rank>` temp dirs with about 64 more characters, and a socket path holds at most 107
# bytes (hpoc/runtime/node.py JOB_DIR_MAX, tested equal).
JOB_DIR_MAX = 107 - 64 - len("/n00")

# SLURM's KillWait (its SIGKILL follows its SIGTERM by that many seconds), asked once on the
# batch node unless set; the steps carry it to every Ray node, whose SIGTERM watchdog takes a
# share of it (hpoc/runtime/node_stop.py). No answer leaves it empty: the nodes' default.
KILL_WAIT_SH = ("[[ -n ${HPOC_KILL_WAIT:-} ]] || HPOC_KILL_WAIT=$(timeout 5 scontrol show config 2>/dev/null"
                " | sed -n 's/^KillWait *= *\\([0-9][0-9]*\\) sec.*/\\1/p') || true\nexport HPOC_KILL_WAIT")

# CPUs of the Tune actor that drives a trial of several workers (hpoc/runtime/session.py
# DRIVER_CPU): it takes a node's CPUs beside the trial's workers.
TRIAL_DRIVER_CPU = 0.01

# Metrics the default train() loop of hpoc's Trainer reports every epoch.
DEFAULT_METRICS = ("train_loss", "val_loss", "val_accuracy", "epoch", "training_iteration")

# ------------------------------------------------------------------------- domains

# name -> ordered (arg, kind, default); `...` marks a required argument.
_N = K.any_number
_I = K.integer()
DOMAINS: dict[str, tuple[tuple[str, Any, Any], ...]] = {
    "uniform": (("lower", _N, ...), ("upper", _N, ...)),
    "quniform": (("lower", _N, ...), ("upper", _N, ...), ("q", _N, ...)),
    "loguniform": (("lower", _N, ...), ("upper", _N, ...), ("base", _N, 10)),
    "qloguniform": (("lower", _N, ...), ("upper", _N, ...), ("q", _N, ...), ("base", _N, 10)),
    "randn": (("mean", _N, 0.0), ("sd", _N, 1.0)),
    "qrandn": (("mean", _N, ...), ("sd", _N, ...), ("q", _N, ...)),
    "randint": (("lower", _I, ...), ("upper", _I, ...)),
    "qrandint": (("lower", _I, ...), ("upper", _I, ...), ("q", _I, 1)),
    "lograndint": (("lower", _I, ...), ("upper", _I, ...), ("base", _N, 10)),
    "qlograndint": (("lower", _I, ...), ("upper", _I, ...), ("q", _I, ...), ("base", _N, 10)),
    "choice": (),  # variadic: categories
    "grid": (),  # variadic: values
}
CATEGORICAL = ("choice", "grid")
QUANTIZED = ("quniform", "qloguniform", "qrandn", "qrandint", "qlograndint")
INTEGER = ("randint", "qrandint", "lograndint", "qlograndint")
NORMAL = ("randn", "qrandn")
LOG = ("loguniform", "qloguniform", "lograndint", "qlograndint")

# ---------------------------------------------------------------------- searchers

_POINTS = F(K.list_of(K.space_value), None, doc="configs to evaluate first")
# numpy's and the samplers' seeds are 32-bit: 0 .. 2**32 - 1.
_SEED = F(K.optional(K.integer(0, 2**32 - 1)), None, doc="random seed (mapped to Ray's own argument name)")
# Optuna's sampler classes, as a Python script names them (`sampler = "TPESampler"`)
_OPTUNA_SAMPLERS = {"tpesampler": "tpe", "gpsampler": "gp", "cmaessampler": "cmaes", "nsgaiisampler": "nsga2",
                    "nsgaii": "nsga2", "randomsampler": "random"}

SEARCHERS: dict[str, dict[str, F]] = {
    "random": {"seed": _SEED, "points_to_evaluate": _POINTS},
    "grid": {},
    "optuna": {
        "sampler": F(K.enum(["tpe", "gp", "cmaes", "nsga2", "random"], aliases=_OPTUNA_SAMPLERS), "tpe"),
        "seed": _SEED,
        "n_startup_trials": F(K.optional(K.integer(0)), None),
        "population_size": F(K.optional(K.integer(2)), None, doc="nsga2 only"),
        "points_to_evaluate": _POINTS,
    },
    "hyperopt": {
        "seed": _SEED,
        "n_initial_points": F(K.integer(0), 20),
        "gamma": F(K.number(0, 1, lo_open=True), 0.25),
        "points_to_evaluate": _POINTS,
    },
    "bayesopt": {
        "seed": _SEED,
        "random_search_steps": F(K.integer(0), 10),
        "utility_kwargs": F(K.optional(K.literal), None),
        "patience": F(K.integer(1), 5),
        "points_to_evaluate": _POINTS,
    },
    "hebo": {"seed": _SEED, "points_to_evaluate": _POINTS},
    "nevergrad": {
        "optimizer": F(K.string(r"[A-Za-z_][A-Za-z0-9_]*", "optimizer name"), NEVERGRAD_OPTIMIZER),
        "optimizer_kwargs": F(K.optional(K.literal), None),
        "points_to_evaluate": _POINTS,
    },
    "ax": {
        "parameter_constraints": F(K.optional(K.list_of(K.string())), None),
        "outcome_constraints": F(K.optional(K.list_of(K.string())), None),
        "points_to_evaluate": _POINTS,
    },
    "bohb": {
        "seed": _SEED,
        "bohb_config": F(K.optional(K.literal), None),
        "points_to_evaluate": _POINTS,
    },
}
# Trials Ray's HEBOSearch runs at once unless `max_concurrent` is set (its own default,
# read from Ray's signature by the runtime: hpoc/runtime/search.py search_cap).
HEBO_MAX_CONCURRENT = 8
# What each searcher can explore (Ray's convert_search_space in ray/tune/search/*).
CAN_CONDITION = ("random", "grid", "optuna")  # grid and random: hpoc's own sampler
CAN_GRID = ("random", "grid")
MAX_GRID_POINTS = 100_000  # points are enumerated up front, by the compiler and the runtime
CAN_MULTI_OBJECTIVE = ("random", "grid", "optuna")
NEEDS_OBJECTIVE = tuple(s for s in SEARCHERS if s not in ("random", "grid"))
DROPS_QUANTIZATION = ("bayesopt", "hebo", "nevergrad", "ax", "bohb")
CAN_NORMAL = ("random", "hyperopt")

# --------------------------------------------------------------------- schedulers

# Schedulers that choose configurations and clone checkpoints between trials themselves.
POPULATION = ("pbt", "pb2")

_MAX_T = F(K.integer(1), 100, doc="longest a trial runs, in `time_attr` units")
_RF = F(K.number(1, lo_open=True), 4, doc="fraction of trials kept at each rung is 1/rf")
_STOP_LAST = F(K.boolean, True)
SCHEDULERS: dict[str, dict[str, F]] = {
    "fifo": {},
    "asha": {
        "max_t": _MAX_T,
        "grace_period": F(K.integer(1), 1),
        "reduction_factor": _RF,
        "brackets": F(K.integer(1), 1),
        "stop_last_trials": _STOP_LAST,
    },
    "hyperband": {"max_t": F(K.integer(1), 81), "reduction_factor": F(_RF.kind, 3), "stop_last_trials": _STOP_LAST},
    "median": {
        "grace_period": F(K.number(0), 1),
        "min_samples_required": F(K.integer(1), 3),
        "min_time_slice": F(K.number(0), 0),
        "hard_stop": F(K.boolean, True),
    },
    "pbt": {
        "perturbation_interval": F(K.number(0, lo_open=True), 1),
        "burn_in_period": F(K.number(0), 0),
        "hyperparam_mutations": F(Rec(open="mutation"), None),
        "quantile_fraction": F(K.number(0, 0.5), 0.25),
        "resample_probability": F(K.number(0, 1), 0.25),
        "perturbation_factors": F(K.list_of(K.number(0, lo_open=True)), [1.2, 0.8]),
        "log_config": F(K.boolean, True),
        "require_attrs": F(K.boolean, True),
        "synch": F(K.boolean, False),
    },
    "pb2": {
        "perturbation_interval": F(K.number(0, lo_open=True), 1),
        "hyperparam_bounds": F(Rec(open="bounds"), None),
        "quantile_fraction": F(K.number(0, 0.5), 0.25),
        "log_config": F(K.boolean, True),
        "require_attrs": F(K.boolean, True),
        "synch": F(K.boolean, False),
    },
    "bohb": {"max_t": F(K.integer(1), 81), "reduction_factor": F(_RF.kind, 3), "stop_last_trials": _STOP_LAST},
}
TIME_ATTR = F(
    K.metric(r"[A-Za-z_][A-Za-z0-9_/.]*"),
    "training_iteration",
    doc="result key that measures progress",
)

# ----------------------------------------------------------------------- sections

_SITE_NAME = K.string(blank=False)  # `--partition=''` is not the default partition
_TIME_RE = re.compile(r"\d+(?:-\d+(?::\d+(?::\d+)?)?|(?::\d+){0,2})", re.ASCII)

SECTIONS: dict[str, dict[str, F]] = {
    "pipeline": {
        "getter": F("target", None, doc="data getter step"),
        "splitter": F("target", None, doc="train/validation splitter step"),
        "trainer": F("target", None, required=True, doc="trainer step"),
    },
    "trials": {
        "num_samples": F(K.integer(1), 1),
        "max_concurrent": F(K.optional(K.integer(1)), None),
        "time_budget": F(K.optional(K.positive_duration()), None),
        "time_limit": F(K.optional(K.positive_duration()), None, doc="wall-clock limit of one trial"),
        "stop": F(Rec(open=K.any_number, key_what="result key"), {}),
    },
    "resources": {
        "workers": F(K.integer(1), 1),
        "cpus_per_worker": F(K.number(0, lo_open=True), 1),
        "gpus_per_worker": F(K.number(0), 0),
        "strategy": F(K.enum(["ddp", "deepspeed"]), None),
        "reuse_workers": F(K.boolean, False, doc="keep multi-worker trials' processes warm"),
        "find_unused_parameters": F(K.optional(K.boolean), None,
                                    doc="DDP: the model has parameters its loss leaves unused"),
        "deepspeed": F(
            Rec(
                {
                    "zero_stage": F(K.optional(K.integer(0, 3)), None),
                    "precision": F(K.optional(K.enum(["auto", "bf16", "fp16", "fp32"])), None),
                    "config": F(K.optional(K.string()), None, doc="path to a DeepSpeed JSON"),
                }
            ),
            None,
        ),
    },
    "training": {
        "precision": F(K.enum(["auto", "fp32", "bf16", "fp16"]), "auto"),
        "compile": F(K.boolean, False),
        "seed": F(K.optional(K.integer(0)), None),
        "data_on_device": F(K.enum(["auto", True, False]), "auto"),
    },
    "failure": {
        "max_retries": F(K.integer(0), 2),
        "fail_fast": F(K.integer(0), 3, doc="stop when the first N trials fail the same way; 0 = off"),
    },
    "checkpoint": {
        "every": F(K.integer(0), 1, doc="epochs between checkpoints (and the last); 0 = none"),
        "keep": F(K.optional(K.integer(1)), 2),
        "score_attribute": F(K.optional(K.metric()), None),
        "score_order": F(K.optional(K.enum(["min", "max"])), None),
    },
    "resume": {
        "enabled": F(K.boolean, True),
        "retry_errored": F(K.boolean, True),
        "grace": F(K.whole_seconds(0, 65535, "the limit of SLURM's --signal"), 120),
    },
    "storage": {
        "path": F(K.string(), "results"),
        "name": F(K.optional(K.string(NAME_RE, "experiment name", max_len=NAME_MAX, hint=NAME_HELP)), None),
    },
    "slurm": {
        "nodes": F(K.integer(1), 1),
        "gpus_per_node": F(K.optional(K.integer(0)), None),
        "gpu_type": F(K.optional(K.string(GRES_TYPE_RE, "GPU type (letters, digits, `_`, `-`, `.`)",
                                         hint="the type alone, as the site's gres.conf names it: `gpu_type = "
                                              '"a100"` for `--gres=gpu:a100:4`; the count is `gpus_per_node`')), None),
        "gpu_request": F(K.enum(GPU_REQUESTS), "gres", doc="--gres, --gpus-per-node, or no GPU option"),
        "cpus_per_node": F(K.optional(K.integer(1)), None),
        "mem": F("mem", None),
        "partition": F(K.optional(_SITE_NAME), None),
        "account": F(K.optional(_SITE_NAME), None),
        "qos": F(K.optional(_SITE_NAME), None),
        "time": F("time", None),
        "constraint": F(K.optional(_SITE_NAME), None),
        "extra": F(K.list_of(K.string(), allow_single=True), []),
        "setup": F(K.list_of(K.string(), allow_single=True), []),
        "env": F(Rec(open="env", key_pattern=ENV_RE, key_what="environment variable name", taken=JOB_ENV), {}),
        "container": F(
            Rec(
                {
                    "image": F(K.string(), None, required=True),
                    "runtime": F(K.enum(["apptainer", "singularity"]), "apptainer"),
                }
            ),
            None,
        ),
        "interface": F(K.optional(K.string(IFACE_RE, "network interface name (at most 15 characters)",
                                           hint=_IFACE_HINT)), None),
        "python": F(_SITE_NAME, "python3", doc="one program: `~` and `$VARS` expand at compile time"),
        "array": F(
            Rec({"shards": F(K.integer(1), 1), "parallel": F(K.optional(K.integer(1)), None)}),
            None,
        ),
    },
}
LOGGERS: dict[str, dict[str, F]] = {
    "mlflow": {
        "experiment_name": F(K.optional(K.string()), None),
        "log_freq": F(K.enum(["epoch", "batch"]), "epoch"),
        "tracking_uri": F(K.optional(K.string()), None),
    },
    "tensorboard": {
        "log_freq": F(K.enum(["epoch", "batch"]), "epoch"),
        "tracking_uri": F(K.optional(K.string()), None),  # the event directories' folder
    },
}

TOP_LEVEL = ("study", "pipeline", "space", "objective", *[s for s in SECTIONS if s != "pipeline"], "search", "scheduler", "logger")
REPEATABLE = ("logger",)

# #SBATCH flags hpoc writes itself; `extra` must not set them.
MANAGED_SBATCH = {
    "--nodes": "nodes",
    "-N": "nodes",
    "--gres": "gpus_per_node",
    "--gpus-per-node": "gpus_per_node",
    "--gpus": "gpus_per_node",
    "-G": "gpus_per_node",
    "--gpus-per-task": "gpus_per_node",  # GPUs asked another way: twice, or in conflict
    "--gpus-per-socket": "gpus_per_node",
    "--cpus-per-task": "cpus_per_node",
    "-c": "cpus_per_node",
    "--cpus-per-gpu": "cpus_per_node",  # sbatch: exclusive with --cpus-per-task
    "--ntasks-per-node": "nodes",
    "--tasks-per-node": "nodes",  # sbatch's other name for --ntasks-per-node: it would win
    "--ntasks-per-gpu": "nodes",  # sbatch: exclusive with --ntasks-per-node
    "--ntasks": "nodes",
    "-n": "nodes",
    "--mem": "mem",
    "--time": "time",
    "-t": "time",
    "--partition": "partition",
    "-p": "partition",
    "--account": "account",
    "-A": "account",
    "--qos": "qos",
    "-q": "qos",
    "--constraint": "constraint",
    "-C": "constraint",
    "--array": "array",
    "-a": "array",
    "--job-name": 'study "..."',
    "-J": 'study "..."',
}
# Of those, the task counts: hpoc's is one per node, whatever the site's templates ask.
TASK_SBATCH = ("--ntasks-per-node", "--tasks-per-node", "--ntasks-per-gpu", "--ntasks", "-n")
# Flags hpoc writes without a setting of their own: flag -> (what it is to hpoc, help).
_LOG = ("which hpoc writes itself: the job log goes beside plan.json (docs/slurm.md)", "remove it")
_WAIT = ("which makes sbatch wait until the job ends", "remove it; `hpoc submit --wait` waits for the study's jobs")
_CLUSTERS = ("which sends the job to another cluster, whose jobs `hpoc status` and `hpoc compile` do not see "
             "(they ask this cluster's squeue)", "remove it, and run hpoc on a login node of that cluster")
OWNED_SBATCH = {
    "--output": _LOG,
    "-o": _LOG,
    "--error": _LOG,
    "-e": _LOG,
    "--comment": ("which `hpoc submit` sets: it and `hpoc status` find the study's jobs by it", "remove it"),
    # How sbatch handles the script, not what the job asks for: nothing (or another thing) runs
    "--test-only": ("which makes sbatch only test the job: nothing is submitted",
                    "remove it; `hpoc check --preflight` asks `sbatch --test-only` itself"),
    "--parsable": ("which changes what sbatch prints: `hpoc submit` reads the job id from it", "remove it"),
    "--wait": _WAIT,
    "-W": _WAIT,
    "--wrap": ("which makes sbatch run that command instead of the job script", "remove it"),
    "--clusters": _CLUSTERS,
    "-M": _CLUSTERS,
}
# Written only while `resume` is on: the walltime signal and the requeue that resume needs.
_NO_RESUME = "remove it, or set `resume { enabled = false }`"
RESUME_SBATCH = {
    "--signal": ("which hpoc writes itself: resume saves the study on its `B:USR2` signal before the walltime",
                 "set `resume { grace = ... }` to change when it comes, or `resume { enabled = false }`"),
    "--requeue": ("which hpoc writes itself for resume", _NO_RESUME),
    "--no-requeue": ("which undoes the `--requeue` that resume needs", _NO_RESUME),
    "--open-mode": ("which hpoc writes as `append` for resume: each requeued run adds to the job's log", _NO_RESUME),
}
# sbatch options a user may write as `slurm` keys (`exclusive = true`): they go in `extra`.
SBATCH_OPTIONS = ("--exclusive", "--reservation", "--mem-per-cpu", "--mem-per-gpu", "--mail-type", "--mail-user",
                  "--hint", "--licenses", "--dependency", "--begin", "--nodelist", "--exclude", "--wckey",
                  "--switches", "--gpu-bind", "--tmp", "--oversubscribe", "--distribution", "--threads-per-core",
                  "--mincpus", "--network", "--deadline", "--nice", "--priority", "--profile")
# sbatch refuses these together with `--mem`.
MEM_PER_SBATCH = ("--mem-per-cpu", "--mem-per-gpu")


def sbatch_option(flag: str) -> str:
    """`--time` of "--time=10" or "--time 10"; `-o` of "-o/x" (short options take glued values)."""
    text = flag.strip()
    if text.startswith("--"):
        return text.split("=", 1)[0].split()[0]
    return text[:2] if text.startswith("-") and len(text) > 1 else ""


# Sections whose settings hpoc reads from the plan, never from a trial's config: one written
# in `space` only reaches the trainer (`space { num_samples = 8 }` runs one trial). Words
# a model may well have for itself are left out.
RUN_SECTIONS = ("trials", "resources", "training", "failure", "slurm")
MODEL_WORDS = frozenset({"stop", "strategy", "compile", "time", "mem", "env", "setup", "extra", "python",
                         "interface", "container", "array", "nodes", "deepspeed"})

# `seed` is both sections' key, each seeding something else: a misplaced one is sent to both.
SEED_HOMES = "`search` (which configs are drawn) or `training` (each trial's training)"


def key_home(key: str) -> str | None:
    """The section a key belongs to (for "`x` belongs in `resources`" hints)."""
    for section, fields in SECTIONS.items():
        if key in fields:
            return section
    for name, opts in SCHEDULERS.items():
        if key in opts:
            return f"scheduler {name}"
    for name, opts in SEARCHERS.items():
        if key in opts:
            return f"search {name}"
    return None
