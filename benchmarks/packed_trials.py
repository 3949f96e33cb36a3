"""Packed trials: several one-worker trials sharing one GPU, aggregate images/s against the
seed-style loop alone on the same GPU.

    python benchmarks/packed_trials.py [--pack 2 4 8] [--epochs N] [--compile] [--out DIR]

For each packing level K, an hpoc study of K trials (the Fashion-MNIST example's
`FashionTrainer`, ResNet18, batch 128, learning rates from a seeded random search) runs
with `resources.gpus_per_worker = 1/K` and `max_concurrent = K`, so Tune starts all K at
once on the one GPU. Each epoch's report carries its training window and images (`perf`);
the aggregate rate is the images of every trial's epochs after the first, divided by the
wall time from the earliest start to the latest end of those epochs. Each trial's peak
CUDA memory (`perf.max_memory_mb`) is reported too. The seed loop's rate is measured in a
separate process on the same GPU in the same run; `ratio` = aggregate / seed (for the
largest K, and per K in `levels`).

Without a GPU the benchmark says so and exits 0 (`--cpu-demo` runs a tiny CPU variant that
only shows the machinery works; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _data import write_fashion  # noqa: E402
from _ours import emit, machine, run_hpoc, study_text  # noqa: E402

HERE = Path(__file__).resolve().parent


def aggregate(trials: list[list[dict[str, Any]]], skip_epochs: int = 1) -> dict[str, Any]:
    """Aggregate images/s of concurrent trials from their per-epoch `perf` windows."""
    windows = [r["perf"] for reports in trials for r in reports
               if r.get("epoch", 0) > skip_epochs and "perf" in r]
    if not windows:
        raise SystemExit("no epochs to count: run more epochs than --skip-epochs")
    start = min(w["train_start"] for w in windows)
    end = max(w["train_end"] for w in windows)
    images = sum(w["train_images"] for w in windows)
    per_trial = [max((r["perf"].get("max_memory_mb", 0.0) for r in reports if "perf" in r), default=0.0)
                 for reports in trials]
    rates = [sum(r["perf"]["images_per_s"] for r in reports if r.get("epoch", 0) > skip_epochs) /
             max(1, sum(1 for r in reports if r.get("epoch", 0) > skip_epochs)) for reports in trials]
    return {"images_per_s": round(images / max(end - start, 1e-9), 1), "window_s": round(end - start, 2),
            "images": images, "trial_images_per_s": [round(r, 1) for r in rates],
            "max_memory_mb_per_trial": per_trial}


def seed_rate(root: Path, steps: int, batch: int) -> dict[str, Any]:
    """The seed loop alone on the device, in its own process (its CUDA context gone after)."""
    done = subprocess.run([sys.executable, str(HERE / "_seed_loop.py"), str(root), str(steps), str(batch)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"seed loop failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", type=int, nargs="+", default=[4], help="trials per GPU (default 4)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial; the first is not counted")
    p.add_argument("--images", type=int, default=60000, help="generated training-set size")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed-steps", type=int, default=150, help="batches per timed seed-loop run")
    p.add_argument("--compile", action="store_true", help="plan training.compile = true")
    p.add_argument("--cpu-demo", action="store_true", help="tiny CPU run: machinery only, figures meaningless")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="append the JSON line to DIR/packed_trials.jsonl")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not args.cpu_demo:
        emit({"benchmark": "packed_trials", "skipped": True,
              "reason": "no CUDA device: packing trials on one GPU needs a GPU (run with --cpu-demo "
                        "to exercise the machinery on CPU; its figures mean nothing)",
              "machine": machine()}, args.out)
        return 0
    if not gpu:  # the demo: 2 one-CPU trials, a few hundred images
        args.pack, args.images, args.epochs, args.seed_steps = [2], min(args.images, 640), 2, 3

    levels: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hpoc-packed-") as tmp:
        root = write_fashion(Path(args.data) if args.data else Path(tmp) / "data", n_train=args.images)
        seed = seed_rate(root, args.seed_steps, args.batch)
        print(f"seed loop alone: {seed['images_per_s']:.1f} images/s", flush=True)
        for k in args.pack:
            text = study_text(root, name=f"packed{k}", epochs=args.epochs, batch_size=args.batch,
                              learning_rate="loguniform(1e-4, 1e-3)", num_samples=k, max_concurrent=k,
                              gpus_per_worker=round(1 / k, 6) if gpu else 0,
                              cpus_per_worker=max(1, (os.cpu_count() or k) // k) if gpu else 1,
                              compile=args.compile, seed=None, storage=Path(tmp) / f"results{k}")
            wall, trials, _summary = run_hpoc(text, num_cpus=None if gpu else 2)
            got = aggregate(trials)
            got.update(wall_s=round(wall, 1), ratio=round(got["images_per_s"] / seed["images_per_s"], 2))
            levels[str(k)] = got
            print(f"{k} trial(s) per {'GPU' if gpu else 'CPU demo'}: {got['images_per_s']:.1f} images/s "
                  f"({got['ratio']}x the seed loop), memory per trial {got['max_memory_mb_per_trial']} MB",
                  flush=True)

    top = levels[str(max(args.pack))]
    result = {"benchmark": "packed_trials", "device": "cuda" if gpu else "cpu (demo: not meaningful)",
              "batch_size": args.batch, "epochs": args.epochs, "compile": args.compile,
              "seed_images_per_s": round(seed["images_per_s"], 1), "seed": seed,
              "packed_images_per_s": top["images_per_s"], "ratio": top["ratio"], "levels": levels,
              "machine": machine()}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
