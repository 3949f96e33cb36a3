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


def test_rank_0_of_a_multi_worker_trial_says_it_in_the_trials_stderr(tmp_path, capfd) -> None:
    """A rank's own output goes to Ray's worker logs only: the warning never reached the
    trial's `stderr`, where a user reads it (the driver tees its own output there)."""
    import types

    import hpoc

    trainer = hpoc.Trainer()
    trainer.plan = {"resources": {"cpus_per_worker": 1}}
    trainer.trial_dir = tmp_path
    for rank, world in ((1, 2), (0, 2)):
        trainer.strategy = types.SimpleNamespace(rank=rank, world_size=world)
        with trainer._workers_watched():
            iterate(DataLoader(DATA, batch_size=4, shuffle=True))
    kept = (tmp_path / "stderr").read_text().splitlines()
    assert len(kept) == 1 and kept[0].startswith("[hpoc] warning: the DataLoader iterated at "), kept
    assert "has no DistributedSampler" in capfd.readouterr().err


def test_a_rank_that_never_reported_is_named_in_a_multi_worker_trial() -> None:
    """A loop reporting under `if self.strategy.is_main:` failed its trial with "T.train()
    ended without reporting anything", which its author read as untrue: rank 0 reported."""
    import types

    import pytest

    import hpoc
    from hpoc.runtime.returns import TrainerError

    class Quiet(hpoc.Trainer):
        def train(self):
            pass

    trainer = Quiet()
    trainer.plan = {"objective": {"metrics": [{"name": "val_loss", "mode": "min"}]}}
    trainer.strategy = types.SimpleNamespace(rank=1, world_size=2)
    with pytest.raises(TrainerError, match=r"ended without reporting anything on rank 1 of 2 "
                                           r"\(every rank must call self\.report each epoch\)"):
        trainer._train_and_close({})


def test_a_trainer_that_gives_each_rank_its_own_part_is_not_said_to_read_all_the_data() -> None:
    """A trainer that splits the data per rank itself (`x[rank::world]`, a `Subset` of the
    rank's indices) and shuffles its part with a plain RandomSampler was told that each rank
    trains on all the data: untrue. A part of at most 1/world of the training split (or of
    the Subset's dataset) is a rank's own."""
    from torch.utils.data import Subset

    x = torch.arange(8.0)
    whole = lambda: 8  # noqa: E731 - the training split hpoc gave the trainer
    said: list[str] = []
    with watched(4, lambda loader: None, said.append, world_size=2, whole=whole):
        iterate(DataLoader(TensorDataset(x[0::2]), batch_size=2, shuffle=True))
        iterate(DataLoader(Subset(DATA, range(1, 8, 2)), batch_size=2, shuffle=True))
    with watched(4, lambda loader: None, said.append, world_size=2):  # the split not known
        iterate(DataLoader(Subset(DATA, range(0, 4)), batch_size=2, shuffle=True))
    assert said == []
    # more than a rank's share is every rank reading (nearly) all of it: still said
    with watched(4, lambda loader: None, said.append, world_size=2, whole=whole):
        iterate(DataLoader(Subset(DATA, range(0, 6)), batch_size=2, shuffle=True))
    with watched(4, lambda loader: None, said.append, world_size=2, whole=whole):
        iterate(DataLoader(TensorDataset(x[:5]), batch_size=2, shuffle=True))
    assert len(said) == 2 and all("has no DistributedSampler" in s for s in said), said


def test_a_trainers_own_split_per_rank_of_hpocs_train_split_is_quiet(tmp_path, capfd) -> None:
    """Through the Trainer: its own `train_data` (a pair of tensors) is the whole."""
    import types

    import hpoc
    from hpoc.runtime.loaders import samples

    trainer = hpoc.Trainer()
    trainer.plan = {"resources": {"cpus_per_worker": 1}}
    trainer.trial_dir = tmp_path
    trainer.train_data = (torch.zeros(8, 3), torch.zeros(8))
    trainer.strategy = types.SimpleNamespace(rank=0, world_size=2)
    with trainer._workers_watched():
        x, y = trainer.train_data
        iterate(DataLoader(TensorDataset(x[0::2], y[0::2]), batch_size=2, shuffle=True))
    assert "has no DistributedSampler" not in capfd.readouterr().err
    with trainer._workers_watched():  # the whole split on each rank: said
        iterate(DataLoader(TensorDataset(*trainer.train_data), batch_size=2, shuffle=True))
    assert "has no DistributedSampler" in capfd.readouterr().err
    assert samples(DATA) == 8 and samples((torch.zeros(8, 3), torch.zeros(7))) is None
    assert samples([(1, 2)] * 5) == 5 and samples(None) is None
