"""What counting the trials an earlier run left costs as a study starts (quota.py: the files
still to write are those of the trials without a folder): a listing of the study folder
and a stat of each folder's params.json (before), against the listing alone (now).

    python benchmarks/trial_count.py [--trials 5000] [--runs 7] [--dir DIR] [--out DIR]

Writes `--trials` trial folders (params.json and result.json each) in `--dir` (default: the
system's temp dir; give the storage path to measure that file system) and times each way,
`--runs` times alternately; prints the medians and a JSON line. The page cache is warm: on
local disk a stat is a cache hit; on Lustre each is a round trip to the metadata server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _ours import emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpoc.runtime.quota import _trials_there  # noqa: E402


def _stat_each(root: Path) -> int:
    """The count as it was: a stat of each folder's params.json."""
    with os.scandir(root) as it:
        return sum(1 for e in it if e.is_dir() and not e.name.startswith(".")
                   and os.path.exists(os.path.join(e.path, "params.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpoc-bench-count-", dir=args.dir) as tmp:
        root = Path(tmp)
        for i in range(args.trials):
            trial = root / f"trial_{i:05d}_{i:08x}"
            trial.mkdir()
            (trial / "params.json").write_text("{}")
            (trial / "result.json").write_text("")
        times: dict[str, list[float]] = {"stat_each": [], "listing": []}
        for _ in range(args.runs):
            for name, count in (("stat_each", _stat_each), ("listing", _trials_there)):
                t = time.perf_counter()
                n = count(root)
                times[name].append(time.perf_counter() - t)
                assert n == args.trials, (name, n)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:10s} median {v * 1000:8.2f} ms  runs {[round(x * 1000, 2) for x in times[k]]}")
    print(f"a stat per trial costs {(med['stat_each'] - med['listing']) * 1e6 / args.trials:.2f} us a trial here")
    emit({"benchmark": "trial_count", "trials": args.trials, "runs": args.runs,
          "stat_each_s": med["stat_each"], "listing_s": med["listing"]}, args.out)


if __name__ == "__main__":
    main()
