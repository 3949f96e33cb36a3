"""Data for the digits study: scikit-learn's bundled 8x8 handwritten digits (1,797 images).

No download: the images ship with scikit-learn. The getter returns all images as tensors;
the splitter makes a fixed, stratification-free random split.
"""

from __future__ import annotations

import torch


class DigitsGetter:
    """All 1,797 digits: images `(N, 1, 8, 8)` float32 in [0, 1], labels `(N,)` int64."""

    def execute(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.int64)
        return images, labels


class DigitsSplitter:
    """(train, validation, test) as `(images, labels)` pairs; the test split is what the
    train and validation proportions leave over (empty when they sum to 1)."""

    def __init__(self, train_proportion: float = 0.8, validation_proportion: float = 0.2,
                 seed: int = 0) -> None:
        if not 0 < train_proportion <= 1 or not 0 <= validation_proportion <= 1 or \
                train_proportion + validation_proportion > 1 + 1e-9:
            raise ValueError("proportions must be in (0, 1] and sum to at most 1, got "
                             f"{train_proportion} + {validation_proportion}")
        self.train_proportion = train_proportion
        self.validation_proportion = validation_proportion
        self.seed = seed

    def execute(self, data: tuple[torch.Tensor, torch.Tensor]):
        images, labels = data
        n = len(labels)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_train = int(round(self.train_proportion * n))
        n_val = min(n - n_train, int(round(self.validation_proportion * n)))
        parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
        train, val, test = ((images[i], labels[i]) for i in parts)
        return train, val, (test if len(parts[2]) else None)
