"""DataLoader workers beyond a trial's CPUs: the threshold and the words, one copy for
`hpoc check` (compiler/rules.py, a count written in the trainer) and for the trial that
iterates such a loader (runtime/loaders.py). Imports nothing: the compiler may not load
torch or Ray, and the runtime not the compiler."""

from __future__ import annotations


def crowded(workers: int, cpus: int) -> bool:
    """N workers and the trial's own process are N + 1 processes on its `cpus` cores."""
    return workers >= cpus


def consequence(workers: int, cpus: int) -> str:
    return (f"{workers + 1} processes share its {cpus} core(s), and slow the trial and those beside "
            "it on the node")


def fix(workers: int, cpus: int, keyword: str = "num_workers") -> str:
    return (f"set `cpus_per_worker = {workers + 1}` in `resources`, or `{keyword}` to at most "
            f"{max(cpus - 1, 0)}")
