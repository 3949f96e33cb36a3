"""The runtime plan: the only contract between compiler and runtime (see docs/plan.md).

Readers call `load(path)`; the compiler calls `dumps(plan)` to get canonical bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hpoc.errors import HpocError

PLAN_VERSION = 1
# The driver's exit statuses the jobs act on at the walltime: stopped, resumable (the job
# is requeued); stopped by the walltime again before any trial reported (runtime/walltime.py),
# so the job is not requeued. A driver a signal killed as it stopped is requeued too (not
# one a stop signal it heeds killed: that came before its first line, runtime/early.py); any
# other status is a study that ended, finished or failed.
EXIT_INTERRUPTED = 75
EXIT_NO_PROGRESS = 76
# The most times a job requeues itself at its time limit (the driver gave no status, or left
# work to resume): submitit's `max_num_timeout`, and job.sbatch's SLURM_RESTART_COUNT.
MAX_WALLTIME_REQUEUES = 100
# Set in the driver's environment by a job that requeues itself when the walltime's SIGUSR2
# stops its driver resumable (job.sbatch's trap, submitit's checkpoint): the driver says so.
WALLTIME_REQUEUE = "HPOC_WALLTIME_REQUEUE"
# `search nevergrad`'s optimizer when the plan names none: the compiler writes it, the
# runtime falls back on it, the docs name it.
NEVERGRAD_OPTIMIZER = "NGOpt"
# HF-style "auto" values in a DeepSpeed config file's `optimizer.params` the runtime fills in
# from the trainer's optimizer (built from the trial's config), and in `scheduler.params`
# from that learning rate (`warmup_min_lr`: 0, as the HF Trainer); `hpoc check` refuses others.
DS_AUTO_OPTIMIZER = ("lr", "betas", "eps", "weight_decay", "momentum")
DS_AUTO_SCHEDULER = ("warmup_min_lr", "warmup_max_lr")


class PlanError(HpocError):
    """A plan file that cannot be used: unreadable, wrong version, or invalid."""


def canonical(plan: dict[str, Any]) -> str:
    return json.dumps(plan, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def content_hash(plan: dict[str, Any]) -> str:
    body = {k: v for k, v in plan.items() if k != "content_hash"}
    return "sha256:" + hashlib.sha256(canonical(body).encode()).hexdigest()


def plan_hash(plan: dict[str, Any]) -> str:
    """The hash plan.json records, or the one it would record."""
    return plan.get("content_hash") or content_hash(plan)


def hashed(plan: dict[str, Any]) -> dict[str, Any]:
    """`plan` with its content hash filled in (what plan.json holds and the scripts name)."""
    return dict(plan, content_hash=content_hash(plan))


def dumps(plan: dict[str, Any]) -> str:
    """Canonical text of `plan` with its content hash filled in."""
    return canonical(hashed(plan))


def plan_file(target: str | Path) -> Path:
    """The file `hpoc run` and `hpoc submit` read for `target`: a build directory's
    plan.json, a plan.json, or a spec to compile; HpocError when there is none."""
    from hpoc.files import missing_hint

    path = Path(target)
    what, hint = "no such file", missing_hint(str(target))
    if path.is_dir():
        path, what = path / "plan.json", "a directory without a plan.json, so no build directory"
        specs = sorted(p.name for p in path.parent.glob("*") if p.suffix in (".hpo", ".yaml", ".yml"))
        hint = f"did you mean `{Path(target) / specs[0]}`?" if len(specs) == 1 else None  # a study's directory
    if not path.exists():
        raise HpocError(f"{target}: {what} (a .hpo spec, a build directory or a plan.json)"
                        + (f"\n  = help: {hint}" if hint else ""))
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a plan file; raise PlanError with a readable message."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM: saved again on Windows
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file (run `hpoc compile SPEC -o DIR` first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable plan file: {exc}") from None
    if not isinstance(plan, dict):
        raise PlanError(f"{path}: not a plan (expected a JSON object)")
    version = plan.get("plan_version")
    if version != PLAN_VERSION:
        raise PlanError(
            f"{path}: plan_version {version!r} is not supported by this hpoc "
            f"(expects {PLAN_VERSION}); recompile the spec with this hpoc"
        )
    from hpoc.plan.validate import validate  # schema check; kept separate for reuse

    validate(plan, path)
    return plan
