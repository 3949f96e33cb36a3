"""DataLoader workers beyond a trial's CPUs, said as the trial runs.

`hpoc check` sees only literal counts in the source, and torch's own warning counts the
node's cores, not the trial's: a DataLoader that a trainer builds itself (in its `setup()`,
`create_dataloaders` or `train()`) with `num_workers=8`, in a trial of 2 CPUs, ran 9
processes on 2 cores and slowed the trial and those beside it in silence. While a trial
trains, the first DataLoader it iterates with as many workers as its CPUs or more (with
the trial's own process, N workers are N + 1 processes) is said once.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

import torch


@contextlib.contextmanager
def watched(cpus: Any, name: Callable[[Any], str | None], say: Callable[[str], None]) -> Iterator[None]:
    """Within it, iterating a DataLoader with `cpus` workers or more calls `say` once, with
    the loader as `name` calls it (a split's, "train"), else where it was iterated."""
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        yield
        return
    loader_class = torch.utils.data.DataLoader
    original = loader_class.__iter__
    said = [False]

    def __iter__(self: Any) -> Any:
        workers = getattr(self, "num_workers", 0)
        if not said[0] and isinstance(workers, int) and workers >= cpus:
            said[0] = True
            frame = sys._getframe(1)
            what = name(self) or f"the DataLoader iterated at {frame.f_code.co_filename}:{frame.f_lineno}"
            say(message(what, workers, cpus))
        return original(self)

    loader_class.__iter__ = __iter__  # type: ignore[method-assign]
    try:
        yield
    finally:
        loader_class.__iter__ = original  # type: ignore[method-assign]


def message(what: str, workers: int, cpus: int) -> str:
    return (f"{what} has num_workers={workers}, and the trial has cpus_per_worker = {cpus}: {workers + 1} "
            f"processes share its {cpus} core(s), and slow the trial and those beside it on the node; set "
            f"num_workers to at most {max(cpus - 1, 0)}, or `resources.cpus_per_worker` to {workers + 1}")
