"""Small FashionMNIST-format data for tests: real IDX files in torchvision's raw layout.

`write_fashion_mnist(root)` writes `root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`
and their `.gz` copies (what torchvision's download leaves), so `torchvision.datasets.FashionMNIST(
root, download=False)` reads them. Images carry a class-dependent stripe plus noise, so a model
can learn them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def _idx(data: np.ndarray) -> bytes:
    kind = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, kind, data.ndim) + b"".join(struct.pack(">I", d) for d in data.shape)
    return header + data.astype(np.uint8).tobytes()


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.int64)
    for i, k in enumerate(labels):
        x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255  # one stripe per class
    return x.astype(np.uint8)


def write_fashion_mnist(root: str | Path, n_train: int = 64, n_test: int = 16, seed: int = 0) -> Path:
    """The raw directory written; a second call with the same arguments changes nothing."""
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", _images(labels, rng)),
                            (f"{prefix}-labels-idx1-ubyte", labels)):
            data = _idx(array)
            (raw / name).write_bytes(data)
            (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
    return raw
