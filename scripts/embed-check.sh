#!/usr/bin/env bash
# Embedding throughput of `vireo ingest --embed`, end to end (extract, chunk, write, encode, store
# vectors): a generated English-like corpus of about N chunks, a synthetic bge-small encoder (F16),
# on the device given (default: auto, the GPU when present). Prints chunks/s and the stage times.
#
#   scripts/embed-check.sh [--chunks 4000] [--device auto] [--type f16] [-j JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=4000; DEVICE=auto; TYPE=f16; JOBS=$(nproc)
VIREO=${VIREO:-build/vireo}
while [ $# -gt 0 ]; do
  case "$1" in
    --chunks) CHUNKS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --type) TYPE=$2; shift 2 ;;
    -j) JOBS=$2; shift 2 ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIREO" ] || { echo "build vireo first (make build) or set VIREO" >&2; exit 1; }
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
"$VIREO" synth --arch bge-small --type "$TYPE" -o "$OUT/bge.gguf" > /dev/null
# Files of ~10 chunks each (a chunk is up to 256 tokens of the encoder's tokenizer).
python3 - "$OUT/docs" "$CHUNKS" <<'PY'
import os, random, sys
out, chunks = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = random.Random(7)
words = [w for w in open("/usr/share/dict/words").read().split() if w.isalpha()] if os.path.exists("/usr/share/dict/words") else \
        ["".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
for f in range((chunks + 9) // 10):
    with open(f"{out}/doc{f:05d}.md", "w") as fh:
        for s in range(10):
            fh.write(f"# Section {s}\n\n")
            fh.write(" ".join(rng.choice(words) for _ in range(170)) + ".\n\n")
PY
"$VIREO" ingest "$OUT/docs" --index "$OUT/index" --embed "$OUT/bge.gguf" --device "$DEVICE" -j "$JOBS" --json > "$OUT/report.json"
python3 - "$OUT/report.json" "$DEVICE" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
st = r["stage_busy_s"]
print(f"device {sys.argv[2]}: {r['embedded']} chunks embedded of {r['chunks']} in {r['seconds']:.2f} s = "
      f"{r['embedded'] / r['seconds']:.0f} chunks/s end to end; encoder busy {st.get('embed', 0):.2f} s "
      f"({r['embedded'] / max(st.get('embed', 1e-9), 1e-9):.0f} chunks/s while encoding)")
print("stage busy seconds:", {k: round(v, 2) for k, v in st.items()})
PY
