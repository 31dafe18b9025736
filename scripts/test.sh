#!/usr/bin/env bash
# Every test: the unit and integration tests, the same under ASan+UBSan, then each fuzzer for a
# bounded time. Called by `make test` (after the release build) and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
start=$SECONDS
step() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - start)); }

step "tests (release build)"
ctest --test-dir build --output-on-failure -j "$JOBS"

step "tests under AddressSanitizer + UndefinedBehaviorSanitizer"
make --no-print-directory test-asan

step "fuzzers (${FUZZ_SECONDS:-30} s each)"
FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh

step "all tests passed"
