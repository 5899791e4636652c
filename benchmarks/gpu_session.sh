#!/usr/bin/env bash
# One GPU session, prepared to run unattended on a bare machine with one NVIDIA GPU (an H100 or H200: Python
# 3.12, torch with CUDA, triton, transformers, nvcc, pytest; no network) in at most 10 min 10 s (its steps'
# time limits added up), writing at most 8 files to $OUT:
#
#   versions.txt   the device, driver, CUDA, torch, triton, Python versions
#   install.log    the package's build (native kernel, CUDA extension chatvec_fast._cuda: nvcc is there)
#   tests.log      the kernel tests with CUDA visible: triton and cuda (on the device, not the host run)
#                  bit-identical to the float64 oracle
#   kernels.json   bench_gpu_kernel.py: triton and cuda kernel GB/s (K = 1 and 4, bf16 and float32) vs a
#                  device-to-device copy
#   files.json     bench_gpu.py: file-level merge times, native vs triton vs cuda vs the I/O floor
#   tune.json      bench_tune.py: chatvec tune on the GPU against the disk route, the 1.1B triple, 11 alphas,
#                  with --language-id py3langid where lingua is not installed (lingua's 95 MB wheel is past
#                  what can be carried to the machine; py3langid's 4.5 MB is among the carried wheels)
#   session.log    what this script did, with each step's wall time and exit status
#
# Wheels the machine lacks (pybind11, pytest-benchmark, hypothesis) come from ./.gpu-wheels, made here by
# `benchmarks/gpu_wheels.sh` and carried to the machine with the working tree. Without a CUDA device this
# says so in one line and exits 0.
#
#   OUT=/tmp/gpu-session bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/chatvec-gpu-session}
PY=${PYTHON:-python3}

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
  echo "gpu_session.sh: no CUDA device here (torch.cuda.is_available() is False); nothing to measure"
  exit 0
fi
mkdir -p "$OUT"
LOG="$OUT/session.log"
: > "$LOG"

step() {  # step NAME LIMIT_SECONDS COMMAND...: runs it under a time limit, logs its status and wall time
  local name=$1 limit=$2 start status
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@"
  status=$?
  echo "$name: exit $status in $(($(date +%s) - start)) s" | tee -a "$LOG"
  return 0
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv
  nvcc --version | tail -n 2
  "$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); print('device', torch.cuda.get_device_name(0))"
  nproc
} > "$OUT/versions.txt" 2>&1

step install 150 bash -c "
  $PY -m pip install --quiet --no-index --find-links .gpu-wheels pybind11 pytest-benchmark hypothesis py3langid 2>&1
  CHATVEC_REQUIRE_NATIVE=1 $PY -m pip install --quiet --no-build-isolation --no-deps -e . 2>&1
  $PY -c 'import chatvec_fast._cuda as c; print(\"chatvec_fast._cuda: devices\", c.device_count(), \"runtime\", c.runtime_version())' 2>&1
" > "$OUT/install.log" 2>&1

# The kernel grid and the rounding against the oracle, CUDA visible (TRITON_INTERPRET unset: real launches);
# CHATVEC_TRITON_AUTOTUNE=0 compiles one configuration per variant instead of six.
step tests 100 env -u TRITON_INTERPRET CHATVEC_TRITON_AUTOTUNE=0 "$PY" -m pytest -q -x -p no:cacheprovider \
  tests/test_kernel.py tests/test_rounding.py tests/test_fp8_rounding.py tests/test_kernel_codes.py \
  tests/test_cuda.py -k "triton or cuda" > "$OUT/tests.log" 2>&1

step kernels 60 "$PY" benchmarks/bench_gpu_kernel.py --elements 268435456 --reps 12 --json "$OUT/kernels.json" \
  >> "$LOG" 2>&1

step files 150 env CHATVEC_BENCH_DIR=/tmp/chatvec-gpu-bench "$PY" benchmarks/bench_gpu.py --size 1b --rounds 2 \
  --json "$OUT/files.json" >> "$LOG" 2>&1

language_id=lingua
"$PY" -c "import lingua" > /dev/null 2>&1 || language_id=py3langid
step tune 150 env CHATVEC_BENCH_DIR=/tmp/chatvec-gpu-bench "$PY" benchmarks/bench_tune.py --size 1b \
  --alphas 0:1:0.1 --device cuda --language-id "$language_id" --json "$OUT/tune.json" >> "$LOG" 2>&1

echo "done: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
