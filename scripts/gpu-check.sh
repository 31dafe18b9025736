#!/usr/bin/env bash
# The GPU check in one run: build with CUDA (unless VIREO_BIN names a folder with a built vireo
# and vireo_tests), the CUDA tests (kernels against the reference, the CUDA backend against the
# CPU backend, whole models), compute-sanitizer's memcheck over the kernel tests when present,
# then `vireo bench` on Llama-3-8B shapes (synthetic, cached) against llama.cpp's CUDA build on the
# same files, batched decode of 16 to 64 sequences (Q4_0), and vireo's top-1 agreement with that
# llama.cpp over 256 positions of each model (scripts/llama-agreement.cpp). Prints short tables last.
#
#   scripts/gpu-check.sh [--types q4_0,q8_0,f16] [--no-peer] [--no-tests]
#   env: BUILD (build-gpu), CUDAARCHS (90a), VIREO_BIN, LLAMA_BENCH (a llama-bench to use),
#        LLAMA_SRC (a llama.cpp checkout or git bundle; default: the one in node-llama-cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=q4_0,q8_0,f16; PEER=1; TESTS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --types) TYPES=$2; shift 2 ;;
    --no-peer) PEER=0; shift ;;
    --no-tests) TESTS=0; shift ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
B=${BUILD:-build-gpu}
BIN=${VIREO_BIN:-$B}
if [ -z "${VIREO_BIN:-}" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVIREO_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDAARCHS:-90a}" > /dev/null
  cmake --build "$B" --target vireo vireo_tests
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
LOG=$(mktemp -d); trap 'rm -rf "$LOG"' EXIT

if [ "$TESTS" = 1 ]; then
  "$BIN/vireo_tests" --gtest_filter='Cuda*' 2>&1 | tee "$LOG/tests.txt" | grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) |top-1|^  " || true
  grep -q "FAILED" "$LOG/tests.txt" && { echo "CUDA tests failed" >&2; exit 1; }
  if command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 1 "$BIN/vireo_tests" \
      --gtest_filter='CudaGemv*:CudaQGemm*:CudaBackend.ElementwiseAndRowOpsMatchTheCpu:CudaBackend.RowsRopeCacheAndAttentionMatchTheCpu:CudaBackend.GroupedDecodeAttentionMatchesTheCpu:CudaBackend.PagedAttentionMatchesTheCpu:CudaBackend.ProductsOfEveryTypeMatchTheReference' \
      > "$LOG/memcheck.txt" 2>&1 && echo "compute-sanitizer memcheck: clean" || { tail -30 "$LOG/memcheck.txt"; exit 1; }
  fi
fi

# llama.cpp's CUDA build, from the source shipped in node-llama-cpp (a few minutes on 16 cores).
if [ "$PEER" = 1 ] && [ -z "${LLAMA_BENCH:-}" ]; then
  SRC=${LLAMA_SRC:-tests/reference/node_modules/node-llama-cpp/llama/gitRelease.bundle}
  LB=${LLAMA_BUILD:-/tmp/llama-cuda}
  if [ ! -x "$LB/build/bin/llama-bench" ]; then
    if [ -f "$SRC" ]; then rm -rf "$LB"; git clone -q "$SRC" "$LB"; else LB=$SRC; fi
    cmake -S "$LB" -B "$LB/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      > "$LOG/llama-cmake.txt" 2>&1 || { tail -20 "$LOG/llama-cmake.txt"; exit 1; }
    cmake --build "$LB/build" --target llama-bench > "$LOG/llama-build.txt" 2>&1 || { tail -20 "$LOG/llama-build.txt"; exit 1; }
  fi
  LLAMA_BENCH=$LB/build/bin/llama-bench
fi

