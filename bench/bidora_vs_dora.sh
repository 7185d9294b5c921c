#!/usr/bin/env bash
# BiDoRA vs DoRA with the same budget on a synthetic task where the held-out split matters
# (tests/train/bidora_synthetic.h has the design): TEST loss of every adapter, VAL loss, wall
# clock and BiDoRA's time per optimiser step relative to DoRA's, for several training seeds and
# as mean ± sd over them. The larger version of tests/train/test_bidora_synthetic.cpp; a few
# minutes on 2 cores with the defaults.
#
#   bench/bidora_vs_dora.sh [BUILD_DIR] [bench_bidora_synthetic options...]
#     BUILD_DIR  a release build directory (default: build); bench_bidora_synthetic is built there
#     options    --steps N --seeds N --train N --lr F ... (bench/bench_bidora_synthetic.cpp)
# Writes the figures as JSON to BUILD_DIR/bidora_vs_dora.json too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
if [[ $# -gt 0 && "$1" != --* ]]; then
  BUILD="$(cd "$1" && pwd)"
  shift
fi
[[ -f "$BUILD/build.ninja" || -f "$BUILD/Makefile" ]] || { echo "$BUILD: not a configured build (scripts/build.sh)" >&2; exit 1; }
cmake --build "$BUILD" --target bench_bidora_synthetic -j2 >/dev/null
# Passive OpenMP waits: on a shared machine spinning threads distort the step times compared.
OMP_WAIT_POLICY=passive "$BUILD/bench_bidora_synthetic" --work "$BUILD/bench-bidora-synthetic" \
  --json "$BUILD/bidora_vs_dora.json" "$@"
