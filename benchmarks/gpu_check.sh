#!/usr/bin/env bash
# One command for a machine with a GPU: correctness on the device, then timings, all into OUT (default ./gpu-out).
#   bash benchmarks/gpu_check.sh [OUT]
# Needs the engine installed (pip install -e '.[test]'); no weights (random full-size architectures for timing).
# The bench times every preset in fp32 and in what `--precision auto` picks there (bf16, or fp16), side by side,
# then the real `clipasso sketch --preset paper --early-stop 0` end to end beside its prediction
# (REAL_RUN=fast,paper for both, REAL_RUN= for none).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-out}"
real_run="${REAL_RUN-paper}"
mkdir -p "$out"
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'none')")
echo "device: $device" | tee "$out/summary.txt"
[ "$device" = none ] && { echo "no CUDA or MPS device here" | tee -a "$out/summary.txt"; exit 1; }
python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu-tests.txt" | tail -3
python3 benchmarks/bench_render.py --device "$device" --json "$out/render.json" 2>&1 | tee "$out/render.txt"
python3 -m clipasso_engine bench --device "$device" ${real_run:+--real-run "$real_run"} --json "$out/bench.json" 2>&1 |
    tee "$out/bench.txt"
