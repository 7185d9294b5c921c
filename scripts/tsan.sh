#!/usr/bin/env bash
# ThreadSanitizer pass over the tests of the threaded kernels (OpenMP in core, quant, model,
# adapters, train; oneDNN's GEMMs): builds build-tsan with clang (-DBIDORA_TSAN=ON) and runs the
# test binaries at several OpenMP thread counts. Exits non-zero on any TSan report or test failure.
#   BIDORA_TSAN_THREADS="2 4"   OpenMP team sizes to run at (more threads interleave more)
#   BIDORA_TSAN_TESTS="..."     test binaries to build and run (default below)
#   BIDORA_REFERENCE_DIR=DIR    PyTorch references (default build/reference, generated if missing)
#   BIDORA_TSAN_JOBS=N          build parallelism (default 2)
#
# Why it is set up this way (measured on Debian 12, clang 14):
# - GCC's libgomp is not instrumented, so TSan cannot see its barriers and reports every
#   hand-over between parallel regions. BIDORA_TSAN builds against LLVM's libomp instead, whose
#   OMPT tool Archer (libarcher.so) tells TSan about each barrier, task and lock.
# - Debian's libdnnl needs libgomp.so.1; loaded as-is, a second OpenMP runtime would run oneDNN's
#   GEMMs on threads TSan knows nothing of. scripts/omp-shim.sh maps libgomp.so.1 to the libomp
#   already loaded (checked below with ldd).
# - ignore_noninstrumented_modules=1 (what Archer asks for): the memory accesses of intercepted
#   calls (memcpy, malloc, pthread_mutex_init...) made from uninstrumented libraries such as libomp
#   and libdnnl are not checked. TSan cannot see those libraries' other accesses anyway, so checking
#   only these reports races between a runtime's internals (e.g. libomp initialising a lock that
#   its own, unannotated, handshake protects). Their lock/unlock synchronisation is still tracked.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build-tsan"
THREADS="${BIDORA_TSAN_THREADS:-2 4}"
read -r -a TESTS <<<"${BIDORA_TSAN_TESTS:-test_core test_quant test_model test_adapters test_train}"
JOBS="${BIDORA_TSAN_JOBS:-2}"
NICE=(nice -n 19)
t0=$SECONDS

echo "== ThreadSanitizer build ($BUILD)"
"${NICE[@]}" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIDORA_TSAN=ON -DBIDORA_BENCH=OFF >/dev/null
"${NICE[@]}" cmake --build "$BUILD" -j"$JOBS" --target "${TESTS[@]}"
build_s=$((SECONDS - t0))

# The OpenMP runtime the tests were linked against (FindOpenMP's choice) and its Archer tool.
source "$ROOT/scripts/omp-shim.sh"
omp_shim "$BUILD"
ARCHER="$(dirname "$OMP_SHIM_LIBOMP")/libarcher.so"
[ -f "$ARCHER" ] || {
  echo "tsan.sh: need libarcher.so next to $OMP_SHIM_LIBOMP (apt install libomp-14-dev)" >&2
  exit 1
}
export OMP_TOOL_LIBRARIES="$ARCHER"
omp_shim_check "$BUILD/${TESTS[0]}"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 exitcode=66 ignore_noninstrumented_modules=1 suppressions=$ROOT/tests/tsan.supp${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
# Sleeping (not spinning) idle workers: under TSan every spin iteration is instrumented work
# that steals the few cores the other threads need.
export OMP_WAIT_POLICY=passive

# Self-check: a barrier hand-over must be clean (Archer loaded) and a real race must be reported
# (TSan sees the OpenMP workers). Otherwise a green run would mean nothing.
"${NICE[@]}" clang++ -std=c++20 -fsanitize=thread -g -O1 -fopenmp=libomp "$ROOT/tests/tsan_canary.cpp" \
  -o "$BUILD/tsan_canary"
OMP_NUM_THREADS=2 "$BUILD/tsan_canary" >/dev/null || {
  echo "tsan.sh: TSan reports the canary's barrier hand-over: is Archer ($ARCHER) loaded?" >&2
  exit 1
}
rc=0
OMP_NUM_THREADS=2 "$BUILD/tsan_canary" race >/dev/null 2>&1 || rc=$?
[ "$rc" = 66 ] || {
  echo "tsan.sh: TSan missed the canary's deliberate race (exit $rc, expected 66)" >&2
  exit 1
}

# References: the tests write their PEFT exports under <reference>/peft_export, so they get a
# private directory whose other parts are links to the shared, read-only references.
REF_SRC="${BIDORA_REFERENCE_DIR:-$ROOT/build/reference}"
if [ ! -d "$REF_SRC/model" ]; then
  echo "== generating the PyTorch references into $REF_SRC"
  "${NICE[@]}" bash tests/reference/generate.sh "$REF_SRC"
fi
REF="$BUILD/reference"
mkdir -p "$REF/peft_export"
for d in "$REF_SRC"/*/; do
  name="$(basename "$d")"
  [ "$name" = peft_export ] || ln -sfn "$(readlink -f "$d")" "$REF/$name"
done
export BIDORA_REFERENCE_DIR="$REF"

# gtest filters per binary (none: the whole binary).
declare -A FILTER=()

failed=()
t1=$SECONDS
for n in $THREADS; do
  for t in "${TESTS[@]}"; do
    s=$SECONDS
    log="$BUILD/tsan-$t-$n.log"
    rc=0
    OMP_NUM_THREADS=$n "${NICE[@]}" "$BUILD/$t" --gtest_filter="${FILTER[$t]:-*}" >"$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && ! grep -q 'WARNING: ThreadSanitizer' "$log"; then
      echo "  ok    $t (OMP_NUM_THREADS=$n, $((SECONDS - s)) s)"
    else
      echo "  FAIL  $t (OMP_NUM_THREADS=$n, exit $rc, $((SECONDS - s)) s): $log"
      grep -B2 -A40 -m1 'WARNING: ThreadSanitizer' "$log" || tail -30 "$log"
      failed+=("$t@$n")
    fi
  done
done
echo "== ThreadSanitizer: build $build_s s, tests $((SECONDS - t1)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "ThreadSanitizer failures: ${failed[*]}" >&2
  exit 1
fi
