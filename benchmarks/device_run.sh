#!/usr/bin/env bash
# Every GPU measurement BENCHMARKS.md records, in one prepared run on a machine with
# an accelerator (JAX with CUDA, flax, optax, chex, torch, scikit-learn and tqdm
# installed there; jaxnn runs from this checkout):
#
#     bash benchmarks/device_run.sh OUT_FOLDER          # on the GPU machine: at most 13.5 minutes
#     STEPS="search" bash benchmarks/device_run.sh OUT  # only these steps (a session's device time is 15 minutes)
#     QUICK=1 bash benchmarks/device_run.sh /tmp/dry    # a dry run of every step, on any machine
#
# Steps, each with its own time limit (one slow step cannot take the others' time)
# and its log and JSON in OUT_FOLDER:
#   precision  benchmarks/precision_check.py: "float32" against float64 SGD, each compute mode
#   benchmark  benchmarks/benchmark.py --repeats 5: works A, B, C, fit_many, against the peers
#   stream     benchmarks/stream_memmap.py --gb 2 --compare: from disk against from memory
#   search     benchmarks/search_gpu.py: jaxnn.search's GPU targets (4,096 configurations, Optuna)
#   space      benchmarks/search_space.py: a depth + width + activation + batch size search, the scikit-learn front door
# The 2 GB dataset is written under /tmp, not OUT_FOLDER (files there come back).
set -uo pipefail
out=${1:?usage: bash benchmarks/device_run.sh OUT_FOLDER}
out=$(mkdir -p "$out" && cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 JAXNN_COMPILATION_CACHE=0 JAXNN_PROGRAM_STORE=0
quick=${QUICK:-0}
python3 -c "import sys, jax, jaxnn; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())" |
    tee "$out/devices.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$out/devices.txt"

failed=0
step() {  # $1: time limit in seconds, $2: name, $3...: the command
    local limit=$1 name=$2 start=$SECONDS
    shift 2
    [[ " ${STEPS:-precision benchmark stream search space} " == *" $name "* ]] || return 0
    echo "== $name: $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local code=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $code after $((SECONDS - start)) s"
    [ "$code" -eq 0 ] || failed=1
}

if [ "$quick" = 1 ]; then
    step 300 precision python3 benchmarks/precision_check.py --out "$out/precision.json"
    step 600 benchmark python3 benchmarks/benchmark.py --quick --out "$out/results.json"
    step 300 stream python3 benchmarks/stream_memmap.py --gb 0.02 --compare --no-progress \
        --file /tmp/jaxnn_device_run/x.npy --out "$out/stream.json"
    step 600 search python3 benchmarks/search_gpu.py --quick --out "$out/search.json"
    step 300 space python3 benchmarks/search_space.py --seeds 1 --out "$out/search_space.json"
else
    step 90 precision python3 benchmarks/precision_check.py --out "$out/precision.json"
    step 330 benchmark python3 benchmarks/benchmark.py --repeats 5 --out "$out/results.json"
    step 120 stream python3 benchmarks/stream_memmap.py --gb 2 --compare --no-progress \
        --file /tmp/jaxnn_device_run/x.npy --out "$out/stream.json"
    step 210 search python3 benchmarks/search_gpu.py --out "$out/search.json"
    step 60 space python3 benchmarks/search_space.py --seeds 1 --out "$out/search_space.json"
fi
exit $failed
