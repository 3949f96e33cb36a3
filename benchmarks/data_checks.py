"""Seconds and memory of the driver's data checks on a large split, against a plain copy of it.

    python benchmarks/data_checks.py [--rows N] [--cols N] [--reps N] [--dir DIR] [--out DIR]

Before Ray gets the splits, the driver checks them (`pipeline.require_datasets` and
`pipeline.shared_validation`: types, lengths, NaN/inf, a validation split holding training
samples). The baseline, in the same run, is what the data costs anyway: one copy of the
arrays (`np.array`, as Ray's object store makes when the splits are put). Cases, each on
read-only memmaps written to DIR (a 90/10 split):
- f32: float32 inputs, `--rows` x `--cols`;
- f64: float64 inputs, a quarter of the rows (cast by the trials, not here);
- lazy: a Dataset of `--rows` samples (its `__getitem__` calls are counted: must be 0);
- subsets: two Subsets of one shuffled index range (the overlap check).
Reps alternate check and copy; each figure is the median. Peak memory is the process's
anonymous RSS above its start, sampled every 5 ms. Final JSON line: per case `check_s`,
`copy_s`, `ratio` (check / copy seconds), `check_peak_mb`, `copy_peak_mb`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _ours import emit  # noqa: E402

from hpoc.runtime import pipeline  # noqa: E402
from hpoc.runtime.trainer import Trainer  # noqa: E402

PLAN = {"pipeline": {"getter": {"target": "bench.get"}}, "objective": {"metrics": [{"name": "val_loss"}]}}


def anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measured(fn) -> tuple[float, float]:
    """(seconds, peak MB of anonymous memory above the start) of fn()."""
    base, peak, going = anon_mb(), [0.0], [True]

    def watch() -> None:
        while going[0]:
            peak[0] = max(peak[0], anon_mb() - base)
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    going[0] = False
    t.join()
    return took, peak[0]


class Lazy(torch.utils.data.Dataset):
    calls = 0

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        Lazy.calls += 1
        return torch.zeros(4), 0


def check(data) -> None:
    pipeline.require_datasets(Trainer, data, PLAN)
    pipeline.shared_validation(PLAN, data)


def copy(data) -> None:
    for split in data:
        if isinstance(split, tuple):
            for a in split:
                np.array(a)


def write(d: Path, rows: int, cols: int) -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    x32 = np.lib.format.open_memmap(d / "x32.npy", "w+", np.float32, (rows, cols))
    for s in range(0, rows, 50_000):
        x32[s:s + 50_000] = rng.random((min(50_000, rows - s), cols), dtype=np.float32)
    q = rows // 4
    x64 = np.lib.format.open_memmap(d / "x64.npy", "w+", np.float64, (q, cols))
    for s in range(0, q, 25_000):
        x64[s:s + 25_000] = rng.random((min(25_000, q - s), cols))
    x32.flush()
    x64.flush()
    y = rng.integers(0, 10, rows)
    x32 = np.load(d / "x32.npy", mmap_mode="r")
    x64 = np.load(d / "x64.npy", mmap_mode="r")
    n, m = rows * 9 // 10, q * 9 // 10
    return {"f32": ((x32[:n], y[:n]), (x32[n:], y[n:]), None),
            "f64": ((x64[:m], y[:m]), (x64[m:], y[m:q]), None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the memmaps are written (default: a temp dir)")
    ap.add_argument("--out", default=None, help="append the JSON line to DIR/data_checks.jsonl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cases = write(Path(tmp), args.rows, args.cols)
        out: dict[str, dict] = {}
        for name, data in cases.items():
            runs: dict[str, list] = {"check": [], "copy": []}
            for _ in range(args.reps):  # alternate, so drift hits both alike
                runs["check"].append(measured(lambda: check(data)))
                runs["copy"].append(measured(lambda: copy(data)))
            c_s = statistics.median(s for s, _ in runs["check"])
            p_s = statistics.median(s for s, _ in runs["copy"])
            out[name] = {"check_s": round(c_s, 3), "copy_s": round(p_s, 3), "ratio": round(c_s / p_s, 2),
                         "check_peak_mb": round(statistics.median(m for _, m in runs["check"])),
                         "copy_peak_mb": round(statistics.median(m for _, m in runs["copy"]))}
            print(name, out[name], flush=True)
        lazy = Lazy(args.rows)
        n = args.rows * 9 // 10
        s, mb = measured(lambda: check((lazy, Lazy(args.rows - n), None)))
        out["lazy"] = {"check_s": round(s, 3), "check_peak_mb": round(mb), "getitem_calls": Lazy.calls}
        perm = torch.randperm(args.rows).tolist()
        sub = torch.utils.data.Subset
        s, mb = measured(lambda: check((sub(lazy, perm[:n]), sub(lazy, perm[n:]), None)))
        out["subsets"] = {"check_s": round(s, 3), "check_peak_mb": round(mb)}
        emit({"benchmark": "data_checks", "rows": args.rows, "cols": args.cols, "reps": args.reps, **out},
             args.out)


if __name__ == "__main__":
    main()
