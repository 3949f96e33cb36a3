"""What a getter or splitter returned as a split, read as hpoc's default loop would batch
it. Every trial (and its retry) failed inside torch's DataLoader with a `KeyError: 0` or a
collate error naming no line of the study's code: a split's type is said as the data
loads, a sample's contents by the trial whose batching failed (a TrainerError: not retried).

The loop takes a split as `(inputs, targets)` arrays or tensors, a `TensorDataset`, or a
map-style dataset whose samples are `(input, target)` tensors, arrays or numbers.
"""

from __future__ import annotations

import collections.abc
import re
from typing import Any

PAIR_HELP = "hpoc's loop takes a split as (inputs, targets)"


def unbatchable(split: Any) -> str | None:
    """Why hpoc's loop cannot batch `split`, read from its type alone, or None."""
    kind = type(split)
    module = kind.__module__.split(".")[0]
    if module == "pandas" and kind.__name__ == "DataFrame":
        columns = [str(c) for c in split.columns]
        last = columns[-1] if columns else "label"
        return (f"it is one pandas DataFrame (columns {_names(columns)}): {PAIR_HELP}, e.g. "
                f"`(df.drop(columns=[{last!r}]), df[{last!r}])` with `{last}` as the targets")
    if isinstance(split, dict):
        keys = [str(k) for k in split]
        pair = ("`(d.data, d.target)`" if {"data", "target"} <= set(keys) else
                f"`(d[{keys[0]!r}], d[{keys[1]!r}])`" if len(keys) >= 2 else "`(x, y)`")
        return f"it is a dict (keys {_names(keys)}), which a DataLoader indexes by sample number: " \
               f"{PAIR_HELP}: {pair}"
    import torch

    if isinstance(split, torch.utils.data.IterableDataset):
        return (f"it is an IterableDataset (a stream, {type(split).__name__}): hpoc's loop shuffles a "
                "split, divides it between a trial's workers and counts an epoch's batches, which takes "
                "a map-style dataset (`__len__` and `__getitem__`)\n  help: give one, or write a "
                "`train()` of your own that iterates the stream (docs/trainer.md, A loop of your own)")
    if isinstance(split, torch.utils.data.Dataset) and not hasattr(split, "__len__"):
        # torch's sampler takes len(): every trial failed with "object ... has no len()"
        return (f"it is a Dataset without `__len__` ({kind.__name__}): hpoc's loop counts a split's "
                f"samples to shuffle and divide it\n  help: give `{kind.__name__}` a `__len__` "
                "that returns its number of samples")
    if isinstance(split, collections.abc.Iterator) and not hasattr(split, "__getitem__"):
        # Ray cannot pickle a generator to send it, and a stream is read once: said before Ray
        return (f"it is a {kind.__name__} (a one-pass stream): hpoc's loop reads a split once per "
                "epoch, in a shuffled order\n  help: give arrays, or the samples as a list "
                "(`list(...)` of (input, target) pairs)")
    if isinstance(split, (tuple, list)) and 1 <= len(split) <= 4 and \
            all(isinstance(p, list) for p in split) and len({len(p) for p in split}) == 1 and \
            len(split[0]) > len(split):
        # torch reads a tuple of lists as a dataset of len(split) samples, each a whole list
        return (f"its parts are Python lists of {len(split[0])} rows, which torch reads as a dataset "
                f"of {len(split)} samples: give arrays, `(np.asarray(x), np.asarray(y))`")
    return None


