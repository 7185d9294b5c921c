#!/usr/bin/env bash
# `bidora generate` speed on a random model of a real shape: prefill and decode tokens/s for a
# 128-token prompt and 128 new tokens, greedy, end-of-sequence ignored (a random model would stop
# anywhere), over bf16 and NF4 base weights, for the plain model and with LoRA / DoRA adapters
# (r = 16 on all seven projections, made by a one-step `bidora train` run).
#
#   bench/generate_speed.sh [PRESET] [BASES] [VARIANTS]
#     PRESET    qwen2.5-0.5b (default), qwen3-0.6b or smollm2-135m (bench/bench_models.sh)
#     BASES     default "bf16 nf4"
#     VARIANTS  default "base lora dora"
#   BIDORA=path/to/bidora (default build/bidora); BENCH_WORK as in bench_models.sh.
# Decode is bound by memory bandwidth over the weights (every weight is read once per token):
# the "GB/s" column is the bytes of the frozen weights and lm_head read per decoded token times
# the decode rate. Each configuration runs twice and the faster run is shown.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/bench/bench_models.sh"
PRESET="${1:-qwen2.5-0.5b}"
BASES="${2:-bf16 nf4}"
VARIANTS="${3:-base lora dora}"
BIDORA="${BIDORA:-$ROOT/build/bidora}"
[[ -x "$BIDORA" ]] || { echo "build first: scripts/build.sh (or set BIDORA)" >&2; exit 1; }
MODEL="$(bench_model "$PRESET")"

# "the" + 127 × " the": 128 tokens with the bench tokenizers (checked below from the JSON).
PROMPT="the$(printf ' the%.0s' $(seq 127))"

adapter_for() {  # method -> adapter directory (written once)
  local method="$1" dir="$BENCH_WORK/gen-adapter-$PRESET-$1"
  if [[ ! -f "$dir/final_model/adapter_config.json" ]]; then
    "$BIDORA" train -m "$MODEL" -t "$(bench_text 700)" -o "$dir" --overwrite --method "$method" -q bf16 \
      -r 16 --alpha 32 --targets all-linear --max-seq-len 64 -b 1 --max-steps 1 --val-split 0 \
      --warmup-steps 0 --save-steps 0 >"$dir.log" 2>&1 || { echo "adapter training failed: $dir.log" >&2; exit 1; }
  fi
  echo "$dir/final_model"
}

# Bytes read per decoded token: every block linear in its storage plus lm_head (bf16).
weight_bytes() {
  /usr/bin/python3 - "$MODEL/config.json" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
hd = c.get("head_dim", H // c["num_attention_heads"])
q, kv = c["num_attention_heads"] * hd, c.get("num_key_value_heads", c["num_attention_heads"]) * hd
linear = L * (H * q + 2 * H * kv + q * H + 3 * H * I)
# NF4: 4 bits, a 1-byte absmax code per 64 weights and a float per 256 codes (double quantisation).
per = {"bf16": 2.0, "nf4": 0.5 + 1 / 64 + 4 / (64 * 256), "int8": 1 + 4 / 64, "f32": 4.0}[sys.argv[2]]
print(linear * per + V * H * 2)
EOF
}

printf '%-6s %-6s %8s %8s %14s %14s %8s\n' base variant prompt new "prefill tok/s" "decode tok/s" "GB/s"
for q in $BASES; do
  bytes="$(weight_bytes "$q")"
  for variant in $VARIANTS; do
    extra=()
    [[ "$variant" != base ]] && extra=(--adapter "$(adapter_for "$variant")")
    best=""
    for _ in 1 2; do
      json="$("$BIDORA" generate -m "$MODEL" -q "$q" -p "$PROMPT" -n 128 -t 0 --ignore-eos --json "${extra[@]}" \
        2>/dev/null)"
      line="$(/usr/bin/python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["prompt_tokens"], j["generated_tokens"], j["prefill_tokens_per_s"], j["decode_tokens_per_s"])' "$json")"
      read -r p n pre dec <<<"$line"
      if [[ -z "$best" ]] || /usr/bin/python3 -c "import sys; sys.exit(0 if $dec > $best else 1)"; then
        best="$dec"
        best_line="$p $n $pre $dec"
      fi
    done
    read -r p n pre dec <<<"$best_line"
    gbs="$(/usr/bin/python3 -c "print(f'{$bytes * $dec / 1e9:.1f}')")"
    printf '%-6s %-6s %8s %8s %14.1f %14.2f %8s\n' "$q" "$variant" "$p" "$n" "$pre" "$dec" "$gbs"
  done
done
