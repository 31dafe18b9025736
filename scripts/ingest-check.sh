#!/usr/bin/env bash
# The document pipeline's targets, measured on this machine:
#   1. text-layer PDFs end to end (extract, normalise, chunk, index; no embeddings), pages/s;
#   2. plain text and Markdown, MB/s;
#   3. kill -9 at random moments while ingesting a mixed corpus: each re-run must end with an index
#      identical (documents, statuses, chunk texts) to an uninterrupted run's.
#
#   scripts/ingest-check.sh [-j JOBS] [--docs 1000] [--trials 10] [--pdf-copies 40] [--text-mb 64]
#
# The PDFs come from ../shared/pdfs (skipped when absent); the text corpus is generated.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc); DOCS=1000; TRIALS=10; PDF_COPIES=40; TEXT_MB=64
VIREO=${VIREO:-build/vireo}
SHARED=${VIREO_SHARED_DIR:-../shared}
while [ $# -gt 0 ]; do
  case "$1" in
    -j) JOBS=$2; shift 2 ;;
    --docs) DOCS=$2; shift 2 ;;
    --trials) TRIALS=$2; shift 2 ;;
    --pdf-copies) PDF_COPIES=$2; shift 2 ;;
    --text-mb) TEXT_MB=$2; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$VIREO" ] || { echo "build vireo first (make build) or set VIREO" >&2; exit 1; }
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
summary=()

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# 1. Text-layer PDFs.
TEXT_PDFS=(2023-06-20-PV federal-register-2020-17221 issue-33-lorem-ipsum la-precinct-bulletin-2014-p1
  nics-background-checks-2015-11 nics-background-checks-2015-11-rotated scotus-transcript-p1
  senate-expenditures word365_structure)
if [ -d "$SHARED/pdfs" ]; then
  mkdir -p "$OUT/pdfs"
  for c in $(seq 1 "$PDF_COPIES"); do
    for p in "${TEXT_PDFS[@]}"; do cp "$SHARED/pdfs/$p.pdf" "$OUT/pdfs/$p-$c.pdf"; done
  done
  sync
  "$VIREO" ingest -q --json -j "$JOBS" --ocr never --index "$OUT/idx-pdf" "$OUT/pdfs" > "$OUT/pdf.json"
  summary+=("text PDFs: $(field "$OUT/pdf.json" pages) pages in $(printf %.2f "$(field "$OUT/pdf.json" seconds)") s: $(printf %.1f "$(field "$OUT/pdf.json" pages_per_s)") pages/s (target >= 40)")
else
  summary+=("text PDFs: skipped (no $SHARED/pdfs)")
fi

# 2. Plain text and Markdown, generated: TEXT_MB in 1 MB files, half of each.
python3 - "$OUT/text" "$TEXT_MB" <<'PY'
import os, random, sys
out, mb = sys.argv[1], int(sys.argv[2])
random.seed(1)
words = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more can out other into "
         "river mountain protein algorithm theorem vireo harbour lantern quantum velvet meadow cathedral glacier "
         "economy portfolio molecule reactor sonnet engine kernel matrix vector").split()
os.makedirs(out, exist_ok=True)
def para(n):
    s = " ".join(random.choice(words) for _ in range(n))
    return s[0].upper() + s[1:] + "."
for i in range(mb):
    md = i % 2 == 1
    parts, size = [], 0
    while size < 1_000_000:
        if md and random.random() < 0.1:
            p = "#" * random.randint(1, 3) + " " + para(4)[:-1]
        elif md and random.random() < 0.1:
            p = "\n".join("- " + para(6) for _ in range(4))
        else:
            p = para(random.randint(40, 120))
        parts.append(p)
        size += len(p) + 2
    with open(os.path.join(out, f"doc-{i:03}.{'md' if md else 'txt'}"), "w") as f:
        f.write("\n\n".join(parts) + "\n")
