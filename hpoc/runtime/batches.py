"""Batches for the default training loop.

In-memory data (a `(inputs, targets)` pair of tensors or arrays, or a TensorDataset) goes
through `TensorBatches`: the tensors are put on the device once (if they fit), each epoch
draws one index permutation, and a batch is an `index_select` - no DataLoader, no worker
processes, no per-sample Python, no host round trip. Any other dataset goes through a
DataLoader (with a DistributedSampler across ranks) wrapped in `DeviceLoader`.

Both split the data across ranks like DistributedSampler: training pads every rank to the
same number of samples by wrapping around (ranks must step in lockstep), validation does
not pad (metrics are sums over exactly the samples, reduced across ranks): DeviceLoader cuts
the sampler's repeats off the last batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Sequence

import torch

Prepare = Callable[[torch.Tensor], torch.Tensor]

# Device copies of datasets, reused by later trials in the same process (Tune reuses trial
# actors): `(cpu tensor, device) -> device tensor`. The CPU tensor is kept to make the
# identity check sound.
_RESIDENT: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
_MAX_RESIDENT = 8


def as_tensors(dataset: Any, cast: bool = True) -> tuple[torch.Tensor, ...] | None:
    """The tensors behind in-memory data (tensors, NumPy arrays, numeric pandas frames and
    series), or None for any other dataset; float64 becomes torch's default float dtype
    (a copy: `cast=False` keeps it, to look at the data without copying it)."""
    tensors = getattr(dataset, "tensors", None)  # TensorDataset and look-alikes
    if tensors is None and isinstance(dataset, (tuple, list)):
        tensors = dataset
    if not isinstance(tensors, (tuple, list)) or not 1 <= len(tensors) <= 4:
        return None
    out = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            out.append(t)
        elif type(t).__module__.split(".")[0] in ("numpy", "pandas") and hasattr(t, "shape"):
            array = t.to_numpy() if hasattr(t, "to_numpy") else t  # a DataFrame or Series
            if getattr(array, "dtype", None) is None or array.dtype.kind not in "biuf":
                return None  # strings or mixed columns: not tensors
            t = _shared_tensor(array)
            # NumPy's default float64 is rarely what the model is built in: torch's default
            # (float32) met float64 inputs or targets in a dtype error on the first batch
            out.append(t.to(torch.get_default_dtype()) if cast and t.dtype == torch.float64 else t)
        else:
            return None
    if len({t.shape[0] for t in out}) != 1 or out[0].dim() == 0:
        return None
    return tuple(out)


def _shared_tensor(array: Any) -> torch.Tensor:
    """A tensor over the array's own memory. Arrays fetched from Ray's object store are
    read-only, and copying them made every trial process hold its own copy of the data
    (a 20 GB split, four trials at a time: 80 GB); hpoc's batches only read them."""
    if any(stride < 0 for stride in array.strides):  # `x[::-1]`: torch takes no negative strides
        array = array.copy()
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():  # "The given NumPy array is not writable": read only
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _array(t: Any) -> bool:
    return isinstance(t, torch.Tensor) or (type(t).__module__.split(".")[0] in ("numpy", "pandas")
                                           and hasattr(t, "shape"))


def not_tensors(dataset: Any) -> str | None:
    """Why arrays given as a split, `(inputs, targets)`, are not tensors hpoc can batch
    (`as_tensors` gave None, and they went to a DataLoader as a dataset of 2 samples, to
    fail in every trial as "default_collate: batch must contain tensors ..."), or None."""
    if not isinstance(dataset, (tuple, list)) or not 1 <= len(dataset) <= 4 or \
            not all(map(_array, dataset)) or as_tensors(dataset, cast=False) is not None:
        return None
    names = ("inputs", "targets", "third part", "fourth part")
    for name, t in zip(names, dataset):
        array = t if isinstance(t, torch.Tensor) else t.to_numpy() if hasattr(t, "to_numpy") else t
        kind = getattr(getattr(array, "dtype", None), "kind", "f")
        if not isinstance(t, torch.Tensor) and kind not in "biuf":
            what = "strings or mixed columns" if kind in "OSU" else "not numbers"
            return (f"its {name} are {array.dtype} ({what}): give numbers, e.g. class names as integers "
                    "(`pd.factorize(y)[0]`) and categories encoded")
    rows = [t.shape[0] if len(t.shape) else 0 for t in dataset]
    return "its " + " and ".join(f"{name} have {n} rows" for name, n in zip(names, rows)) + \
        ": one row per sample in each"


