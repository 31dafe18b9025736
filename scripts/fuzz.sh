#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cpp) with clang + ASan + UBSan and runs each
# for $FUZZ_SECONDS seconds (default 60) on a working copy of its seed corpus inside the build
# folder; the committed corpus in tests/fuzz/corpus/ is never modified.
#
#   scripts/fuzz.sh                 # every fuzzer, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh gguf_fuzz
#
# Environment: FUZZ_SECONDS, FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (build parallelism,
# default 1), FUZZ_FRESH=1 to start from the committed seeds instead of the accumulated corpus.
# Exit status: 0 when every fuzzer ran its time without a finding, 1 on any finding (crash,
# sanitizer report, timeout, out-of-memory, leak); crash inputs are kept under
# $FUZZ_BUILD_DIR/artifacts/<fuzzer>/. 2 when the build fails.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
BUILD="${FUZZ_BUILD_DIR:-build-fuzz}"
JOBS="${FUZZ_JOBS:-1}"

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (libFuzzer needs clang)" >&2
  exit 2
fi
# libFuzzer ships with clang's runtime (Debian/Ubuntu: libclang-rt-<ver>-dev); check it links.
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  >"$probe_dir/probe.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>"$probe_dir/err"; then
  echo "fuzz.sh: clang++ cannot link -fsanitize=fuzzer (install libclang-rt-dev for your clang):" >&2
  cat "$probe_dir/err" >&2
  exit 2
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# A build folder made by another generator cannot be reused: start it afresh.
if [[ -f "$BUILD/CMakeCache.txt" ]] && ! grep -q "CMAKE_CXX_COMPILER:.*clang++" "$BUILD/CMakeCache.txt"; then
  echo "fuzz.sh: $BUILD was configured with another compiler; reconfiguring from scratch" >&2
  rm -rf "$BUILD"
fi
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" "${generator[@]}" \
    -DVIREO_FUZZ=ON -DVIREO_TESTS=OFF -DVIREO_BENCH=OFF -DVIREO_CUDA=OFF \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo || exit 2
fi

# The fuzzers to run: arguments, or every tests/fuzz/*_fuzz.cpp.
fuzzers=("$@")
if [[ ${#fuzzers[@]} -eq 0 ]]; then
  for src in tests/fuzz/*_fuzz.cpp; do fuzzers+=("$(basename "$src" .cpp)"); done
fi
cmake --build "$BUILD" --parallel "$JOBS" --target "${fuzzers[@]}" || exit 2

# UBSan reports must stop the run (the CMake fuzz flags leave UBSan in recover mode).
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

status=0
summary=()
for fz in "${fuzzers[@]}"; do
  kind="${fz%_fuzz}"
  seeds="tests/fuzz/corpus/$kind"
  work="$BUILD/corpus/$kind"
  artifacts="$BUILD/artifacts/$fz"
  log="$BUILD/$fz.log"
  [[ "${FUZZ_FRESH:-0}" == 1 ]] && rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  if [[ -d "$seeds" ]]; then cp -n "$seeds"/* "$work"/ 2>/dev/null || true; fi
  args=(-max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/")
  [[ -f "tests/fuzz/$kind.dict" ]] && args+=(-dict="tests/fuzz/$kind.dict")
  echo "== $fz: ${SECONDS_EACH}s on $work (log: $log)"
  "$BUILD/$fz" "${args[@]}" "$work" >"$log" 2>&1
  rc=$?
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
  if [[ $rc -eq 0 ]]; then
    summary+=("$fz: ok, ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}")
  else
    status=1
    summary+=("$fz: FINDING (exit $rc) after ${runs:-?} runs; inputs in $artifacts; see $log")
    grep -E "ERROR: |runtime error|invariant broken|SUMMARY|Test unit written" "$log" | head -8 | sed 's/^/    /'
  fi
done
echo "== summary"
printf '  %s\n' "${summary[@]}"
exit $status
