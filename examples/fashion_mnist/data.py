"""Data for the Fashion-MNIST study, read by torchvision's own FashionMNIST loader (from
`<root>/FashionMNIST/raw/`, or the older `processed/{training,test}.pt`, which it still reads).

Compute nodes have no internet, so nothing is downloaded at run time: fetch the dataset once
on a login node with `hpoc data fetch fashion-mnist --root DIR`. A relative `root` is taken
relative to the study's directory (the runtime runs the getter there); `~` and variables
(`$SCRATCH/fashion`) expand, as in the spec's `storage.path`.
"""

from __future__ import annotations

import os
import shlex

import torch

FETCH = "hpoc data fetch fashion-mnist --root {root}"
# torchvision's older layout, `<root>/FashionMNIST/processed/`: it still reads it, before raw/.
PROCESSED = ("training.pt", "test.pt")


def _processed_problem(path: str) -> str | None:
    """Why torchvision could not use a processed/*.pt file, or None: it loads an
    `(images, labels)` pair of tensors, images `(N, 28, 28)` and one label each."""
    try:
        pair = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        return f"{path} cannot be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)
    if not ok or pair[0].dim() != 3 or tuple(pair[0].shape[1:]) != (28, 28) or pair[1].shape != pair[0].shape[:1]:
        return f"{path} is not a pair of images (N, 28, 28) and N labels"
    return None


class FashionMNISTGetter:
    """(train, test) torchvision FashionMNIST datasets from `root` (never downloads)."""

    def __init__(self, root: str = "data/fashion-mnist") -> None:
        self.root = os.path.abspath(os.path.expanduser(os.path.expandvars(root)))

    def check(self) -> None:
        """Is the data there, and whole? (`hpoc check --preflight` asks on the login node.)"""
        from hpoc.idx import IDX_FILES, fashion_raw_problem

        processed = [os.path.join(self.root, "FashionMNIST", "processed", n) for n in PROCESSED]
        if all(os.path.isfile(p) for p in processed):  # torchvision reads these first, raw or not
            damaged = [p for p in map(_processed_problem, processed) if p]
            if damaged:
                raise OSError(f"Fashion-MNIST is damaged: {'; '.join(damaged)}; torchvision reads "
                              f"{os.path.dirname(processed[0])} before raw/: remove it, and fetch the "
                              f"raw files on a login node if they are not there: {self._fetch()}")
            return
        raw = os.path.join(self.root, "FashionMNIST", "raw")
        missing = [n for n in IDX_FILES if not os.path.isfile(os.path.join(raw, n))]
        if missing:
            raise self._not_found(f"missing {', '.join(missing)}")
        problem = fashion_raw_problem(raw)
        if problem:
            raise OSError(f"{problem}; fetch it again on a login node (damaged or wrong "
                          f"files are replaced): {self._fetch()}")

    def execute(self):
        from torchvision.datasets import FashionMNIST

        if any(os.path.isdir(os.path.join(self.root, "FashionMNIST", d)) for d in ("raw", "processed")):
            self.check()

        try:
            train = FashionMNIST(self.root, train=True, download=False)
            test = FashionMNIST(self.root, train=False, download=False)
        except RuntimeError as exc:
            if "not found" not in str(exc).lower():
                raise
            raise self._not_found("torchvision's layout: train-images-idx3-ubyte, "
                                  "train-labels-idx1-ubyte, t10k-…") from None
        return train, test

    def _fetch(self) -> str:
        return FETCH.format(root=shlex.quote(self.root))  # pasted into a shell as it is

    def _not_found(self, detail: str) -> FileNotFoundError:
        from hpoc.idx import idx_whereabouts

        raw = os.path.join(self.root, "FashionMNIST", "raw")
        hint = idx_whereabouts(self.root, "FashionMNIST")
        processed = os.path.join(self.root, "FashionMNIST", "processed")
        alone = [n for n in PROCESSED if os.path.isfile(os.path.join(processed, n))]
        if alone and not hint:  # torchvision's older layout, half of it
            hint = (f"{processed} holds {alone[0]} only: torchvision reads that layout with "
                    f"{' and '.join(PROCESSED)} both there")
        return FileNotFoundError(
            f"Fashion-MNIST is not in {raw} ({detail}){'; ' + hint if hint else ''}. Compute "
            f"nodes cannot download it: fetch it once on a login node: {self._fetch()}")


class FashionMNISTSplitter:
    """Split the training set into train/validation by the given proportions (fixed seed);
    the official test set is the test split. Splits are `(images, labels)` tensors: images
    `(N, 1, 28, 28)` uint8 (the trainer normalises them on the device), labels int64."""

    def __init__(self, train_proportion: float = 0.9, validation_proportion: float = 0.1,
                 seed: int = 0) -> None:
        if not 0 < train_proportion <= 1 or not 0 <= validation_proportion <= 1 or \
                train_proportion + validation_proportion > 1 + 1e-9:
            raise ValueError("proportions must be in (0, 1] and sum to at most 1, got "
                             f"{train_proportion} + {validation_proportion}")
        self.train_proportion = train_proportion
        self.validation_proportion = validation_proportion
        self.seed = seed

    def execute(self, datasets):
        train_set, test_set = datasets
        images, labels = train_set.data.unsqueeze(1), train_set.targets.long()
        n = len(labels)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_train = int(round(self.train_proportion * n))
        n_val = min(n - n_train, int(round(self.validation_proportion * n)))
        train_idx, val_idx = order[:n_train], order[n_train:n_train + n_val]
        test = (test_set.data.unsqueeze(1), test_set.targets.long())
        return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx]), test