PY
sync
"$VIREO" ingest -q --json -j "$JOBS" --index "$OUT/idx-text" "$OUT/text" > "$OUT/text.json"
summary+=("text + Markdown: $(python3 -c "print(round($(field "$OUT/text.json" bytes)/1e6))") MB in $(printf %.2f "$(field "$OUT/text.json" seconds)") s: $(printf %.1f "$(field "$OUT/text.json" mb_per_s)") MB/s (target >= 20)")

# 3. kill -9 trials on a mixed corpus of DOCS documents.
python3 - "$OUT/mixed" "$DOCS" "$SHARED/pdfs" <<'PY'
import os, random, shutil, sys
out, n, pdfs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(2)
os.makedirs(out, exist_ok=True)
pdf_files = sorted(os.path.join(pdfs, f) for f in os.listdir(pdfs)) if os.path.isdir(pdfs) else []
pdf_files = [p for p in pdf_files if "ocr-" not in os.path.basename(p)]  # keep trials quick
words = "alpha beta gamma delta river stone cloud ember field harbor lantern meadow orbit quartz".split()
for i in range(n):
    kind = i % 10
    base = os.path.join(out, f"d{i // 100:02}", f"doc-{i:04}")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    text = "\n\n".join(" ".join(random.choice(words) for _ in range(random.randint(20, 200))) for _ in range(random.randint(1, 12)))
    if kind < 5:
        open(base + ".txt", "w").write(text)
    elif kind < 7:
        open(base + ".md", "w").write(f"# Doc {i}\n\n## Part\n\n{text}\n\n- item one\n- item two\n")
    elif kind < 9:
        open(base + ".html", "w").write(f"<html><body><h1>Doc {i}</h1><p>{text}</p></body></html>")
    elif pdf_files and i % 20 == 9:
        shutil.copy(pdf_files[(i // 20) % len(pdf_files)], base + ".pdf")
    else:
        open(base + ".bin", "wb").write(os.urandom(256))  # unreadable: recorded as failed
PY
t0=$(date +%s.%N)
"$VIREO" ingest -q -j "$JOBS" --ocr never --index "$OUT/idx-clean" "$OUT/mixed" > /dev/null
clean_s=$(python3 -c "print($(date +%s.%N) - $t0)")
dump() {  # documents, statuses and chunk texts, independent of ids and order of arrival
  python3 - "$1/index.sqlite" <<'PY'
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
h = hashlib.sha256()
for path, status in db.execute("select path, status from documents order by path"):
    h.update(f"{path}\0{status}\n".encode())
for path, page, start, text in db.execute(
        "select d.path, c.page, c.char_start, c.text from chunks c join documents d on d.id = c.doc_id "
        "order by d.path, c.page, c.char_start, c.id"):
    h.update(f"{path}\0{page}\0{start}\0{text}\n".encode())
n = db.execute("select count(*) from documents").fetchone()[0]
print(n, h.hexdigest())
PY
}
want=$(dump "$OUT/idx-clean")
ok=0
for t in $(seq 1 "$TRIALS"); do
  idx="$OUT/idx-crash-$t"
  "$VIREO" ingest -q -j "$JOBS" --ocr never --index "$idx" "$OUT/mixed" > /dev/null 2>&1 &
  pid=$!
  # A moment inside the run: between 2% and 90% of the clean run's time.
  sleep "$(python3 -c "import random; print(round(random.uniform(0.02, 0.9) * $clean_s, 3))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  partial=$( [ -f "$idx/index.sqlite" ] && python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from documents').fetchone()[0])" "$idx/index.sqlite" || echo 0)
  "$VIREO" ingest -q -j "$JOBS" --ocr never --index "$idx" "$OUT/mixed" > /dev/null
  got=$(dump "$idx")
  if [ "$got" = "$want" ]; then ok=$((ok + 1)); verdict=identical; else verdict="DIFFERENT ($got vs $want)"; fi
  echo "trial $t: killed with $partial documents indexed; after re-run: $verdict"
done
summary+=("kill -9 trials: $ok of $TRIALS re-runs identical to the clean run ($DOCS documents: $want)")

echo
echo "== ingest check (jobs $JOBS, $(nproc) cores) =="
for line in "${summary[@]}"; do echo "$line"; done
[ "$ok" -eq "$TRIALS" ]
