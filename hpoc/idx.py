"""IDX files (the MNIST family's format), checked whole without reading their data: for a
getter's `check()` on a login node and for `hpoc data fetch`."""

from __future__ import annotations

import os

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an IDX file (MNIST's format) cannot be read whole, or None. Its header gives the
    dimensions, so a file cut short (a copy or an extraction interrupted) or overwritten
    shows without reading the data."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
                return f"{path} is not an IDX file of bytes (its header is {head.hex() or 'empty'})"
            dims = fh.read(4 * head[3])
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if len(dims) < 4 * head[3]:
        return f"{path} is cut short ({size} bytes, inside its header)"
    items = 1
    for i in range(head[3]):
        items *= int.from_bytes(dims[4 * i:4 * i + 4], "big")
    want = 4 + len(dims) + items
    if size != want:
        return f"{path} is {'cut short' if size < want else 'too long'} ({size} bytes; its header says {want})"
    return None
