"""Trainer of the Fashion-MNIST study: the itwinai tutorial's ResNet18, without the plumbing.

Config keys: `batch_size`, `learning_rate`, `epochs`. The default `hpoc.Trainer` does the
rest: DDP or DeepSpeed per the plan, data on the GPU, bf16, checkpoints, reporting.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

import hpoc


class FashionTrainer(hpoc.Trainer):
    # Fashion-MNIST's pixel mean and standard deviation, applied on the device.
    normalize = (0.2860, 0.3530)

    def create_model(self, config):
        model = resnet18(num_classes=10)
        # 1-channel 28x28 inputs: a 7x7 stride-1 stem, as in the tutorial.
        model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=1, padding=3, bias=False)
        return model
