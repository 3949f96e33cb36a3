"""float64 tensor inputs cast once in the driver, against cast per batch in every trial.

    python benchmarks/float64_tensors.py [--rows N] [--cols N] [--batch N] [--reps N] [--out DIR]

A split of float64 torch tensors (`torch.from_numpy` of np.loadtxt's, a TensorDataset) is
batched by hpoc's loop, whose `prepare_inputs` casts each input batch to float32.
`pipeline.in_model_dtype` now casts the inputs once in the driver, before Ray shares them.
Baseline, in the same run: the split as given. Figures:
- driver: seconds and peak anonymous memory (above the start, sampled every 5 ms) of the
  cast, beside the float64 inputs' size (the float32 copy lives while the float64 one does);
- per trial: bytes of the splits as Ray pickles them (each trial process holds a copy:
  Ray does not share torch tensors' memory by default), given vs cast;
- epoch: one pass of `TensorBatches` with hpoc's prepare (no model: the cast alone), given
  vs cast, alternating, medians over `--reps`; one torch thread.
Final JSON line with the ratios (cast / given).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _ours import emit  # noqa: E402
from data_checks import measured  # noqa: E402

from hpoc.runtime import pipeline  # noqa: E402
from hpoc.runtime.batches import TensorBatches, default_prepare  # noqa: E402
from hpoc.runtime.strategy import Strategy  # noqa: E402
from hpoc.runtime.trainer import Trainer  # noqa: E402


def pickled_mb(data) -> float:
    from ray import cloudpickle

    buf = io.BytesIO()
    cloudpickle.dump(data, buf, protocol=5)
    return buf.tell() / 2**20


def epoch_s(split, batch: int) -> float:
    batches = TensorBatches(split, Strategy(device="cpu"), batch, shuffle=True, pad=True,
                            prepare=default_prepare(None), on_device=False)
    start = time.perf_counter()
    for x, _y in batches:
        x.sum()  # the batch is used
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=128)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None, help="append the JSON line to DIR/float64_tensors.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(args.rows, args.cols, dtype=torch.float64)
    y = torch.randint(0, 10, (args.rows,))
    n = args.rows * 9 // 10
    # whole tensors of their own: a view (`x[:n]`) pickles its base's whole storage
    given = ((x[:n].clone(), y[:n].clone()), torch.utils.data.TensorDataset(x[n:].clone(), y[n:].clone()), None)
    del x
    took, peak = measured(lambda: pipeline.in_model_dtype(Trainer, given))
    cast = pipeline.in_model_dtype(Trainer, given)
    assert cast[0][0].dtype == torch.float32
    out = {"driver": {"cast_s": round(took, 3), "cast_peak_mb": round(peak),
                      "float64_inputs_mb": round(args.rows * args.cols * 8 / 2**20)}}
    per_trial = (pickled_mb(given), pickled_mb(cast))
    out["per_trial"] = {"given_mb": round(per_trial[0]), "cast_mb": round(per_trial[1]),
                        "ratio": round(per_trial[1] / per_trial[0], 2)}
    runs: dict[str, list] = {"given": [], "cast": []}
    for _ in range(args.reps):  # alternate, so drift hits both alike
        runs["given"].append(epoch_s(given[0], args.batch))
        runs["cast"].append(epoch_s(cast[0], args.batch))
    g, c = statistics.median(runs["given"]), statistics.median(runs["cast"])
    out["epoch"] = {"given_s": round(g, 3), "cast_s": round(c, 3), "ratio": round(c / g, 2)}
    for name, figures in out.items():
        print(name, figures, flush=True)
    emit({"benchmark": "float64_tensors", "rows": args.rows, "cols": args.cols, "batch": args.batch,
          "reps": args.reps, **out}, args.out)


if __name__ == "__main__":
    main()
