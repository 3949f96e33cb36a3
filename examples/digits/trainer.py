"""Trainer of the digits study: a small CNN on 8x8 images.

Config keys: `lr`, `batch_size`, `hidden`, `optimizer` ("adam" or "sgd", or a group
`optimizer.name`), `momentum` (sgd only; also accepted as `optimizer.momentum`), `epochs`.
Everything else - devices, batching, checkpoints, reporting - is the default `hpoc.Trainer`.
"""

from __future__ import annotations

import torch
from torch import nn

import hpoc


class SmallCNN(nn.Module):
    def __init__(self, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(hidden * 16, 64), nn.ReLU(),
                                  nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsTrainer(hpoc.Trainer):
    def create_model(self, config):
        return SmallCNN(hidden=int(config.get("hidden", 32)))

    def create_optimizer(self, model, config):
        opt = config.get("optimizer", "adam")
        group = opt if isinstance(opt, dict) else {"name": opt}
        lr = float(config.get("lr", 1e-3))
        if group.get("name", "adam") == "sgd":
            momentum = float(group.get("momentum", config.get("momentum", 0.0)))
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        return torch.optim.Adam(model.parameters(), lr=lr)
