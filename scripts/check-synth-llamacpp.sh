#!/usr/bin/env bash
# Every `vireo synth` preset and type, with the real vocabulary sizes, loaded and run in
# llama.cpp (generation for decoders, an embedding for encoders). One layer per model keeps the
# run short; every layer has the preset's exact shapes. Prints a table; exits 1 on any failure.
#   scripts/check-synth-llamacpp.sh [LAYERS] [TYPES...]
set -uo pipefail
cd "$(dirname "$0")/.."
VIREO=${VIREO:-build/vireo}
REF=tests/reference/llama_ref.mjs
LAYERS=${1:-1}
shift || true
TYPES=("$@")
((${#TYPES[@]})) || TYPES=(f16 bf16 q8_0 q4_0 q4_k_m)
[ -d tests/reference/node_modules/node-llama-cpp ] || { echo "install the reference engine first: scripts/install-deps.sh"; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
printf '%-13s %-7s %-9s %-10s %s\n' preset type size synth_s "llama.cpp result"
for preset in $("$VIREO" synth --list | awk '{print $1}'); do
  for type in "${TYPES[@]}"; do
    out="$tmp/$preset-$type.gguf"
    t0=$(date +%s.%N)
    if ! "$VIREO" synth --arch "$preset" --type "$type" --layers "$LAYERS" -o "$out" >/dev/null 2>"$tmp/err"; then
      printf '%-13s %-7s %-9s %-10s FAIL synth: %s\n' "$preset" "$type" - - "$(head -c 200 "$tmp/err")"
      failures=$((failures + 1))
      continue
    fi
    t1=$(date +%s.%N)
    size=$(du -h "$out" | cut -f1)
    if [ "$preset" = bert-base ] || [ "$preset" = bge-small ]; then
      res=$(node "$REF" embed "$out" --text "hello world" 2>/dev/null)
      ok=$(echo "$res" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.error?"FAIL "+j.error:(j.finite?"ok: embedding of "+j.n:"FAIL: non-finite"))})')
    else
      res=$(node "$REF" generate "$out" --prompt "Once upon a time" --n 8 --ignore-eog --threads 2 2>/dev/null)
      ok=$(echo "$res" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.error?"FAIL "+j.error:(j.tokens.length===8?"ok: generated "+j.tokens.length+" tokens":"FAIL: "+j.tokens.length+" tokens"))})')
    fi
    [[ $ok == ok* ]] || failures=$((failures + 1))
    printf '%-13s %-7s %-9s %-10.1f %s\n' "$preset" "$type" "$size" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$ok"
    rm -f "$out"
  done
done
echo "failures: $failures"
[ "$failures" -eq 0 ]
