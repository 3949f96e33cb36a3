"""Fashion-MNIST-format data for the benchmarks, generated (compute nodes cannot download).

`write_fashion(root, n_train, n_test)` writes real IDX files into torchvision's layout
(`root/FashionMNIST/raw/*-ubyte`), so both torchvision's own `FashionMNIST` dataset (the
seed-style baseline) and hpoc's example getter read them. Each image is noise plus a
class-dependent bright block, so a ResNet can learn it and loss curves mean something.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = rng.integers(0, 90, size=(len(labels), 28, 28), dtype=np.uint8)
    for k in range(10):
        r, c = divmod(k, 5)
        images[labels == k, 3 + 12 * r: 11 + 12 * r, 1 + 5 * c: 6 + 5 * c] = 230
    return images


def write_fashion(root: str | Path, n_train: int = 60000, n_test: int = 1000, seed: int = 0) -> Path:
    """`root` with the four files (rewritten only when the sizes differ); returns `root`."""
    root = Path(root)
    raw = root / "FashionMNIST" / "raw"
    stamp = raw / ".generated"
    want = f"{n_train} {n_test} {seed}"
    if stamp.exists() and stamp.read_text() == want and all((raw / f).exists() for f in FILES):
        return root
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(_images(labels, rng)))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))
    stamp.write_text(want)
    return root
