"""Splits made of views as Ray shares them with the trials: as given, and compacted in the driver.

    python benchmarks/shared_views.py [--rows N] [--cols N] [--pickle-only] [--out DIR]

A splitter's `(x[:n], y[:n]), (x[n:], y[n:])` (90/10) over float32 `--rows` x `--cols`
inputs and int64 labels. `compact.for_ray` (study._load_data calls it) copies views to
storages of their own before `ray.put`. Baseline, in the same run: the splits as given.
Cases:
- torch: tensor views (torch pickles a view with its base's whole storage);
- numpy_cols: NumPy column slices `a[:n, :cols/4]` (not contiguous: pickled in band);
- memmap: an `np.load(mmap_mode="r")` file's rows (a memmap subclass: pickled in band).
Figures per case, given and compacted, and their ratio (compacted / given):
- pickled_mb: bytes as Ray pickles them (protocol 5), in band (copied into every trial)
  plus out of band (shared from the object store, zero-copy);
- store_mb: the object's size in Ray's object store (`ray.put`, a local Ray);
- trial_mb: each trial's private copy: a Ray task's anonymous RSS grown by `ray.get`;
- driver peak (torch): anonymous RSS above the start while the getter's data is made,
  (compacted and the views dropped,) and put, sampled every 5 ms; and the compaction's seconds.
`--pickle-only` skips Ray (the figures that need it are left out). Final JSON line.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _ours import emit  # noqa: E402
from data_checks import anon_mb, measured  # noqa: E402

from hpoc.runtime import compact  # noqa: E402


def pickled_mb(data) -> tuple[float, float]:
    """(in band, out of band) MB as Ray pickles data."""
    from ray import cloudpickle

    buffers: list = []
    out = io.BytesIO()
    cloudpickle.CloudPickler(out, protocol=5, buffer_callback=buffers.append).dump(data)
    return out.tell() / 2**20, sum(memoryview(b).nbytes for b in buffers) / 2**20


def splits(x, y, n: int):
    return (x[:n], y[:n]), (x[n:], y[n:]), None


def cases(rows: int, cols: int, tmp: Path) -> dict:
    n = rows * 9 // 10
    a = np.random.default_rng(0).random((rows, cols), dtype=np.float32)
    b = np.random.default_rng(1).integers(0, 10, rows)
    np.save(tmp / "x.npy", a)
    # the torch case's getter makes its tensors anew: only its views keep them alive
    return {"torch": lambda: splits(torch.rand(rows, cols), torch.randint(0, 10, (rows,)), n),
            "numpy_cols": lambda: ((a[:n, :cols // 4], b[:n]), (a[n:, :cols // 4], b[n:]), None),
            "memmap": lambda: splits(np.load(tmp / "x.npy", mmap_mode="r"), b, n)}


def ray_figures(data) -> tuple[float, float]:
    """(object store MB, a trial's private copy MB) of data put in Ray."""
    import ray
    from ray.experimental import get_object_locations

    ref = ray.put(data)
    store = get_object_locations([ref])[ref]["object_size"] / 2**20
    trial = ray.get(ray.remote(num_cpus=1)(_trial_copy).remote([ref]))  # a list: not fetched for it
    del ref
    return store, trial


def _trial_copy(refs) -> float:
    import gc

    import ray

    gc.collect()
    before = anon_mb()
    data = ray.get(refs[0])
    grown = anon_mb() - before
    del data
    return grown


def driver_peak(make, fix: bool) -> float:
    """Peak anonymous MB above the start: the getter's data made, (compacted,) put in Ray."""
    import ray

    held = []

    def path() -> None:
        data = make()
        if fix:
            data = compact.for_ray(data, arrays=True)  # the views as made are dropped here
        held.append(ray.put(data))

    _, peak = measured(path)
    held.clear()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--cols", type=int, default=64)
    ap.add_argument("--pickle-only", action="store_true", help="no Ray: pickled bytes only")
    ap.add_argument("--out", default=None, help="append the JSON line to DIR/shared_views.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {"inputs_mb": round(args.rows * args.cols * 4 / 2**20, 1)}
    if not args.pickle_only:
        import ray

        ray.init(address="local", num_cpus=1, object_store_memory=1 << 30, include_dashboard=False,
                 log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        made = cases(args.rows, args.cols, Path(tmp))
        for name, make in made.items():
            given = make()
            took, peak = measured(lambda: compact.for_ray(given, arrays=True))
            fixed = compact.for_ray(given, arrays=True)
            figures: dict = {}
            raw: dict = {}
            for label, data in (("given", given), ("compacted", fixed)):
                inband, shared = pickled_mb(data)
                raw[f"pickled_{label}"], raw[f"inband_{label}"] = inband + shared, inband
                figures[f"pickled_mb_{label}"] = [round(inband, 2), round(shared, 2)]
                if not args.pickle_only:
                    raw[f"store_{label}"], raw[f"trial_{label}"] = ray_figures(data)
                    figures[f"store_mb_{label}"] = round(raw[f"store_{label}"], 1)
                    figures[f"trial_mb_{label}"] = round(raw[f"trial_{label}"], 1)
            for what in ("pickled", "inband", "store", "trial"):
                if f"{what}_given" in raw:  # a private copy of 0 MB: no ratio, the MB say it
                    figures[f"{what}_ratio"] = (round(raw[f"{what}_compacted"] / raw[f"{what}_given"], 2)
                                                if raw[f"{what}_given"] > 0.5 else None)
            figures.update(compact_s=round(took, 3), compact_peak_mb=round(peak, 1))
            if name == "torch" and not args.pickle_only:
                del given, fixed
                figures["driver_peak_mb_given"] = round(driver_peak(make, False), 1)
                figures["driver_peak_mb_compacted"] = round(driver_peak(make, True), 1)
            out[name] = figures
            print(name, figures, flush=True)
    emit({"benchmark": "shared_views", "rows": args.rows, "cols": args.cols, **out}, args.out)


if __name__ == "__main__":
    main()
