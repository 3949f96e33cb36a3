"""The fixed cost of one `hpoc run --local`: start (imports, checks, Ray, Tune) and end
(Ray's shutdown, the process's exit), for a study whose trials take next to nothing.

    python benchmarks/local_run.py [--reps N] [--trials N] [--out DIR]

Each repetition runs the same tiny study (benchmarks/_toy.py: an MLP on 2,048 points, one
epoch, one trial at a time) twice, as fresh processes, alternating which goes first:
- hpoc: `hpoc run STUDY --local --fresh`, as a user runs it;
- baseline: the same command with what this benchmark measures undone - Ray started as
  `ray.init` comes (HPOC_LOCAL_RAY=full: its API server and autoscaler monitor), Tune's
  callback usage tag made (the driver's MLflow import), and Python's own teardown at exit
  (`cli.main` called from a script, which returns instead of ending the process).
Phases, from the moments the benchmark reads each line of the process's output: `ready_s`
from the start to hpoc's "study ... on local Ray" line (imports, checks, data, Ray up, Tune
built), `trials_s` from there to the "summary:" line (the trials, the first trial's process
start included), `exit_s` from there to the process's end (Ray's shutdown, the exit),
`wall_s` the whole. Final JSON line: medians per side and `ratio` = baseline / hpoc wall.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _ours import emit, median  # noqa: E402
from _toy import study_text, write_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HPOC = Path(sys.executable).with_name("hpoc")
BASELINE = ("import sys\n"
            "from hpoc.runtime import lean\n"
            "lean.skip_callback_tag = lambda: False\n"
            "from hpoc.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
READY = "[hpoc] study `"
SUMMARY = "summary: "


def run_once(side: str, spec: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.pop("RAY_ADDRESS", None)
    args = ["run", str(spec), "--local", "--fresh"]
    if side == "hpoc":
        cmd = [str(HPOC), *args] if HPOC.exists() else [sys.executable, "-m", "hpoc", *args]
        env.pop("HPOC_LOCAL_RAY", None)
    else:
        cmd = [sys.executable, "-c", BASELINE, *args]
        env["HPOC_LOCAL_RAY"] = "full"
    marks: dict[str, float] = {}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=spec.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # one pipe for both: each line's moment as it comes
        now = time.monotonic()
        lines.append(line)
        if line.startswith(READY) and "ready" not in marks:
            marks["ready"] = now
        if line.startswith(SUMMARY):
            marks["summary"] = now
    code = proc.wait()
    end = time.monotonic()
    if code != 0 or len(marks) != 2:
        raise SystemExit(f"{side} run failed (exit {code}):\n{''.join(lines)}")
    return {"ready_s": marks["ready"] - start, "trials_s": marks["summary"] - marks["ready"],
            "exit_s": end - marks["summary"], "wall_s": end - start}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--out", default=None, help="append the JSON line to DIR/local_run.jsonl")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpoc-local-run-"))
    write_study(work)
    spec = work / "study.hpo"
    spec.write_text(study_text(n=2048, epochs=1, trials=args.trials, workers=1, cpus_per_worker=1,
                               reuse_workers=False, storage=work / "results", name="local_run"))
    runs: dict[str, list[dict[str, float]]] = {"hpoc": [], "baseline": []}
    loads = []
    for rep in range(args.reps):
        for side in (("hpoc", "baseline") if rep % 2 == 0 else ("baseline", "hpoc")):
            got = run_once(side, spec)
            runs[side].append(got)
            loads.append(os.getloadavg()[0])
            print(f"rep {rep} {side:8s} load {loads[-1]:5.1f}: " +
                  ", ".join(f"{k} {v:5.1f}" for k, v in got.items()), file=sys.stderr, flush=True)
    result: dict[str, Any] = {"benchmark": "local_run", "reps": args.reps, "trials": args.trials,
                              "cpus": len(os.sched_getaffinity(0)),
                              "load_avg_1m": [round(min(loads), 1), round(max(loads), 1)]}
    for side, got in runs.items():
        result[side] = {key: round(median([g[key] for g in got]), 2) for key in got[0]}
        result[side]["wall_runs"] = [round(g["wall_s"], 1) for g in got]
    result["saved_s"] = round(result["baseline"]["wall_s"] - result["hpoc"]["wall_s"], 2)
    result["ratio"] = round(result["baseline"]["wall_s"] / result["hpoc"]["wall_s"], 3)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
