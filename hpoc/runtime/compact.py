"""The splits made compact once in the driver, before Ray pickles them for every trial.

torch pickles a tensor with its whole storage, not the part its view shows: a splitter's
`(x[:n], y[:n]), (x[n:], y[n:])` (or `narrow`, `split`, `chunk`, `x[:, :10]`) went into
Ray's object store, and into every trial process, as twice the data; a list of `(x[i], y[i])`
samples as one copy of it per sample. NumPy pickles a view's
own elements, but shares an array with the trials (out of band, zero-copy) only when it is
contiguous and a plain ndarray: `x[:, :10]`, `x[::2]` and a memmap (its whole file) were
copied into each trial. `benchmarks/shared_views.py` measures both.
"""

from __future__ import annotations

from typing import Any, Callable

# A view of nearly all of its storage stays as it is: its copy would cost the driver more
# than the few rows it saves (a 95/5 split's larger part).
SLACK = 1 / 16
_DEPTH = 4  # (x, y) in a split, ((x1, x2), y), a dict of them: no deeper


def for_ray(data: tuple[Any, Any, Any] | None, arrays: bool,
            cast: Callable[[Any, bool], Any] | None = None) -> tuple[Any, Any, Any] | None:
    """`data` with its tensor views copied to storages of their own and, with `arrays`
    (hpoc's loop, which reads them through read-only tensors), its NumPy views and memmaps
    as contiguous ndarrays. Values, dtypes and shapes are kept; so is one object given
    twice (train and validation), and tensors that own their storage are not copied.
    `cast(part, first)` (pipeline.model_dtype_cast) is applied to each part of a split
    first: the driver walks the data once for both."""
    return walk(data, views=True, arrays=arrays, cast=cast)


def walk(data: tuple[Any, Any, Any] | None, views: bool, arrays: bool,
         cast: Callable[[Any, bool], Any] | None = None) -> tuple[Any, Any, Any] | None:
    """for_ray's walk; without `views` it leaves tensors as they are (the cast alone)."""
    if data is None:
        return None
    import numpy as np
    import torch

    dataset = torch.utils.data.TensorDataset
    walked = (tuple, list, dict, dataset)
    done: dict[Any, Any] = {}

    def part(obj: Any, depth: int) -> Any:
        kind = type(obj)  # exact types: a list of a million labels is walked in a blink
        if kind is torch.Tensor:
            return _tensor(obj, done) if views else obj
        if kind is np.ndarray or kind is np.memmap:  # a masked array's mask would be lost
            return _array(obj, done) if arrays else obj
        if depth >= _DEPTH or kind not in walked:
            return obj
        if id(obj) not in done:  # a split given twice (train and validation) stays one object
            done[id(obj)] = container(obj, depth + 1)
        return done[id(obj)]

    def container(obj: Any, depth: int) -> Any:
        if type(obj) is dict:
            made = {k: part(v, depth) for k, v in obj.items()}
            return made if any(made[k] is not v for k, v in obj.items()) else obj
        parts = obj.tensors if type(obj) is dataset else obj
        if cast is not None and depth == 1:  # a split's (inputs, targets, ...)
            made = [part(cast(p, i == 0), depth) for i, p in enumerate(parts)]
        else:
            made = [part(p, depth) for p in parts]
        if all(a is b for a, b in zip(made, parts)):
            return obj
        # a namedtuple's or a subclass's constructor may differ: those are not walked
        if type(obj) is not dataset:
            return type(obj)(made)
        new = dataset(*made)
        new.__dict__.update((k, v) for k, v in vars(obj).items() if k != "tensors")  # `classes`, ...
        return new

    out = tuple(part(s, 0) for s in data)
    return data if all(a is b for a, b in zip(out, data)) else out  # type: ignore[return-value]


def _tensor(t: Any, done: dict[Any, Any]) -> Any:
    import torch

    # sparse, quantized or autograd tensors (and a Parameter, not walked): pickled as they are
    if t.layout is not torch.strided or t.is_quantized or t.requires_grad:
        return t
    storage = t.untyped_storage()
    if storage.nbytes() <= t.numel() * t.element_size() * (1 + SLACK):
        return t  # its own storage (or an expanded view of a smaller one)
    # one view made twice (`x[n:]` for validation and test) is one copy, pickled once
    key = ("tensor", storage.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, t.device)
    if key not in done:
        done[key] = t.clone()  # a storage of its own size, the view's layout where dense
    return done[key]


def _array(a: Any, done: dict[Any, Any]) -> Any:
    import numpy as np

    if a.dtype.hasobject:
        return a  # objects are pickled one by one anyway
    if type(a) is np.ndarray and (a.flags.c_contiguous or a.flags.f_contiguous):
        return a  # shared zero-copy already
    if id(a) not in done:
        # a memmap's data is read from its file straight into the object store
        done[id(a)] = (a.view(np.ndarray) if a.flags.c_contiguous or a.flags.f_contiguous
                       else np.ascontiguousarray(a))
    return done[id(a)]
