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
import threading
from typing import Any, Callable, Iterator

import torch

from hpoc import loader_cpus


# The watches now open, the latest last, and DataLoader's own __iter__ while any is: one
# patch for them all, so that watches ending out of order (two trials' threads of one
# process) leave neither a finished trial's patch on DataLoader nor a running one unwatched.
_lock = threading.Lock()
_open: list["_Watch"] = []
_original: list[Any] = []


class _Watch:
    def __init__(self, cpus: int | None, name: Callable[[Any], str | None], say: Callable[[str], None],
                 world_size: int = 1, whole: Callable[[], int | None] = lambda: None) -> None:
        self.cpus, self.name, self.say, self.world_size, self.whole = cpus, name, say, world_size, whole
        self.thread, self.said, self.said_sampler = threading.get_ident(), False, False

    def saw(self, loader: Any, frame: Any) -> None:
        def what() -> str:
            return self.name(loader) or f"the DataLoader iterated at {frame.f_code.co_filename}:{frame.f_lineno}"

        workers = getattr(loader, "num_workers", 0)
        if not self.said and self.cpus and isinstance(workers, int) and loader_cpus.crowded(workers, self.cpus):
            self.said = True
            self.say(message(what(), workers, self.cpus))
        # Shuffled (a training loader) but not split: every rank trains on all the data.
        if not self.said_sampler and self.world_size > 1 and \
                type(getattr(loader, "sampler", None)) is torch.utils.data.RandomSampler and \
                not own_part(getattr(loader, "dataset", None), self.world_size, self.whole):
            self.said_sampler = True
            self.say(unsplit(what(), self.world_size))


def _iter(self: Any) -> Any:
    with _lock:
        watches, original = list(_open), _original[0]
    here = threading.get_ident()  # the trial's own thread, else (a thread of its own) the latest
    for watch in ([w for w in watches if w.thread == here] or watches)[-1:]:
        watch.saw(self, sys._getframe(1))
    return original(self)


def own_part(dataset: Any, world_size: int, whole: Callable[[], int | None]) -> bool:
    """Whether `dataset` is a rank's own part of the data, split by the trainer itself
    (`x[rank::world]`, a `Subset` of the rank's indices): at most 1/`world_size` of the
    training split hpoc gave the trainer (`whole()` samples), or of the dataset a `Subset`
    is taken from. Such a part shuffled by a plain RandomSampler is no rank reading all."""
    try:
        n = len(dataset)
        if isinstance(dataset, torch.utils.data.Subset):
            return n <= -(-len(dataset.dataset) // world_size)
        total = whole()
        return total is not None and n <= -(-total // world_size)
    except Exception:  # noqa: BLE001 - a dataset without a length, or one that fails: not known
        return False


def samples(split: Any) -> int | None:
    """The samples in a split as hpoc hands it to the trainer: a pair of arrays or tensors
    (their common length), a Dataset or list (its length); None when unknown."""
    try:
        if isinstance(split, tuple) and split and all(hasattr(p, "shape") and len(p.shape) for p in split):
            lengths = {int(p.shape[0]) for p in split}
            return lengths.pop() if len(lengths) == 1 else None
        return len(split) if split is not None else None
    except Exception:  # noqa: BLE001 - a Dataset without a length, or one that fails
        return None


@contextlib.contextmanager
def watched(cpus: Any, name: Callable[[Any], str | None], say: Callable[[str], None],
            world_size: int = 1, whole: Callable[[], int | None] = lambda: None) -> Iterator[None]:
    """Within it, iterating a DataLoader with `cpus` workers or more calls `say` once, with
    the loader as `name` calls it (a split's, "train"), else where it was iterated; so does
    a shuffled one without a DistributedSampler when the trial has `world_size` ranks,
    unless it reads a rank's own part of the data (`own_part`; `whole`: the samples of the
    training split the trainer was given, None when unknown)."""
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        cpus = None
    if cpus is None and world_size < 2:
        yield
        return
    loader_class = torch.utils.data.DataLoader
    watch = _Watch(cpus, name, say, world_size, whole)
    with _lock:
        if not _open:
            _original[:] = [loader_class.__iter__]
            loader_class.__iter__ = _iter  # type: ignore[method-assign]
        _open.append(watch)
    try:
        yield
    finally:
        with _lock:
            _open.remove(watch)
            if not _open:
                loader_class.__iter__ = _original[0]  # type: ignore[method-assign]


def message(what: str, workers: int, cpus: int) -> str:
    return (f"{what} has num_workers={workers}, and the trial has cpus_per_worker = {cpus}: "
            f"{loader_cpus.consequence(workers, cpus)}; {loader_cpus.fix(workers, cpus)}")


def unsplit(what: str, world_size: int) -> str:
    return (f"{what} has no DistributedSampler: each of the trial's {world_size} workers trains on "
            "all its data (in the same order under a seed); build it with "
            "`self.strategy.dataloader(dataset, batch_size, shuffle=True)`, or give it a DistributedSampler")
