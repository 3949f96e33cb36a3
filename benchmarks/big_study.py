"""What a user of a big study waits for: `status`, `results`, `report` of 5,000 trials and of
a 200-shard array, against an earlier hpoc in the same run.

    python benchmarks/big_study.py [--trials N] [--epochs E] [--shards S] [--runs R]
                                   [--baseline REF] [--out DIR]

The studies are written as Ray Tune and hpoc's driver leave them (benchmarks/_big_study.py,
no Ray): N trials of up to E reports each (every tenth failed, a third stopped early), and S
shards of 10 trials. Each command runs as a fresh process (median of R runs) with this
tree's hpoc and with REF's (`git archive`, default: the commit before the big-study
changes: a config cleaned per report, a directory listing per trial, a bar patch per
trial, every row and shard printed). Prints wall and CPU medians, ratio = REF / this tree,
the lines each prints and the report's size, and a final JSON line.
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

from _big_study import write_study, write_summary
from _ours import emit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this tree's hpoc; the tests' plan maker
BASELINE = "920a30d"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _plan(storage: Path, name: str, shards: int, epochs: int) -> dict:
    """The plan results_fixtures.make_plan gives the tests, with `epochs` as the full run."""
    from results_fixtures import make_plan

    plan = make_plan(storage, name, shards=shards)
    plan["space"]["constants"]["epochs"] = epochs
    plan["trials"]["stop"]["training_iteration"] = epochs
    plan["scheduler"]["options"]["max_t"] = epochs
    return plan


def _studies(tmp: Path, trials: int, epochs: int, shards: int) -> dict[str, Path]:
    from results_fixtures import write_plan

    storage = tmp / "storage"
    entries = write_study(storage / "big" / "tune", trials, epochs)
    write_summary(storage / "big", "big", 0, entries)
    builds = {"big": tmp / "build-big", "sharded": tmp / "build-sharded"}
    write_plan(builds["big"], _plan(storage, "big", 1, epochs))
    for k in range(shards):
        shard = storage / "sharded" / f"shard-{k}"
        write_summary(shard, "sharded", k, write_study(shard / "tune", 10, 6, seed=k))
    write_plan(builds["sharded"], _plan(storage, "sharded", shards, 6))
    return builds


def _time(cmd: list[str], env: dict[str, str], runs: int, cwd: Path) -> dict[str, float]:
    walls, cpus, out = [], [], b""
    for _ in range(runs):
        cpu, start = _cpu(), time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
        if proc.returncode != 0:
            sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n"
                     f"{proc.stderr.decode()[-2000:]}")
        out = proc.stdout
    return {"median_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3),
            "lines": out.count(b"\n"), "bytes": len(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the hpoc to compare with")
    parser.add_argument("--out", help="directory (or .jsonl file) to append the JSON line to")
    args = parser.parse_args()
    results: dict = {"benchmark": "big_study", "trials": args.trials, "epochs": args.epochs,
                     "shards": args.shards, "runs": args.runs, "baseline": args.baseline,
                     "load": os.getloadavg()[0], "cases": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base_tree = tmp / "baseline"
        base_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "hpoc"],
                                 stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive, check=True)
        builds = _studies(tmp, args.trials, args.epochs, args.shards)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
        trees = {"hpoc": dict(env, PYTHONPATH=str(ROOT)),
                 "baseline": dict(env, PYTHONPATH=str(base_tree))}
        hpoc = [sys.executable, "-m", "hpoc"]
        big, sharded = str(builds["big"]), str(builds["sharded"])
        cases = {
            "status BIG": ["status", big],
            "results BIG": ["results", big],
            "results BIG --json": ["results", big, "--json"],
            "results BIG --csv": ["results", big, "--csv"],
            "report BIG": ["report", big, "-o", str(tmp / "big.html"), "--no-png"],
            "status SHARDED": ["status", sharded],
            "results SHARDED": ["results", sharded],
            "report SHARDED": ["report", sharded, "-o", str(tmp / "sharded.html"), "--no-png"],
        }
        for tree_env in trees.values():  # warm-up: .pyc, parser cache
            subprocess.run(hpoc + ["status", sharded], env=tree_env, cwd=tmp, stdout=subprocess.DEVNULL)
        for name, argv in cases.items():
            got = {}
            for tree, tree_env in trees.items():
                got[tree] = _time(hpoc + argv, tree_env, args.runs, tmp)  # not ROOT: -m imports from the cwd
                if argv[0] == "report":
                    got[tree]["html_bytes"] = Path(argv[3]).stat().st_size
            got["ratio"] = round(got["baseline"]["median_s"] / got["hpoc"]["median_s"], 2)
            got["cpu_ratio"] = round(got["baseline"]["cpu_s"] / got["hpoc"]["cpu_s"], 2)
            results["cases"][name] = got
            h, b = got["hpoc"], got["baseline"]
            print(f"{name:<20} hpoc {h['median_s']:7.2f}s (cpu {h['cpu_s']:6.2f}s, {h['lines']:6d} lines)"
                  f"  baseline {b['median_s']:7.2f}s (cpu {b['cpu_s']:6.2f}s, {b['lines']:6d} lines)"
                  f"  ratio {got['ratio']:5.2f}x", flush=True)
    emit(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
