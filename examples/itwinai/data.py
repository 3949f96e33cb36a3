"""FashionMNIST for the itwinai HPO tutorial, without itwinai and without downloading.

The tutorial's getter and splitter, adapted: compute nodes have no internet, so the
getter reads torchvision's raw files from `root` (relative to this directory) and says how
to fetch them once on a login node (`hpoc data fetch fashion-mnist --root data`); its
`check()` lets `hpoc check --preflight config.yaml` find them missing before submitting. The
split is seeded, so every trial of a study sees the same validation images.
"""

from __future__ import annotations

import os
import shlex

import torch
from torch.utils.data import Dataset, random_split


def _transform():
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])


class FashionMNISTGetter:
    """The FashionMNIST training set, as the tutorial's getter returns it."""

    def __init__(self, root: str = "data") -> None:
        # `~` and variables (`$SCRATCH/fmnist`) expand, as `hpoc data fetch --root` does.
        self.root = os.path.abspath(os.path.expanduser(os.path.expandvars(root)))

    def check(self) -> None:
        """Is the data there, and whole? (`hpoc check --preflight` asks on the login node.)"""
        from hpoc.idx import IDX_FILES, fashion_raw_problem, idx_whereabouts

        folder = os.path.join(self.root, "FashionMNIST")
        # torchvision's older layout, read before raw/ when both files are there.
        if all(os.path.isfile(os.path.join(folder, "processed", n)) for n in ("training.pt", "test.pt")):
            return
        raw = os.path.join(folder, "raw")
        missing = [n for n in IDX_FILES if not os.path.isfile(os.path.join(raw, n))]
        if missing:
            hint = idx_whereabouts(self.root, "FashionMNIST")
            raise FileNotFoundError(
                f"FashionMNIST is not in {raw} (missing {', '.join(missing)})"
                f"{'; ' + hint if hint else ''}; compute nodes cannot download it. Fetch it once "
                f"on a login node: {self._fetch()}")
        problem = fashion_raw_problem(raw)
        if problem:
            raise OSError(f"{problem}; fetch it again on a login node (damaged or wrong "
                          f"files are replaced): {self._fetch()}")

    def execute(self) -> Dataset:
        from torchvision import datasets

        self.check()
        return datasets.FashionMNIST(self.root, train=True, download=False, transform=_transform())

    def _fetch(self) -> str:
        return f"hpoc data fetch fashion-mnist --root {shlex.quote(self.root)}"  # pasted as it is


class FashionMNISTSplitter:
    """Train/validation/test subsets by proportion (what is left over goes to test)."""

    def __init__(self, train_proportion: float, validation_proportion: float = 0.0,
                 test_proportion: float = 0.0, name: str | None = None, seed: int = 42) -> None:
        total = train_proportion + validation_proportion + test_proportion
        if not 0 < train_proportion <= 1 or validation_proportion < 0 or test_proportion < 0 \
                or total > 1 + 1e-9:
            raise ValueError(f"proportions must be non-negative and sum to at most 1, got "
                             f"{train_proportion}, {validation_proportion}, {test_proportion}")
        self.train_proportion = train_proportion
        self.validation_proportion = validation_proportion
        self.test_proportion = test_proportion
        self.name = name
        self.seed = seed

    def execute(self, dataset: Dataset):
        total_size = len(dataset)
        train_size = int(self.train_proportion * total_size)
        validation_size = int(self.validation_proportion * total_size)
        test_size = total_size - train_size - validation_size
        return tuple(random_split(dataset, [train_size, validation_size, test_size],
                                  generator=torch.Generator().manual_seed(self.seed)))
