#!/usr/bin/env bash
# vireo against llama.cpp on this machine's CPU: the same synthetic Llama-3.2-1B GGUF files, the
# same thread count, the same tests (pp = prefill of P tokens, tg = N tokens decoded one at a
# time, both from an empty cache), alternated rounds so that both see the same machine state.
# llama.cpp runs through node-llama-cpp (tests/reference), vireo through `vireo bench`.
#
#   scripts/bench-cpu.sh [-t THREADS] [--types q4_0,q8_0,q4_k_m] [--rounds 3] [--pp 128] [--tg 32]
#
# Prints one row per type: each engine's median pp and tg rates, the ratios, and vireo's peak RSS
# against weights + KV cache.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=$(nproc); TYPES=q4_0,q8_0,q4_k_m; ROUNDS=3; PP=128; TG=32
VIREO=${VIREO:-build/vireo}
while [ $# -gt 0 ]; do
  case "$1" in
    -t) THREADS=$2; shift 2 ;;
    --types) TYPES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --pp) PP=$2; shift 2 ;;
    --tg) TG=$2; shift 2 ;;
    -h|--help) sed -n 2,11p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIREO" ] || { echo "build vireo first (make build) or set VIREO" >&2; exit 1; }
[ -d tests/reference/node_modules/node-llama-cpp ] || { echo "run scripts/install-deps.sh first (llama.cpp reference)" >&2; exit 1; }
export VIREO_CACHE=${VIREO_CACHE:-$PWD/.cache}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT

for type in ${TYPES//,/ }; do
  # Make (once) the model through vireo bench itself, so both engines read the same cached file.
  "$VIREO" bench --synthetic llama3.2-1b --type "$type" -p 1 -n 0 -r 1 -t "$THREADS" --device cpu -o json > /dev/null
  model="$VIREO_CACHE/synth/llama3.2-1b-$type.gguf"
  for round in $(seq "$ROUNDS"); do
    echo "[$type round $round/$ROUNDS] llama.cpp ..." >&2
    node tests/reference/llama_ref.mjs bench "$model" --pp "$PP" --tg "$TG" --reps 3 --threads "$THREADS" \
      > "$OUT/llama-$type-$round.json" 2>/dev/null
    echo "[$type round $round/$ROUNDS] vireo ..." >&2
    "$VIREO" bench "$model" -p "$PP" -n "$TG" -r 3 -t "$THREADS" --device cpu -o json --no-probe > "$OUT/vireo-$type-$round.json"
    # vireo run's own decode rate on the same file (sampling included), for the bench-vs-run check.
    "$VIREO" run "$model" --prompt-ids 3 -n "$((TG + 1))" --ignore-eos --temp 0 -t "$THREADS" --device cpu --json > "$OUT/run-$type-$round.json"
  done
done

python3 - "$OUT" "$TYPES" "$ROUNDS" "$PP" "$TG" "$THREADS" <<'PY'
import json, os, statistics, sys
out, types, rounds, pp, tg, threads = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
print(f"\nsynthetic llama3.2-1b, {threads} threads, pp{pp} / tg{tg}, {rounds} alternated rounds x 3 repetitions (medians)")
print(f"| type   | llama.cpp pp | vireo pp | ratio | llama.cpp tg | vireo tg | ratio | vireo run tg | bench/run | vireo peak RSS | weights + KV | RSS / (w+KV) |")
print(f"| ------ | -----------: | -------: | ----: | -----------: | -------: | ----: | -----------: | --------: | -------------: | -----------: | -----------: |")
for t in types:
    lp, lt, vp, vt, rss, wkv, rt = [], [], [], [], [], [], []
    for r in range(1, rounds + 1):
        rt.append(json.load(open(os.path.join(out, f"run-{t}-{r}.json")))["timings"]["decode_tokens_per_s"])
        l = json.load(open(os.path.join(out, f"llama-{t}-{r}.json")))
        lp += l["pp_runs"]; lt += l["tg_runs"]
        for res in json.load(open(os.path.join(out, f"vireo-{t}-{r}.json")))["results"]:
            (vp if res["n_prompt"] else vt).extend(s["tokens_per_s"] for s in res["samples"])
            rss.append(res["peak_rss_bytes"]); wkv.append(res["model_bytes"] + res["kv_bytes"])
    m = statistics.median
    g = lambda b: f"{b / 2**20:.0f} MiB"
    print(f"| {t:6} | {m(lp):12.1f} | {m(vp):8.1f} | {m(vp)/m(lp):5.2f} | {m(lt):12.2f} | {m(vt):8.2f} | {m(vt)/m(lt):5.2f} "
          f"| {m(rt):12.2f} | {m(vt)/m(rt):9.3f} | {g(max(rss)):>14} | {g(max(wkv)):>12} | {max(rss)/max(wkv):12.3f} |")
PY
