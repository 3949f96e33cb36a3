"""A few human lines describing a plan (printed by `hpoc check` and `hpoc compile`)."""

from __future__ import annotations

from typing import Any

from hpoc.plan.space import total_trials

# How the job asks for its GPUs, when not the usual --gres (slurm.gpu_request).
_GPU_REQUEST = {"per_node": " by --gpus-per-node", "none": " not asked of SLURM"}


def _n(count: float, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _trials(plan: dict[str, Any]) -> str:
    total, n = total_trials(plan), plan["trials"]["num_samples"]
    return str(total) if total == n else f"{total} ({n} × a grid of {total // n})"


def summarize(plan: dict[str, Any]) -> list[str]:
    space, r, t = plan["space"], plan["resources"], plan["trials"]
    search, sched = plan["search"], plan["scheduler"]
    alg = search["algorithm"]
    if alg == "optuna":
        alg += f" ({search['options'].get('sampler')})"
    goals = ", ".join(f"{m['mode']} {m['name']}" for m in plan["objective"]["metrics"]) or "none"
    gpus = r["gpus_per_worker"]
    worker = _n(r["cpus_per_worker"], "CPU") + (f" + {_n(gpus, 'GPU')}" if gpus else "")
    lines = [
        f"space: {_n(len(space['params']), 'parameter')}, {_n(len(space['constants']), 'constant')}"
        f"; objective: {goals}",
        f"search: {alg}; scheduler: {sched['name']}",
        f"trials: {_trials(plan)}"
        + (f" (at most {t['max_concurrent']} at once)" if t["max_concurrent"] else "")
        + f"; each {_n(r['workers'], 'worker')} × {worker}, {r['strategy']}",
    ]
    s = plan["slurm"]
    if s is not None:
        sh = plan["shards"]
        shards = f"; {sh['count']} array tasks ({sh['parallel']} at once)" if sh["count"] > 1 else ""
        lines.append(
            f"slurm: {_n(s['nodes'], 'node')} × ({_n(s['cpus_per_node'], 'CPU')}, "
            f"{_n(s['gpus_per_node'], (s['gpu_type'] + ' ' if s.get('gpu_type') else '') + 'GPU')}"
            f"{_GPU_REQUEST.get(s.get('gpu_request') or 'gres', '') if s['gpus_per_node'] else ''})"
            f", time {s['time'] or 'partition default'}{shards}"
        )
    return lines
