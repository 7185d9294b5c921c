#!/usr/bin/env bash
# The whole test suite from a clean clone: dependencies, fixtures, release build, PyTorch
# references, ctest; then the same tests again in a sanitizer build (ASan + UBSan).
#   BIDORA_SKIP_SANITIZE=1 scripts/test.sh   skips the sanitizer pass (quicker local runs)
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
  # OpenMP's runtime keeps its thread pool until exit; that is not a leak of ours.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
  export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  BIDORA_REFERENCE_DIR="$ROOT/build/reference" ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 1200
fi
