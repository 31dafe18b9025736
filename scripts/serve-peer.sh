#!/usr/bin/env bash
# vireo serve against llama.cpp's llama-server on one GPU: the same GGUF, the same load from
# `vireo bench serve` (streaming completions of fixed prompt and output lengths, every client
# sending its next request as soon as the last one ends) at each concurrency. Prints output
# tokens/s, TTFT and TPOT (median and p99) of both servers, and vireo's ratios.
#
#   scripts/serve-peer.sh [--model FILE | --arch llama3-8b --type q4_0] [--clients 32,64]
#                         [--requests 4] [--input-len 256] [--output-len 128] [--batch-tokens 512]
#                         [--extra-body '{"temperature": 0}']
#
# --requests is per client. Requests sample at the API's defaults (temperature 1) unless
# --extra-body sets other parameters (merged into every request to both servers). Both servers
# get one sequence slot per client, 1,024 cells of context each, flash attention and every layer
# on the GPU; both are warmed up before the timed runs.
# llama-server is built from the llama.cpp source in node-llama-cpp (CUDA, sm_90; a few minutes)
# unless LLAMA_SERVER names one.
# env: VIREO (build-gpu/vireo), LLAMA_SERVER, LLAMA_SRC (a llama.cpp checkout or git bundle),
#      LLAMA_BUILD (/tmp/llama-cuda), CUDAARCHS (90), VIREO_SHARED_DIR (the Llama 3 vocabulary).
set -euo pipefail
cd "$(dirname "$0")/.."
VIREO=${VIREO:-build-gpu/vireo}
MODEL=""; ARCH=llama3-8b; TYPE=q4_0; CLIENTS=32,64; PER_CLIENT=4; INPUT=256; OUTPUT=128; STEP=512; EXTRA='{}'
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --type) TYPE=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --requests) PER_CLIENT=$2; shift 2 ;;
    --input-len) INPUT=$2; shift 2 ;;
    --output-len) OUTPUT=$2; shift 2 ;;
    --batch-tokens) STEP=$2; shift 2 ;;
    --extra-body) EXTRA=$2; shift 2 ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIREO" ] || { echo "build vireo with CUDA first (scripts/gpu-check.sh builds build-gpu) or set VIREO" >&2; exit 1; }
export VIREO_CACHE=${VIREO_CACHE:-$PWD/.cache}
OUT=$(mktemp -d)
SERVER_PID=""
stop_server() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi; }
trap 'stop_server; rm -rf "$OUT"' EXIT
MAXC=$(echo "$CLIENTS" | tr ',' '\n' | sort -n | tail -1)

if [ -z "$MODEL" ]; then
  # Random weights over Llama 3's real vocabulary, so both servers tokenize and detokenize text.
  VOCAB=${VIREO_SHARED_DIR:-../shared}/vocab/ggml-vocab-llama-bpe.gguf
  [ -f "$VOCAB" ] || { echo "give --model FILE (a model with a real tokenizer); $VOCAB is absent" >&2; exit 1; }
  MODEL="$VIREO_CACHE/synth/$ARCH-$TYPE-bpe.gguf"
  mkdir -p "$(dirname "$MODEL")"
  if [ ! -f "$MODEL" ]; then
    echo "[setup] vireo synth --arch $ARCH --type $TYPE (once)" >&2
    "$VIREO" synth --arch "$ARCH" --type "$TYPE" --vocab "$VOCAB" -o "$MODEL" > /dev/null
  fi
fi

if [ -z "${LLAMA_SERVER:-}" ]; then
  SRC=${LLAMA_SRC:-tests/reference/node_modules/node-llama-cpp/llama/gitRelease.bundle}
  LB=${LLAMA_BUILD:-/tmp/llama-cuda}
  if [ ! -x "$LB/build/bin/llama-server" ]; then
    echo "[setup] building llama.cpp's llama-server (CUDA)" >&2
    if [ -f "$SRC" ]; then [ -d "$LB/.git" ] || { rm -rf "$LB"; git clone -q "$SRC" "$LB"; }; else LB=$SRC; fi
    cmake -S "$LB" -B "$LB/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDAARCHS:-90}" \
      -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF > "$OUT/llama-cmake.txt" 2>&1 || { tail -20 "$OUT/llama-cmake.txt"; exit 1; }
    cmake --build "$LB/build" --target llama-server > "$OUT/llama-build.txt" 2>&1 || { tail -20 "$OUT/llama-build.txt"; exit 1; }
  fi
  LLAMA_SERVER=$LB/build/bin/llama-server
fi

