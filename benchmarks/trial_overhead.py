"""Seconds of overhead per trial: hpoc's runtime against a Tune trial that launches a
TorchTrainer per trial, for one-worker and multi-worker trials.

    python benchmarks/trial_overhead.py [--trials N] [--reps N] [--cases ...] [--out DIR]

Every case runs the same short trials one after another (max_concurrent = 1): an MLP on
in-memory data, a few epochs, a checkpoint per epoch. Each epoch records when its training
started and ended. The overhead of a trial is the time from one trial's first epoch start
to the next one's, minus the training time of the first (process and group start-up,
imports, data, model, reporting, checkpoints, Tune's scheduling); the figure per case is
the median over consecutive trials and repetitions.

Cases:
- naive-1w / naive-2w: a Tune function trainable that builds a Ray Train V2 `TorchTrainer`
  per trial (1 or 2 workers; `prepare_model`/`prepare_data_loader`, a DataLoader loop with
  a host sync per step, `ray.train.report` with a checkpoint each epoch), as itwinai does;
- hpoc-1w: hpoc's one-worker trials (the loop runs in the reused Tune trial process);
- hpoc-2w: hpoc's multi-worker default (a Train V2 run per trial, DDP);
- hpoc-2w-warm: `resources.reuse_workers = true` (a warm worker group per trial slot).

Ray gets 3 logical CPUs so that a 2-worker trial (2 x 1 CPU) fits beside its 0.01-CPU
driver; every worker uses one torch thread. Final JSON line: `ratio` (naive-1w / hpoc-1w)
and `ratio_2w_warm` (naive-2w / hpoc-2w-warm), with every case's figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _ours import emit, machine, median  # noqa: E402
from _toy import study_text, write_study  # noqa: E402

CASES = ("naive-1w", "hpoc-1w", "naive-2w", "hpoc-2w", "hpoc-2w-warm")
RAY_CPUS = 3


# ---------------------------------------------------------------- the naive baseline


def naive_loop(config: dict[str, Any]) -> None:
    """A Ray Train worker: the itwinai-style loop on the toy data."""
    import shutil

    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from bench_toy import make_data, make_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = make_data(config["n"])
    k = int(len(y) * 0.9)
    train = DataLoader(TensorDataset(x[:k], y[:k]), batch_size=128, shuffle=True)
    val = DataLoader(TensorDataset(x[k:], y[k:]), batch_size=128)
    train, val = ray.train.torch.prepare_data_loader(train), ray.train.torch.prepare_data_loader(val)
    model = ray.train.torch.prepare_model(make_model())
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_fn = torch.nn.CrossEntropyLoss()
    world = ray.train.get_context().get_world_size()
    for epoch in range(config["epochs"]):
        if world > 1:
            train.sampler.set_epoch(epoch)
        model.train()
        start = time.time()
        losses = []
        for xb, yb in train:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().cpu().numpy())
        end = time.time()
        model.eval()
        with torch.no_grad():
            val_losses = [loss_fn(model(xb), yb).item() for xb, yb in val]
        tmp = tempfile.mkdtemp()
        if ray.train.get_context().get_world_rank() == 0:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "epoch": epoch}, os.path.join(tmp, "state.pt"))
        metrics = {"val_loss": sum(val_losses) / len(val_losses), "work_start": start, "work_end": end}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


def naive_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: a TorchTrainer per trial (Ray Train V2 inside Tune)."""
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        naive_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=config["workers"], resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"run-{tune.get_context().get_trial_id()}",
                             storage_path=config["storage"], callbacks=[TuneReportCallback()]))
    trainer.fit()


def run_naive(workdir: Path, storage: Path, args: argparse.Namespace, workers: int) -> list[list[dict]]:
    from ray import tune

    from hpoc.runtime import session

    s = session.start_local(workdir=str(workdir), num_cpus=RAY_CPUS)
    try:
        space = {"lr": tune.loguniform(1e-4, 1e-2), "n": args.n, "epochs": args.epochs,
                 "workers": workers, "storage": str(storage / "train")}
        tuner = tune.Tuner(
            tune.with_resources(naive_trial, {"CPU": 0.01}), param_space=space,
            tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=1,
                                        metric="val_loss", mode="min"),
            run_config=tune.RunConfig(name="naive", storage_path=str(storage), verbose=0))
        grid = tuner.fit()
        return [_reports(Path(r.path)) for r in grid]
    finally:
        s.close()


