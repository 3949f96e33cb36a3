"""What DeepSpeed's ZeRO engines keep for themselves that hpoc must reach: an accumulation
window's gradients to drop, and the shapes a checkpoint's weights have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def drop_window(optimizer: Any) -> None:
    """Throw away the gradients a ZeRO-1/2 optimizer accumulated in an open window.

    `zero_grad()` clears the parameters' `.grad`, which is all ZeRO-3 (it restarts its
    micro-step count there) and ZeRO-1 hold mid-window. ZeRO-2 has already reduced them
    into buffers of its own (`all_grad_tensors`; its fp32 gradient partitions under bf16),
    which it clears only on a step, or on an overflow that skips one: no public call drops
    them, so this does what that skipped step does."""
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


def model_states(directory: Path) -> dict[str, Any]:
    """The engine's own file of a DeepSpeed checkpoint (one tag's directory): the shapes its
    weights have and the client state; its tensors are not read (mapped, not loaded)."""
    files = sorted(directory.glob("*model_states.pt"))  # ZeRO-3: one per rank, alike in these
    if not files:
        return {}
    return torch.load(files[0], map_location="cpu", weights_only=False, mmap=True)


def misfit(saved: dict[str, Any], model: torch.nn.Module) -> str | None:
    """What of `model` the checkpoint's weights do not fit, said as torch says it of a state
    dict; None when they fit.

    Read before the engine loads them: ZeRO-3 restores its weights from flat partitions, and
    a misfit there reads only as "The size of tensor a (97) must match ... (49)"."""
    shapes: dict[str, tuple[int, ...]] = {}
    for group in [*(saved.get("param_shapes") or []), saved.get("frozen_param_shapes") or {}]:
        shapes.update({name: tuple(shape) for name, shape in group.items()})
    if not shapes:  # a DeepSpeed that kept no shapes: left to the engine's load
        return None
    # ZeRO-3 keeps only this rank's part of a parameter; `ds_shape` is the whole one's
    mine = {name: tuple(getattr(p, "ds_shape", p.shape)) for name, p in model.named_parameters()}
    problems = [f"size mismatch for {name}: copying a param with shape torch.Size({list(shapes[name])}) from "
                f"checkpoint, the shape in current model is torch.Size({list(shape)})."
                for name, shape in mine.items() if name in shapes and shapes[name] != shape]
    missing, unexpected = [n for n in mine if n not in shapes], [n for n in shapes if n not in mine]
    if missing:
        problems.append("Missing key(s) in state_dict: " + ", ".join(f'"{n}"' for n in missing) + ".")
    if unexpected:
        problems.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{n}"' for n in unexpected) + ".")
    if not problems:
        return None
    return f"Error(s) in loading state_dict for {type(model).__name__}:\n\t" + "\n\t".join(problems)
