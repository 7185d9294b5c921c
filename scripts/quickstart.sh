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
# The main job: fine-tune a DoRA adapter on the example chat data and save it in PEFT format.
step $B train --model examples/tiny-qwen2 --train-file examples/data/chat.jsonl --output output/quickstart \
  --overwrite --method dora --targets all-linear --epochs 10 --batch-size 2 --grad-accum 1 --lr 2e-2 \
  --warmup-steps 5 --logging-steps 10
ls output/quickstart/final_model