wait_up() {  # URL: until GET /health answers 200 (llama-server answers 503 while loading)
  for _ in $(seq 1200); do
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" "$1" 2> /dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.25
  done
  return 1
}

load() {  # NAME URL: a warm-up, then each concurrency
  local name=$1 url=$2
  "$VIREO" bench serve --url "$url" --model m --endpoint completions -c "$MAXC" -n "$MAXC" --input-len "$INPUT" \
    --output-len 16 --seed 99 --extra-body "$EXTRA" -o json > /dev/null
  for c in ${CLIENTS//,/ }; do
    echo "[$name] $c clients x $PER_CLIENT requests" >&2
    "$VIREO" bench serve --url "$url" --model m --endpoint completions -c "$c" -n "$((c * PER_CLIENT))" \
      --input-len "$INPUT" --output-len "$OUTPUT" --seed "$c" --extra-body "$EXTRA" -o json > "$OUT/$name-$c.json"
  done
}

PORT=$((20000 + RANDOM % 20000))
echo "[llama-server] starting" >&2
"$LLAMA_SERVER" -m "$MODEL" --alias m --host 127.0.0.1 --port "$PORT" -ngl 99 -fa on -np "$MAXC" -c "$((MAXC * 1024))" \
  -b 2048 -ub "$STEP" --no-webui > "$OUT/llama-server.log" 2>&1 &
SERVER_PID=$!
wait_up "http://127.0.0.1:$PORT" || { echo "llama-server did not start:"; tail -20 "$OUT/llama-server.log"; exit 1; } >&2
load llama-server "http://127.0.0.1:$PORT"
stop_server

echo "[vireo serve] starting" >&2
"$VIREO" serve "$MODEL" --alias m --port 0 --device cuda --parallel "$MAXC" --kv-size "$((MAXC * 1024))" -b "$STEP" \
  --queue "$((4 * MAXC))" > "$OUT/vireo.out" 2> "$OUT/vireo.err" &
SERVER_PID=$!
for _ in $(seq 1200); do grep -q "http://" "$OUT/vireo.out" 2>/dev/null && break; sleep 0.25; done
URL=$(grep -o 'http://[^ ]*' "$OUT/vireo.out" | sed 's|/v1$||' || true)
[ -n "$URL" ] || { echo "vireo serve did not start:"; tail -20 "$OUT/vireo.err"; exit 1; } >&2
load vireo "$URL"
# Where vireo's scheduler spent the whole load (warm-up included), from its /metrics.
python3 - "$URL" <<'EOF' >&2 || true
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode()
m = {k: float(v) for k, v in re.findall(r'^(vireo_[a-z_]+)\{[^}]*\} ([0-9.e+-]+)$', text, re.M)}
steps = m.get("vireo_forward_steps", 0)
if steps:
    print(f"[vireo serve] {steps:.0f} steps, {m['vireo_forward_tokens'] / steps:.1f} tokens a step "
          f"({m['vireo_forward_decode_tokens'] / steps:.1f} decoding); forward {m['vireo_forward_microseconds'] / steps / 1e3:.2f} ms "
          f"and sampling with text {m['vireo_sampling_microseconds'] / steps / 1e3:.2f} ms a step")
EOF
stop_server

python3 - "$OUT" "$CLIENTS" "$MODEL" "$EXTRA" <<'EOF'
import json, sys
out, clients, model, extra = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
print(f"\n{model}: streaming completions ({extra}), output tok/s over the run; TTFT and TPOT in ms (median / p99)")
print("| clients | server | output tok/s | TTFT | TPOT | errors |")
print("| ---: | --- | ---: | ---: | ---: | ---: |")
rows = {}
for c in clients:
    for name in ("llama-server", "vireo"):
        s = json.load(open(f"{out}/{name}-{c}.json"))["summary"]
        rows[(c, name)] = s
        print(f"| {c} | {name} | {s['output_throughput']:.1f} | {s['ttft_ms']['median']:.1f} / {s['ttft_ms']['p99']:.1f} "
              f"| {s['tpot_ms']['median']:.2f} / {s['tpot_ms']['p99']:.2f} | {s['failed']} |")
for (c, name), s in rows.items():
    for e in s.get("errors", []):
        print(f"{c} clients, {name}: {e.get('count', 0)} x {e.get('reason', '?')}: {e.get('example', '')[:200]}")
for c in clients:
    v, l = rows[(c, "vireo")], rows[(c, "llama-server")]
    print(f"{c} clients: vireo/llama-server output tok/s {v['output_throughput'] / l['output_throughput']:.2f}x, "
          f"p99 TPOT {v['tpot_ms']['p99']:.2f} vs {l['tpot_ms']['p99']:.2f} ms")
EOF
