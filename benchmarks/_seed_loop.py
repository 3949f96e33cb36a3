"""The seed-style baseline: the itwinai HPO tutorial's training loop, kept faithful.

What the tutorial's `MyRayTorchTrainer.train()` does on one device: torchvision's
`FashionMNIST` dataset with `ToTensor()` + `Normalize`, split with `random_split`, a
`DataLoader` with `num_workers=0`, a ResNet18 with a 1-channel 7x7 stride-1 stem, Adam,
fp32, every batch copied to the device in the loop, and `loss.detach().cpu().numpy()`
after every step (a host synchronisation per step). Nothing here is tuned on purpose.

Used by the benchmarks as the reference and by tests/test_speed_*.py to check that hpoc's
default path learns the same thing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SEED_NORMALIZE = (0.5, 0.5)  # the tutorial's `transforms.Normalize((0.5,), (0.5,))`


def resnet18_1ch() -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(1, 1), padding=(3, 3), bias=False)
    return model


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # compares equal to hpoc's
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seed_dataset(root: str | Path, normalize: tuple[float, float] = SEED_NORMALIZE) -> Any:
    """torchvision's FashionMNIST training set with the tutorial's transform."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((normalize[0],), (normalize[1],))])
    return datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)


def seed_splits(root: str | Path, train_proportion: float = 0.9, validation_proportion: float = 0.1,
                normalize: tuple[float, float] = SEED_NORMALIZE, seed: int = 42) -> tuple[Any, Any]:
    """(train, validation) `Subset`s of torchvision's FashionMNIST, as the tutorial splits."""
    from torch.utils.data import random_split

    full = seed_dataset(root, normalize)
    n = len(full)
    n_train = int(train_proportion * n)
    n_val = int(validation_proportion * n)
    train, val, _rest = random_split(full, [n_train, n_val, n - n_train - n_val],
                                     generator=torch.Generator().manual_seed(seed))
    return train, val


@dataclass
class SeedLoop:
    """Model, optimizer and loaders of one seed-style trial."""

    train_set: Any
    validation_set: Any
    device: torch.device
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    make_model: Any = resnet18_1ch  # tests swap in a small CNN; the benchmarks never do

    def __post_init__(self) -> None:
        from torch.utils.data import DataLoader

        torch.manual_seed(self.seed)
        self.model = self.make_model().to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.loss = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(self.seed)
        self.train_loader = DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                                       num_workers=0, generator=g)
        self.validation_loader = DataLoader(self.validation_set, batch_size=self.batch_size,
                                            num_workers=0)

    def train_epoch(self, max_steps: int | None = None) -> dict[str, float]:
        """One epoch (or `max_steps` batches) exactly as the tutorial's loop runs it."""
        self.model.train()
        train_losses, images = [], 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.train_loader):
            if max_steps is not None and step >= max_steps:
                break
            x, y = x.to(self.device), y.to(self.device)
            outputs = self.model(x)
            train_loss = self.loss(outputs, y)
            self.optimizer.zero_grad()
            train_loss.backward()
            self.optimizer.step()
            train_losses.append(train_loss.detach().cpu().numpy())
            images += len(y)
        sync(self.device)
        seconds = time.perf_counter() - start
        return {"train_loss": float(np.mean(train_losses)), "images": images, "seconds": seconds}

    def validation_epoch(self) -> dict[str, float]:
        """The tutorial's validation loop (a host sync per batch); loss and accuracy are
        computed per sample, the definitions of hpoc's `val_loss`/`val_accuracy`."""
        self.model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        start = time.perf_counter()
        for x, y in self.validation_loader:
            x, y = x.to(self.device), y.to(self.device)
            with torch.no_grad():
                outputs = self.model(x)
                val_loss = self.loss(outputs, y)
            loss_sum += float(val_loss.detach().cpu().numpy()) * len(y)
            correct += int((outputs.argmax(dim=1) == y).sum().cpu())
            n += len(y)
        sync(self.device)
        return {"val_loss": loss_sum / max(n, 1), "val_accuracy": correct / max(n, 1),
                "seconds": time.perf_counter() - start}


def seed_rate(root: str | Path, device: torch.device, batch_size: int = 128, steps: int = 200,
              reps: int = 3) -> dict[str, Any]:
    """Training images/s of the seed loop (median of `reps` runs of `steps` batches, after
    a warm-up of 10 batches) and its peak device memory."""
    import statistics

    train, val = seed_splits(root)
    loop = SeedLoop(train, val, device, batch_size=batch_size)
    loop.train_epoch(max_steps=10)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = []
    for _ in range(reps):
        got = loop.train_epoch(max_steps=steps)
        rates.append(got["images"] / got["seconds"])
    out: dict[str, Any] = {"images_per_s": statistics.median(rates), "runs": [round(r, 2) for r in rates]}
    if device.type == "cuda":
        out["max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


if __name__ == "__main__":  # `python _seed_loop.py ROOT [STEPS] [BATCH]`: seed_rate as JSON
    import json
    import sys

    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    device = pick_device()
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the benchmarks' CPU runs (two threads thrash on 2 busy cores)
    print(json.dumps(seed_rate(sys.argv[1], device, batch_size=batch, steps=steps)))
