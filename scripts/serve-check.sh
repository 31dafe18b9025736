#!/usr/bin/env bash
# vireo serve against the raw engine, and under load:
#  1. overhead: one streaming client's decode rate through the server (vireo bench serve, TPOT)
#     against `vireo bench`'s tg rate on the same model and threads, and the time to first token
#     the server adds over the engine's own prefill of the same prompt;
#  2. soak: many concurrent streaming clients for a while, a quarter hanging up at random: every
#     other stream must end with [DONE], the server must stay up, its memory must not grow.
#
#   scripts/serve-check.sh [--model FILE] [-t THREADS] [--clients 64] [--seconds 120] [--parallel 16]
#
# Default model: a synthetic Llama-3.2-1B Q4_0 with Llama 3's vocabulary. Needs Node.js for the soak.
set -euo pipefail
cd "$(dirname "$0")/.."
VIREO=${VIREO:-build/vireo}
MODEL=""; THREADS=$(nproc); CLIENTS=64; SECONDS_=120; PARALLEL=16; PROMPT=32; GEN=128
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    -t) THREADS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIREO" ] || { echo "build vireo first (make build) or set VIREO" >&2; exit 1; }
export VIREO_CACHE=${VIREO_CACHE:-$PWD/.cache}
OUT=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT

if [ -z "$MODEL" ]; then
  # Random weights over a real vocabulary, so that generated tokens are text (the built-in
  # vocabulary pads with unused tokens, which render as nothing).
  VOCAB=${VIREO_SHARED_DIR:-../shared}/vocab/ggml-vocab-llama-bpe.gguf
  [ -f "$VOCAB" ] || { echo "give --model FILE (a model with a real tokenizer); $VOCAB is absent" >&2; exit 1; }
  MODEL="$VIREO_CACHE/synth/llama3.2-1b-q4_0-bpe.gguf"
  mkdir -p "$(dirname "$MODEL")"
  [ -f "$MODEL" ] || "$VIREO" synth --arch llama3.2-1b --type q4_0 --vocab "$VOCAB" -o "$MODEL" > /dev/null
fi

echo "[1/4] engine: vireo bench pp$PROMPT and tg$GEN" >&2
"$VIREO" bench "$MODEL" -p "$PROMPT" -n "$GEN" -r 3 -t "$THREADS" -o json --no-probe > "$OUT/engine.json"

echo "[2/4] starting vireo serve" >&2
"$VIREO" serve "$MODEL" --alias m --port 0 -t "$THREADS" --parallel "$PARALLEL" > "$OUT/serve.out" 2> "$OUT/serve.err" &
SERVER_PID=$!
for _ in $(seq 600); do grep -q "http://" "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' "$OUT/serve.out" | sed 's|/v1$||')
[ -n "$URL" ] || { echo "the server did not start:"; cat "$OUT/serve.err"; exit 1; } >&2

echo "[3/4] one streaming client: vireo bench serve (prompt $PROMPT, output $GEN tokens, 5 requests)" >&2
"$VIREO" bench serve --url "$URL" --model m --endpoint completions --concurrency 1 --requests 5 \
  --input-len "$PROMPT" --output-len "$GEN" -o json > "$OUT/serve1.json"

SOAK="skipped (no node)"
if command -v node > /dev/null; then
  echo "[4/4] soak: $CLIENTS clients for $SECONDS_ s, a quarter hanging up at random" >&2
  node tests/server/soak.mjs "$URL" "$CLIENTS" "$SECONDS_" "$SERVER_PID" --model m > "$OUT/soak.json"
fi

python3 - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
engine = json.load(open(f"{out}/engine.json"))
def rate(kind):
    for r in engine["results"]:
        if (kind == "pp" and r["n_prompt"] > 0 and r["n_gen"] == 0) or (kind == "tg" and r["n_gen"] > 0 and r["n_prompt"] == 0):
            return r["avg_ts"], r
    raise SystemExit(f"no {kind} result in vireo bench's output")
pp, pp_r = rate("pp"); tg, _ = rate("tg")
s = json.load(open(f"{out}/serve1.json"))["summary"]
tpot_ms = s["tpot_ms"]["median"]; ttft_ms = s["ttft_ms"]["median"]
served = 1000.0 / tpot_ms
prefill_ms = 1000.0 * pp_r["n_prompt"] / pp
rows = [
    ("engine decode (vireo bench tg)", f"{tg:.2f} tok/s"),
    ("served decode (1 client, 1000/TPOT)", f"{served:.2f} tok/s"),
    ("served / engine", f"{served / tg:.3f}  (target >= 0.98)"),
    ("engine prefill of the prompt", f"{prefill_ms:.1f} ms"),
    ("served TTFT (median)", f"{ttft_ms:.1f} ms"),
    ("TTFT added by the server", f"{ttft_ms - prefill_ms:.1f} ms  (target < 5 ms)"),
]
if os.path.exists(f"{out}/soak.json"):
    k = json.load(open(f"{out}/soak.json"))
    rows += [
        (f"soak: {k['clients']} clients, {k['seconds']} s", f"{k['completed']} completed, {k['abandoned']} hung up, "
         f"{k['missing_done']} without [DONE], {k['failed']} failed {k['errors'] or ''}"),
        ("soak: server alive after", str(k["server_alive"])),
        ("soak: RSS early -> late", f"{k['rss_early_kb']/1024:.1f} -> {k['rss_late_kb']/1024:.1f} MiB "
         f"({100*k['rss_growth']:+.2f}%, target < 5%)"),
    ]
w = max(len(r[0]) for r in rows)
print()
for a, b in rows:
    print(f"{a:<{w}}  {b}")
EOF
