"""How fast the everyday commands answer on a login node, against a bare interpreter.

    python benchmarks/cli_latency.py [--runs N] [--out DIR]

Each run is a fresh process (what a user waits for): `hpoc --help`, `check` of both .hpo
examples and of the itwinai YAML config, `compile`, and `status`/`results` of a small
hand-made run directory (6 trials x 4 reports). Baselines in the same run: `python -c pass`
(the interpreter), `python -c "import hpoc"`, and `check` without the parser cache (the
grammar analysed on every start, as without a writable ~/.cache). Prints the median wall
and CPU time of each and their ratios to the interpreter's (on a busy machine compare CPU),
the modules it imports (each one file-system lookups on a shared file system), and a final
JSON line. `status` includes its `squeue` call (`hpoc status` asks SLURM when it is there).
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

from _ours import emit

ROOT = Path(__file__).resolve().parents[1]
FASHION, DIGITS = "examples/fashion_mnist/study.hpo", "examples/digits/study.hpo"
ITWINAI = "examples/itwinai/config.yaml"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode()}")


def _modules(cmd: list[str], env: dict[str, str]) -> int:
    """How many modules one run imports (`-X importtime` lists each once)."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return sum(line.startswith("import time:") for line in proc.stderr.splitlines()) - 1  # the header


def _time(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = _cpu(), time.perf_counter()
        _run(cmd, env)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return {"median_s": round(statistics.median(walls), 4), "cpu_s": round(statistics.median(cpus), 4),
            "modules": _modules(cmd, env)}


def _run_dir(tmp: Path, env: dict[str, str]) -> Path:
    """A build whose study ran: the compiled example with its storage in `tmp`, and an
    experiment directory as Ray Tune leaves it (params.json, result.json per trial)."""
    build = tmp / "build"
    _run([sys.executable, "-m", "hpoc", "compile", FASHION, "-o", str(build)], env)
    sys.path.insert(0, str(ROOT))
    from hpoc.plan import dumps

    plan = json.loads((build / "plan.json").read_text())
    plan["storage"]["path"] = str(tmp / "storage")
    (build / "plan.json").write_text(dumps({k: v for k, v in plan.items() if k != "content_hash"}))
    exp = tmp / "storage" / plan["storage"]["name"]
    for i in range(6):
        trial = exp / f"trainable_{i:05d}_{i}_lr=0.00{i + 1}"
        trial.mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps({"lr": 0.001 * (i + 1), "batch_size": 64}))
        rows = [{"training_iteration": e, "trial_id": f"{i:05d}", "timestamp": 1000 + e, "time_total_s": e,
                 "done": e == 4, "val_loss": 1 / (e + i), "train_loss": 1 / (e + i)} for e in range(1, 5)]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", help="directory (or .jsonl file) to append the JSON line to")
    args = parser.parse_args()
    py = sys.executable
    hpoc = [py, "-m", "hpoc"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc kept
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env["XDG_CACHE_HOME"] = str(tmp / "cache")  # our own cache, filled by the warm-up
        uncached = dict(env, XDG_CACHE_HOME="/dev/null/none")  # not a directory: no cache
        build = _run_dir(tmp, env)
        cases = {
            "python -c pass": ([py, "-c", "pass"], env),
            "python -c 'import hpoc'": ([py, "-c", "import hpoc"], env),
            "hpoc --help": (hpoc + ["--help"], env),
            f"hpoc check {FASHION}": (hpoc + ["check", FASHION], env),
            f"hpoc check {DIGITS}": (hpoc + ["check", DIGITS], env),
            f"hpoc check {FASHION} (no parser cache)": (hpoc + ["check", FASHION], uncached),
            f"hpoc check {ITWINAI}": (hpoc + ["check", ITWINAI], env),
            f"hpoc compile {FASHION}": (hpoc + ["compile", FASHION, "-o", str(tmp / "out")], env),
            "hpoc status BUILD": (hpoc + ["status", str(build)], env),
            "hpoc results BUILD": (hpoc + ["results", str(build)], env),
        }
        for cmd, case_env in cases.values():  # warm-up: .pyc, parser cache, plan noted valid
            _run(cmd, case_env)
        results: dict = {"benchmark": "cli_latency", "runs": args.runs, "load": os.getloadavg()[0], "cases": {}}
        for name, (cmd, case_env) in cases.items():
            results["cases"][name] = _time(cmd, case_env, args.runs)
    base = results["cases"]["python -c pass"]
    print(f"{'command':<58} {'wall':>8} {'ratio':>6} {'cpu':>8} {'ratio':>6} {'modules':>7}")
    for name, got in results["cases"].items():
        got["ratio"] = round(got["median_s"] / base["median_s"], 1)
        got["cpu_ratio"] = round(got["cpu_s"] / base["cpu_s"], 1)
        print(f"{name:<58} {got['median_s'] * 1000:6.0f}ms {got['ratio']:5.1f}x {got['cpu_s'] * 1000:6.0f}ms "
              f"{got['cpu_ratio']:5.1f}x {got['modules']:7d}")
    emit(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
