"""The fast default train path learns what the seed-style loop learns, on the same data.

Both sides read the same generated Fashion-MNIST-format files: hpoc through the compiled
example study (its getter, splitter and `FashionTrainer`), the seed loop through
torchvision's `FashionMNIST` with `ToTensor`/`Normalize` and a DataLoader. The model is a
small CNN on both sides so the test runs in seconds on CPU (the benchmarks use ResNet18).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _data import write_fashion  # noqa: E402
from _ours import bound_trainer, compile_plan, study_text  # noqa: E402
from _seed_loop import SeedLoop, seed_dataset  # noqa: E402

BATCH, LR, EPOCHS = 32, 2e-3, 3


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    # One intra-op thread: on a busy 2-core machine two threads spin against each other
    # (a 40x slowdown measured here); trial processes get `cpus_per_worker` threads anyway.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _fashion(tmp_path_factory)
    torch.set_num_threads(threads)


def _fashion(tmp_path_factory):
    root = write_fashion(tmp_path_factory.mktemp("fm"), n_train=640, n_test=10)
    plan = compile_plan(study_text(root, batch_size=BATCH, learning_rate=LR, epochs=EPOCHS,
                                   storage=tmp_path_factory.mktemp("results")))
    return root, plan


def run_ours(plan, directory, seed=0):
    torch.manual_seed(0)  # the seed loop builds its model right after seeding with 0
    trainer = bound_trainer(plan, {"batch_size": BATCH, "learning_rate": LR, "epochs": EPOCHS},
                            directory, seed=seed)
    trainer.create_model = lambda config: small_cnn()
    trainer.execute()
    return trainer, trainer.reporter.history


def test_default_path_and_seed_loop_learn_the_same_thing(fashion, tmp_path):
    from torch.utils.data import Subset

    root, plan = fashion
    trainer, ours = run_ours(plan, tmp_path / "ours")
    mean, std = trainer.normalize
    full = seed_dataset(root, (mean, std))
    # The seed loop on the very images hpoc trains and validates on (the example splitter's
    # permutation), read through torchvision's PIL + ToTensor + Normalize.
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0)).tolist()
    n_train = int(round(0.9 * len(full)))
    train_idx, val_idx = order[:n_train], order[n_train:]
    seed = SeedLoop(Subset(full, train_idx), Subset(full, val_idx), torch.device("cpu"),
                    batch_size=BATCH, lr=LR, make_model=small_cnn)
    theirs = []
    for _ in range(EPOCHS):
        train = seed.train_epoch()
        theirs.append({"train_loss": train["train_loss"], **seed.validation_epoch()})

    chance = math.log(10)
    for curve in (ours, theirs):
        losses = [r["train_loss"] for r in curve]
        assert losses[0] > losses[-1], losses  # both learn
        assert curve[-1]["val_loss"] < 0.5 * chance and curve[-1]["val_accuracy"] > 0.8
    assert ours[-1]["val_loss"] == pytest.approx(theirs[-1]["val_loss"], abs=0.25)
    assert ours[-1]["val_accuracy"] == pytest.approx(theirs[-1]["val_accuracy"], abs=0.1)
    assert ours[0]["train_loss"] == pytest.approx(theirs[0]["train_loss"], rel=0.25)

    # Same metric definitions: the seed-style evaluation of hpoc's final model (through the
    # DataLoader path) gives hpoc's reported numbers.
    seed.model = trainer.strategy.unwrap()
    check = seed.validation_epoch()
    assert check["val_loss"] == pytest.approx(ours[-1]["val_loss"], rel=1e-4)
    assert check["val_accuracy"] == pytest.approx(ours[-1]["val_accuracy"], abs=1e-9)


def test_a_seeded_default_path_repeats_exactly_and_another_seed_differs(fashion, tmp_path):
    _root, plan = fashion

    def learned(history):
        return [{k: v for k, v in r.items() if k != "perf"} for r in history]

    a = learned(run_ours(plan, tmp_path / "a", seed=3)[1])
    b = learned(run_ours(plan, tmp_path / "b", seed=3)[1])
    c = learned(run_ours(plan, tmp_path / "c", seed=4)[1])
    assert a == b
    assert a != c


def test_each_report_says_how_fast_the_epoch_trained(fashion, tmp_path):
    _root, plan = fashion
    trainer, history = run_ours(plan, tmp_path / "p")
    n_train = trainer.train_dataloader.per_rank
    assert [r["epoch"] for r in history] == [1, 2, 3]
    ends = []
    for r in history:
        perf = r["perf"]
        assert perf["train_images"] == n_train
        assert perf["train_start"] <= perf["train_end"]
        assert perf["images_per_s"] == pytest.approx(n_train / perf["train_s"], rel=1e-2)
        assert "max_memory_mb" not in perf  # CPU: no CUDA memory to report
        ends.append(perf["train_end"])
    assert ends == sorted(ends)


def test_training_compile_runs_the_default_path_through_torch_compile(tmp_path):
    """`training.compile = true` (CUDA graphs on GPU; inductor on CPU here) learns what eager
    does; dropout draws differ under compile, so the numbers are close, not equal."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hpoc.runtime import pipeline
    from runtime_plans import make_plan, write_toy

    workdir = write_toy(tmp_path / "toy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for compiled in (False, True):
            plan = make_plan(workdir, tmp_path / "r", training={"compile": compiled})
            trainer = pipeline.import_target("toy:ToyTrainer", str(workdir))()
            history = trainer.run_local({"epochs": 3, "batch_size": 32, "lr": 0.01, "hidden": 16},
                                        pipeline.load_data(plan), directory=tmp_path / f"c{compiled}",
                                        plan=plan, seed=1)
            runs[compiled] = [r["val_loss"] for r in history]
            assert hasattr(trainer.model, "_orig_mod") == compiled
    finally:
        torch.set_num_threads(threads)
    assert runs[True][-1] < runs[True][0]
    assert runs[True] == pytest.approx(runs[False], rel=0.05)


def test_dataloader_workers_follow_the_trials_cpus_on_gpu_only():
    from hpoc.runtime.strategy import Strategy, loader_workers

    assert loader_workers(torch.device("cuda", 0), 5) == 4   # the seed's 5 CPUs per worker
    assert loader_workers(torch.device("cuda", 0), 1) == 0
    assert loader_workers(torch.device("cuda", 0), 32) == 8
    assert loader_workers(torch.device("cpu"), 16) == 0
    loader = Strategy(device="cpu").dataloader(list(range(10)), 4)
    assert loader.loader.num_workers == 0
