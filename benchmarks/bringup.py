"""Ray cluster bring-up on the local SLURM cluster: hpoc's job script vs Ray's SLURM template.

    scripts/local-slurm.sh up --nodes 4 && eval "$(scripts/local-slurm.sh env)"
    .venv/bin/python benchmarks/bringup.py [--nodes 2 3 4] [--repeat 3]

For each node count, alternately submits
  (a) hpoc's preflight-only job: seconds from the job script's start to
      "hpoc: cluster ready ..." (all nodes joined, checks passed);
  (b) a job following Ray's documented SLURM template (docs.ray.io, "Deploying on
      Slurm"): head, `sleep 10`, each worker followed by `sleep 5`, then a driver that
      connects with `ray.init`: seconds from the job script's start to the connected driver.
      The template does not wait for the workers; for comparison the benchmark's driver
      then also reports when all nodes had joined (`template_all_joined_s`).
Jobs run one at a time. Progress goes to stderr; the last stdout line is JSON with the
medians and the ratio hpoc/template per node count.

The template needs two changes to run at all on fake nodes that share one host: every
node gets its own --temp-dir and ports (taken from hpoc.runtime.ports), and token auth is
switched off explicitly (RAY_AUTH_MODE=disabled) as the template has none. (Other
programs on this machine may hold ports, so the template's ports are probed like ours.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from slurm_plans import READY, VENV_PYTHON, logs, output_of, ray_processes, sbatch, wait_jobs, write_job  # noqa: E402

from hpoc.runtime import ports  # noqa: E402

TEMPLATE_READY = re.compile(r"^template ready nodes=(\d+) seconds=(\S+)$", re.M)
TEMPLATE_JOINED = re.compile(r"^template all joined seconds=(\S+)$", re.M)
TIMEOUT = 600

# Ray's template (doc/source/cluster/doc_code/slurm-basic.sh), kept as close as the shared
# host allows; the lines marked "fake nodes" are the only additions.
TEMPLATE = r"""#!/bin/bash
#SBATCH --job-name=ray-template
#SBATCH --nodes={nodes}
#SBATCH --tasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=00:10:00
#SBATCH --output={folder}/template-%j.out
#SBATCH --error={folder}/template-%j.err
t0=$(date +%s.%N)
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
RAY={ray}
PY={python}
ports() {{ "$PY" -c "from hpoc.runtime.node import pick_ports as p; import sys; print(' '.join(p(int(sys.argv[1]), int(sys.argv[2]), '127.0.0.1').ray_start_args(head=sys.argv[3] == 'head')))" "$SLURM_JOB_ID" "$1" "$2"; }}  # fake nodes
tmp=/tmp/hpoc-bench-$SLURM_JOB_ID  # fake nodes: one temp dir per node

nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
nodes_array=($nodes)
head_node=${{nodes_array[0]}}
head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address)
if [[ "$head_node_ip" == *" "* ]]; then
    IFS=' ' read -ra ADDR <<<"$head_node_ip"
    if [[ ${{#ADDR[0]}} -gt 16 ]]; then head_node_ip=${{ADDR[1]}}; else head_node_ip=${{ADDR[0]}}; fi
fi
head_ports=($(ports 0 head))  # fake nodes
port=${{head_ports[0]#--port=}}
ip_head=$head_node_ip:$port
export ip_head
echo "Starting HEAD at $head_node"
srun --nodes=1 --ntasks=1 -w "$head_node" \
    "$RAY" start --head --node-ip-address="$head_node_ip" "${{head_ports[@]}}" \
    --temp-dir="$tmp/0" --include-dashboard=false \
    --num-cpus "${{SLURM_CPUS_PER_TASK}}" --num-gpus 0 --block &
sleep 10
worker_num=$((SLURM_JOB_NUM_NODES - 1))
for ((i = 1; i <= worker_num; i++)); do
    node_i=${{nodes_array[$i]}}
    echo "Starting WORKER $i at $node_i"
    worker_ports=($(ports "$i" worker))  # fake nodes
    srun --nodes=1 --ntasks=1 -w "$node_i" \
        "$RAY" start --address "$ip_head" "${{worker_ports[@]}}" --temp-dir="$tmp/$i" \
        --num-cpus "${{SLURM_CPUS_PER_TASK}}" --num-gpus 0 --block &
    sleep 5
done
"$PY" -u -c "
import ray, time
ray.init(address='$ip_head', log_to_driver=False)
alive = sum(n['Alive'] for n in ray.nodes())
print(f'template ready nodes={{alive}} seconds={{time.time() - $t0:.1f}}', flush=True)
while sum(n['Alive'] for n in ray.nodes()) < $SLURM_JOB_NUM_NODES:  # not in the template: for comparison
    assert time.time() - $t0 < 300, 'not all nodes joined'
    time.sleep(0.2)
print(f'template all joined seconds={{time.time() - $t0:.1f}}', flush=True)
"
"""


def run_hpoc(folder: Path, nodes: int) -> float:
    job = sbatch(write_job(folder, nodes=nodes))
    (record,) = wait_jobs([job], TIMEOUT, folder)
    text = output_of(folder).get(f"t-preflight-{job}.out", "")
    match = READY.search(text)
    if record["JobState"] != "COMPLETED" or not match or int(match.group(1)) != nodes:
        raise SystemExit(f"hpoc job {job} failed:\n{logs(folder)}")
    if ray_processes(job):
        raise SystemExit(f"hpoc job {job} left Ray processes behind")
    return float(match.group(4))


def run_template(folder: Path, nodes: int) -> tuple[float, int, float]:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "template.sbatch"
    script.write_text(TEMPLATE.format(nodes=nodes, folder=folder, python=VENV_PYTHON,
                                      ray=str(Path(VENV_PYTHON).with_name("ray"))))
    job = sbatch(script)
    (record,) = wait_jobs([job], TIMEOUT, folder)
    text = (folder / f"template-{job}.out").read_text()
    match, joined = TEMPLATE_READY.search(text), TEMPLATE_JOINED.search(text)
    if not match or not joined:
        raise SystemExit(f"template job {job} failed ({record['JobState']}):\n{logs(folder)}")
    _reap(f"/tmp/hpoc-bench-{job}/")
    return float(match.group(2)), int(match.group(1)), float(joined.group(1))


def _reap(marker: str) -> None:
    """The template has no teardown; SLURM ends its steps. Stop anything of that job left."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    for pid in out:
        subprocess.run(["kill", "-TERM", pid], capture_output=True)
    subprocess.run(["rm", "-rf", marker], check=False)


def available_nodes() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True).stdout
    return len(set(out.split()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/hpoc-bringup-bench"))
    args = p.parse_args()
    if available_nodes() < max(args.nodes):
        print(f"need {max(args.nodes)} nodes: scripts/local-slurm.sh up --nodes {max(args.nodes)}", file=sys.stderr)
        return 2
    results: dict[int, dict[str, list]] = {n: {"hpoc": [], "template": [], "joined": [], "all": []}
                                         for n in args.nodes}
    for rep in range(args.repeat):
        for n in args.nodes:
            ours = run_hpoc(args.workdir / f"hpoc-{n}-{rep}", n)
            theirs, joined, all_joined = run_template(args.workdir / f"template-{n}-{rep}", n)
            results[n]["hpoc"].append(ours)
            results[n]["template"].append(theirs)
            results[n]["joined"].append(joined)
            results[n]["all"].append(all_joined)
            print(f"nodes={n} rep={rep} load={os.getloadavg()[0]:.1f}: hpoc {ours:.1f} s, template {theirs:.1f} s "
                  f"({joined}/{n} nodes joined when its driver connected, all at {all_joined:.1f} s)",
                  file=sys.stderr, flush=True)
    summary = {}
    for n, r in results.items():
        h, t = statistics.median(r["hpoc"]), statistics.median(r["template"])
        summary[str(n)] = {"hpoc_s": round(h, 2), "template_s": round(t, 2), "ratio": round(h / t, 3),
                           "hpoc_runs": r["hpoc"], "template_runs": r["template"],
                           "template_nodes_joined": r["joined"],
                           "template_all_joined_s": round(statistics.median(r["all"]), 2)}
    medians = [summary[str(n)]["hpoc_s"] for n in args.nodes]
    out = {"benchmark": "bringup", "repeat": args.repeat, "nodes": summary, "load_avg_1m": os.getloadavg()[0],
           "hpoc_spread_s": round(max(medians) - min(medians), 2)}
    if "3" in summary:
        out["ratio_3_nodes"] = summary["3"]["ratio"]
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
