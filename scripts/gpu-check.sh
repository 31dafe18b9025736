#!/usr/bin/env bash
# The GPU check in one run (at most a few minutes): build with CUDA, run the CUDA kernel tests
# (and, when compute-sanitizer is present, its memcheck over them), then the decode-product
# benchmark on Llama-3-8B shapes: GB/s of weight reads and the fraction of the device's copy
# bandwidth. Prints a short table last.
#
#   scripts/gpu-check.sh [BUILD_DIR]      (default build-gpu; CUDA arch 90 unless CUDAARCHS is set)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-gpu}
if [ ! -x "$B/vireo_tests" ] || [ ! -x "$B/vireo_microbench" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVIREO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDAARCHS:-90}"
  cmake --build "$B" --target vireo_tests vireo_microbench
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$B/vireo_tests" --gtest_filter='Cuda*'
if command -v compute-sanitizer > /dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 1 "$B/vireo_tests" --gtest_filter='Cuda*' > /tmp/vireo-memcheck.log 2>&1 \
    && echo "compute-sanitizer memcheck: clean" || { tail -30 /tmp/vireo-memcheck.log; exit 1; }
fi
"$B/vireo_microbench" --benchmark_filter=CudaGemv --benchmark_format=json > /tmp/vireo-gemv.json
python3 - <<'PY'
import json
d = json.load(open("/tmp/vireo-gemv.json"))
print(f"\n{'product':34} {'tokens':>6} {'us':>9} {'GB/s':>8} {'of copy':>8}")
for b in d["benchmarks"]:
    if "GB/s" not in b: continue
    name = b["name"].split("/")[0].replace("BM_CudaGemv/", "")
    tokens = b["name"].split("/")[1] if "/" in b["name"] else "1"
    us = b["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
    print(f"{name:34} {tokens:>6} {us:9.1f} {b['GB/s']:8.0f} {b['of_copy']:8.2f}")
print(f"device copy bandwidth (read + write): {d['benchmarks'][0].get('copy_GB/s', 0):.0f} GB/s; device: {d['benchmarks'][0].get('label', '')}")
PY
