#!/usr/bin/env bash
# The demo: benchmarks the CPU engine on a synthetic Llama-3.2-1B (4-bit, made once and cached),
# quantizes a small synthetic model and describes it, then, when the shared data is present,
# generates a story with the real stories260K model.
set -euo pipefail
VIREO=${1:-build/vireo}
OUT=$(dirname "$VIREO")/demo
mkdir -p "$OUT"
export VIREO_CACHE=${VIREO_CACHE:-$OUT/cache}
echo "== vireo bench (synthetic Llama-3.2-1B, Q4_0)"
"$VIREO" bench
echo
echo "== vireo synth + quantize + info"
"$VIREO" synth --arch llama3.2-1b --layers 2 --type f16 -o "$OUT/llama3.2-1b-2l-f16.gguf" > /dev/null
"$VIREO" quantize "$OUT/llama3.2-1b-2l-f16.gguf" "$OUT/llama3.2-1b-2l-q4_k_m.gguf" --type q4_k_m
"$VIREO" info "$OUT/llama3.2-1b-2l-q4_k_m.gguf"
SHARED="$(cd "$(dirname "$0")/.." && pwd)/../shared/models/stories260K.gguf"
if [ -f "$SHARED" ]; then
  echo
  echo "== vireo run (stories260K)"
  "$VIREO" run "$SHARED" -p "Once upon a time" -n 120 --temp 0
fi
