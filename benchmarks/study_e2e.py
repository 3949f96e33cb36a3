"""A reduced seed study end to end: hpoc against a seed-style implementation, wall time.

    python benchmarks/study_e2e.py [--trials 8] [--epochs 3] [--images N] [--pack K] [--out DIR]

Both run the same study on the same machine, one after the other, each starting its own
local Ray: `--trials` Fashion-MNIST ResNet18 trials (batch_size from {32, 64, 128},
learning_rate log-uniform in [1e-5, 1e-3]; the configurations are drawn once and given to
both sides in the same order as points to evaluate - hpoc's `search optuna`, Tune's basic
variant generator), ASHA (max_t = epochs, grace period 1, reduction factor 2), a checkpoint
each epoch, on generated Fashion-MNIST-format files.

- seed: what the itwinai tutorial does - a Tune function trainable that builds a Ray
  Train `TorchTrainer` (1 worker, 1 GPU) per trial, torchvision's dataset with
  ToTensor/Normalize through a DataLoader (num_workers=0, `prepare_data_loader`), fp32,
  `loss.detach().cpu().numpy()` every step, the last validation batch's loss reported as
  `loss` (as the tutorial does);
- hpoc: the example study compiled and run by hpoc with one-worker trials, `--pack` of them
  per GPU (`gpus_per_worker = 1/pack`), the default train path.

On CPU (no GPU) both sides run `--pack` one-CPU trials at a time (default 1) on a
scaled-down study; the figure only shows the machinery and the CPU ratio. (The seed side's
Ray gets one spare logical CPU: on the 2-core test machine a finished Train run's placement
group still held its CPU when the next trial's run started, which then hit Train's 60 s
worker-group start timeout over and over; with trials queued inside Train - several at a
time - the same stall happened.) Final JSON line: `seed_wall_s`,
`hpoc_wall_s`, `ratio` = seed / hpoc, and each side's best trial.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _data import write_fashion  # noqa: E402
from _ours import EXAMPLE, emit, machine, run_hpoc, study_text  # noqa: E402


def seed_loop(config: dict[str, Any]) -> None:
    """The tutorial's train() in a Ray Train worker (see _seed_loop.py for the same loop
    without Ray)."""
    import shutil

    import numpy as np
    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DataLoader

    from _seed_loop import resnet18_1ch

    torch.set_num_threads(config["threads"])
    train_set, val_set = config["data"]
    model = ray.train.torch.prepare_model(resnet18_1ch())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    loss_fn = torch.nn.CrossEntropyLoss()
    train = ray.train.torch.prepare_data_loader(
        DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, num_workers=0))
    val = ray.train.torch.prepare_data_loader(
        DataLoader(val_set, batch_size=config["batch_size"], num_workers=0))
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        model.train()
        train_losses, val_losses = [], []
        for images, labels in train:
            outputs = model(images)
            train_loss = loss_fn(outputs, labels)
            optimizer.zero_grad()
            train_loss.backward()
            optimizer.step()
            train_losses.append(train_loss.detach().cpu().numpy())
        model.eval()
        for images, labels in val:
            with torch.no_grad():
                val_loss = loss_fn(model(images), labels)
            val_losses.append(val_loss.detach().cpu().numpy())
        tmp = tempfile.mkdtemp()
        if ray.train.get_context().get_world_rank() == 0:
            torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       os.path.join(tmp, "state.pt"))
        ray.train.report({"loss": val_loss.item(), "train_loss": float(np.mean(train_losses)),
                          "val_loss": float(np.mean(val_losses))},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def seed_trial(config: dict[str, Any], data: Any, storage: str, gpu: bool, cpus: int,
               exclusive: bool = True) -> None:
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    per_worker = {"CPU": cpus, "GPU": 1} if gpu else {"CPU": cpus}
    if exclusive:  # one trial at a time: any worker group left is stale
        _remove_worker_groups(set(_worker_groups()))
    before = _worker_groups()
    try:
        TorchTrainer(
            seed_loop, train_loop_config={**config, "data": data, "threads": cpus},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=gpu, resources_per_worker=per_worker),
            run_config=RunConfig(name=f"run-{tune.get_context().get_trial_id()}", storage_path=storage,
                                 callbacks=[TuneReportCallback()]),
        ).fit()
    finally:
        _remove_worker_groups(set(_worker_groups()) - set(before))


# Not the seed's doing, but needed for it to finish here: when ASHA stops a trial, Tune ends
# its trainable inside `fit()` and the Train run's worker placement group is left to a
# cleaner that needs Ray's state API (the dashboard), which the GPU image and this machine
# lack - so the group kept its GPU/CPUs and the next trial's Train run never started. With
# one seed trial at a time, every worker group that exists when a trial starts is stale.
def _worker_groups() -> list[str]:
    from ray.util import placement_group_table

    return [pg for pg, info in placement_group_table().items() if info["state"] == "CREATED"
            and any(b.get("GPU") or b.get("CPU", 0) >= 1 for b in info["bundles"].values())]


def _remove_worker_groups(ids: set[str]) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    for pg in ids:
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg))))


def configs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The trials' configurations, drawn once and given to both sides in the same order."""
    import random

    rng = random.Random(seed)
    return [{"batch_size": rng.choice([32, 64, 128]),
             "learning_rate": round(10 ** rng.uniform(-5, -3), 8)} for _ in range(n)]


