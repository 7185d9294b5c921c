#!/usr/bin/env bash
# The whole test suite from a clean clone: dependencies, fixtures, release build, PyTorch
# references, ctest; then the same tests again in a sanitizer build (ASan + UBSan); the threaded
# kernels' tests under ThreadSanitizer (scripts/tsan.sh); a short libFuzzer run of every parser
# (scripts/fuzz.sh). Each later pass can be skipped for quicker local runs:
#   BIDORA_SKIP_SANITIZE=1   no ASan + UBSan pass
#   BIDORA_SKIP_TSAN=1       no ThreadSanitizer pass
#   BIDORA_SKIP_FUZZ=1       no fuzz smoke run (BIDORA_FUZZ_SECONDS per target, default 30)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="$(nproc)"

bash scripts/install-deps.sh
bash scripts/fetch-fixtures.sh
bash scripts/build.sh
bash tests/reference/generate.sh "$ROOT/build/reference"

echo "== tests (release build)"
ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 600

if [ "${BIDORA_SKIP_SANITIZE:-0}" != "1" ]; then
  echo "== tests (AddressSanitizer + UndefinedBehaviorSanitizer build)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIDORA_SANITIZE=ON -DBIDORA_BENCH=OFF
  cmake --build build-asan -j"$JOBS"
  # OpenMP's runtime keeps its thread pool until exit; that is not a leak of ours. (Set for this
  # ctest only: the fuzz run sets its own.)
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}" \
    LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" BIDORA_REFERENCE_DIR="$ROOT/build/reference" \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 1200
fi

if [ "${BIDORA_SKIP_TSAN:-0}" != "1" ]; then
  echo "== tests of the threaded kernels (ThreadSanitizer build)"
  # One team size here (scripts/tsan.sh alone runs 2 and 4): 3 threads, more than this machine's
  # cores and odd, so the static schedules split unevenly.
  BIDORA_TSAN_THREADS="${BIDORA_TSAN_THREADS:-3}" BIDORA_TSAN_JOBS="$JOBS" \
    BIDORA_REFERENCE_DIR="$ROOT/build/reference" bash scripts/tsan.sh
fi

if [ "${BIDORA_SKIP_FUZZ:-0}" != "1" ]; then
  echo "== fuzz smoke run of the parsers (libFuzzer + ASan + UBSan)"
  BIDORA_FUZZ_JOBS="$JOBS" bash scripts/fuzz.sh --seconds "${BIDORA_FUZZ_SECONDS:-30}"
fi
