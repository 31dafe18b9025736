#!/usr/bin/env bash
# Llama 3 BPE encoding speed, vireo vs llama.cpp, same text, same process, one thread.
#   scripts/bench-tokenizer.sh [VOCAB.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && export VIREO_BENCH_VOCAB="$1"
BIN=${BIN:-build/vireo_microbench}
[ -x "$BIN" ] || { echo "build first: cmake --build build --target vireo_microbench"; exit 2; }
out=$("$BIN" --benchmark_filter='Encode' --benchmark_format=json 2>/dev/null)
echo "$out" | node -e '
let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
  const b = JSON.parse(s).benchmarks, get = n => b.find(x => x.name.startsWith(n));
  const v = get("BM_VireoEncode"), l = get("BM_LlamaCppEncode");
  const mbs = x => x && !x.error_occurred ? (x.bytes_per_second / 1e6) : NaN;
  console.log("tokenizer encode (1 thread)   MB/s     tokens");
  console.log(`vireo                         ${mbs(v).toFixed(1).padStart(6)}   ${v ? v.tokens : "-"}`);
  console.log(`llama.cpp                     ${mbs(l).toFixed(1).padStart(6)}   ${l && !l.error_occurred ? l.tokens : (l ? l.error_message : "-")}`);
  console.log(`ratio vireo/llama.cpp         ${(mbs(v) / mbs(l)).toFixed(2)}x`);
  if (v && l && v.tokens !== l.tokens) { console.log("token counts differ!"); process.exit(1); }
});'
