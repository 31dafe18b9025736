#!/usr/bin/env bash
# The demo: writes a synthetic Llama-3.2-1B-shaped model (4-bit, 2 layers) and shows what vireo
# reads from it; then the real stories260K model when the shared data is present.
set -euo pipefail
VIREO=${1:-build/vireo}
OUT=$(dirname "$VIREO")/demo
mkdir -p "$OUT"
"$VIREO" synth --arch llama3.2-1b --layers 2 --type q4_k_m -o "$OUT/llama3.2-1b-2l-q4_k_m.gguf"
echo
"$VIREO" info "$OUT/llama3.2-1b-2l-q4_k_m.gguf"
SHARED="$(cd "$(dirname "$0")/.." && pwd)/../shared/models/stories260K.gguf"
if [ -f "$SHARED" ]; then
  echo
  "$VIREO" info "$SHARED"
fi
