"""What Tune's save of the experiment costs as Ray copies it (in place) and as hpoc does
(hpoc/runtime/whole_upload.py: each changed file written beside and renamed over it, files
the storage already holds as they are left alone).

    python benchmarks/state_upload.py [--trials 500] [--runs 9] [--running 8] [--dir DIR]

A staging folder like Tune's (per trial a 200-line result.json and progress.csv and a
params.json; a 7 MB experiment state) is uploaded into `--dir` (default: the system's temp
dir; give the storage path to measure that file system) `--runs` times by each; prints the
median wall time of each. The first upload of each writes every file; before each of the
others `--running` trials report once more (their result.json and progress.csv grow) and
the state is written again, as between two saves of a study.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--running", type=int, default=8)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()

    import pyarrow.fs
    from ray.train._internal import storage

    from hpoc.runtime import whole_upload

    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        staging = root / "staging"
        for i in range(args.trials):
            trial = staging / f"trial_{i:05d}"
            trial.mkdir(parents=True)
            (trial / "result.json").write_text('{"epoch": 1, "val": 0.5}\n' * 200)
            (trial / "progress.csv").write_text("a,b\n" + "1,2\n" * 200)
            (trial / "params.json").write_text("{}")
        (staging / "experiment_state-x.json").write_bytes(b"x" * 7_000_000)
        fs = pyarrow.fs.LocalFileSystem()
        for name, upload in (("ray (in place)", storage._upload_to_fs_path), ("hpoc (whole)", whole_upload.upload)):
            times = []
            for run in range(args.runs):
                for i in range(min(args.running, args.trials) if run else 0):
                    trial = staging / f"trial_{i:05d}"
                    with open(trial / "result.json", "a") as fh:
                        fh.write('{"epoch": 2, "val": 0.4}\n')
                    with open(trial / "progress.csv", "a") as fh:
                        fh.write("2,3\n")
                (staging / "experiment_state-x.json").write_bytes(bytes([run % 256]) * 7_000_000)
                start = time.perf_counter()
                upload(local_path=str(staging), fs=fs, fs_path=str(root / name.split()[0]))
                times.append(time.perf_counter() - start)
            print(f"{name}: median {statistics.median(times) * 1000:.0f} ms, first {times[0] * 1000:.0f} ms")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
