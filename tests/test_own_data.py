"""A researcher's own data in the shapes it comes in: what hpoc's loop batches, and what
it refuses as the data loads (in the data's terms, not as an error from inside torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpoc.runtime.batches import as_tensors


def test_read_only_arrays_are_batched_in_place_not_copied_per_trial():
    """Arrays come out of Ray's object store read-only; each trial copied them, so every
    running trial held its own copy of the data beside the shared one."""
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    x.flags.writeable = y.flags.writeable = False
    tx, ty = as_tensors((x, y))
    assert np.shares_memory(tx.numpy(), x) and np.shares_memory(ty.numpy(), y)


def test_reversed_arrays_are_data_too():
    """`x[::-1]` (newest first) failed every trial: torch takes no negative strides."""
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    tx, ty = as_tensors((x[::-1], y[::-1]))
    assert tx[0].tolist() == [38.0, 39.0] and ty[0] == 19
