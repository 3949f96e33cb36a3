"""What making a checkpoint copy durable costs: hpoc's own copies (LocalReporter's kept
checkpoints, a PBT exploit's copy) sync each file before the rename that names them, and a
trial syncs the copy Ray made of its reported checkpoint in the storage once report returns.

    python benchmarks/checkpoint_sync.py [--mb 100] [--runs 5] [--dir DIR] [--out DIR]

A checkpoint of one `--mb` MB file (random bytes) is copied into `--dir` (default: the
system's temp dir; give the storage path to measure that file system) as before
(copytree, rename) and as now (copytree, files.publish_tree), and as Ray copies a reported
checkpoint (copytree to its name) without and with files.sync_copy after it, `--runs` times
each, alternately; prints the median wall time of each and the differences, then a JSON line.
The page cache is not dropped: the copy's data is written back by the fsync, which is the
cost measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _ours import emit

from hpoc.files import publish_tree, sync_copy


def _plain(src: Path, final: Path) -> None:
    tmp = final.with_name(final.name + ".tmp")
    shutil.copytree(src, tmp)
    os.replace(tmp, final)


def _durable(src: Path, final: Path) -> None:
    tmp = final.with_name(final.name + ".tmp")
    shutil.copytree(src, tmp)
    publish_tree(tmp, final)


def _ray_plain(src: Path, final: Path) -> None:
    shutil.copytree(src, final)  # Ray's copy into the storage, named as it is made


def _ray_synced(src: Path, final: Path) -> None:
    shutil.copytree(src, final)
    sync_copy(src, final)  # what the Reporter adds once report returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpoc-bench-sync-", dir=args.dir) as root:
        src = Path(root) / "scratch"
        src.mkdir()
        with open(src / "state.pt", "wb") as fh:
            fh.write(os.urandom(args.mb * 2**20))
        os.sync()  # the source is on disk: only the copy's write-back is timed
        times: dict[str, list[float]] = {"plain": [], "durable": [], "ray_plain": [], "ray_synced": []}
        for i in range(args.runs):
            for name, copy in (("plain", _plain), ("durable", _durable), ("ray_plain", _ray_plain),
                               ("ray_synced", _ray_synced)):
                final = Path(root) / f"{name}_{i}"
                t = time.perf_counter()
                copy(src, final)
                times[name].append(time.perf_counter() - t)
                shutil.rmtree(final)
                os.sync()  # the next copy starts with no dirty pages of this one
        med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:10s} median {v * 1000:8.1f} ms  runs {[round(x * 1000, 1) for x in times[k]]}")
    print(f"durable costs {(med['durable'] - med['plain']) * 1000:.1f} ms more per {args.mb} MB checkpoint")
    print(f"syncing Ray's copy costs {(med['ray_synced'] - med['ray_plain']) * 1000:.1f} ms more per "
          f"{args.mb} MB checkpoint")
    emit({"benchmark": "checkpoint_sync", "mb": args.mb, "runs": args.runs, "plain_s": med["plain"],
          "durable_s": med["durable"], "extra_s": med["durable"] - med["plain"],
          "ray_plain_s": med["ray_plain"], "ray_synced_s": med["ray_synced"],
          "ray_extra_s": med["ray_synced"] - med["ray_plain"]}, args.out)


if __name__ == "__main__":
    main()