def run_seed(root: Path, storage: Path, args: argparse.Namespace, gpu: bool) -> tuple[float, dict]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from _seed_loop import seed_splits
    from hpoc.runtime import session

    started = time.monotonic()
    # CPU: one spare logical CPU - a finished Train run's placement group is released late,
    # and without room the next run's workers never start (seen on the 2-core machine).
    s = session.start_local(workdir=str(Path(__file__).resolve().parent),
                            num_cpus=None if gpu else args.pack + 2)
    try:
        data = seed_splits(root)
        cpus = max(1, (os.cpu_count() or 4) // 4) if gpu else 1
        trainable = tune.with_resources(
            tune.with_parameters(seed_trial, data=data, storage=str(storage / "train"), gpu=gpu, cpus=cpus,
                                 exclusive=gpu or args.pack == 1),
            {"CPU": 0.01})
        space = {"batch_size": tune.choice([32, 64, 128]), "learning_rate": tune.loguniform(1e-5, 1e-3),
                 "epochs": args.epochs}
        tuner = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
            num_samples=args.trials, metric="loss", mode="min",
            # One Train run per GPU at a time, as the seed gets (trials queued inside Train
            # would hit its 60 s worker-group start timeout); Tune ignores
            # max_concurrent_trials with this search algorithm, which takes it itself.
            search_alg=BasicVariantGenerator(points_to_evaluate=configs(args.trials), random_state=0,
                                             max_concurrent=1 if gpu else args.pack),
            scheduler=ASHAScheduler(max_t=args.epochs, grace_period=1, reduction_factor=2, brackets=1)),
            run_config=tune.RunConfig(name="seed", storage_path=str(storage), verbose=0))
        grid = tuner.fit()
        wall = time.monotonic() - started
        best = grid.get_best_result()
        epochs = sum(int((r.metrics or {}).get("training_iteration") or 0) for r in grid)
        return wall, {"best_loss": round(best.metrics["loss"], 4), "best_val_loss": round(best.metrics["val_loss"], 4),
                      "best_config": {k: best.config[k] for k in ("batch_size", "learning_rate")},
                      "epochs_run": epochs, "errors": sum(1 for r in grid if r.error),
                      "configs": sorted([r.config["batch_size"], r.config["learning_rate"]] for r in grid)}
    finally:
        s.close()


def run_ours(root: Path, storage: Path, args: argparse.Namespace, gpu: bool) -> tuple[float, dict]:
    scheduler = f"scheduler asha {{ max_t = {args.epochs}, grace_period = 1, reduction_factor = 2, brackets = 1 }}"
    cpus = max(1, (os.cpu_count() or args.pack) // args.pack) if gpu else 1
    points = ", ".join(f"{{ batch_size = {c['batch_size']}, learning_rate = {c['learning_rate']} }}"
                       for c in configs(args.trials))
    text = study_text(root, name="hpoc", epochs=args.epochs, batch_size="choice(32, 64, 128)",
                      learning_rate="loguniform(1e-5, 1e-3)", num_samples=args.trials,
                      search=f"search optuna {{ seed = 0, points_to_evaluate = [{points}] }}",
                      max_concurrent=args.pack, gpus_per_worker=round(1 / args.pack, 6) if gpu else 0,
                      cpus_per_worker=cpus, compile=args.compile, seed=None, scheduler=scheduler,
                      storage=storage)
    wall, trials, summary = run_hpoc(text, EXAMPLE, num_cpus=None if gpu else args.pack + 1)
    best = summary["best"]
    return wall, {"best_val_loss": round(best["metrics"]["val_loss"], 4),
                  "best_config": {k: best["config"][k] for k in ("batch_size", "learning_rate")},
                  "epochs_run": sum(len(t) for t in trials),
                  "configs": sorted([t["config"]["batch_size"], t["config"]["learning_rate"]]
                                    for t in summary["trials"]),
                  "max_memory_mb_per_trial": [max((r["perf"].get("max_memory_mb", 0) for r in t), default=0)
                                              for t in trials]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=None, help="default 8 on GPU, 4 on CPU")
    p.add_argument("--epochs", type=int, default=None, help="default 3 on GPU, 2 on CPU")
    p.add_argument("--images", type=int, default=None,
                   help="generated training-set size (default 20000 on GPU, 360 on CPU)")
    p.add_argument("--pack", type=int, default=None,
                   help="hpoc trials per GPU (default 4); on CPU, trials at a time on both sides (default 1)")
    p.add_argument("--compile", action="store_true", help="hpoc side: training.compile = true")
    p.add_argument("--only", choices=["seed", "hpoc"], default=None, help="run one side only")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="append the JSON line to DIR/study_e2e.jsonl")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    gpu = torch.cuda.is_available()
    args.trials = args.trials or (8 if gpu else 4)
    args.epochs = args.epochs or (3 if gpu else 2)
    args.images = args.images or (20000 if gpu else 360)
    args.pack = args.pack or (4 if gpu else 1)
    if not gpu:
        torch.set_num_threads(1)
    result: dict[str, Any] = {"benchmark": "study_e2e", "device": "cuda" if gpu else "cpu",
                              "trials": args.trials, "epochs": args.epochs, "images": args.images,
                              "pack": args.pack, "compile": args.compile}
    with tempfile.TemporaryDirectory(prefix="hpoc-e2e-") as tmp:
        root = write_fashion(Path(args.data) if args.data else Path(tmp) / "data", n_train=args.images)
        for side, run in (("seed", run_seed), ("hpoc", run_ours)):
            if args.only and side != args.only:
                continue
            wall, info = run(root, Path(tmp) / side, args, gpu)
            result[f"{side}_wall_s"] = round(wall, 1)
            result[side] = info
            print(f"{side}: {wall:.1f} s  {json.dumps(info)}", flush=True)
    if "seed_wall_s" in result and "hpoc_wall_s" in result:
        result["ratio"] = round(result["seed_wall_s"] / result["hpoc_wall_s"], 2)
        result["same_configs"] = result["seed"]["configs"] == result["hpoc"]["configs"]
    result["machine"] = machine()
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
