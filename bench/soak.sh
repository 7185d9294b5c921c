#!/usr/bin/env bash
# Soak test: a long `bidora train` run on a tiny model with frequent evaluations, checkpoint saves
# and checkpoint rotation, checking that the process's resident memory does not grow. A leak of a
# few bytes per step, per evaluation or per save shows here as RSS creeping up over the steps.
#
#   bench/soak.sh [STEPS] [METHOD] [WARMUP]
#     STEPS   optimiser steps (default 2000)
#     METHOD  lora | dora (default) | bidora
#     WARMUP  the step whose RSS is the baseline (default 100: by then every periodic action has
#             run several times: 4 evaluations, 4 checkpoint saves, 2 rotations)
#   env: BIDORA (default build/bidora), MODEL (default examples/tiny-qwen2), SOAK_DIR (default
#        build/soak), SOAK_MAX_GROWTH_PCT (default 5), SOAK_THREADS (default 2)
#
# VmRSS of the process is sampled every 0.2 s together with the newest logged step (metrics.jsonl,
# a line every 10 steps). It prints the RSS at WARMUP, the maximum and the final RSS after it, the
# growth in % and the least-squares slope of RSS over the steps after WARMUP (KB per 1000 steps),
# writes every sample to SOAK_DIR/rss.tsv, and exits 1 if the maximum after WARMUP exceeds the
# baseline by more than SOAK_MAX_GROWTH_PCT %. Runs under `nice -n 19`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS="${1:-2000}"
METHOD="${2:-dora}"
WARMUP="${3:-100}"
BIDORA="${BIDORA:-$ROOT/build/bidora}"
MODEL="${MODEL:-$ROOT/examples/tiny-qwen2}"
WORK="${SOAK_DIR:-$ROOT/build/soak}"
MAX_GROWTH="${SOAK_MAX_GROWTH_PCT:-5}"
THREADS="${SOAK_THREADS:-2}"
[[ -x "$BIDORA" ]] || { echo "no $BIDORA: build first (scripts/build.sh) or set BIDORA" >&2; exit 2; }
(( WARMUP < STEPS )) || { echo "WARMUP ($WARMUP) must be below STEPS ($STEPS)" >&2; exit 2; }
mkdir -p "$WORK"

# 300 documents of 10-200 words: rows of many lengths, so the batches' shapes vary from step to
# step as in real data (buffers sized per batch must be reused, not accumulated).
DATA="$WORK/data.jsonl"
/usr/bin/python3 - "$DATA" <<'EOF'
import json, random, sys
rng = random.Random(0)
words = ("the model learns adapters over frozen weights while gradients flow through low rank "
         "matrices and the optimiser keeps moments of every trainable value in memory").split()
with open(sys.argv[1], "w") as f:
    for _ in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(10, 200)))}) + "\n")
EOF

OUT="$WORK/run"
SAMPLES="$WORK/rss.tsv"
LOG="$WORK/train.log"
extra=()
[[ "$METHOD" == bidora ]] && extra=(--retrain-epochs 0 --lower-steps 2)
args=(train -m "$MODEL" -t "$DATA" -o "$OUT" --overwrite -q bf16 --method "$METHOD"
  --max-steps "$STEPS" -b 4 --grad-accum 2 --max-seq-len 256 --val-split 0.05
  --lr 1e-3 --warmup-steps 20 --dropout 0.05
  --logging-steps 10 --eval-steps 25 --save-steps 25 --save-total-limit 2
  --threads "$THREADS" "${extra[@]}")
echo "soak: $STEPS steps of $METHOD on $MODEL, eval + checkpoint every 25 steps (keeping 2)"
echo "      $BIDORA ${args[*]}"

start=$EPOCHREALTIME
nice -n 19 "$BIDORA" "${args[@]}" >"$LOG" 2>&1 &
pid=$!
printf 'seconds\tstep\trss_kb\n' >"$SAMPLES"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  step=$(tail -n 1 "$OUT/metrics.jsonl" 2>/dev/null | sed -n 's/^{"step":\([0-9]*\),.*/\1/p' || true)
  if [[ -n "$rss" && -n "$step" ]]; then
    printf '%s\t%s\t%s\n' "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')" \
      "$step" "$rss" >>"$SAMPLES"
  fi
  sleep 0.2
done
status=0
wait "$pid" || status=$?
wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
if (( status != 0 )); then
  tail -n 20 "$LOG" >&2
  echo "soak: bidora train failed (exit $status), log: $LOG" >&2
  exit 2
fi
checkpoints=$(find "$OUT" -maxdepth 1 -name 'checkpoint-*' | wc -l)
evals=$(grep -c '"eval_loss"' "$OUT/metrics.jsonl" || true)
echo "      finished in $wall s: $(grep -c . "$OUT/metrics.jsonl") log entries, $evals evaluations, $checkpoints checkpoints kept"

# Baseline: the first sample at or after WARMUP; growth: the largest sample after it.
awk -F'\t' -v warm="$WARMUP" -v max_growth="$MAX_GROWTH" -v steps="$STEPS" '
  NR == 1 { next }
  base == "" && $2 >= warm { base = $3; base_step = $2 }
  base != "" {
    if ($3 > peak) { peak = $3; peak_step = $2 }
    last = $3; n++; sx += $2; sy += $3; sxx += $2 * $2; sxy += $2 * $3
  }
  END {
    if (base == "" || n < 2) { print "soak: too few RSS samples after step " warm " (run longer)"; exit 2 }
    growth = 100 * (peak - base) / base
    slope = (n * sxx - sx * sx) != 0 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) * 1000 : 0
    printf "      RSS at step %d: %.1f MB; after it: max %.1f MB (step %d), final %.1f MB\n",
      base_step, base / 1024, peak / 1024, peak_step, last / 1024
    printf "      growth %.2f%% (limit %s%%), trend %+.0f KB per 1000 steps, %d samples\n",
      growth, max_growth, slope, n
    if (growth > max_growth) { print "soak: FAIL: RSS grew by more than " max_growth "%"; exit 1 }
    print "soak: OK"
  }' "$SAMPLES"
