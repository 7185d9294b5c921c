#!/usr/bin/env bash
# Sequence-length scaling of `bidora train`: at a constant 4096 tokens per step (batch = 4096 / T)
# for T = 256 ... 4096, the time and memory per token. Memory per token staying flat means the
# total is linear in the sequence length: the attention keeps no [T, T] matrix (attention.h).
#
#   bench/seq_scaling.sh [PRESET] [STEPS] [SEQS]
#     PRESET  qwen2.5-0.5b (default), qwen3-0.6b or smollm2-135m (a fast run)
#     STEPS   optimiser steps per length (default 3; tokens/s is what `train` reports over all)
#     SEQS    default "256 512 1024 2048 4096"
#     env BIDORA  the binary (default build/bidora)
# LoRA r = 16 (alpha 32, dropout 0.05) on all seven projections over bf16 weights, gradient
# checkpointing on, AdamW. Columns:
#   tokens/s, ms/token        training throughput (timings are noisy on a shared machine)
#   peak RSS                  /usr/bin/time of the whole process
#   KB/token above weights    (peak RSS - the estimate's weights part) / 4096 tokens: everything
#                             else the step holds, per token of the step
#   est. act KB/token         the estimate's per-batch parts (activations, layer, attention, loss)
#                             per token, and its attention workspace alone
# The model and data are written once to build/bench-models/ (bench/bench_models.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/bench/bench_models.sh"
BIDORA="${BIDORA:-$ROOT/build/bidora}"
PRESET="${1:-qwen2.5-0.5b}"
STEPS="${2:-3}"
SEQS="${3:-256 512 1024 2048 4096}"
TOKENS=4096
[[ -x "$BIDORA" ]] || { echo "build first: scripts/build.sh (or set BIDORA)" >&2; exit 1; }
MODEL="$(bench_model "$PRESET")"
DATA="$(bench_text 5000)"  # 64 documents longer than 4096 tokens: every row is cut to T

printf '%-6s %5s %9s %9s %14s %22s %18s %16s\n' seq batch "tokens/s" "ms/token" "peak RSS (MB)" \
  "KB/token above weights" "est. act KB/token" "est. attn (MB)"
for T in $SEQS; do
  B=$((TOKENS / T))
  opts=(-m "$MODEL" -t "$DATA" -q bf16 --method lora -r 16 --alpha 32 --dropout 0.05 --targets all-linear
        --max-seq-len "$T" -b "$B" --grad-accum 1 --gradient-checkpointing --max-steps "$STEPS" --val-split 0
        --save-steps 0 --warmup-steps 0 --logging-steps 1)
  read -r weights per_batch attention < <("$BIDORA" estimate "${opts[@]}" --json | /usr/bin/python3 -c '
import json, sys
e = json.load(sys.stdin)["estimate"]
print(e["weights_bytes"], e["activations_bytes"] + e["layer_bytes"] + e["attention_bytes"] + e["loss_bytes"],
      e["attention_bytes"])')
  out="$BENCH_WORK/seq-$PRESET-$T"
  log="$out.log"
  /usr/bin/time -f 'PEAK_RSS_KB %M' "$BIDORA" train "${opts[@]}" -o "$out" --overwrite >"$log" 2>&1 ||
    { tail -5 "$log" >&2; exit 1; }
  tps=$(sed -n 's/^Trained .* (\([0-9.]*\) tokens\/s).*/\1/p' "$log")
  rss_kb=$(sed -n 's/^PEAK_RSS_KB //p' "$log")
  awk -v T="$T" -v B="$B" -v tps="$tps" -v rss="$rss_kb" -v w="$weights" -v pb="$per_batch" -v at="$attention" \
    -v n="$TOKENS" 'BEGIN{
      printf "%-6d %5d %9.1f %9.2f %14.0f %22.1f %18.1f %16.1f\n", T, B, tps, 1000 / tps, rss / 1024,
        (rss * 1024 - w) / 1024 / n, pb / 1024 / n, at / 1048576 }'
done
