"""A trainer whose create_model wraps its model in DistributedDataParallel itself: hpoc
wrapped it again, and every step all-reduced its gradients twice (twice the traffic, the
same numbers), silently."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from hpoc.runtime.report import free_port
from hpoc.runtime.strategy import DDPStrategy


class _TwoRanks(DDPStrategy):
    world_size = 2  # a one-process group stands in for two: DDP wraps the same way


def test_a_model_the_trainer_wrapped_in_ddp_itself_is_not_wrapped_again() -> None:
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{free_port()}")
    try:
        mine = DDP(torch.nn.Linear(3, 1))
        model, _, _ = _TwoRanks().distributed(mine)
        assert model is mine and not isinstance(model.module, DDP)
        plain, _, _ = _TwoRanks().distributed(torch.nn.Linear(3, 1))
        assert isinstance(plain, DDP)  # the usual path still wraps
    finally:
        dist.destroy_process_group()
