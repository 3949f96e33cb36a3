"""What DeepSpeed's ZeRO engines keep for themselves that hpoc must reach: an accumulation
window's gradients to drop, and the shapes a checkpoint's weights have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def drop_window(optimizer: Any) -> None:
    """Throw away the gradients a ZeRO-1/2 optimizer accumulated in an open window.

    `zero_grad()` clears the parameters' `.grad`, which is all ZeRO-3 (it restarts its
    micro-step count there) and ZeRO-1 hold mid-window; ZeRO-2 (and ZeRO-1 with the
    bf16/fp32 partition buffers) has already moved them into buffers of its own, which it
    clears only on an optimizer step, or on an overflow that skips one: no public call
    drops them, so this does what that skipped step does."""
    optimizer.zero_grad(set_to_none=True)
    from deepspeed.runtime.zero import stage_1_and_2

    if not isinstance(optimizer, stage_1_and_2.DeepSpeedZeroOptimizer):
        return
    optimizer._release_preflattened_grad_buffers()
    for group in optimizer.averaged_gradients:
        optimizer.averaged_gradients[group] = None
    for group in optimizer.all_grad_tensors:
        optimizer.all_grad_tensors[group] = None
    if optimizer.cpu_offload:
        optimizer.reset_cpu_buffers()
    # the next backward starts a window, as after a step (a window's first micro-step
    # overwrites the offloaded gradients rather than add to them)
    optimizer._release_ipg_buffers()
    optimizer.micro_step_id = stage_1_and_2.INITIAL_MICRO_STEP_ID
