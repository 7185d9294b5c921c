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
T0=$SECONDS
# Each pass's header carries the seconds since the start, so a CI log shows where time goes.
phase() { echo "== [$((SECONDS - T0)) s] $*"; }

phase "dependencies and fixtures"
bash scripts/install-deps.sh
bash scripts/fetch-fixtures.sh
phase "release build"
bash scripts/build.sh
phase "PyTorch references"
bash tests/reference/generate.sh "$ROOT/build/reference"

phase "tests (release build)"
ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 600

if [ "${BIDORA_SKIP_SANITIZE:-0}" != "1" ]; then
  phase "tests (AddressSanitizer + UndefinedBehaviorSanitizer build)"
  # clang at -O1 with line tables only: the same checks as GCC's -O2 -g build at a third of its
  # compile time (which was most of CI's time), and the release build stays GCC's, so both
  # compilers' warnings are seen. Its OpenMP runtime is libomp: scripts/omp-shim.sh.
  cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DBIDORA_SANITIZE=ON -DBIDORA_BENCH=OFF
  cmake --build build-asan -j"$JOBS"
  phase "tests (sanitizer build done)"
  (
    source scripts/omp-shim.sh
    omp_shim build-asan
    omp_shim_check build-asan/test_core
    # OpenMP's runtime keeps its thread pool until exit; that is not a leak of ours. (Set for
    # this ctest only: the fuzz run sets its own.)
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}" \
      LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" BIDORA_REFERENCE_DIR="$ROOT/build/reference" \
      ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 1200
  )
fi

if [ "${BIDORA_SKIP_TSAN:-0}" != "1" ]; then
  phase "tests of the threaded kernels (ThreadSanitizer build)"
  # One team size here (scripts/tsan.sh alone runs 2 and 4): 3 threads, more than this machine's
  # cores and odd, so the static schedules split unevenly.
  BIDORA_TSAN_THREADS="${BIDORA_TSAN_THREADS:-3}" BIDORA_TSAN_JOBS="$JOBS" \
    BIDORA_REFERENCE_DIR="$ROOT/build/reference" bash scripts/tsan.sh
fi

if [ "${BIDORA_SKIP_FUZZ:-0}" != "1" ]; then
  phase "fuzz smoke run of the parsers (libFuzzer + ASan + UBSan)"
  BIDORA_FUZZ_JOBS="$JOBS" bash scripts/fuzz.sh --seconds "${BIDORA_FUZZ_SECONDS:-30}"
fi
phase "all passes done"
