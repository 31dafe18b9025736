#!/usr/bin/env bash
# vireo serve against the raw engine, and under load:
#  1. overhead: one streaming client's decode rate through the server (vireo bench serve, TPOT)
#     against `vireo bench`'s tg rate on the same model and threads, and the time to first token
#     the server adds over the engine's own prefill of the same prompt;
#  2. soak: many concurrent streaming clients for a while, a quarter hanging up at random: every
#     other stream must end with [DONE], the server must stay up, its memory must not grow.
#
#   scripts/serve-check.sh [--model FILE] [-t THREADS] [--rounds 3] [--clients 64] [--seconds 120] [--parallel 16]
#
# Default model: a synthetic Llama-3.2-1B Q4_0 with Llama 3's vocabulary. Needs Node.js for the soak.
set -euo pipefail
cd "$(dirname "$0")/.."
VIREO=${VIREO:-build/vireo}
MODEL=""; THREADS=$(nproc); CLIENTS=64; SECONDS_=120; PARALLEL=16; PROMPT=32; GEN=128; ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    -t) THREADS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
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

echo "[1/3] starting vireo serve" >&2
"$VIREO" serve "$MODEL" --alias m --port 0 -t "$THREADS" --parallel "$PARALLEL" > "$OUT/serve.out" 2> "$OUT/serve.err" &
SERVER_PID=$!
for _ in $(seq 600); do grep -q "http://" "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' "$OUT/serve.out" | sed 's|/v1$||')
[ -n "$URL" ] || { echo "the server did not start:"; cat "$OUT/serve.err"; exit 1; } >&2

# Alternated rounds, so both see the same machine state. Greedy requests: `vireo bench` times the
# forward passes alone, so sampling (a separate, measured cost) stays out of the comparison.
for round in $(seq "$ROUNDS"); do
  echo "[2/3] round $round/$ROUNDS: vireo bench pp$PROMPT and tg$GEN, then one streaming client through the server" >&2
  "$VIREO" bench "$MODEL" -p "$PROMPT" -n "$GEN" -r 3 -t "$THREADS" -o json --no-probe > "$OUT/engine-$round.json"
  "$VIREO" bench serve --url "$URL" --model m --endpoint completions --concurrency 1 --requests 3 \
    --input-len "$PROMPT" --output-len "$GEN" --extra-body '{"temperature": 0}' -o json > "$OUT/serve1-$round.json"
done

if [ "$CLIENTS" -gt 0 ] && command -v node > /dev/null; then
  echo "[3/3] soak: $CLIENTS clients for $SECONDS_ s, a quarter hanging up at random" >&2
  node tests/server/soak.mjs "$URL" "$CLIENTS" "$SECONDS_" "$SERVER_PID" --model m > "$OUT/soak.json"
fi

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, sys, os, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def rate(engine, kind):
    for r in engine["results"]:
        if (kind == "pp" and r["n_prompt"] > 0 and r["n_gen"] == 0) or (kind == "tg" and r["n_gen"] > 0 and r["n_prompt"] == 0):
            return r["avg_ts"], r
    raise SystemExit(f"no {kind} result in vireo bench's output")
tg, served, ratio, added, ttft = [], [], [], [], []
for i in range(1, rounds + 1):
    engine = json.load(open(f"{out}/engine-{i}.json"))
    pp, pp_r = rate(engine, "pp"); t, _ = rate(engine, "tg")
    s = json.load(open(f"{out}/serve1-{i}.json"))["summary"]
    sv = 1000.0 / s["tpot_ms"]["median"]
    tg.append(t); served.append(sv); ratio.append(sv / t)
    ttft.append(s["ttft_ms"]["median"]); added.append(s["ttft_ms"]["median"] - 1000.0 * pp_r["n_prompt"] / pp)
med = statistics.median
fmt = lambda xs, f: " ".join(f.format(x) for x in xs)
rows = [
    ("engine decode (vireo bench tg), per round", fmt(tg, "{:.2f}") + " tok/s"),
    ("served decode (1 client, 1000/TPOT)", fmt(served, "{:.2f}") + " tok/s"),
    ("served / engine, median of rounds", f"{med(ratio):.3f}  ({fmt(ratio, '{:.3f}')}; target >= 0.98)"),
    ("served TTFT (median per round)", fmt(ttft, "{:.1f}") + " ms"),
    ("TTFT added over the engine's prefill", f"{med(added):.1f} ms  ({fmt(added, '{:.1f}')}; target < 5 ms)"),
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