SPLITS = ("train", "validation", "test")


def loader_split(splits: Sequence[Any]) -> str | None:
    """The name of the first split that is a DataLoader, or None. hpoc's loop batches a
    dataset itself (the config's `batch_size`, a sampler per rank); a DataLoader given in
    its place failed every trial as "'DataLoader' object is not subscriptable"."""
    for name, split in zip(SPLITS, splits):
        if isinstance(split, torch.utils.data.DataLoader):
            return name
    return None


LOADER_HELP = ("return its dataset (`loader.dataset`): hpoc's loop makes the batches itself, with "
               "the config's `batch_size` and a sampler per rank (docs/trainer.md, Data)")


def num_samples(dataset: Any) -> int:
    tensors = as_tensors(dataset, cast=False)
    return int(tensors[0].shape[0]) if tensors is not None else len(dataset)


def _fits_on_device(tensors: Sequence[torch.Tensor], device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    need = sum(t.element_size() * t.nelement() for t in tensors)
    free, _total = torch.cuda.mem_get_info(device)
    return need <= 0.4 * free


def resident(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    key = (id(t), str(device))
    hit = _RESIDENT.get(key)
    if hit is not None and hit[0] is t:
        return hit[1]
    moved = t.to(device)
    if len(_RESIDENT) >= _MAX_RESIDENT:
        _RESIDENT.clear()
    _RESIDENT[key] = (t, moved)
    return moved


def default_prepare(normalize: tuple[Any, Any] | None) -> Prepare:
    """uint8 images -> floats in [0, 1] (float64, float16, bfloat16 -> torch's default float), then
    `(x - mean) / std` on the device.

    `mean`/`std` are numbers or per-channel sequences (channel = dim 1)."""
    cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        elif x.dtype in (torch.float64, torch.float16, torch.bfloat16):
            # NumPy's default, from a Dataset's __getitem__; or half precision, to store a large
            # dataset in half the memory: the model is built in torch's default (autocast, or
            # DeepSpeed's fp16/bf16, casts from there)
            x = x.to(torch.get_default_dtype())
        if normalize is not None and x.is_floating_point():
            key = (str(x.device), x.dtype)
            if key not in cache:
                mean = torch.as_tensor(normalize[0], dtype=x.dtype, device=x.device)
                std = torch.as_tensor(normalize[1], dtype=x.dtype, device=x.device)
                if mean.dim() == 1 and x.dim() > 2:  # per channel: broadcast over H, W, ...
                    shape = (1, -1) + (1,) * (x.dim() - 2)
                    mean, std = mean.view(shape), std.view(shape)
                cache[key] = (mean, std)
            mean, std = cache[key]
            x = (x - mean) / std
        return x

    return prepare


class TensorBatches:
    """One rank's batches of in-memory tensors; the first tensor is the input."""

    def __init__(self, tensors: Sequence[torch.Tensor], strategy: Any, batch_size: int, *,
                 shuffle: bool, pad: bool, seed: int = 0, prepare: Prepare | None = None,
                 on_device: bool | str = "auto") -> None:
        self.strategy = strategy
        self.batch_size = int(batch_size)
        self.shuffle, self.pad, self.seed = shuffle, pad, int(seed)
        self.prepare = prepare
        self.epoch = 0
        self.n = int(tensors[0].shape[0])
        device = strategy.device()
        if on_device == "auto":
            on_device = _fits_on_device(tensors, device)
        self.device = device if on_device else torch.device("cpu")
        self.tensors = [resident(t, self.device) for t in tensors]
        if self.device.type == "cpu" and device.type == "cuda":
            self.tensors = [t.pin_memory() for t in self.tensors]
        start, stop, step = strategy.shard(self.n, pad=pad)
        self._positions = torch.arange(start, stop, step)
        self.per_rank = len(self._positions)
        # Every rank makes the same number of batches, also without padding: forward passes
        # can be collective (DDP's buffer broadcast, ZeRO-3's parameter gathering).
        largest = -(-self.n // strategy.world_size)
        self.num_batches = max(1, -(-largest // self.batch_size)) if self.n else 0
        self.empty = False  # True while a rank with no samples left yields a stand-in batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch (same permutation on all ranks)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        return order[self._positions % self.n]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        idx = self.indices().to(self.device)
        if -(-self.per_rank // self.batch_size) == self.num_batches:
            chunks = [idx[i:i + self.batch_size] for i in range(0, self.per_rank, self.batch_size)]
        else:  # this rank has fewer samples: spread them over as many batches as the others
            chunks = list(torch.tensor_split(idx, self.num_batches))
        for sel in chunks:
            self.empty = len(sel) == 0
            if self.empty:  # a stand-in so this rank joins the others' forward pass
                sel = torch.zeros(1, dtype=torch.long, device=idx.device)
            batch = [t.index_select(0, sel) for t in self.tensors]
            yield self._finish(batch)
        self.empty = False

    def _finish(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        device = self.strategy.device()
        if batch[0].device != device:
            batch = [t.to(device, non_blocking=True) for t in batch]
        if self.prepare is not None:
            batch[0] = self.prepare(batch[0])
        return tuple(self.strategy.to_device(batch))


def oversubscribed(loaders: dict[str, Any], cpus: Any) -> str | None:
    """Why a split's DataLoader, given as many worker processes as the trial has CPUs or
    more (`num_workers=8`, as on a node of many, in a trial of `cpus_per_worker = 2`), slows
    the trial and its neighbours: with the trial's own process, N workers are N + 1 processes,
    and torch's own warning counts the node's cores, not the trial's."""
    if not isinstance(cpus, int) or cpus < 1:
        return None
    for name, loader in loaders.items():
        workers = getattr(getattr(loader, "loader", loader), "num_workers", 0)
        if isinstance(workers, int) and not isinstance(workers, bool) and workers >= cpus:
            return (f"the {name} DataLoader has num_workers={workers}, and the trial has "
                    f"cpus_per_worker = {cpus}: {workers + 1} processes share its {cpus} core(s), "
                    "and slow the trial and those beside it on the node; set num_workers to at most "
                    f"{max(cpus - 1, 0)}, or `resources.cpus_per_worker` to {workers + 1}")
    return None


class DeviceLoader:
    """A DataLoader whose batches arrive on the strategy's device, prepared."""

    def __init__(self, loader: Any, strategy: Any, *, seed: int = 0, shuffle: bool = False,
                 prepare: Prepare | None = None, keep: int | None = None) -> None:
        self.loader, self.strategy, self.seed, self.shuffle = loader, strategy, seed, shuffle
        self.prepare = prepare
        self.dataset = loader.dataset
        self.sampler = loader.sampler
        # This rank's own samples; those after them are the sampler's padding (repeats).
        self.keep = keep
        self.empty = False  # True for a batch of padding only (joins collectives, not counted)

    def set_epoch(self, epoch: int) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif self.shuffle and self.loader.generator is not None:
            self.loader.generator.manual_seed((self.seed * 1_000_003 + epoch) % (2**63))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        left = self.keep
        for batch in _said(self.loader):
            n = _leading_len(batch) if left is not None else -1
            if n >= 0:  # (a batch of no tensors cannot be cut: counted as it comes)
                self.empty = left <= 0
                if 0 < left < n:
                    batch = _head(batch, left, n)
                left -= n
            batch = self.strategy.to_device(batch)
            if self.prepare is not None and isinstance(batch, (tuple, list)) and batch:
                batch = list(batch)
                batch[0] = self.strategy.to_device(self.prepare(batch[0]))
                batch = tuple(batch)
            yield batch
        self.empty = False


def _said(loader: Any) -> Iterator[Any]:
    """The loader's batches; a collate error ("batch must contain tensors, ... found <class
    'PIL.Image.Image'>") as what the dataset's samples hold, failing the trial once."""
    from hpoc.runtime.splitcheck import sample_problem
    from hpoc.runtime.returns import TrainerError

    try:
        yield from loader
    except TypeError as exc:
        why = sample_problem(loader.dataset) if "collate" in str(exc) else None
        if why is None:
            raise
        raise TrainerError(f"a split hpoc's loop cannot batch: {why}") from exc


def _leading_len(batch: Any) -> int:
    """The number of samples in a collated batch (its first tensor's length)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else -1
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else ()
    for item in items:
        n = _leading_len(item)
        if n >= 0:
            return n
    return -1


def _head(batch: Any, k: int, n: int) -> Any:
    """The first `k` of the `n` samples of a collated batch (its tensors of `n` rows, nested
    in tuples, lists and dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch[:k] if batch.dim() and batch.shape[0] == n else batch
    if isinstance(batch, Mapping):
        return type(batch)((key, _head(v, k, n)) for key, v in batch.items())
    if isinstance(batch, (tuple, list)):
        return type(batch)(_head(v, k, n) for v in batch)
    return batch