export VIREO_CACHE=${VIREO_CACHE:-$PWD/.cache}
for type in ${TYPES//,/ }; do
  args=(--synthetic llama3-8b --type "$type" -p 2048 -n 128 -r 3 --device cuda -o json)
  [ "$PEER" = 1 ] && args+=(--peer llama.cpp --peer-bin "$LLAMA_BENCH")
  "$BIN/vireo" bench "${args[@]}" > "$LOG/bench-$type.json"
done
# Batched decode (the server's continuous batching): 16, 32 and 64 sequences at context 1,024.
if [[ ",$TYPES," == *,q4_0,* ]]; then
  "$BIN/vireo" bench --synthetic llama3-8b --type q4_0 -p 0 -n 32 -b 16,32,64 -d 1024 -r 2 --no-probe --device cuda -o json \
    > "$LOG/batched-q4_0.json"
fi

# Top-1 agreement with llama.cpp on the GPU: the same 256 random ids scored by both engines on the
# models the benchmark wrote (needs the llama.cpp build above, not just a llama-bench).
if [ "$PEER" = 1 ] && [ -n "${LB:-}" ] && [ -f "$LB/include/llama.h" ]; then
  c++ -O2 -std=c++17 -I "$LB/include" -I "$LB/ggml/include" -I tests scripts/llama-agreement.cpp -o "$LOG/llama-agreement" \
    -L "$LB/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$LB/build/bin"
  ids=$(awk 'BEGIN { srand(7); for (i = 0; i < 256; i++) printf "%s%d", (i ? "," : ""), int(rand() * 128000) }')
  for type in ${TYPES//,/ }; do
    model=$VIREO_CACHE/synth/llama3-8b-$type.gguf
    "$BIN/vireo" score "$model" --device cuda --prompt-ids "$ids" --logits-out "$LOG/logits-$type.bin" > /dev/null
    "$LOG/llama-agreement" "$model" "$ids" "$LOG/logits-$type.bin" > "$LOG/agreement-$type.json" || true
    rm -f "$LOG/logits-$type.bin"
  done
fi

python3 - "$LOG" "$TYPES" <<'PY'
import json, sys
log, types = sys.argv[1], sys.argv[2].split(",")
print("\n| type | test | vireo tok/s | llama.cpp tok/s | ratio | vireo GB/s | of copy bw |")
print("|------|------|------------:|----------------:|------:|-----------:|-----------:|")
hw = {}
nan = float("nan")
for t in types:
    d = json.load(open(f"{log}/bench-{t}.json"))
    hw = d.get("hardware", hw)
    peer = {r["test"]: r for r in d["results"] if r.get("engine") == "llama.cpp"}
    for r in d["results"]:
        if r.get("engine") != "vireo": continue
        p = peer.get(r["test"], {})
        ratio = r["avg_ts"] / p["avg_ts"] if p.get("avg_ts") else nan
        roof = r.get("roofline", {})
        print(f"| {t} | {r['test']} | {r['avg_ts']:.1f} | {p.get('avg_ts', nan):.1f} | {ratio:.2f} | "
              f"{roof.get('achieved_gb_s', nan):.0f} | {roof.get('bandwidth_fraction', nan):.2f} |")
print("\n| type | top-1 vs llama.cpp | decisive top-1 (positions) | mean KL | llama.cpp one token at a time: top-1, decisive |")
print("|------|-------------------:|---------------------------:|--------:|------------------------------------------------:|")
for t in types:
    try: a = json.load(open(f"{log}/agreement-{t}.json"))
    except (OSError, ValueError): continue
    v, f = a["vireo"], a["llama_one_at_a_time"]
    print(f"| {t} | {v['top1']:.4f} | {v['decisive_top1']:.4f} ({v['decisive']}) | {v['mean_kl']:.2e} | {f['top1']:.4f}, {f['decisive_top1']:.4f} |")
try:
    batched = json.load(open(f"{log}/batched-q4_0.json"))["results"]
    print("\n| q4_0, batched decode | tok/s in total |")
    print("|----------------------|---------------:|")
    for r in batched: print(f"| {r['test']} | {r['avg_ts']:.1f} |")
except (OSError, ValueError, KeyError):
    pass
print(f"device: {hw.get('device', '?')}; {hw.get('mem_method', '')} {hw.get('mem_gb_s', 0):.0f} GB/s; F16 GEMM {hw.get('float_tflops', 0):.0f} TFLOP/s")
PY