# ---------------------------------------------------------------- hpoc


def run_hpoc(workdir: Path, storage: Path, args: argparse.Namespace, workers: int, warm: bool) -> list[list[dict]]:
    from hpoc.compiler import compile_source
    from hpoc.plan import content_hash
    from hpoc.runtime.study import RunOptions, run_study

    text = study_text(n=args.n, epochs=args.epochs, trials=args.trials, workers=workers,
                      cpus_per_worker=1, reuse_workers=warm, storage=storage, name="hpoc")
    plan = compile_source(text, "study.hpo", workdir=str(workdir))
    plan["content_hash"] = content_hash(plan)
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=RAY_CPUS, progress=progress, out=io.StringIO()))
    if code != 0:
        raise SystemExit(f"hpoc study failed ({code}):\n{progress.getvalue()}")
    summary = json.loads((storage / "hpoc" / "summary.json").read_text())
    return [_reports(Path(t["path"])) for t in summary["trials"]]


# ---------------------------------------------------------------- measuring


def _reports(trial_dir: Path) -> list[dict]:
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _work(report: dict) -> tuple[float, float]:
    if "perf" in report:
        return report["perf"]["train_start"], report["perf"]["train_end"]
    return report["work_start"], report["work_end"]


def overheads(trials: list[list[dict]]) -> dict[str, Any]:
    """Per-trial overhead from consecutive trials' first-epoch start times."""
    spans = []
    for reports in trials:
        works = [_work(r) for r in reports]
        spans.append((works[0][0], sum(e - s for s, e in works)))
    spans.sort()
    gaps = [spans[i + 1][0] - spans[i][0] - spans[i][1] for i in range(len(spans) - 1)]
    return {"overheads_s": [round(g, 3) for g in gaps], "work_s": round(median([w for _, w in spans]), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5, help="trials per case (default 5)")
    p.add_argument("--reps", type=int, default=1, help="repetitions of every case (default 1)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=8192, help="toy data points (default 8192)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--out", default=None, help="append the JSON line to DIR/trial_overhead.jsonl")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    found: dict[str, dict[str, Any]] = {c: {"overheads_s": [], "work_s": [], "wall_s": []} for c in args.cases}
    with tempfile.TemporaryDirectory(prefix="hpoc-overhead-") as tmp:
        workdir = write_study(Path(tmp) / "study")
        sys.path.insert(0, str(workdir))
        for rep in range(args.reps):
            for case in args.cases:
                storage = Path(tmp) / f"{case}-{rep}"
                started = time.monotonic()
                if case.startswith("naive"):
                    trials = run_naive(workdir, storage, args, 2 if case.endswith("2w") else 1)
                else:
                    trials = run_hpoc(workdir, storage, args, 1 if case == "hpoc-1w" else 2,
                                      warm=case.endswith("warm"))
                wall = time.monotonic() - started
                got = overheads(trials)
                found[case]["overheads_s"] += got["overheads_s"]
                found[case]["work_s"].append(got["work_s"])
                found[case]["wall_s"].append(round(wall, 2))
                print(f"{case:13} rep {rep}: overhead per trial {median(got['overheads_s']):7.2f} s "
                      f"(each {got['overheads_s']}), work {got['work_s']:.2f} s, wall {wall:.1f} s",
                      flush=True)

    per_trial = {c: round(median(v["overheads_s"]), 3) for c, v in found.items()}
    result: dict[str, Any] = {"benchmark": "trial_overhead", "trials": args.trials, "reps": args.reps,
                              "epochs": args.epochs, "ray_cpus": RAY_CPUS,
                              "overhead_per_trial_s": per_trial, "cases": found, "machine": machine()}
    if "naive-1w" in per_trial and "hpoc-1w" in per_trial:
        result["ratio"] = round(per_trial["naive-1w"] / per_trial["hpoc-1w"], 2)
    if "naive-2w" in per_trial and "hpoc-2w-warm" in per_trial:
        result["ratio_2w_warm"] = round(per_trial["naive-2w"] / per_trial["hpoc-2w-warm"], 2)
    if "hpoc-2w" in per_trial and "hpoc-2w-warm" in per_trial:
        result["ratio_2w_warm_vs_hpoc_2w"] = round(per_trial["hpoc-2w"] / per_trial["hpoc-2w-warm"], 2)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
