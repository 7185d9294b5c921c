#!/usr/bin/env bash
# Configures and builds bidora (Release, -march=native) into build/. Extra arguments go to cmake.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$ROOT" -B "$ROOT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$ROOT/build" -j"$(nproc)"
