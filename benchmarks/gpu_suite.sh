#!/usr/bin/env bash
# Benchmarks 1, 2 and 4 of docs/performance.md on a GPU machine, in one go.
#
#   benchmarks/gpu_suite.sh [OUT_DIR] [NAME ...]
#
# OUT_DIR defaults to $OUT (the device runner's output folder), else ./bench-out. Each
# benchmark appends its final JSON line to OUT_DIR/<benchmark>.jsonl as soon as it ends
# and keeps its full output in OUT_DIR/<name>.log, so a run cut short keeps what finished.
# NAMEs pick a subset: throughput packed e2e throughput_compile packed_compile (default: the
# first three, under 9 minutes with their time limits; the compiled variants in a second
# call, since the device runner allows 10 minutes per command).
#
# The GPU image has torch and torchvision but not Ray, lark, jsonschema, ...: fetch them
# once here with `../shared/tools/gpu-wheels.sh` (writes .whl/, git-ignored) and carry
# .whl along; this script installs them into /tmp/site and puts that and the checkout on
# PYTHONPATH (nothing is installed into the system Python).
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-$PWD/bench-out}}"
[ $# -gt 0 ] && shift
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(throughput packed e2e)
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"

SITE="${HPOC_SITE:-/tmp/site}"
if ! "$PY" -c "import ray, lark, jsonschema" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    [ -d "$SITE/ray" ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$SITE" .whl/*.whl
  else
    echo "gpu_suite: Ray is not importable and there is no .whl/ (run ../shared/tools/gpu-wheels.sh here and carry .whl)" >&2
    exit 2
  fi
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, ray; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'ray', ray.__version__)"
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"

run() {  # run NAME SECONDS SCRIPT ARGS...
  local name=$1 limit=$2 started=$SECONDS
  shift 2
  timeout --signal=INT --kill-after=20 "$limit" "$PY" "$@" --out "$OUT_DIR" > "$OUT_DIR/$name.log" 2>&1
  local code=$?
  echo "== $name: exit $code after $((SECONDS - started)) s"
  grep '^{' "$OUT_DIR/$name.log" | tail -1
}

for name in "${NAMES[@]}"; do
  case "$name" in
    throughput)          # ~1 min: 4 x 100 batches of 128 per loop
      run throughput 90 benchmarks/trainer_throughput.py --images 12800 --reps 3 ;;
    packed)              # ~2 min: seed loop alone, then 4 and 8 trials on the GPU
      run packed 150 benchmarks/packed_trials.py --pack 4 8 --images 30000 --epochs 3 ;;
    e2e)                 # ~4 min: 8 trials x 3 epochs with ASHA, seed-style then hpoc
      run e2e 300 benchmarks/study_e2e.py --trials 8 --epochs 3 --images 12000 --pack 4 ;;
    throughput_compile)  # ~2 min: torch.compile (CUDA graphs) takes a while to build
      run throughput_compile 180 benchmarks/trainer_throughput.py --images 12800 --reps 3 --compile ;;
    packed_compile)      # ~3 min: 4 compiled trials on the GPU (each compiles its own graphs)
      run packed_compile 240 benchmarks/packed_trials.py --pack 4 --images 30000 --epochs 4 --compile ;;
    *) echo "gpu_suite: unknown benchmark $name (throughput packed e2e throughput_compile packed_compile)" >&2 ;;
  esac
done
