"""A trainer whose create_model wraps its model in DistributedDataParallel itself: hpoc
wrapped it again, and every step all-reduced its gradients twice (twice the traffic, the
same numbers), silently."""

from __future__ import annotations

import os
import subprocess
import sys

# In a process of its own: a test file before it on the same xdist worker may keep a default
# process group (DeepSpeed's), and a second init_process_group is refused.
_BODY = """
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from hpoc.runtime.report import free_port
from hpoc.runtime.strategy import DDPStrategy


class TwoRanks(DDPStrategy):
    world_size = 2  # a one-process group stands in for two: DDP wraps the same way


dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{free_port()}")
try:
    mine = DDP(torch.nn.Linear(3, 1))
    model, _, _ = TwoRanks().distributed(mine)
    assert model is mine and not isinstance(model.module, DDP), "wrapped again"
    plain, _, _ = TwoRanks().distributed(torch.nn.Linear(3, 1))
    assert isinstance(plain, DDP), "the usual path no longer wraps"  # it still does
finally:
    dist.destroy_process_group()
"""


def test_a_model_the_trainer_wrapped_in_ddp_itself_is_not_wrapped_again() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run([sys.executable, "-c", _BODY], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
