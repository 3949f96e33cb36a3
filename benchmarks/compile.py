"""Wall time of `hpoc compile` on the examples, against a bare interpreter start.

    python benchmarks/compile.py [--runs N] [--limit SECONDS]

Each run is a fresh process (what a user waits for). Prints one line per case (median
wall and CPU time), and a final JSON line; exits 1 if a median wall time exceeds the
limit (0.3 s by default). On a busy machine compare the CPU column and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["examples/fashion_mnist/study.hpo", "examples/digits/study.hpo"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _median_wall(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of `runs` fresh processes."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = _cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
        if proc.returncode != 0:
            sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode()}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--limit", type=float, default=0.3, help="seconds allowed for the median")
    args = parser.parse_args()
    py = sys.executable
    hpoc = [py, "-m", "hpoc"]
    with tempfile.TemporaryDirectory() as out:
        _median_wall(hpoc + ["compile", EXAMPLES[0], "-o", out], 2)  # warm caches (parser, .pyc)
        baseline, base_cpu = _median_wall([py, "-c", "pass"], args.runs)
        results: dict = {"baseline_s": round(baseline, 4), "baseline_cpu_s": round(base_cpu, 4),
                         "runs": args.runs, "limit_s": args.limit, "cases": {}}  # fmt: skip
        print(f"{'python -c pass':<48} {baseline * 1000:7.1f} ms wall {base_cpu * 1000:7.1f} ms cpu")
        worst = 0.0
        for spec in EXAMPLES:
            for verb in (["check", spec], ["compile", spec, "-o", out]):
                t, cpu = _median_wall(hpoc + verb, args.runs)
                name = f"hpoc {verb[0]} {spec}"
                results["cases"][name] = {
                    "median_s": round(t, 4), "cpu_s": round(cpu, 4), "ratio": round(t / baseline, 1),
                }  # fmt: skip
                print(f"{name:<48} {t * 1000:7.1f} ms wall {cpu * 1000:7.1f} ms cpu  ({t / baseline:.1f}x baseline)")
                worst = max(worst, t)
    results["worst_s"] = round(worst, 4)
    results["ok"] = worst <= args.limit
    print(json.dumps(results, sort_keys=True))
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
