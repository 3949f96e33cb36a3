"""A trial of several workers iterating a shuffled DataLoader of its own without a
DistributedSampler: every rank trained on all the data, in the same order under a seed,
and nothing said it (runtime/loaders.py)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from hpoc.runtime.loaders import watched

DATA = TensorDataset(torch.arange(8.0))


def iterate(loader: DataLoader) -> None:
    for _ in loader:
        pass


def test_a_shuffled_loader_without_a_distributed_sampler_is_said_once_in_a_multi_worker_trial() -> None:
    said: list[str] = []
    with watched(4, lambda loader: None, said.append, world_size=2):
        iterate(DataLoader(DATA, batch_size=4, shuffle=True))
        iterate(DataLoader(DATA, batch_size=4, shuffle=True))
    assert len(said) == 1
    assert said[0].startswith("the DataLoader iterated at ") and "test_loader_sampler.py:" in said[0]
    assert "has no DistributedSampler: each of the trial's 2 workers trains on all its data" in said[0]
    assert "self.strategy.dataloader(dataset, batch_size, shuffle=True)" in said[0]


def test_loaders_that_split_the_data_or_do_not_shuffle_or_one_worker_are_quiet() -> None:
    said: list[str] = []
    with watched(4, lambda loader: None, said.append, world_size=2):
        iterate(DataLoader(DATA, batch_size=4, sampler=DistributedSampler(DATA, num_replicas=2, rank=0)))
        iterate(DataLoader(DATA, batch_size=4))  # validation, each rank all of it: no harm
    with watched(4, lambda loader: None, said.append, world_size=1):
        iterate(DataLoader(DATA, batch_size=4, shuffle=True))
    assert said == []
