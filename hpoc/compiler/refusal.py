"""Which `slurm` settings an sbatch refusal is about, so that `hpoc check --preflight` and
`hpoc submit` name them with their values instead of leaving the user to map sbatch's words
("Invalid feature specification") onto the spec; and the words that are no refusal at all
(sbatch could not reach SLURM)."""

from __future__ import annotations

import json
import re
from typing import Any

from hpoc.compiler.tables import sbatch_option

# What the site offers, with the columns these settings are checked against: partition,
# CPUs and memory per node, GPUs (gres), features (for `constraint`), time limit.
SINFO = "sinfo -o '%P %c %m %G %f %l'"

# sbatch could not ask (no configuration, no controller): no answer about the job. Not any
# "fatal:": sbatch says that of the job's own options too (`--mem` with `--mem-per-cpu`).
_UNREACHABLE = ("Unable to contact slurm controller", "Zero Bytes were transmitted",
                "Could not establish a configuration source", "Unable to process configuration file",
                "Socket timed out", "Connection refused")


def unreachable(said: str) -> bool:
    """Whether sbatch's words say it could not ask SLURM at all, rather than refuse the job."""
    return any(word in said for word in _UNREACHABLE)


def no_node(said: str) -> bool:
    """Whether sbatch's words say no node fits the job (`cpus_per_node` above every node's):
    `--test-only` says so, and sbatch too where the site enforces partition limits."""
    return "Requested node configuration is not available" in said or "can not be satisfied" in said


_PREFIX = re.compile(r"^sbatch: (error|fatal|warning): ")


def reasons(said: str) -> list[str]:
    """Each reason sbatch gives for refusing a job, without its `sbatch: error: ` prefix: it
    may give several (a bad partition, then the failed submission), and the last alone often
    names no setting. Its warnings are no reason, unless it said nothing else."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    why = [line for line in lines if not line.startswith("sbatch: warning: ")] or lines
    return list(dict.fromkeys(_PREFIX.sub("", line) for line in why))


# Words of sbatch's refusal (lower case) -> the settings they are about, most specific first.
_ABOUT = (
    (("partition",), ("partition",)),
    (("account",), ("account",)),
    (("qos",), ("qos",)),
    (("feature", "constraint"), ("constraint",)),
    (("gres", "generic resource"), ("gpus_per_node", "gpu_type", "gpu_request")),
    (("time limit",), ("time",)),
    (("memory", "--mem"), ("mem",)),
    (("cpu count",), ("cpus_per_node",)),
    (("node configuration", "node count"), ("nodes", "cpus_per_node", "gpus_per_node", "mem")),
)

# ... and the `extra` options they are about (a reservation or license exists only through them).
_EXTRA_ABOUT = (
    (("reservation",), ("--reservation",)),
    (("license",), ("--licenses",)),
    (("wckey",), ("--wckey",)),
    (("gres", "generic resource"), ("--gres",)),  # a site's other resources: `--gres=nvme:100`
    (("node name",), ("--nodelist", "--exclude")),
    (("node configuration", "memory", "--mem"), ("--mem-per-cpu", "--mem-per-gpu", "--nodelist", "--exclude")),
)


def what_to_check(said: str, slurm: dict[str, Any] | None, file: str,
                  shell: dict[str, str] | None = None) -> str | None:
    """`check …` naming what the refusal `said` is about: the SBATCH_* variables of this
    shell that sbatch read instead of the spec (`shell`: setting -> `VAR=value`), then the
    spec's settings in `file`; None when it names nothing."""
    slurm, shell = slurm or {}, shell or {}
    from_shell = [name for name in _about(said, slurm, shell.values()) if name in shell]
    parts = [f"`{shell[name]}` in this shell" + (
        f" (sbatch reads it over `slurm.{name} = {_value(name, slurm[name])}` in {file})"
        if slurm.get(name) not in (None, "", 0) else "") for name in from_shell]
    if named := settings_named(said, {k: v for k, v in slurm.items() if k not in from_shell}):
        parts.append(f"{', '.join(named)} in {file}")
    return f"check {', '.join(parts)}" if parts else None


# Settings sbatch fills from the site when the spec leaves them out (and may refuse so)
_SITE_DEFAULT = ("account", "partition", "qos", "time")


def left_to_site(said: str, slurm: dict[str, Any] | None, file: str, shell: dict[str, str] | None = None) -> str | None:
    """`set …` for the settings the refusal `said` is about that neither the spec nor this
    shell gives (JUWELS: "You must specify an account"), or None."""
    slurm, shell = slurm or {}, shell or {}
    unset = [name for name in _about(said, slurm, shell.values())
             if name in _SITE_DEFAULT and slurm.get(name) in (None, "") and name not in shell]
    if not unset:
        return None
    shows = (f"`{SACCTMGR}` lists yours" if set(unset) - {"time"} else
             "`sinfo -o '%P %l'` shows each partition's time limit")
    return (f"set {', '.join(f'`slurm.{name}`' for name in unset)} in {file}: the spec leaves "
            f"{'them' if len(unset) > 1 else 'it'} to the site ({shows})")


SACCTMGR = "sacctmgr show assoc user=$USER format=account,partition,qos"


def _about(said: str, slurm: dict[str, Any], values: Any = ()) -> list[str]:
    """The settings whose words the refusal `said` holds, besides the values it repeats."""
    for value in [*(slurm.get(name) for name in _QUOTED), *(v.split("=", 1)[1] for v in values)]:
        if value:  # sbatch repeats them ("invalid partition specified: gpu-a"): not its words
            said = said.replace(value, "")
    said = said.lower()
    names: list[str] = []
    for words, settings in _ABOUT:
        if any(word in said for word in words):
            names += [name for name in settings if name not in names]
    return names


def settings_named(said: str, slurm: dict[str, Any] | None) -> list[str]:
    """`slurm.NAME = VALUE` for each setting the refusal `said` is about that the plan sets,
    then `slurm.extra` "FLAG" for each `extra` option it is about."""
    slurm = slurm or {}
    names = _about(said, slurm)
    said = said.lower()
    options = [option for words, about in _EXTRA_ABOUT if any(word in said for word in words) for option in about]
    flags = [flag for flag in slurm.get("extra") or () if _option(flag) in options]
    if not slurm.get("gpus_per_node"):  # no GPUs asked for: their type and way say nothing
        names = [name for name in names if name not in ("gpu_type", "gpu_request")]
    return [f"`slurm.{name} = {_value(name, slurm[name])}`" for name in names
            if slurm.get(name) not in (None, "", 0)] + [f'`slurm.extra` "{flag}"' for flag in flags]


def _option(flag: str) -> str:
    """The sbatch option an `extra` element sets, unabbreviated (`--reserv=x` is `--reservation`)."""
    name = sbatch_option(flag)
    known = [option for _, about in _EXTRA_ABOUT for option in about if option.startswith(name)]
    return known[0] if len(name) > 3 and len(set(known)) == 1 else name


def _value(name: str, value: Any) -> str:
    """As the spec writes it: names quoted, sizes, times and keywords bare (`mem = 200G`)."""
    return json.dumps(value) if name in _QUOTED else str(value)


_QUOTED = {"partition", "account", "qos", "constraint", "gpu_type"}
