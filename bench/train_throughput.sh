#!/usr/bin/env bash
# End-to-end `bidora train` throughput and peak memory on a random model of a real shape:
# tokens/s of the optimiser steps (what `train` reports) and the process's peak RSS
# (/usr/bin/time), for LoRA, DoRA and BiDoRA over bf16 and NF4 base weights.
#
#   bench/train_throughput.sh [PRESET] [STEPS] [METHODS] [BASES]
#     PRESET  qwen2.5-0.5b (default), qwen3-0.6b or smollm2-135m (tests/reference/model_reference.py)
#     STEPS   optimiser steps per configuration (default 3)
#     METHODS default "lora dora bidora bidora-noreg" (bidora-noreg: orthogonality regulariser off)
#     BASES   default "bf16 nf4"
# BiDoRA runs its search phase only (--retrain-epochs 0) with one magnitude step per direction
# step; its tokens/s counts the direction steps' tokens, so "vs dora" is DoRA's step time over
# BiDoRA's (search) step time as a ratio, both measured in this run.
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

METHODS="${3:-lora dora bidora bidora-noreg}"
BASES="${4:-bf16 nf4}"
declare -A DORA_TPS
printf '%-13s %-6s %12s %14s %10s %18s\n' method base "tokens/s" "peak RSS (MB)" "wall (s)" "step time vs dora"
for variant in $METHODS; do
  method="${variant%%-*}"
  extra=(--val-split 0)
  if [[ "$method" == bidora ]]; then
    extra=(--val-split 0.1 --retrain-epochs 0 --lower-steps 1)
    [[ "$variant" == bidora-noreg ]] && extra+=(--orth-reg 0)
  fi
  for q in $BASES; do
    out="$WORK/run-$PRESET-$variant-$q"
    log="$out.log"
    start=$(date +%s.%N)
    /usr/bin/time -f 'PEAK_RSS_KB %M' "$BIDORA" train -m "$MODEL" -t "$DATA" -o "$out" --overwrite \
      --method "$method" -q "$q" -r 16 --alpha 32 --targets all-linear --max-seq-len 512 -b 4 \
      --grad-accum 1 --max-steps "$STEPS" "${extra[@]}" --warmup-steps 0 --logging-steps 1 \
      --save-steps 0 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    end=$(date +%s.%N)
    tps=$(sed -n 's/^Trained .* (\([0-9.]*\) tokens\/s).*/\1/p' "$log")
    rss=$(sed -n 's/^PEAK_RSS_KB //p' "$log")
    [[ "$variant" == dora ]] && DORA_TPS[$q]="$tps"
    ratio="-"
    [[ -n "${DORA_TPS[$q]:-}" ]] && ratio=$(awk -v d="${DORA_TPS[$q]}" -v t="$tps" 'BEGIN{printf "%.2fx", d/t}')
    printf '%-13s %-6s %12s %14d %10.1f %18s\n' "$variant" "$q" "$tps" $((rss / 1024)) \
      "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')" "$ratio"
  done
done
