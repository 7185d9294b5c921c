#!/usr/bin/env bash
# Installs the dependencies, builds bidora and runs it on the bundled example
# (examples/tiny-qwen2: a tiny Qwen2-architecture model with its own tokenizer; examples/data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-deps.sh
bash scripts/build.sh
B=./build/bidora
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
step $B --version
step $B info
step $B list-models
step $B config --config examples/configs/qwen-lora.yaml --epochs 1
step $B model-info --model examples/tiny-qwen2 --quantization nf4 --tokens "12 40 7 99 3 250"
step $B data-preview --model examples/tiny-qwen2 --file examples/data/chat.jsonl --num 2