def not_finite(tensors: Any) -> str | None:
    """Where in-memory data holds NaN or inf (a CSV's missing values, read by pandas as NaN),
    or None: hpoc's steps then make every trial's loss NaN, and the study ended as if
    training had diverged. Read in chunks, float64 cast as the trials cast it (1e39 is inf
    in float32): neither a mask nor a copy the size of the data, which may be most of the
    driver's memory."""
    import torch

    dtype = torch.get_default_dtype()
    for name, t in zip(("inputs", "targets", "third part", "fourth part"), tensors):
        if not t.is_floating_point() or t.numel() == 0:
            continue
        rows = t.reshape(t.shape[0], -1)
        step = max(1, (1 << 20) // max(1, rows.shape[1]))
        cast = rows.dtype == torch.float64 and dtype != torch.float64
        # every value is finite (and finite once cast) exactly when the chunk's min and max
        # lie within the type's range, NaN failing both comparisons: one pass with no copy,
        # where isfinite's mask took ten times as long and a cast chunk twice
        limit = torch.finfo(dtype if cast else rows.dtype).max
        bad = first = 0
        for start in range(0, rows.shape[0], step):
            chunk = rows[start:start + step]
            low, high = (float(v) for v in torch.aminmax(chunk))
            if -limit <= low and high <= limit:
                continue
            chunk = chunk.to(dtype) if cast else chunk
            finite = torch.isfinite(chunk).all(dim=1)
            if not bool(finite.all()):
                if not bad:
                    first = start + int((~finite).nonzero()[0])
                bad += int((~finite).sum())
        if bad:
            return (f"its {name} hold NaN or inf in {bad} row(s) (the first: row {first}), which make "
                    "every trial's loss NaN: missing values? drop or fill them in the getter or "
                    "splitter (`df.dropna()`, `df.fillna(...)`)")
    return None


def shared_rows(train: Any, validation: Any) -> str | None:
    """What the validation split shares with the train split (a splitter that returned one
    object twice, or slices that overlap), or None: its val_loss and val_accuracy would
    then measure, in part or whole, the data the model trained on."""
    if train is None or validation is None:
        return None
    if validation is train:
        return "the validation split is the train split (the same object)"
    import torch

    subsets = torch.utils.data.Subset
    if isinstance(train, subsets) and isinstance(validation, subsets) and train.dataset is validation.dataset:
        common = _common(train.indices, validation.indices)
        return (f"{common} of the validation split's {len(validation.indices)} samples are in the "
                "train split (Subsets of one dataset)") if common else None
    if not _overlap(_inputs(train), _inputs(validation)):
        return None
    return ("the validation split's inputs overlap the train split's in memory (slices of one "
            "array that share rows)")


def _common(a: Any, b: Any) -> int:
    """How many distinct indices two Subsets' index lists share. As marks over the indices'
    range: sets of ten million Python ints took seconds and a GB in the driver."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
    if not (a.size and b.size):
        return 0
    low, high = min(a.min(), b.min()), max(a.max(), b.max())
    if high - low > 8 * (a.size + b.size):  # sparse indices: sorting costs less than marks
        return len(np.intersect1d(a, b))
    marks = np.zeros((2, int(high - low) + 1), dtype=bool)
    marks[0, a - low] = marks[1, b - low] = True
    return int(np.count_nonzero(marks[0] & marks[1]))


def _inputs(split: Any) -> Any:
    """The inputs of an `(inputs, targets)` pair or a TensorDataset, as they are (no copy
    into a tensor: a copy shares no memory), or None."""
    parts = getattr(split, "tensors", split)
    return parts[0] if isinstance(parts, (tuple, list)) and parts else None


def _overlap(a: Any, b: Any) -> bool:
    """Whether two arrays or tensors hold a common element in memory. Not whether the memory
    they span crosses: rows of a column-major array (`df.to_numpy()`), or every other row,
    interleave there without sharing one."""
    import numpy as np
    import torch

    def array(t: Any) -> Any:
        if hasattr(t, "to_numpy") and not isinstance(t, torch.Tensor):  # pandas, when it is one array
            t = t.to_numpy()
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            try:
                return t.detach().numpy()  # a view: the same memory
            except (TypeError, RuntimeError):  # bfloat16 and others NumPy lacks: not judged
                return None
        return t if isinstance(t, np.ndarray) else None

    x, y = array(a), array(b)
    if x is None or y is None or not x.size or not y.size:
        return False
    try:
        return bool(np.shares_memory(x, y, max_work=10**6))
    except Exception:  # noqa: BLE001 - NumPy's TooHardError: strides too many to solve for
        return bool(np.may_share_memory(x, y))  # the spans cross: as good as it gets


def sample_problem(dataset: Any) -> str | None:
    """What is wrong with the first sample of a map-style dataset (torchvision's without a
    transform gives PIL images), or None. Asked in the trial once batching failed, never in
    the driver: a dataset that opens its file on first use (h5py) would then hold an open
    file, which cannot be sent to the trials."""
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__getitem__") or \
            not hasattr(dataset, "__len__"):
        return None
    try:
        sample = dataset[0] if len(dataset) else None
    except Exception:  # noqa: BLE001 - not indexable by number, or it fails: the trial says so
        return None
    parts = sample if isinstance(sample, (tuple, list)) else (sample,)
    for part in parts:
        if type(part).__module__.split(".")[0] == "PIL":
            return ("its samples hold PIL images (a torchvision dataset without a transform), which "
                    "the DataLoader cannot batch: give it `transform=transforms.PILToTensor()` (uint8, "
                    "which hpoc scales to [0, 1] on the device) or `transforms.ToTensor()`")
        if isinstance(part, str):
            return (f"its samples hold strings ({part[:40]!r}): give numbers (class names as "
                    "integers, text as token ids)")
    return None


def _names(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", … ({len(names)} in all)" if len(names) > most else "")


_CHANNELS = re.compile(r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels")


def layout_hint(exc: BaseException, x: Any) -> str | None:
    """What a convolution's "expected input[8, 28, 28, 1] to have 1 channels, but got 28"
    says of the data: images channels last (N, H, W, C), as NumPy, PIL and TensorFlow
    keep them, or without their channel dimension (N, H, W); None for anything else."""
    match = _CHANNELS.search(str(exc))
    shape = tuple(getattr(x, "shape", ()))
    if match is None:
        return None
    want = int(match.group(1))
    if len(shape) == 4 and shape[-1] == want and shape[1] != want:
        return (f"the input batches are images shaped {shape}, channels last (N, H, W, C), and the model's "
                f"convolution takes (N, C, H, W): give them as `x.transpose(0, 3, 1, 2)` (NumPy) or "
                "`x.permute(0, 3, 1, 2)` (torch) in the getter or splitter")
    if len(shape) == 3 and want == 1:
        return (f"the input batches are images shaped {shape}, without a channel dimension, and the model's "
                f"convolution takes (N, 1, H, W): give them as `x[:, None]` in the getter or splitter")
    return None
