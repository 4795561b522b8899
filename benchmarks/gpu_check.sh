#!/usr/bin/env bash
# GPU checks in one go, for a machine with a CUDA device (CI has none):
#   1. the CUDA tests (tests/test_cuda.py): features, AE, dual-branch CNN and ACAE on the GPU
#      give the CPU's numbers, and models trained there load and score on a CPU;
#   2. dual-branch CNN training throughput at DCASE scale (benchmarks/bench_dualcnn_gpu.py);
#   3. feature throughput with --device cuda beside librosa (benchmarks/bench_features.py);
#   4. the Table 1 systems end to end through `stethoscope run --device cuda` on real slider clips;
#   5. the whole test suite on that machine (CUDA is picked wherever a test says device=auto).
#
#   benchmarks/gpu_check.sh [LOG_DIR [WORK_DIR]]      (needs STETHOSCOPE_SHARED or ../shared)
# Every step has its own time limit and log (LOG_DIR/NN_name.log); a failed step does not stop the rest.
# The run folder and feature cache of step 4 go to WORK_DIR (default: a new temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-gpu_check_logs}
WORK=${2:-$(mktemp -d)}
mkdir -p "$LOG" "$WORK"
SHARED=${STETHOSCOPE_SHARED:-$(cd .. && pwd)/shared}
export STETHOSCOPE_SHARED=$SHARED PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")

step() {  # step NAME SECONDS CMD...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
    tail -n 25 "$LOG/$name.log"
}

$PY - <<'EOF'
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
EOF
step 01_cuda_tests 90 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
step 02_dualcnn_train 170 $PY benchmarks/bench_dualcnn_gpu.py --epochs 3
step 03_features 60 $PY benchmarks/bench_features.py "$SHARED/data/real/dcase2020_slider" --device cuda
step 04_slider_run 150 $PY -m stethoscope run --systems all --data "$SHARED/data/real/dcase2020_slider" \
    --out "$WORK/slider_run" --device cuda --cache-dir "$WORK/cache"
step 05_test_suite 150 $PY -m pytest -q -p no:cacheprovider $XDIST tests
