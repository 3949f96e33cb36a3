"""What `log_freq = batch` costs the training loop, against `log_freq = epoch`, in one run.

    python benchmarks/batch_logging.py [--reps N] [--epochs N] [--batch N] [--out DIR]

The digits example's trainer (a small CNN: steps of about a millisecond on a CPU, where a
per-step cost shows most) trains epochs of hpoc's default loop, bound as in a one-worker
trial, under four arms, each with its own trainer and logger files in a temporary directory:
- off: no logger;
- epoch: `logger mlflow` (file store) with `log_freq = epoch`, the baseline;
- mlflow_batch: the same with `log_freq = batch` (`train_loss_batch` every step);
- tb_batch: `logger tensorboard` with `log_freq = batch`.
Reps of `--epochs` epochs alternate between the arms (order reversed every rep); the first
of each is a warm-up. Final JSON line: per arm the median `train_s` of an epoch and
`us_per_step`, `ratio_mlflow` / `ratio_tb` = batch arm / epoch arm seconds, and
`call_us_mlflow` / `call_us_tb`: the median microseconds of one `log_batch_metric` call,
timed alone over 5,000 calls (less noisy than the epochs on a loaded machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _ours import ROOT, bound_trainer, emit, machine, median  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
ARMS = {"off": "", "epoch": "logger mlflow { log_freq = epoch }",
        "mlflow_batch": "logger mlflow { log_freq = batch }",
        "tb_batch": "logger tensorboard { log_freq = batch }"}


def plan_for(loggers: str, storage: Path, batch: int) -> dict:
    from hpoc.compiler import compile_source
    from hpoc.plan import content_hash

    text = f"""
study "bench-logging"
pipeline {{
  getter   = data:DigitsGetter
  splitter = data:DigitsSplitter(train_proportion = 0.8, validation_proportion = 0.2)
  trainer  = trainer:DigitsTrainer
}}
space {{ lr = 0.01, batch_size = {batch}, hidden = 16, epochs = 1000 }}
objective maximize val_accuracy
resources {{ workers = 1, cpus_per_worker = 1, gpus_per_worker = 0 }}
training {{ seed = 0 }}
storage {{ path = "{storage}", name = "bench-logging" }}
{loggers}
"""
    plan = compile_source(text, "study.hpo", workdir=str(DIGITS))
    plan["content_hash"] = content_hash(plan)
    return plan


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="timed epochs per arm")
    p.add_argument("--epochs", type=int, default=5, help="epochs per rep")
    p.add_argument("--batch", type=int, default=16, help="batch size (small: many steps)")
    p.add_argument("--out", default=None, help="append the JSON line to DIR/batch_logging.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)  # a busy 2-core machine thrashes with two
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from hpoc.runtime import pipeline

    with tempfile.TemporaryDirectory(prefix="hpoc-bench-") as tmp:
        data = None
        trainers = {}
        for arm, loggers in ARMS.items():
            plan = plan_for(loggers, Path(tmp) / arm, args.batch)
            data = data if data is not None else pipeline.load_data(plan)
            t = bound_trainer(plan, {"lr": 0.01, "batch_size": args.batch, "hidden": 16, "epochs": 1000},
                              Path(tmp) / arm / "trial", data=data)
            t.strategy.init()
            t.setup()
            trainers[arm] = t
        steps = len(trainers["off"].train_dataloader)
        seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for rep in range(args.reps + 1):
            order = list(ARMS) if rep % 2 == 0 else list(reversed(ARMS))
            for arm in order:
                t = trainers[arm]
                start = time.perf_counter()
                for e in range(rep * args.epochs, (rep + 1) * args.epochs):
                    t.set_epoch(e)
                    t.train_epoch(e)
                    t.tracker.log_metrics({"train_loss": 0.0}, step=e)  # the epoch's own write
                took = (time.perf_counter() - start) / args.epochs
                print(f"{arm:13} {'warm-up' if rep == 0 else f'rep {rep}':8} {took:.3f} s an epoch", flush=True)
                if rep:
                    seconds[arm].append(took)
        calls = {}
        for arm in ("mlflow_batch", "tb_batch"):
            tracker, taken = trainers[arm].tracker, []
            for _ in range(5):
                start = time.perf_counter()
                for i in range(5000):
                    tracker.log_batch_metric("call_bench", 0.5, i)
                taken.append((time.perf_counter() - start) / 5000 * 1e6)
            calls[arm] = median(taken)
        for t in trainers.values():
            t.close()

    med = {arm: median(v) for arm, v in seconds.items()}
    result = {"benchmark": "batch_logging", "batch_size": args.batch, "steps_per_epoch": steps,
              "reps": args.reps, "epochs_per_rep": args.epochs, **{f"{arm}_train_s": round(s, 4) for arm, s in med.items()},
              **{f"{arm}_us_per_step": round(s / steps * 1e6, 1) for arm, s in med.items()},
              "ratio_mlflow": round(med["mlflow_batch"] / med["epoch"], 3),
              "ratio_tb": round(med["tb_batch"] / med["epoch"], 3),
              "call_us_mlflow": round(calls["mlflow_batch"], 1), "call_us_tb": round(calls["tb_batch"], 1),
              "machine": machine()}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
