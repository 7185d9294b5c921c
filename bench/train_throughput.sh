#!/usr/bin/env bash
# End-to-end `bidora train` throughput and peak memory on a random model of a real shape:
# tokens/s of the optimiser steps (what `train` reports) and the process's peak RSS
# (/usr/bin/time), for LoRA and DoRA over bf16 and NF4 base weights.
#
#   bench/train_throughput.sh [PRESET] [STEPS]
#     PRESET  qwen2.5-0.5b (default), qwen3-0.6b or smollm2-135m (tests/reference/model_reference.py)
#     STEPS   optimiser steps per configuration (default 3)
# Batch 4 x 512 tokens, r = 16, alpha 32, all seven projections, gradient checkpointing on.
# The model (random weights, the Qwen3 tokenizer from the npm fixtures) and the data are written
# once to build/bench-models/. Needs the release build (scripts/build.sh) and the fixtures
# (scripts/fetch-fixtures.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRESET="${1:-qwen2.5-0.5b}"
STEPS="${2:-3}"
BIDORA="$ROOT/build/bidora"
WORK="$ROOT/build/bench-models"
MODEL="$WORK/$PRESET"
DATA="$WORK/text-512.jsonl"
mkdir -p "$WORK"

[[ -x "$BIDORA" ]] || { echo "build first: scripts/build.sh" >&2; exit 1; }
if [[ ! -f "$MODEL/config.json" ]]; then
  /usr/bin/python3 "$ROOT/tests/reference/model_reference.py" "$MODEL" --preset "$PRESET"
  cp "$ROOT/tests/fixtures/npm/qwen3/tokenizer.json" "$ROOT/tests/fixtures/npm/qwen3/tokenizer_config.json" "$MODEL/"
fi
if [[ ! -f "$DATA" ]]; then
  # 64 documents of ~700 words: every row is cut to exactly 512 tokens.
  /usr/bin/python3 - "$DATA" <<'EOF'
import json, random, sys
rng = random.Random(0)
words = ("the model learns adapters over frozen weights while gradients flow through low rank "
         "matrices and the optimiser keeps moments of every trainable value in memory").split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(700))}) + "\n")
EOF
fi

printf '%-6s %-6s %12s %14s %10s\n' method base "tokens/s" "peak RSS (MB)" "wall (s)"
for method in lora dora; do
  for q in bf16 nf4; do
    out="$WORK/run-$PRESET-$method-$q"
    log="$out.log"
    start=$(date +%s.%N)
    /usr/bin/time -f 'PEAK_RSS_KB %M' "$BIDORA" train -m "$MODEL" -t "$DATA" -o "$out" --overwrite \
      --method "$method" -q "$q" -r 16 --alpha 32 --targets all-linear --max-seq-len 512 -b 4 \
      --grad-accum 1 --max-steps "$STEPS" --val-split 0 --warmup-steps 0 --logging-steps 1 \
      --save-steps 0 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    end=$(date +%s.%N)
    tps=$(sed -n 's/^Trained .* (\([0-9.]*\) tokens\/s).*/\1/p' "$log")
    rss=$(sed -n 's/^PEAK_RSS_KB //p' "$log")
    printf '%-6s %-6s %12s %14d %10.1f\n' "$method" "$q" "$tps" $((rss / 1024)) "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
  done
done
