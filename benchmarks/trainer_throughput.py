"""Training images/s: hpoc's default train path against the seed-style loop, side by side.

    python benchmarks/trainer_throughput.py [--images N] [--reps N] [--compile] [--out DIR]

Both train the tutorial's ResNet18 (1-channel 7x7 stride-1 stem) with Adam at batch 128 on
generated Fashion-MNIST-format files, on the same device (CUDA if present):

- ours: the Fashion-MNIST example study compiled by hpoc, its getter/splitter run by the
  runtime's pipeline, the real `FashionTrainer` with the plan's strategy (default path:
  data resident on the device, normalised there, index-permutation batches, bf16 autocast
  and channels-last on capable GPUs, fused Adam, no per-step host sync);
- seed: `benchmarks/_seed_loop.py` (torchvision dataset + ToTensor/Normalize, DataLoader
  with num_workers=0, fp32, `loss.detach().cpu().numpy()` every step).

Epochs alternate between the two (seed, ours, ours, seed, ...); the first epoch of each is a
warm-up and not counted. Prints one line per epoch and a final JSON line with the medians
and `ratio` = ours / seed training images/s.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _data import write_fashion  # noqa: E402
from _ours import bound_trainer, compile_plan, emit, machine, median, study_text  # noqa: E402
from _seed_loop import SeedLoop, pick_device, seed_splits, sync  # noqa: E402


def total_for(train_images: int) -> int:
    """A training-set size whose 90% split is exactly `train_images` (whole batches)."""
    n = math.ceil(train_images / 0.9)
    while int(round(0.9 * n)) > train_images:
        n -= 1
    while int(round(0.9 * n)) < train_images:
        n += 1
    return n


class Ours:
    """The default path, driven epoch by epoch (train_epoch/validation_epoch of train())."""

    def __init__(self, root: Path, device: torch.device, args: argparse.Namespace, work: Path) -> None:
        from hpoc.runtime.trainer import seed_everything

        plan = compile_plan(study_text(root, batch_size=args.batch, compile=args.compile,
                                       precision=args.precision, storage=work / "results"))
        config = {"batch_size": args.batch, "learning_rate": args.lr, "epochs": 10**6}
        self.trainer = bound_trainer(plan, config, work / "ours")
        if self.trainer.strategy.device() != device:
            raise SystemExit(f"hpoc picked {self.trainer.strategy.device()}, the seed loop {device}")
        seed_everything(0)
        self.trainer.strategy.init()
        self.trainer.setup()
        self.epoch = 0
        self.precision = self.trainer.strategy.precision
        self.channels_last = self.trainer.strategy.channels_last

    def train_epoch(self) -> dict[str, float]:
        t = self.trainer
        t.set_epoch(self.epoch)
        start = time.perf_counter()
        metrics = t.train_epoch(self.epoch)  # ends with one host read of the epoch's loss
        sync(t.strategy.device())
        seconds = time.perf_counter() - start
        self.epoch += 1
        return {"train_loss": metrics["train_loss"], "seconds": seconds,
                "images": t.train_dataloader.per_rank}

    def validation_epoch(self) -> dict[str, float]:
        start = time.perf_counter()
        metrics = self.trainer.validation_epoch(self.epoch)
        sync(self.trainer.strategy.device())
        return {**metrics, "seconds": time.perf_counter() - start}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cuda or cpu")
    p.add_argument("--images", type=int, default=None,
                   help="training images per epoch (default 53,760 on GPU, 512 on CPU)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reps", type=int, default=None, help="timed epochs per loop (default 5 GPU, 3 CPU)")
    p.add_argument("--compile", action="store_true", help="plan training.compile = true")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads, same for both loops (default: 1 on CPU, where "
                        "two threads on a busy 2-core machine thrash; torch's default on GPU)")
    p.add_argument("--data", default=None, help="directory for the generated data (default: temporary)")
    p.add_argument("--out", default=None, help="append the JSON line to DIR/trainer_throughput.jsonl")
    args = p.parse_args()

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    if args.threads or not gpu:
        torch.set_num_threads(args.threads or 1)
    images = args.images or (420 * args.batch if gpu else 4 * args.batch)
    reps = args.reps or (5 if gpu else 3)
    with tempfile.TemporaryDirectory(prefix="hpoc-bench-") as tmp:
        work = Path(tmp)
        root = write_fashion(Path(args.data) if args.data else work / "data", n_train=total_for(images))
        train_set, val_set = seed_splits(root)
        seed = SeedLoop(train_set, val_set, device, batch_size=args.batch, lr=args.lr)
        ours = Ours(root, device, args, work)
        runs: dict[str, list[dict[str, float]]] = {"seed": [], "ours": []}
        memory: dict[str, float] = {}
        loops = {"seed": seed, "ours": ours}
        for rep in range(reps + 1):
            order = ("seed", "ours") if rep % 2 == 0 else ("ours", "seed")
            for name in order:
                if gpu:
                    torch.cuda.reset_peak_memory_stats(device)
                train = loops[name].train_epoch()
                val = loops[name].validation_epoch()
                if gpu:
                    memory[name] = max(memory.get(name, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
                run = {"images_per_s": train["images"] / train["seconds"], "train_s": train["seconds"],
                       "val_s": val["seconds"], "images": train["images"], "train_loss": train["train_loss"],
                       "val_loss": val["val_loss"], "val_accuracy": val["val_accuracy"]}
                tag = "warm-up" if rep == 0 else f"rep {rep}"
                print(f"{name:5} {tag:8} {run['images_per_s']:10.1f} images/s  train {train['seconds']:.2f} s"
                      f"  val {val['seconds']:.2f} s  loss {train['train_loss']:.4f}", flush=True)
                if rep > 0:
                    runs[name].append(run)

    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    def epoch_rate(name: str) -> float:
        return median([r["images"] / (r["train_s"] + r["val_s"]) for r in runs[name]])

    result = {
        "benchmark": "trainer_throughput", "device": str(device), "batch_size": args.batch,
        "train_images": images, "reps": reps, "compile": args.compile,
        "precision": ours.precision, "channels_last": ours.channels_last,
        "seed_images_per_s": round(med("seed", "images_per_s"), 2),
        "ours_images_per_s": round(med("ours", "images_per_s"), 2),
        "ratio": round(med("ours", "images_per_s") / med("seed", "images_per_s"), 3),
        "epoch_ratio": round(epoch_rate("ours") / epoch_rate("seed"), 3),
        "seed_final_val_loss": round(runs["seed"][-1]["val_loss"], 4),
        "ours_final_val_loss": round(runs["ours"][-1]["val_loss"], 4),
        "runs": {k: [round(r["images_per_s"], 2) for r in v] for k, v in runs.items()},
        "machine": machine(),
    }
    if memory:
        result["max_memory_mb"] = {k: round(v, 1) for k, v in memory.items()}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
