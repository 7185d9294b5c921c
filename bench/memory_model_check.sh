#!/usr/bin/env bash
# Checks the memory model (src/model/memory_model.h) against the measured peak RSS of real runs:
# for every case, `bidora estimate --json` and `bidora train` (2 optimiser steps, no checkpoint
# saves, no validation) with the same options on a random model of a real shape, the process's
# peak RSS from /usr/bin/time, and the error of the estimate. Exits 1 if a case is off by more
# than 15%.
#
#   bench/memory_model_check.sh [PRESETS] [CASES]
#     PRESETS  default "smollm2-135m qwen2.5-0.5b" (also qwen3-0.6b)
#     CASES    "all" (default): bf16 / nf4 / int8 x lora / dora x checkpointing on / off at batch
#              4 x 512 tokens, then longer sequences (batch 2 x 2048, checkpointing on: lora bf16,
#              dora nf4), 8-bit AdamW (lora int8) and BiDoRA (bf16); "quick": the first four.
#     env BIDORA   the binary (default build/bidora), STEPS (default 2), OUT (a TSV of the results),
#         RSS_FROM a TSV of an earlier run: its measured peak RSS is reused and nothing is trained
#                  (to re-check the estimate after changing a term of the memory model)
# LoRA / DoRA: r = 16, alpha 32, dropout 0.05, all seven projections. The models and data are
# written once to build/bench-models/ (bench/bench_models.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/bench/bench_models.sh"
BIDORA="${BIDORA:-$ROOT/build/bidora}"
STEPS="${STEPS:-2}"
PRESETS="${1:-smollm2-135m qwen2.5-0.5b}"
WHICH="${2:-all}"
OUT="${OUT:-$BENCH_WORK/memory_model_check.tsv}"
[[ -x "$BIDORA" ]] || { echo "build first: scripts/build.sh (or set BIDORA)" >&2; exit 1; }

# storage method checkpointing batch seq optimizer
CASES=()
for q in bf16 nf4 int8; do
  for m in lora dora; do
    for c in on off; do CASES+=("$q $m $c 4 512 adamw"); done
  done
done
CASES+=("bf16 lora on 2 2048 adamw" "nf4 dora on 2 2048 adamw" "int8 lora on 4 512 adamw_8bit"
        "bf16 bidora on 4 512 adamw")
[[ "$WHICH" == quick ]] && CASES=("${CASES[@]:0:4}")

SHORT="$(bench_text 700)"   # every row is cut to 512 tokens
LONG="$(bench_text 5000)"   # every row is cut to 2048 tokens
printf 'preset\tstorage\tmethod\tckpt\tbatch\tseq\toptimizer\testimate_mb\tpeak_rss_mb\terror_pct\ttop_parts\tpeak_rss_kb\n' >"$OUT"
printf '%-13s %-5s %-6s %-4s %5s %5s %-10s %9s %9s %7s  %s\n' preset store method ckpt batch seq optim \
  "est (MB)" "RSS (MB)" "error" "largest parts (MB)"
worst=0
for preset in $PRESETS; do
  model="$(bench_model "$preset")"
  for case in "${CASES[@]}"; do
    read -r q method ckpt batch seq optim <<<"$case"
    data="$SHORT"
    ((seq > 512)) && data="$LONG"
    opts=(-m "$model" -t "$data" -q "$q" --method "$method" -r 16 --alpha 32 --dropout 0.05 --targets all-linear
          --max-seq-len "$seq" -b "$batch" --grad-accum 1 --optimizer "$optim" --max-steps "$STEPS" --save-steps 0
          --warmup-steps 0 --logging-steps 1)
    [[ "$ckpt" == on ]] && opts+=(--gradient-checkpointing) || opts+=(--no-gradient-checkpointing)
    if [[ "$method" == bidora ]]; then
      opts+=(--val-split 0.1 --retrain-epochs 0 --lower-steps 1)  # BiDoRA needs validation data
    else
      opts+=(--val-split 0)
    fi
    est_json="$("$BIDORA" estimate "${opts[@]}" --json)"
    read -r est parts < <(/usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
parts = sorted(j["parts"], key=lambda p: -p["bytes"])[:3]
print(j["estimate"]["total_bytes"], ",".join("%s %d" % (p["part"], p["bytes"] / 2**20) for p in parts))
' <<<"$est_json")
    if [[ -n "${RSS_FROM:-}" ]]; then
      rss_kb=$(awk -F'\t' -v p="$preset" -v k="$q $method $ckpt $batch $seq $optim" \
        '$1 == p && $2" "$3" "$4" "$5" "$6" "$7 == k {print $12; exit}' "$RSS_FROM")
      [[ -n "$rss_kb" ]] || { echo "no measurement for $preset $case in $RSS_FROM" >&2; continue; }
    else
      out="$BENCH_WORK/memcheck-$preset"
      log="$out.log"
      /usr/bin/time -f 'PEAK_RSS_KB %M' "$BIDORA" train "${opts[@]}" -o "$out" --overwrite >"$log" 2>&1 ||
        { tail -5 "$log" >&2; echo "train failed: $preset $case" >&2; exit 1; }
      rss_kb=$(sed -n 's/^PEAK_RSS_KB //p' "$log")
    fi
    read -r est_mb rss_mb err <<<"$(awk -v e="$est" -v r="$rss_kb" \
      'BEGIN{printf "%.0f %.0f %.1f", e/1048576, r/1024, 100*(e-r*1024)/(r*1024)}')"
    printf '%-13s %-5s %-6s %-4s %5s %5s %-10s %9s %9s %6s%%  %s\n' "$preset" "$q" "$method" "$ckpt" "$batch" \
      "$seq" "$optim" "$est_mb" "$rss_mb" "$err" "$parts"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$preset" "$q" "$method" "$ckpt" "$batch" "$seq" \
      "$optim" "$est_mb" "$rss_mb" "$err" "$parts" "$rss_kb" >>"$OUT"
    worst=$(awk -v w="$worst" -v e="$err" 'BEGIN{e = e < 0 ? -e : e; print (e > w ? e : w)}')
  done
done
echo "worst error: ${worst}% (MB = MiB; results in $OUT)"
awk -v w="$worst" 'BEGIN{exit !(w <= 15)}'
